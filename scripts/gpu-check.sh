#!/usr/bin/env bash
# The one prepared call on a lent GPU machine. Needs .gpu/ from scripts/gpu-prepare.sh (built
# here: the device has no Rust toolchain and no network) and runs ON THE DEVICE, from the
# repository root:
#
#   device run: command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=540
#
# Every step is bounded by `timeout`, logged under $OUT, and the script goes on after a failed
# step. Steps, in order of value:
#   a. gpu        nvidia-smi -L, driver and CUDA version, environment;
#   b. parity     .gpu/cuda_parity --include-ignored --nocapture --test-threads=1 (every CUDA op
#                 vs the CPU reference; the `parity <op>: relative error` lines), .gpu/cuda_checks
#                 (operand checks), .gpu/batch (slices of a batch) and .gpu/precision (the
#                 tensor-core path vs the CPU's emulation); the GPU tests are #[ignore]d, so
#                 every call passes --include-ignored;
#   c. sanitizer  compute-sanitizer memcheck (eps, eps with the GroupNorm fold, whose output
#                 must cmp equal to eps's, DiffPIR-style 4 steps, DPS 4 steps) and
#                 racecheck (eps, DiffPIR-style) on the small golden weights and inputs
#                 (tests/golden, 32x32, --device cuda); the CLI outputs of the memcheck runs are
#                 then compared with the PyTorch golden outputs (cli_vs_golden);
#   d. bench      first the batch-1 A/B (the direct kernels without graphs, then today's kernels
#                 without graphs, then --precision tf32 and bf16 at batch 1 and 8, then the
#                 conv tiles forced one at a time at batch 8 and 64 with 2 sampler steps, the
#                 GroupNorm fold at batch 1, 8 and 64 (2 steps), the attention path one image at a time against its groups at batch 8, in
#                 steps.log), then diffrecon bench --device cuda --steps 40
#                 --repeats 5, one call per batch (1, 8, 64) so that a slow batch cannot cost
#                 the others;
#   e. torch      python3 .gpu/torch_bench.py --device cuda: the PyTorch peer on the same
#                 (synthetic) weights and the same batches, in the same call;
#   then, with the time left: the per-kernel profile, the quality table with the samplers rerun
#   at tf32 and bf16 (evaluate_precision: the tensor-core path's PSNR effect), the TF32 PyTorch
#   peer (batch 1 and 64), torch.compile(mode="reduce-overhead") at batch 1 (and max-autotune at
#   batch 64 with GPU_CHECK_AUTOTUNE=1), the golden CPU tests, initcheck and
#   synccheck, diffrecon's CPU forward at batch 1; and
#   f. summary    $OUT/summary.md, written LAST (and refreshed after every step, so a killed run
#                 still leaves one): device, driver, commit, parity lines, sanitizer verdicts,
#                 both benchmark tables and diffrecon/PyTorch ratios where op and batch match.
#
# $OUT (default ./gpu-out) gets at most 8 files (the device tool returns at most 8):
# summary.md, steps.log, parity.log, sanitizer.log, bench.md, torch.log, torch.json, profile.log.
#
# Time: the steps share a budget of GPU_CHECK_BUDGET seconds (default 400); each step's
# timeout is the smaller of its own cap and what is left after the reserve kept for the later,
# essential steps (the benchmarks and the PyTorch peer). Expected total on an H100: ~2-3 min.
#
# tests/golden on the device: the test binaries read it through env!("CARGO_MANIFEST_DIR"),
# the absolute path of the build checkout (manifest.txt: cargo_manifest_dir, e.g. /work/main),
# which rustc inlines into the code (it cannot be patched). If that path does not hold
# tests/golden on this machine, the script (1) makes it a symlink to .gpu/ (which holds a copy
# of tests/golden) when the path does not exist and its parent can be created (root on the
# device), else (2) runs the test binaries in a private mount namespace with .gpu/ bind-mounted
# on it (unshare -m, or unshare -rm when not root), else (3) runs them anyway and the summary
# says that the golden-based tests cannot find their data. The symlink is removed at exit.
#
# Exit status: 0 when it ran to the end on a GPU (failures are in summary.md), 3 when no GPU
# was found, 1 when .gpu/ was not prepared. Here (no GPU): `OUT=/tmp/gpuout bash
# scripts/gpu-check.sh` runs every step; the GPU steps fail or SKIP and summary.md says NO GPU
# FOUND. The binaries travel packed (.gpu/binaries.tar.xz, ~4 MB; scripts/gpu-unpack.sh, run
# first, unpacks them to ~63 MB): after a dry run here, rerun scripts/gpu-prepare.sh before
# carrying .gpu, or it is over the carry limit.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
REPO="$PWD"
G="$REPO/.gpu"
if [[ -z "${OUT:-}" ]]; then
    OUT="$REPO/gpu-out"
    # A local test run: keep gpu-out/ out of git (and out of what the device tool sends).
    if gd="$(git rev-parse --git-dir 2>/dev/null)" && ! git check-ignore -q gpu-out 2>/dev/null; then
        mkdir -p "$gd/info" && echo "/gpu-out/" >>"$gd/info/exclude"
    fi
