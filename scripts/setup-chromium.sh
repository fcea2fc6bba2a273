#!/usr/bin/env bash
# Makes sure a headless Chromium exists for the dashboard's end-to-end test
# (test/dashboard/dashboard.test.ts drives /usr/bin/chromium through playwright-core).
# On Debian with root it installs Debian's own `chromium` package; elsewhere it prints what to
# install. Idempotent: when /usr/bin/chromium already exists it only prints its version.
set -euo pipefail

chromium_bin=/usr/bin/chromium

if [[ -x "$chromium_bin" ]]; then
  echo "[fulgur] chromium: $("$chromium_bin" --version 2>/dev/null || echo "$chromium_bin")"
  exit 0
fi

os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}")
if [[ "$(id -u)" != "0" || "$os_id" != "debian" ]]; then
  cat >&2 <<MSG
[fulgur] $chromium_bin is missing and cannot be installed automatically here
  (that needs root on Debian). Install a Chromium so that $chromium_bin exists, e.g.
    Debian:         sudo apt-get install chromium
    Ubuntu:         install Chromium from a non-snap source (the snap is not at $chromium_bin)
    Fedora:         sudo dnf install chromium   (then link the binary to $chromium_bin)
  then run this again.
MSG
  exit 1
fi

echo "[fulgur] installing Debian's chromium package (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "[fulgur] chromium: $("$chromium_bin" --version 2>/dev/null || echo "$chromium_bin")"
