#!/usr/bin/env bash
# CPU benchmarks of diffrecon and its PyTorch peer in one run on one machine, so the ratios in
# BENCHMARKS.md compare like with like. Needs python3 with torch (pip install -r tools/requirements.txt).
# Stop other heavy processes first: both sides use every core.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)  date: $(date -u +%F)"
python3 tools/torch_bench.py --repeats 7 --json target/torch_bench.json
# The bench binary prints the ISA its GEMM dispatched to first ("gemm isa: avx512f", ...).
cargo bench --bench unet 2>&1 | grep -E "^gemm isa:|^unet_full_config|time:"