fi
BUDGET="${GPU_CHECK_BUDGET:-400}"
# Space-separated step names to skip (e.g. "racecheck_diffpir4 torch"), for a short rerun.
REPEATS="${GPU_CHECK_REPEATS:-5}"
BATCHES="${GPU_CHECK_BATCHES:-1,8,64}"
# The PyTorch peer's batches (default: the same), for a rerun that must be shorter.
TORCH_BATCHES="${GPU_CHECK_TORCH_BATCHES:-$BATCHES}"
STEPS="${GPU_CHECK_STEPS:-40}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
TMP="$(mktemp -d)"
LINK_MADE=""
cleanup() {
    [[ -n "$LINK_MADE" && -L "$LINK_MADE" ]] && rm -f "$LINK_MADE"
    rm -rf "$TMP"
}
trap cleanup EXIT
: >"$OUT/steps.log"
: >"$OUT/parity.log"
: >"$OUT/sanitizer.log"
: >"$OUT/bench.md"
: >"$OUT/torch.log"
: >"$OUT/profile.log"
rm -f "$OUT/torch.json" "$OUT/summary.md"
: >"$TMP/steps.tsv"
T0="${EPOCHREALTIME/,/.}"

now() { awk -v a="${EPOCHREALTIME/,/.}" -v b="$T0" 'BEGIN { printf "%d", a - b }'; }
note() { echo "$*" | tee -a "$OUT/steps.log"; }

# run_step NAME CAP RESERVE LOG -- CMD...: runs CMD with timeout min(CAP, budget left - RESERVE),
# appends its output to LOG between '### NAME' and '[exit RC, S s]', and records the step.
run_step() {
    local name="$1" cap="$2" reserve="$3" log="$4"
    shift 5
    if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
        skip_step "$name" "GPU_CHECK_SKIP" "$log"
        return 97
    fi
    local left=$((BUDGET - $(now) - reserve))
    local t=$((cap < left ? cap : left))
    if ((t < 5)); then
        printf '%s\tskipped (no time left)\t-\t0\t%s\n' "$name" "$(basename "$log")" >>"$TMP/steps.tsv"
        printf '### %s\nskipped: no time left in the %ss budget\n[exit -, 0 s]\n' "$name" "$BUDGET" >>"$log"
        note "step $name: skipped (no time left)"
        return 98
    fi
    printf '### %s\n$ %s\n(timeout %ss)\n' "$name" "$*" "$t" >>"$log"
    local s="${EPOCHREALTIME/,/.}" rc
    timeout -k 10 "$t" "$@" >>"$log" 2>&1
    rc=$?
    local el
    el="$(awk -v a="${EPOCHREALTIME/,/.}" -v b="$s" 'BEGIN { printf "%.1f", a - b }')"
    local status=ok
    if ((rc == 124 || rc == 137)); then status="timeout (${t}s)"; elif ((rc != 0)); then status=failed; fi
    printf '\n[exit %s, %s s]\n' "$rc" "$el" >>"$log"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$el" "$(basename "$log")" >>"$TMP/steps.tsv"
    note "step $name: $status (exit $rc) ${el}s  [t=$(now)s]"
    return "$rc"
}

skip_step() { # NAME WHY LOG
    printf '%s\tskipped (%s)\t-\t0\t%s\n' "$1" "$2" "$(basename "$3")" >>"$TMP/steps.tsv"
    printf '### %s\nskipped: %s\n[exit -, 0 s]\n' "$1" "$2" >>"$3"
    note "step $1: skipped ($2)"
}

FINAL=0
write_summary() {
    if command -v python3 >/dev/null 2>&1 &&
        python3 - "$OUT" "$TMP" "$G" "$FINAL" "$BUDGET" <<'PYEOF' >"$TMP/summary.md" 2>"$TMP/summary.err"; then
import json, os, re, sys

out, tmp, gdir, final, budget = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]

def read(p):
    try:
        with open(p, errors="replace") as f:
            return f.read()
    except OSError:
        return ""

def sections(text):
    """'### name' ... '[exit rc, s s]' blocks of a log, by name."""
    res, name, buf = {}, None, []
    for line in text.splitlines():
        if line.startswith("### "):
            if name is not None:
                res[name] = "\n".join(buf)
            name, buf = line[4:].strip(), []
        elif name is not None:
            buf.append(line)
            if line.startswith("[exit "):  # a section ends here; what follows is other notes
                res[name] = "\n".join(buf)
                name, buf = None, []
    if name is not None:
        res[name] = "\n".join(buf)
    return res

def kv(text):
    d = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_0-9]+): (.*)$", line)
        if m:
            d[m.group(1)] = m.group(2)
    return d

steps = []
for line in read(os.path.join(tmp, "steps.tsv")).splitlines():
    p = line.split("\t")
    if len(p) >= 5:
        steps.append(dict(name=p[0], status=p[1], rc=p[2], secs=p[3], log=p[4]))
st = {s["name"]: s for s in steps}
env = kv(read(os.path.join(tmp, "env.txt")))
man = kv(read(os.path.join(gdir, "manifest.txt")))
steplog = sections(read(os.path.join(out, "steps.log")))
paritylog = sections(read(os.path.join(out, "parity.log")))
sanlog = sections(read(os.path.join(out, "sanitizer.log")))
benchlog = sections(read(os.path.join(out, "bench.md")))
L = []
w = L.append

have_gpu = env.get("have_gpu") == "1"
w("# diffrecon GPU check")
w("")
if not final:
    w("**PARTIAL: the script had not finished when this was written (killed, or still running).**")
    w("")
if not have_gpu:
    w("**NO GPU FOUND** on this machine (`nvidia-smi -L` listed no GPU: %s). Nothing below is a "
      "GPU measurement; GPU steps failed or printed SKIP." % env.get("gpu_error", "see steps.log"))
    w("")
