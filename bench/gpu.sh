#!/usr/bin/env bash
# One prepared run for a real GPU (or any WebGPU adapter): GEMM vs the adapter's peak, the kernel
# benchmarks, and the scale benchmark (load, decode tok/s, one LoRA update) on random-init
# Qwen2.5-0.5B (plus Llama-3.2-1B / Qwen3 when time allows), bounded to ~8 minutes in all.
# Every result is a JSON line on stdout and in $OUT_FILE (default bench/out/gpu-results.jsonl).
#
#   bash bench/gpu.sh            # full: ~8 min budget
#   bash bench/gpu.sh --quick    # a few minutes even on a software adapter (lavapipe)
#
# Env: GPU_SH_BUDGET_S (default 480, quick 300), OUT_FILE, FULGUR_PEAK_F32_GFLOPS /
# FULGUR_PEAK_F16_GFLOPS (the adapter's peak when bench/gemm-peak.ts's table lacks it),
# SCALE_MODELS (comma list for bench/scale.ts), SCALE_VOCAB (vocab override, to keep a quick run
# short on a software adapter), SCALE_DTYPE (f32|f16 weights; default f16 where the adapter has
# shader-f16, as a user's bf16 checkpoint loads, else f32), GPU_SH_TORCH=1 to include the PyTorch
# reference (needs /usr/bin/python3 with torch).
# Besides the dense weights it times decode from int8/int4 weights (bench/decode-gemv.ts: gemv_q
# against the widening path and f16, same run).
# On a bare machine it runs `npm install` when node_modules is missing (as scripts/bootstrap.mjs does: `npm ci` refuses
# a lock that lists optional platform builds the registry does not serve) and, when Dawn finds no adapter,
# tries the Vulkan loader (apt, root) before the software fallback of scripts/setup-gpu.sh.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
budget=${GPU_SH_BUDGET_S:-$([[ $quick == 1 ]] && echo 300 || echo 480)}
out=${OUT_FILE:-bench/out/gpu-results.jsonl}
mkdir -p "$(dirname "$out")"
start=$(date +%s)
: >"$out"

note() { echo "[gpu.sh] $*" >&2; }
left() { echo $((budget - ($(date +%s) - start))); }
record() { # bench metric value unit [reason]
  local line
  line=$(printf '{"bench":"%s","metric":"%s","value":%s,"unit":"%s","reason":"%s"}' "$1" "$2" "$3" "$4" "${5:-}")
  echo "$line" | tee -a "$out"
}
# Runs a step with what is left of the budget (capped at $1 s); JSON lines go to stdout and $out.
step() {
  local cap=$1 name=$2
  shift 2
  local t=$(($(left) < cap ? $(left) : cap))
  if ((t < 15)); then
    record gpu.sh "$name" 0 skipped "budget spent"
    return 0
  fi
  note "$name (limit ${t}s): $*"
  local s=$(date +%s)
  timeout --kill-after=10 "$t" "$@" 2> >(grep -v "artificially reduced" >&2) | grep --line-buffered '^{' | tee -a "$out"
  local rc=${PIPESTATUS[0]}
  if ((rc == 124 || rc == 137)); then
    record gpu.sh "$name" $(($(date +%s) - s)) s "timed out (partial results above)"
  elif ((rc != 0)); then
    record gpu.sh "$name" "$rc" exit "failed"
  else
    record gpu.sh "${name}_wall_time" $(($(date +%s) - s)) s
  fi
}

command -v node >/dev/null || { note "node is required (>= 20.19)"; exit 1; }
if [[ ! -d node_modules ]]; then
  note "node_modules missing: npm install"
  npm install --no-audit --no-fund >&2 || { note "npm install failed"; exit 1; }
fi

probe() { node scripts/probe-gpu.mjs 2>/dev/null | tail -n 1; }
found=$(probe || true)
if [[ "$found" != *'"ok":true'* && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  # A GPU driver without the Vulkan loader is the common bare-machine case (Dawn uses Vulkan).
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    note "no adapter and no Vulkan loader: apt-get install libvulkan1"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1) >&2 || true
    found=$(probe || true)
  fi
fi
if [[ "$found" != *'"ok":true'* ]]; then
  note "still no WebGPU adapter: falling back to scripts/setup-gpu.sh (software Vulkan)"
  bash scripts/setup-gpu.sh >&2 || { record gpu.sh adapter 0 none "no WebGPU adapter"; exit 1; }
  found=$(probe || true)
fi
echo "$found" | sed 's/^{"ok":true,/{"bench":"gpu.sh","metric":"adapter","value":1,"unit":"","cpus":'"$(nproc)"',/' | tee -a "$out"

tsx=(node --import tsx)
dtype=${SCALE_DTYPE:-$([[ "$found" == *'"shader-f16"'* ]] && echo f16 || echo f32)}
models=${SCALE_MODELS:-qwen2.5-0.5b,llama-3.2-1b,qwen3-0.6b}
skip=torch
[[ "${GPU_SH_TORCH:-0}" == 1 ]] && skip=""
if [[ $quick == 1 ]]; then
  step 60 gemm_peak "${tsx[@]}" bench/gemm-peak.ts --quick
  step 150 scale "${tsx[@]}" bench/scale.ts --quick --models qwen2.5-0.5b --batches 1 --prompt 8 --decode 2 \
    --tokens 32 --skip "llamacpp,$skip" ${SCALE_VOCAB:+--vocab "$SCALE_VOCAB"} --dtype "$dtype"
  step 90 kernels_matmul "${tsx[@]}" bench/kernels.ts matmul
  step 40 decode_gemv "${tsx[@]}" bench/decode-gemv.ts --quick --dtypes f16,int8,int4
else
  step 90 gemm_peak "${tsx[@]}" bench/gemm-peak.ts --n 4096
  step 270 scale "${tsx[@]}" bench/scale.ts --models "$models" --sequences 8 --tokens 1024 --micro 2 \
    --prompt 128 --decode 64 --batches 1,8,32 --skip "$skip" ${SCALE_VOCAB:+--vocab "$SCALE_VOCAB"} \
    --dtype "$dtype"
  step 40 decode_gemv "${tsx[@]}" bench/decode-gemv.ts
  step 90 kernels "${tsx[@]}" bench/kernels.ts
fi
record gpu.sh total_wall_time $(($(date +%s) - start)) s
note "results in $out"
