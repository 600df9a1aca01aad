#!/usr/bin/env bash
# Prepares .gpu/, everything scripts/gpu-check.sh needs on a lent GPU machine (which has no Rust
# toolchain and no network). Runs HERE, on the build machine; no GPU needed.
#
#   scripts/gpu-prepare.sh        then, on the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=540)
#
#   GPU_PREPARE_TRAIN_SET=N scripts/gpu-prepare.sh   also carries N training phantoms for
#   scripts/gpu-train.sh (.gpu/train/phantoms.npy; by default gpu-train.sh generates them there)
#
# Steps: installs nvcc 13.0 into .toolchain/ if missing (scripts/install-nvcc.sh); builds, with
# DIFFRECON_REQUIRE_KERNELS=1 (every kernel compiled and embedded, or the build fails), the
# release binary and the test binaries `cuda_parity` and `golden`; checks that the kernels are
# embedded (the spill test runs without a GPU and needs them); copies into .gpu/ the stripped
# binaries, tests/golden/, tools/reference.py, tools/torch_bench.py and a manifest
# (manifest.txt: commit, dirty files, date, toolchain, CARGO_MANIFEST_DIR baked into the test
# binaries, file sizes and sha256). Fails if .gpu/ is 60 MiB or more (the device tool carries
# at most 64 MiB with the working tree). Idempotent: .gpu/ is rebuilt from scratch each run;
# cargo builds incrementally.
#
# The test binaries find tests/golden through env!("CARGO_MANIFEST_DIR"), the absolute path of
# this checkout at build time; gpu-check.sh makes that path resolve on the device (see there).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dest="$root/.gpu"
limit_mib=60
t_start=$SECONDS
step() { echo "== $* (t=$((SECONDS - t_start))s)" >&2; }

# .gpu/ must never be committed; .gitignore has /.gpu, else .git/info/exclude gets it.
if ! git check-ignore -q .gpu 2>/dev/null; then
    gitdir="$(git rev-parse --git-dir)"
    mkdir -p "$gitdir/info"
    echo "/.gpu/" >>"$gitdir/info/exclude"
    echo "added /.gpu/ to $gitdir/info/exclude" >&2
fi

step "nvcc"
nvcc="$(bash scripts/install-nvcc.sh | tail -n 1)"
echo "nvcc: $nvcc" >&2

export DIFFRECON_REQUIRE_KERNELS=1
step "cargo build --release --bin diffrecon"
cargo build --release --bin diffrecon
step "cargo test --release --no-run --test cuda_parity --test golden --test batch --test precision --test cuda_checks"
msgs="$(mktemp)"
trap 'rm -f "$msgs"' EXIT
cargo test --release --no-run --test cuda_parity --test golden --test batch --test precision --test cuda_checks \
    --message-format=json >"$msgs"

# Executable path of test target $1 from cargo's JSON messages.
test_exe() {
    python3 - "$msgs" "$1" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
exe = None
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == name and "test" in m["target"]["kind"]:
        exe = m["executable"]
if not exe:
    sys.exit(f"no test executable for {name} in cargo's output")
print(exe)
EOF
}
parity_exe="$(test_exe cuda_parity)"
# CARGO_MANIFEST_DIR as cargo saw it (the package's manifest_path without Cargo.toml).
manifest_dir="$(python3 - "$msgs" <<'EOF'
import json, os, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda_parity":
        print(os.path.dirname(m["manifest_path"]))
        break
EOF
)"
golden_exe="$(test_exe golden)"
batch_exe="$(test_exe batch)"
precision_exe="$(test_exe precision)"
checks_exe="$(test_exe cuda_checks)"
bin_exe="$root/target/release/diffrecon"
echo "cuda_parity: $parity_exe" >&2
echo "golden:      $golden_exe" >&2

step "assemble .gpu/"
rm -rf "$dest"
mkdir -p "$dest/tests"
strip -o "$dest/diffrecon" "$bin_exe"
strip -o "$dest/cuda_parity" "$parity_exe"
strip -o "$dest/golden" "$golden_exe"
strip -o "$dest/batch" "$batch_exe"
strip -o "$dest/precision" "$precision_exe"
strip -o "$dest/cuda_checks" "$checks_exe"
cp -r tests/golden "$dest/tests/golden"
# The precision tests also read the bundled prior (CARGO_MANIFEST_DIR/weights, like tests/golden).
mkdir -p "$dest/weights"
cp weights/prior.safetensors "$dest/weights/"
cp tools/reference.py tools/torch_bench.py "$dest/"
# The prior's training set for scripts/gpu-train.sh, only when asked: by default the engine
# generates it on the device (64000 phantoms in seconds on its 16 cores), which costs no carry.
# GPU_PREPARE_TRAIN_SET=N carries N 64x64 phantoms (seed 0), 16 KiB each as float32: N <= ~1500
# keeps .gpu/ under its limit beside the test binaries.
train_set="${GPU_PREPARE_TRAIN_SET:-0}"
if [[ "$train_set" != 0 ]]; then
    step "training set: $train_set phantoms"
    mkdir -p "$dest/train"
    "$dest/diffrecon" phantoms --count "$train_set" --seed 0 --size 64 --out "$dest/train/phantoms.npy"