w("| | |")
w("|---|---|")
w("| device | %s |" % (env.get("gpu_name") or "none"))
w("| driver / CUDA (driver) | %s / %s |" % (env.get("driver", "-"), env.get("cuda_driver", "-")))
w("| GPU memory | %s |" % env.get("gpu_memory", "-"))
w("| host | %s |" % env.get("host", "-"))
w("| date (UTC) | %s |" % env.get("date", "-"))
w("| commit (build) | %s%s |" % (man.get("commit", "unknown (no .gpu/manifest.txt)"),
      "" if man.get("dirty_tracked_files", "none") == "none"
      else " + local changes in " + man.get("dirty_tracked_files")))
w("| built | %s on %s; %s; nvcc %s |" % (man.get("built_utc", "-"), man.get("build_host", "-"),
      man.get("rustc", "-"), man.get("nvcc", "-")))
w("| tests/golden | %s |" % env.get("golden_path", "-"))
w("| total time | %s s of a %s s budget |" % (env.get("elapsed", "?"), budget))
w("")

allsec = {}
for lg in ("steps.log", "parity.log", "sanitizer.log", "bench.md", "torch.log"):
    allsec.update(sections(read(os.path.join(out, lg))))

def last_line(txt):
    for l in reversed(txt.splitlines()):
        l = l.strip()
        if l and not l.startswith(("[exit", "$ ", "(timeout", "<!--", "note: run with")):
            return l.replace("|", "/")[:160]
    return ""

w("## Steps")
w("")
w("| step | status | exit | seconds | log | last line, if not ok |")
w("|---|---|---|---|---|---|")
for s in steps:
    why = "" if s["status"] == "ok" else last_line(allsec.get(s["name"], ""))
    w("| %s | %s | %s | %s | %s | %s |" % (s["name"], s["status"], s["rc"], s["secs"], s["log"], why))
w("")

# ---- parity
w("## CUDA parity (`cuda_parity --include-ignored --nocapture --test-threads=1`)")
w("")
ptxt = paritylog.get("parity", "")
if not ptxt:
    w("not run")
else:
    cur, rows, order, skips = None, [], [], []
    for line in ptxt.splitlines():
        m = re.search(r"test (\S+) \.\.\. ", line)
        if m:
            cur = m.group(1)
            order.append(cur)
        for pm in re.finditer(r"parity (.+?): relative error (\S+)", line):
            rows.append([cur, pm.group(1), pm.group(2)])
        sm = re.search(r"(SKIP .*)", line)
        if sm:
            skips.append(sm.group(1))
    failed = set()
    fm = re.search(r"\nfailures:\n((?:    \S+\n?)+)", ptxt + "\n")
    if fm:
        failed = {x.strip() for x in fm.group(1).splitlines() if x.strip()}
    result = re.findall(r"test result: .*", ptxt)
    w("result: `%s`" % (result[-1] if result else "no 'test result' line: crashed or killed (see parity.log)"))
    w("")
    im = re.search(r"(\d+) ignored", result[-1]) if result else None
    if im and im.group(1) != "0":
        w("**%s GPU tests were ignored (run without --include-ignored?): they checked nothing.**" % im.group(1))
        w("")
    if skips and not rows:
        w("**Parity NOT CHECKED: every GPU test printed SKIP (no usable GPU); a SKIP is not a pass.**")
        w("")
    last_of = {}
    for i, r in enumerate(rows):
        last_of[r[0]] = i
    if rows:
        w("| test | op | relative error | verdict |")
        w("|---|---|---|---|")
        for i, (t, op, e) in enumerate(rows):
            if t in failed:
                v = "FAIL (last line of a failed test)" if last_of.get(t) == i else "pass (in a failed test)"
            elif result:
                v = "pass"
            else:
                v = "? (run did not finish)"
            w("| %s | %s | %s | %s |" % (t, op, e, v))
        w("")
    else:
        w("no `parity` lines.")
        w("")
    if skips:
        w("SKIP lines (%d): these tests checked nothing:" % len(skips))
        w("")
        for s in skips:
            w("- `%s`" % s)
        w("")
    if failed:
        w("failed tests: %s" % ", ".join(sorted(failed)))
        w("")
        for m in re.finditer(r"panicked at ([^\n]*)\n([^\n]*)", ptxt):
            w("- panic at `%s`: `%s`" % (m.group(1).rstrip(":"), m.group(2)))
        w("")
ctxt = paritylog.get("cli_vs_golden", "")
if ctxt:
    w("CLI on the GPU (the memcheck runs' outputs) vs the PyTorch golden outputs:")
    w("")
    for line in ctxt.splitlines():
        if line.startswith("cli "):
            w("- " + line)
    w("")
# ---- the tensor-core path: .gpu/precision's lines and the paired PSNR comparison
pr = paritylog.get("precision", "")
ev = steplog.get("evaluate_precision", "")
if pr or ev:
    w("## Precision (tf32 / bf16 tensor cores)")
    w("")
if pr:
    result = re.findall(r"test result: .*", pr)
    w("`.gpu/precision`: `%s`" % (result[-1] if result else "no 'test result' line: crashed or killed"))
    w("")
    for line in pr.splitlines():
        if (re.search(r"(tf32|bf16) .* from the cpu's", line) or "panicked at" in line
                or "SKIP" in line or re.search(r"cpu (tf32|bf16) emulation", line)):
            w("- " + line.replace("|", "/")[:220])
    w("")
if ev:
    table = [l for l in ev.splitlines() if l.startswith("| ") and (" tf32 |" in l or " bf16 |" in l
             or l.startswith("| sampler"))]
    if table:
        w("PSNR change from f32, 32 phantoms, paired (`evaluate --compare-precision tf32,bf16`):")
        w("")
        w(table[0])
        w("|---|---|---|---|---|---|---|")
        for l in table[1:]:
            w(l)
        w("")
    else:
        w("evaluate_precision: no comparison table (see steps.log).")
        w("")

