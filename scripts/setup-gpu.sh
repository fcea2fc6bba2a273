#!/usr/bin/env bash
# Makes sure a WebGPU adapter exists for Dawn (the npm `webgpu` package).
# If none is found and this is Debian bookworm with root, installs Mesa 25's software Vulkan
# driver (lavapipe) from bookworm-backports; bookworm's own Mesa 22 is rejected by Dawn.
# Idempotent: when an adapter already exists it only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."

probe() { node scripts/probe-gpu.mjs 2>/dev/null | tail -n 1; }
describe() { sed -E 's/.*"description":"([^"]*)".*/\1/' <<<"$1"; }

found=$(probe || true)
if [[ "$found" == *'"ok":true'* ]]; then
  echo "[fulgur] WebGPU adapter: $(describe "$found")"
  exit 0
fi

echo "[fulgur] no WebGPU adapter found; trying to install a software GPU (Mesa lavapipe)"
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [[ "$(id -u)" != "0" || "$codename" != "bookworm" ]]; then
  cat >&2 <<MSG
[fulgur] Cannot set up a software GPU automatically here (needs root on Debian bookworm).
  Install a Vulkan driver your GPU vendor provides, or Mesa >= 24 lavapipe, e.g.
    Debian/Ubuntu:  apt-get install libvulkan1 mesa-vulkan-drivers   (Mesa >= 24)
    Fedora:         dnf install vulkan-loader mesa-vulkan-drivers
  then run this again.
MSG
  exit 1
fi

src=/etc/apt/sources.list.d/fulgur-bookworm-backports.sources
if [[ ! -f "$src" ]]; then
  echo "[fulgur] adding bookworm-backports apt source ($src)"
  cat > "$src" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "[fulgur] apt-get update"
apt-get update -qq
version=$(apt-cache madison mesa-vulkan-drivers | awk -F'|' '/bpo12/ {gsub(/ /,"",$2); print $2; exit}')
if [[ -z "$version" ]]; then
  echo "[fulgur] bookworm-backports has no mesa-vulkan-drivers; cannot install lavapipe" >&2
  exit 1
fi
echo "[fulgur] installing libvulkan1 mesa-vulkan-drivers=$version (and the libdrm/mesa it needs) from bookworm-backports"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports \
  libvulkan1 "mesa-vulkan-drivers=$version" >/dev/null

found=$(probe || true)
if [[ "$found" == *'"ok":true'* ]]; then
  echo "[fulgur] WebGPU adapter: $(describe "$found")"
else
  echo "[fulgur] lavapipe installed but Dawn still finds no adapter: $found" >&2
  exit 1
fi