fi

step "checks"
# 1. Kernels embedded in the stripped test binary: the spill test reads the ptxas report and
#    prints SKIP when the build has no kernels; it needs no GPU.
spill_out="$("$dest/cuda_parity" kernels_do_not_spill --exact --nocapture --test-threads=1 2>&1)" || {
    echo "$spill_out" >&2
    echo "error: kernels_do_not_spill failed on the stripped test binary" >&2
    exit 1
}
if grep -q "SKIP" <<<"$spill_out" || ! grep -q "1 passed" <<<"$spill_out"; then
    echo "$spill_out" >&2
    echo "error: the test binary has no kernels (or the spill test did not run)" >&2
    exit 1
fi
# 2. Kernels embedded in the stripped CLI binary: every kernel source's entry points are in
#    the fatbins' symbol tables.
for k in sgemm_strided conv2d_fwd group_norm_fwd attention_fwd blur_t_step diffpir_prior lincomb; do
    if ! grep -aq "$k" "$dest/diffrecon"; then
        echo "error: kernel $k not found in $dest/diffrecon: built without kernels?" >&2
        exit 1
    fi
done
# 3. The stripped CLI runs and lists its commands.
"$dest/diffrecon" bench --help >/dev/null
# 4. The stripped golden test binary passes from another working directory: it reads
#    tests/golden through the absolute CARGO_MANIFEST_DIR baked into it (rustc inlines that
#    string as immediates, so it cannot be patched; gpu-check.sh makes the path resolve).
if [[ "${GPU_PREPARE_SKIP_GOLDEN:-0}" != 1 ]]; then
    golden_out="$(cd / && "$dest/golden" --test-threads=2 2>&1)" || {
        echo "$golden_out" >&2
        echo "error: the stripped golden test binary failed" >&2
        exit 1
    }
    grep -m1 "^test result" <<<"$golden_out" >&2
fi
# 5. Highest glibc symbol version the binaries need (the device's glibc must be at least this).
glibc_need="$(objdump -T "$dest/diffrecon" "$dest/cuda_parity" "$dest/golden" "$dest/batch" \
    "$dest/precision" "$dest/cuda_checks" 2>/dev/null |
    grep -o 'GLIBC_[0-9.]*' | sort -V -u | tail -n 1 || true)"

step "pack the binaries"
# Each binary embeds the same kernel fatbins: one solid xz archive holds them in ~4 MB instead of
# ~63 MB. scripts/gpu-unpack.sh (called first by gpu-check.sh and gpu-train.sh) unpacks it on the
# device. The manifest below lists the binaries themselves.
bins=(diffrecon cuda_parity golden batch precision cuda_checks)
(cd "$dest" && tar cf - "${bins[@]}" | xz -9 -T0 >binaries.tar.xz) || {
    echo "error: could not pack the binaries" >&2
    exit 1
}

step "manifest"
commit="$(git rev-parse HEAD)"
dirty="$(git status --porcelain --untracked-files=no | awk '{print $2}' | paste -sd, -)"
{
    echo "commit: $commit"
    echo "commit_short: $(git rev-parse --short HEAD)"
    echo "dirty_tracked_files: ${dirty:-none}"
    echo "built_utc: $(date -u +%FT%TZ)"
    echo "build_host: $(uname -m) $(nproc) cores, $(ldd --version 2>/dev/null | head -n 1)"
    echo "glibc_needed: ${glibc_need:-unknown}"
    echo "rustc: $(rustc --version)"
    echo "nvcc: $("$nvcc" --version | grep -o 'release [0-9.]*, V[0-9.]*')"
    echo "cargo_manifest_dir: $manifest_dir"
    echo "kernels: embedded (DIFFRECON_REQUIRE_KERNELS=1), sm_80 + sm_90 SASS, compute_90 PTX"
    echo "files:"
    (cd "$dest" && find . -type f ! -name manifest.txt | sort | while read -r f; do
        printf '  %s %s %s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -c1-16)" "${f#./}"
    done)
} >"$dest/manifest.txt"
# What travels: the archive instead of the binaries (listed above with their hashes).
(cd "$dest" && rm -f "${bins[@]}")

bytes="$(du -sb "$dest" | cut -f1)"
mib="$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
echo "total_bytes: $bytes" >>"$dest/manifest.txt"
cat "$dest/manifest.txt" | grep -v '^  ' >&2
echo ".gpu/ size: $mib MiB ($bytes bytes), limit ${limit_mib} MiB; $(($(find "$dest" -type f | wc -l))) files; $((SECONDS - t_start)) s"
if ((bytes >= limit_mib * 1048576)); then
    echo "error: .gpu/ is over ${limit_mib} MiB" >&2
    exit 1
fi