gtxt = paritylog.get("golden_cpu", "")
if gtxt:
    result = re.findall(r"test result: .*", gtxt)
    w("Golden CPU tests on this machine (`.gpu/golden`): `%s`" % (result[-1] if result else "no result line"))
    w("")

# ---- sanitizer
w("## compute-sanitizer")
w("")
if not sanlog:
    w("not run")
else:
    w("| run | verdict | exit |")
    w("|---|---|---|")
    for name, txt in sanlog.items():
        s = st.get(name, {})
        rc = s.get("rc", "-")
        if "skipped" in s.get("status", "") or txt.startswith("skipped"):
            v = s.get("status", "skipped")
        else:
            em = re.findall(r"ERROR SUMMARY: (\d+) error", txt)
            rm = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", txt)
            if rm:
                h, e, wa = rm[-1]
                v = "clean (0 hazards)" if h == "0" else "%s hazards (%s errors, %s warnings)" % (h, e, wa)
            elif em:
                v = "clean (0 errors)" if em[-1] == "0" else "%s ERRORS" % em[-1]
            else:
                v = "no sanitizer summary"
            if rc == "99":
                v += "; sanitizer errors (exit 99)"
            elif rc not in ("0", "-"):
                app = [l for l in txt.splitlines() if l.strip() and not l.startswith("=========")
                       and not l.startswith("$ ") and not l.startswith("(timeout") and not l.startswith("[exit")]
                v += "; the program failed: `%s`" % (app[-1][:200] if app else "exit %s" % rc)
        w("| %s | %s | %s |" % (name, v, rc))
    w("")

# ---- benchmarks
def md_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| (\S+) \| (\d+) \| ([^|]*)\|([^|]*)\|", line)
        if m and m.group(1) != "op":
            rows[(m.group(1), int(m.group(2)))] = (m.group(3).strip(), m.group(4).strip())
    return rows

dr = {}
dev_line = ""
for name, txt in benchlog.items():
    if name.startswith("bench_cuda"):
        dr.update(md_rows(txt))
        for line in txt.splitlines():
            if line.startswith("device:"):
                dev_line = line
tj = None
try:
    with open(os.path.join(out, "torch.json")) as f:
        tj = json.load(f)
except (OSError, ValueError):
    pass
w("## Benchmarks (64x64, notebook config, float32)")
w("")
w("diffrecon `bench --device cuda --steps %s` (synthetic weights, seed 1; median and min of the "
  "repeats after one warm-up) %s:" % (env.get("steps", "?"), ("(" + dev_line + ")") if dev_line else ""))
w("")
if dr:
    w("| op | batch | median ms | min ms |")
    w("|---|---|---|---|")
    for (op, b), (med, mn) in dr.items():
        w("| %s | %d | %s | %s |" % (op, b, med, mn))
else:
    w("no diffrecon GPU timings (see bench.md).")
w("")
tr = {}
if tj:
    i = tj["info"]
    w("PyTorch %s on %s (TF32 %s, weights %s, median of %s after %s warm-ups)%s:" % (
        i.get("torch"), i.get("device_name", i.get("device")), "on" if i.get("tf32") else "off",
        i.get("weights"), i.get("repeats"), i.get("warmup"),
        ("; its samplers vs reference.py on the CPU: " + ", ".join(
            "%s %.1e" % kv_ for kv_ in i["sampler_check_rel_err"].items())) if i.get("sampler_check_rel_err") else ""))
    w("")
    w("| op | batch | median ms | min ms |")
    w("|---|---|---|---|")
    for r in tj["results"]:
        tr[(r["op"], r["batch"])] = r["median_ms"]
        w("| %s | %d | %.3f | %.3f |" % (r["op"], r["batch"], r["median_ms"], r["min_ms"]))
else:
    w("no PyTorch GPU timings (see torch.log).")
w("")
pairs = []
for (op, b), (med, _) in dr.items():
    try:
        d = float(med)
    except ValueError:
        continue
    if (op, b) in tr:
        pairs.append((op, b, d, tr[(op, b)]))
if pairs:
    w("Ratios, same machine, same call (diffrecon median / PyTorch median; below 1 = diffrecon faster):")
    w("")
    w("| op | batch | diffrecon ms | PyTorch ms | diffrecon / PyTorch |")
    w("|---|---|---|---|---|")
    for op, b, d, t in pairs:
        w("| %s | %d | %.3f | %.3f | %.2fx |" % (op, b, d, t, d / t))
    w("")
