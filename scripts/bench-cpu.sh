#!/usr/bin/env bash
# CPU benchmarks of diffrecon and its PyTorch peer in one sitting on one machine, so the ratios in
# BENCHMARKS.md compare like with like: `diffrecon bench` and `tools/torch_bench.py` on the same
# rows (forward and VJP at batches 1 and 8, the four samplers at batch 1), then alternating pairs
# of the batch-1 forward and VJP (on a noisy machine the pairs are what to quote).
#
#   scripts/bench-cpu.sh          the default build (AVX-512 kernels where the CPU has them)
#   scripts/bench-cpu.sh --avx2   both sides held to AVX2+FMA: diffrecon built without its
#                                 AVX-512 kernels (--no-default-features, into target/avx2),
#                                 PyTorch with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
#
# STEPS (default 40), REPEATS (3) and PAIRS (3) shorten a run. Needs python3 with torch
# (pip install -r tools/requirements.txt). Stop other heavy processes first: both sides use
# THREADS (default 2) threads.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-40}
REPEATS=${REPEATS:-3}
PAIRS=${PAIRS:-3}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS
case "${1:-}" in
  --avx2)
    cargo build --release --quiet --no-default-features --bin diffrecon --target-dir target/avx2
    BIN=target/avx2/release/diffrecon
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
    ISA="AVX2+FMA on both sides"
    ;;
  "")
    cargo build --release --quiet --bin diffrecon
    BIN=target/release/diffrecon
    ISA="the default build (AVX-512 where present)"
    ;;
  *) echo "usage: scripts/bench-cpu.sh [--avx2]" >&2; exit 2 ;;
esac
TORCH="python3 tools/torch_bench.py --weights synthetic --threads $THREADS --warmup 1"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $ISA"
echo "commit: $(git rev-parse --short HEAD)  date: $(date -u '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "PyTorch CPU capability: $(python3 -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
echo "== diffrecon bench --device cpu --batches 1 --steps $STEPS --repeats $REPEATS"
"$BIN" bench --device cpu --batches 1 --steps "$STEPS" --repeats "$REPEATS" | grep -v '^| ct_'
echo "== diffrecon bench --device cpu --batches 8 --steps 2 --repeats $REPEATS (forward, vjp)"
"$BIN" bench --device cpu --batches 8 --steps 2 --repeats "$REPEATS" | grep -E '^\| (forward|vjp) '
echo "== $TORCH --repeats $REPEATS --batches 1,8 --samplers --sampler-batches 1 --steps $STEPS"
$TORCH --repeats "$REPEATS" --batches 1,8 --samplers --sampler-batches 1 --steps "$STEPS" 2>/dev/null
echo "== alternating pairs, batch 1: diffrecon (--steps 2 --repeats 10), then PyTorch (--repeats 10)"
for _ in $(seq "$PAIRS"); do
  "$BIN" bench --device cpu --batches 1 --steps 2 --repeats 10 | grep -E '^\| (forward|vjp) ' | sed 's/^/diffrecon /'
  $TORCH --repeats 10 --batches 1 2>/dev/null | grep -E '^\| (forward|vjp) ' | sed 's/^/PyTorch   /'
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
