#!/usr/bin/env bash
# Installs nvcc 13.0 (and the headers, cicc and libdevice it needs) from PyPI into the
# project-local, git-ignored .toolchain/, for machines without a CUDA toolkit. Needs only
# python3 with pip and network access to PyPI; no GPU and no root.
#
# Why 13.0: the lent GPUs run driver 580 (CUDA 13.0); PTX from a newer nvcc would not load.
#
# Result: .toolchain/cuda is a CUDA_HOME-style tree (bin/nvcc, include/, nvvm/, lib/),
# a symlink into the wheels' nvidia/cu13 directory. The nvcc path is printed on the last line.
# nvcc finds its headers, cicc and libdevice through bin/nvcc.profile, so no extra -I flags or
# environment variables are needed. It does need a host C++ compiler (g++) on PATH, as every
# nvcc does, even when it only emits device code.
#
# Idempotent: when .toolchain/cuda/bin/nvcc already reports release 13.0 it exits at once.
# Override the interpreter with PYTHON=..., the location with TOOLCHAIN_DIR=....
set -euo pipefail

CUDA_SERIES="13.0"
PACKAGES=(
    "nvidia-cuda-nvcc==${CUDA_SERIES}.*"
    "nvidia-cuda-crt==${CUDA_SERIES}.*"
    "nvidia-cuda-runtime==${CUDA_SERIES}.*"
    "nvidia-cuda-cccl==${CUDA_SERIES}.*"
    "nvidia-nvvm==${CUDA_SERIES}.*"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tc="${TOOLCHAIN_DIR:-$root/.toolchain}"
py="${PYTHON:-python3}"
nvcc="$tc/cuda/bin/nvcc"

# True when $nvcc runs and reports the pinned release.
nvcc_ok() {
    [[ -x "$nvcc" ]] && "$nvcc" --version 2>/dev/null | grep -q "release ${CUDA_SERIES},"
}

if nvcc_ok; then
    echo "nvcc ${CUDA_SERIES} already installed" >&2
    echo "$nvcc"
    exit 0
fi

if ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "error: '$py -m pip' is not available; install pip (e.g. apt-get install python3-pip)" >&2
    exit 1
fi

mkdir -p "$tc"
# Install into a fresh directory and swap it in only once pip succeeded, so that an
# interrupted run never leaves a half-installed toolchain behind. --target also bypasses
# PEP 668's "externally managed" guard on Debian's system Python.
staging="$tc/py.staging"
rm -rf "$staging"
echo "installing ${PACKAGES[*]} into $tc/py" >&2
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: --target "$staging" "${PACKAGES[@]}"

cu="$staging/nvidia/cu13"
for f in bin/nvcc bin/ptxas bin/nvcc.profile nvvm/bin/cicc nvvm/libdevice/libdevice.10.bc \
    include/cuda_runtime.h include/crt/host_config.h; do
    if [[ ! -e "$cu/$f" ]]; then
        echo "error: the wheels did not provide nvidia/cu13/$f; has the package layout changed?" >&2
        exit 1
    fi
done
# Wheels do not keep the executable bit everywhere: restore it on the tools nvcc runs.
chmod +x "$cu"/bin/* "$cu"/nvvm/bin/* 2>/dev/null || true

rm -rf "$tc/py"
mv "$staging" "$tc/py"
# Stable, relative link: the tree can move with the checkout.
rm -rf "$tc/cuda"
ln -s "py/nvidia/cu13" "$tc/cuda"

if ! nvcc_ok; then
    echo "error: $nvcc does not run or does not report release ${CUDA_SERIES}" >&2
    "$nvcc" --version >&2 || true
    exit 1
fi

# A real device compile: catches a missing host compiler, cicc, libdevice or header.
if ! command -v "${NVCC_CCBIN:-g++}" >/dev/null 2>&1; then
    # nvcc preprocesses device code with the host compiler (gcc -E -x c++: needs g++'s cc1plus).
    echo "warning: no host C++ compiler (g++) on PATH: nvcc is installed but cannot compile" \
        "until one is (Debian: apt-get install g++)" >&2
else
    probe="$(mktemp -d)"
    trap 'rm -rf "$probe"' EXIT
    cat >"$probe/probe.cu" <<'EOF'
#include <cuda_runtime.h>
extern "C" __global__ void probe(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = expf(x[i]) / 3.0f;
}
EOF
    "$nvcc" -fatbin -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 \
        -o "$probe/probe.fatbin" "$probe/probe.cu"
    echo "probe compile ok" >&2
fi

"$nvcc" --version | tail -n 2 >&2
echo "$nvcc"