# The other peers, each from its own JSON in $TMP (the device returns 8 files; these tables and
# torch.log carry their numbers back): PyTorch with TF32 allowed, torch.compile's modes.
for fname, what in (("torch_tf32.json", "PyTorch eager, TF32 allowed"),
                    ("torch_compile.json", "torch.compile"),
                    ("torch_autotune.json", "torch.compile")):
    try:
        with open(os.path.join(tmp, fname)) as f:
            pj = json.load(f)
    except (OSError, ValueError):
        continue
    i = pj["info"]
    mode = i.get("compile")
    w("%s%s (%s; max |compiled - eager| by batch: %s):" % (
        what, " mode=" + mode if mode else "", fname,
        i.get("compile_max_abs_diff") or "not compiled"))
    w("")
    # Against PyTorch's TF32 also diffrecon's own --precision tf32 rows: bench_cuda_tf32 (batch
    # 1 and 8), else the forced igemm64x128:tf32 step (batch 64: the tile the size rule picks).
    tf32 = {}
    if fname == "torch_tf32.json":
        tf32 = md_rows(steplog.get("bench_cuda_tile_igemm64x128_tf32", ""))
        tf32.update(md_rows(steplog.get("bench_cuda_tf32", "")))
    def ratio(d, t):
        try:
            return "%.2fx" % (float(d) / t)
        except ValueError:
            return "-"
    head = "| op | batch | PyTorch median ms | diffrecon f32 median ms | diffrecon / PyTorch |"
    w(head + (" diffrecon tf32 median ms | tf32 / PyTorch |" if tf32 else ""))
    w("|---|---|---|---|---|" + ("---|---|" if tf32 else ""))
    for r in pj["results"]:
        base = "forward" if r["op"].startswith("forward") else r["op"]
        d = dr.get((base, r["batch"]), ("-", "-"))[0]
        row = "| %s | %d | %.3f | %s | %s |" % (r["op"], r["batch"], r["median_ms"], d, ratio(d, r["median_ms"]))
        if tf32:
            d32 = tf32.get((base, r["batch"]), ("-", "-"))[0]
            row += " %s | %s |" % (d32, ratio(d32, r["median_ms"]))
        w(row)
    w("")
# The GroupNorm fold (DIFFRECON_GN_FOLD=1: the same bits, parity-tested) against the default
# rows above, forward and VJP only (its samplers ran 2 steps, the main rows more).
fold = md_rows(steplog.get("bench_cuda_gn_fold", ""))
if fold:
    w("GroupNorm folded into the conv that reads it (DIFFRECON_GN_FOLD=1) against the unfolded default, f32:")
    w("")
    w("| op | batch | folded median ms | unfolded median ms | folded / unfolded |")
    w("|---|---|---|---|---|")
    for (op, b), (med, _) in sorted(fold.items()):
        if op not in ("forward", "vjp"):
            continue
        d = dr.get((op, b), ("-", "-"))[0]
        try:
            q = "%.2fx" % (float(med) / float(d))
        except ValueError:
            q = "-"
        w("| %s | %d | %s | %s | %s |" % (op, b, med, d, q))
    w("")
notrun = [(k, v[0]) for k, v in dr.items() if v[0].startswith("not run")]
if notrun:
    w("diffrecon ops not run on the GPU: " + "; ".join("%s b%d (%s)" % (k[0], k[1], v[9:].strip(": ")[:120]) for k, v in notrun))
    w("")
cpu = md_rows(benchlog.get("bench_cpu_b1", ""))
if ("forward", 1) in cpu:
    w("diffrecon CPU forward, batch 1, on this machine's CPUs (%s): %s ms median" % (env.get("cpus", "?"), cpu[("forward", 1)][0]))
    w("")
w("Full logs: steps.log, parity.log, sanitizer.log, bench.md, torch.log, torch.json.")
print("\n".join(L))
PYEOF
        mv "$TMP/summary.md" "$OUT/summary.md"
    else
        {
            echo "# diffrecon GPU check (plain summary: python3 failed or is missing)"
            echo
            [[ "$FINAL" == 1 ]] || echo "**PARTIAL: the script had not finished when this was written.**"
            grep -q '^have_gpu: 1' "$TMP/env.txt" 2>/dev/null || echo "**NO GPU FOUND** on this machine."
            echo
            cat "$TMP/env.txt" 2>/dev/null
            echo
            echo "steps (name, status, exit, seconds, log):"
            sed 's/^/    /' "$TMP/steps.tsv"
            echo
            grep -ho 'parity .*: relative error [^ ]*\|SKIP .*\|test result: .*' "$OUT/parity.log"
            grep -h 'ERROR SUMMARY\|RACECHECK SUMMARY\|^### ' "$OUT/sanitizer.log"
            echo
            cat "$OUT/bench.md"
            grep '^|' "$OUT/torch.log"
            echo
            echo "summary generator error:"
            cat "$TMP/summary.err" 2>/dev/null
        } >"$OUT/summary.md"
    fi
}

note "gpu-check: repo $REPO, OUT=$OUT, budget ${BUDGET}s, $(date -u +%FT%TZ)"

# ---------------------------------------------------------------- prerequisites
bash "$REPO/scripts/gpu-unpack.sh" "$G"
if [[ ! -f "$G/manifest.txt" || ! -f "$G/diffrecon" ]]; then
    note "error: $G/manifest.txt or $G/diffrecon missing: run scripts/gpu-prepare.sh on the build machine and carry .gpu"
    echo "have_gpu: 0" >"$TMP/env.txt"
    echo "gpu_error: not run, .gpu/ was not prepared" >>"$TMP/env.txt"
    FINAL=1
    write_summary
    exit 1
fi
chmod +x "$G/diffrecon" "$G/cuda_parity" "$G/golden" "$G/cuda_checks" 2>/dev/null
GOLD="$G/tests/golden"

