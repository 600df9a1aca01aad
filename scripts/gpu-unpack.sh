#!/usr/bin/env bash
# Unpacks .gpu/binaries.tar.xz (written by scripts/gpu-prepare.sh) into .gpu/ on the device:
# the six stripped binaries each embed the same ~7 MB of kernel fatbins, so packed together they
# travel in ~4 MB instead of ~63 MB (the carry limit is 64 MiB). Python's tarfile (lzma) first,
# tar -xJf if that fails. Idempotent: binaries already unpacked from the same archive are kept.
#
#   bash scripts/gpu-unpack.sh [GPU_DIR]     (default: .gpu beside this script's repository)
set -uo pipefail
G="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.gpu}"
pack="$G/binaries.tar.xz"
[[ -f "$pack" ]] || exit 0
stamp="$G/.unpacked"
if [[ -f "$stamp" && "$stamp" -nt "$pack" && -f "$G/diffrecon" ]]; then
    exit 0
fi
if python3 - "$pack" "$G" <<'PYEOF'; then
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    try:
        t.extractall(sys.argv[2], filter="data")
    except TypeError:  # Python before 3.12's backports: no filter argument
        t.extractall(sys.argv[2])
PYEOF
    :
elif tar -xJf "$pack" -C "$G"; then
    :
else
    echo "error: cannot unpack $pack (neither python3's tarfile nor tar -xJ worked)" >&2
    exit 1
fi
chmod +x "$G"/diffrecon "$G"/cuda_parity "$G"/golden "$G"/batch "$G"/precision "$G"/cuda_checks 2>/dev/null
touch "$stamp"
echo "unpacked $pack ($(du -sh "$G" | cut -f1) in $G)" >&2