# ---------------------------------------------------------------- a. GPU and environment
gpu_info() {
    echo "--- nvidia-smi -L"
    nvidia-smi -L || return 1
    echo "--- nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,compute_mode --format=csv
    echo "--- nvidia-smi (header)"
    nvidia-smi | head -n 12
}
run_step gpu 30 0 "$OUT/steps.log" -- bash -c "$(declare -f gpu_info); gpu_info"
{
    echo "host: $(uname -m), $(nproc) cores, $(uname -r), $(ldd --version 2>/dev/null | head -n 1)"
    echo "cpus: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs)"
    echo "date: $(date -u +%FT%TZ)"
    echo "steps: $STEPS"
    if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        echo "have_gpu: 1"
        echo "gpu_name: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
        echo "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
        echo "gpu_memory: $(nvidia-smi --query-gpu=memory.total --format=csv,noheader | head -n 1)"
        echo "cuda_driver: $(nvidia-smi | grep -o 'CUDA Version: [0-9.]*' | head -n 1 | cut -d' ' -f3)"
    else
        echo "have_gpu: 0"
        if command -v nvidia-smi >/dev/null 2>&1; then
            echo "gpu_error: $(nvidia-smi -L 2>&1 | head -n 1 | tr -d '|' | cut -c1-150)"
        else
            echo "gpu_error: nvidia-smi not found"
        fi
    fi
} >"$TMP/env.txt" 2>/dev/null
{
    echo "--- environment"
    cat "$TMP/env.txt"
    echo "--- .gpu/manifest.txt"
    cat "$G/manifest.txt"
} >>"$OUT/steps.log"
write_summary

# ---------------------------------------------------------------- tests/golden at the baked path
MD="$(sed -n 's/^cargo_manifest_dir: //p' "$G/manifest.txt")"
WRAP=()
golden_ok() { [[ -f "$MD/tests/golden/small.safetensors" && -f "$MD/tests/golden/manifest.json" ]]; }
if [[ -z "$MD" ]]; then
    golden_how="unknown (no cargo_manifest_dir in manifest.txt): golden-based tests will fail"
elif golden_ok; then
    golden_how="$MD/tests/golden (found as built)"
elif [[ ! -e "$MD" && ! -L "$MD" ]] && mkdir -p "$(dirname "$MD")" 2>/dev/null && ln -s "$G" "$MD" 2>/dev/null && golden_ok; then
    LINK_MADE="$MD"
    golden_how="symlink $MD -> $G (made for this run)"
else
    ns=(unshare -m)
    ((EUID == 0)) || ns=(unshare -rm)
    if command -v unshare >/dev/null 2>&1 && [[ -d "$MD" ]] &&
        "${ns[@]}" sh -c 'mount --bind "$1" "$2" && test -f "$2/tests/golden/small.safetensors"' sh "$G" "$MD" 2>/dev/null; then
        WRAP=("${ns[@]}" sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$G" "$MD")
        golden_how="$G bind-mounted on $MD in a private mount namespace (${ns[*]})"
    else
        golden_how="NOT FOUND: $MD/tests/golden is missing and could not be linked or mounted; golden-based tests fail"
    fi
fi
echo "golden_path: $golden_how" >>"$TMP/env.txt"
note "tests/golden: $golden_how"

# ---------------------------------------------------------------- b. CUDA parity tests
# The GPU tests are #[ignore]d (the harness counts them as ignored on machines without a GPU):
# --include-ignored runs every one of them here.
run_step parity 150 200 "$OUT/parity.log" -- "${WRAP[@]}" "$G/cuda_parity" --include-ignored --nocapture --test-threads=1
# The CUDA backend's operand and grid-limit checks on the device (tests/cuda_checks.rs).
if [[ -x "$G/cuda_checks" ]]; then
    run_step cuda_checks 60 200 "$OUT/parity.log" -- "${WRAP[@]}" "$G/cuda_checks" --include-ignored --nocapture --test-threads=1
fi
# Slices of a batch against single-slice runs, on the CPU and the GPU (tests/batch.rs).
if [[ -x "$G/batch" ]]; then
    run_step batch_slices 60 200 "$OUT/parity.log" -- "${WRAP[@]}" "$G/batch" --include-ignored --nocapture --test-threads=1
fi
# The tensor-core path (TF32, BF16) against the CPU's emulation of it and against f32
# (tests/precision.rs: the `<precision> <what>: … from the cpu's …, … from f32` lines).
if [[ -x "$G/precision" ]]; then
    run_step precision 90 200 "$OUT/parity.log" -- "${WRAP[@]}" "$G/precision" --include-ignored --nocapture --test-threads=1
fi
write_summary

# ---------------------------------------------------------------- c. compute-sanitizer
CS="$(command -v compute-sanitizer 2>/dev/null)"
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    /opt/nvidia/compute-sanitizer/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer; do
    [[ -z "$CS" && -x "$c" ]] && CS="$c"
done
DR="$G/diffrecon"
W="$GOLD/small.safetensors"
EPS_ARGS=(eps --device cuda --weights "$W" --input "$GOLD/eps_small/x.npy" --t 37,311)
PIR_ARGS=(reconstruct --device cuda --weights "$W" --measurement "$GOLD/diffpir_traj_small/y.npy"
    --sampler diffpir --steps 4 --tau 0.6)
DPS_ARGS=(reconstruct --device cuda --weights "$W" --measurement "$GOLD/dps_traj_small/y.npy"
    --init "$GOLD/dps_traj_small/x_T.npy" --sampler dps --steps 4 --guidance 0.15 --sigma-y 0.01)
SAN_LOG="$OUT/sanitizer.log"
san() { # NAME TOOL CAP -- diffrecon args...
    local name="$1" tool="$2" cap="$3"
    shift 4
    if [[ -z "$CS" ]]; then
        skip_step "$name" "compute-sanitizer not found" "$SAN_LOG"
        return
    fi
    local extra=()
    [[ "$tool" == racecheck ]] && extra=(--racecheck-report all)
    run_step "$name" "$cap" 170 "$SAN_LOG" -- "$CS" --tool "$tool" "${extra[@]}" --error-exitcode 99 \
        --print-limit 20 "$DR" "$@"
}
san memcheck_eps memcheck 60 -- "${EPS_ARGS[@]}" --out "$TMP/eps.npy"
san memcheck_diffpir4 memcheck 60 -- "${PIR_ARGS[@]}" --out "$TMP/diffpir.npy"
san memcheck_dps4 memcheck 90 -- "${DPS_ARGS[@]}" --out "$TMP/dps.npy"
# The GroupNorm fold's _gn conv kernels under memcheck, and their eps cmp-equal to the default's.
(
    export DIFFRECON_GN_FOLD=1
    san memcheck_eps_gn_fold memcheck 60 -- "${EPS_ARGS[@]}" --out "$TMP/eps_gn.npy"
)
san racecheck_eps racecheck 90 -- "${EPS_ARGS[@]}" --out "$TMP/eps_rc.npy"
san racecheck_diffpir4 racecheck 90 -- "${PIR_ARGS[@]}" --out "$TMP/diffpir_rc.npy"
# Without the sanitizer, the same CLI runs still give the outputs to compare.
if [[ -z "$CS" ]]; then
    run_step cli_eps 30 170 "$OUT/steps.log" -- "$DR" "${EPS_ARGS[@]}" --out "$TMP/eps.npy"
    run_step cli_diffpir4 30 170 "$OUT/steps.log" -- "$DR" "${PIR_ARGS[@]}" --out "$TMP/diffpir.npy"
    run_step cli_dps4 30 170 "$OUT/steps.log" -- "$DR" "${DPS_ARGS[@]}" --out "$TMP/dps.npy"
    run_step cli_eps_gn_fold 30 170 "$OUT/steps.log" -- \
        env DIFFRECON_GN_FOLD=1 "$DR" "${EPS_ARGS[@]}" --out "$TMP/eps_gn.npy"
fi
# The fold must not change a bit of eps.
run_step cmp_eps_gn_fold 10 170 "$SAN_LOG" -- cmp "$TMP/eps.npy" "$TMP/eps_gn.npy"
cat >"$TMP/compare.py" <<'PYEOF'
import sys
import numpy as np
tmp, gold = sys.argv[1], sys.argv[2]
cases = [("eps", "eps.npy", "eps_small/eps.npy"), ("diffpir 4 steps", "diffpir.npy", "diffpir_traj_small/out.npy"),
         ("dps 4 steps", "dps.npy", "dps_traj_small/out.npy")]
bad = compared = 0
for name, got, want in cases:
    try:
        g = np.load(f"{tmp}/{got}").astype(np.float64)
    except OSError:
        print(f"cli {name}: no output (the run failed; see sanitizer.log / steps.log)")
        continue
    compared += 1
    w = np.load(f"{gold}/{want}").astype(np.float64).reshape(g.shape)
    e = float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30))
    ok = np.isfinite(g).all() and e <= 1e-4
    bad += not ok
    print(f"cli {name} on the GPU vs PyTorch golden ({want}): relative error {e:.2e} (bound 1e-4) {'PASS' if ok else 'FAIL'}")
sys.exit(1 if bad or not compared else 0)
PYEOF
run_step cli_vs_golden 30 150 "$OUT/parity.log" -- python3 "$TMP/compare.py" "$TMP" "$GOLD"
write_summary

# ---------------------------------------------------------------- d. diffrecon benchmarks
# First (before the long batch-64 run can use up the budget), the benchmark at batch 1 with
# the kernels the implicit GEMM and the attention GEMM path replaced and no graphs
# (DIFFRECON_CONV=direct, DIFFRECON_ATTENTION=fused, DIFFRECON_GRAPHS=0; the SGEMM tile choice
# aside): the before/after of those changes on this machine, in steps.log (not bench.md, whose
# rows feed the summary's ratios).
run_step bench_cuda_b1_direct 40 150 "$OUT/steps.log" -- \
    env DIFFRECON_CONV=direct DIFFRECON_ATTENTION=fused DIFFRECON_GRAPHS=0 \
    "$DR" bench --device cuda --batches 1 --steps "$STEPS" --repeats "$REPEATS"
# And with today's kernels but no CUDA graphs: what the graphs alone save.
run_step bench_cuda_b1_nographs 40 150 "$OUT/steps.log" -- \
    env DIFFRECON_GRAPHS=0 "$DR" bench --device cuda --batches 1 --steps "$STEPS" --repeats "$REPEATS"
# The tensor-core path at batch 1 and 8 (steps.log too: bench.md's rows are the f32 table).
for p in tf32 bf16; do
    run_step "bench_cuda_$p" 60 150 "$OUT/steps.log" -- \
        "$DR" bench --device cuda --precision "$p" --batches 1,8 --steps "$STEPS" --repeats "$REPEATS"
done
# The implicit GEMM's tiles forced one at a time, at batch 8 and 64 (the forward and VJP rows;
# samplers at 2 steps, bench's least): at f32 the 64 tile of ff8bd26 against the cp.async 64x128
# and 128x128 tiles (all the same bits), at tf32 and bf16 the 64 tile against 64x128. The size
# rule (igemm_tile) is in the main rows below.
for t in igemm64 igemm64x128 igemm128 igemm64:tf32 igemm64x128:tf32 igemm64:bf16 igemm64x128:bf16; do
    p=f32
    [[ "$t" == *:* ]] && p=${t#*:}
    run_step "bench_cuda_tile_${t/:/_}" 40 150 "$OUT/steps.log" -- \
        env DIFFRECON_CONV="${t%%:*}" "$DR" bench --device cuda --precision "$p" --batches 8,64 \
        --steps 2 --repeats "$REPEATS"
done
# The GroupNorm fold (DIFFRECON_GN_FOLD=1, the same bits) at batch 1, 8 and 64: its forward and
# VJP rows against the default's in the main rows below (summary: "GroupNorm folded").
run_step bench_cuda_gn_fold 40 150 "$OUT/steps.log" -- \
    env DIFFRECON_GN_FOLD=1 "$DR" bench --device cuda --batches 1,8,64 --steps 2 --repeats "$REPEATS"
# The attention GEMM path one image at a time (DIFFRECON_ATTENTION_GROUP=1, the loop of ff8bd26)
# against its image groups, at batch 8 with 10 sampler steps (DPS's VJP is where it counts).
for grp in 1 auto; do
    run_step "bench_cuda_attn_group_$grp" 40 150 "$OUT/steps.log" -- \
        env DIFFRECON_ATTENTION_GROUP="$grp" "$DR" bench --device cuda --batches 8 --steps 10 \
        --repeats "$REPEATS"
done

IFS=, read -r -a BL <<<"$BATCHES"
for b in "${BL[@]}"; do
    cap=60
    reserve=150
    ((b >= 64)) && cap=150 && reserve=120
    {
        echo
        echo "<!-- diffrecon bench --device cuda --batches $b --steps $STEPS --repeats $REPEATS -->"
    } >>"$OUT/bench.md"
    run_step "bench_cuda_b$b" "$cap" "$reserve" "$OUT/bench.md" -- \
        "$DR" bench --device cuda --batches "$b" --steps "$STEPS" --repeats "$REPEATS"
done
write_summary

# ---------------------------------------------------------------- e. the PyTorch peer
run_step torch 240 15 "$OUT/torch.log" -- \
    env PYTHONUNBUFFERED=1 python3 "$G/torch_bench.py" --device cuda --weights synthetic --batches "$TORCH_BATCHES" \
    --samplers --sampler-batches "$TORCH_BATCHES" --steps "$STEPS" --repeats "$REPEATS" --warmup 2 \
    --json "$OUT/torch.json"
write_summary

# ---------------------------------------------------------------- extras, with the time left
# The per-kernel GPU time (CUDA events, real clocks) of each op at batch 1 and 8, 10 steps: the
# "top kernels" table of a missed target, and how much of the wall time is kernels at all.
run_step profile 90 20 "$OUT/profile.log" -- \
    "$DR" bench --device cuda --batches 1,8 --steps 10 --repeats 1 --profile
write_summary

# What the tensor-core path does to reconstructions: the quality table (32 held-out phantoms,
# the bundled prior) in f32, then every diffusion sampler rerun at tf32 and bf16 and compared
# slice by slice (the issue's bound: mean PSNR change ≤ 0.05 dB).
if [[ -f "$G/weights/prior.safetensors" ]]; then
    run_step evaluate_precision 180 10 "$OUT/steps.log" -- "$DR" evaluate --device cuda \
        --count 32 --spread-count 0 --weights "$G/weights/prior.safetensors" --compare-precision tf32,bf16
fi
# The PyTorch peer with TF32 allowed (cuDNN and cuBLAS), forward and VJP at batch 1 and 64,
# samplers at batch 1: the peer of --precision tf32 (whose batch-64 forward is the forced
# igemm64x128:tf32 row above, the tile the size rule picks there).
run_step torch_tf32 120 10 "$OUT/torch.log" -- \
    env PYTHONUNBUFFERED=1 python3 "$G/torch_bench.py" --device cuda --weights synthetic --batches 1,64 \
    --samplers --sampler-batches 1 --steps "$STEPS" --repeats "$REPEATS" --warmup 2 --tf32 \
    --json "$TMP/torch_tf32.json"
write_summary
# torch.compile(mode="reduce-overhead") (Inductor kernels replayed as a CUDA graph), forward at
# batch 1: the compilation sits in the warm-up and is checked against eager first. With
# GPU_CHECK_AUTOTUNE=1 also max-autotune at batch 64 (minutes of autotuning: a call of its own).
run_step torch_compile 150 10 "$OUT/torch.log" -- \
    env PYTHONUNBUFFERED=1 python3 "$G/torch_bench.py" --device cuda --weights synthetic --batches 1 \
    --forward-only --compile reduce-overhead --repeats 20 --warmup 3 --json "$TMP/torch_compile.json"
write_summary
if [[ "${GPU_CHECK_AUTOTUNE:-0}" == 1 ]]; then
    run_step torch_autotune 400 5 "$OUT/torch.log" -- \
        env PYTHONUNBUFFERED=1 python3 "$G/torch_bench.py" --device cuda --weights synthetic --batches 64 \
        --forward-only --compile max-autotune --repeats "$REPEATS" --warmup 3 --json "$TMP/torch_autotune.json"
    write_summary
fi

run_step golden_cpu 60 10 "$OUT/parity.log" -- "${WRAP[@]}" "$G/golden" --test-threads="$(nproc)"
san initcheck_diffpir4 initcheck 45 -- "${PIR_ARGS[@]}" --out "$TMP/diffpir_ic.npy"
san synccheck_eps synccheck 45 -- "${EPS_ARGS[@]}" --out "$TMP/eps_sc.npy"
run_step bench_cpu_b1 45 5 "$OUT/bench.md" -- "$DR" bench --device cpu --batches 1 --steps 2 --repeats 3

# ---------------------------------------------------------------- f. summary, last
echo "elapsed: $(now)" >>"$TMP/env.txt"
FINAL=1
write_summary
note "gpu-check done in $(now)s; summary: $OUT/summary.md"
echo
cat "$OUT/summary.md"
# Exit 3 when no GPU was found (the verdicts are in summary.md either way).
grep -q '^have_gpu: 1' "$TMP/env.txt" || exit 3
exit 0
