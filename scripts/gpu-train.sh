#!/usr/bin/env bash
# Trains the notebook's configuration of the prior on a lent GPU within a fixed wall-clock
# budget, exports it, and checks the export with the engine on the GPU. Runs ON THE DEVICE
# from the repository root, with .gpu/ from scripts/gpu-prepare.sh (the engine binary; the
# device has no Rust toolchain) carried:
#
#   scripts/gpu-prepare.sh                        (here, on the build machine)
#   run(command="bash scripts/gpu-train.sh", carry=[".gpu"], timeout_s=600)
#
# Steps (each bounded by `timeout`; the script goes on after a failed step):
#   1. env      nvidia-smi -L, python3, torch, CUDA and bf16 support, into train.log;
#   2. train    tools/train_prior.py --notebook --device cuda: bf16 autocast, channels-last,
#               batch 128, lr 2e-4 (500 warm-up steps, then constant), EMA 0.9995, flips, for
#               GPU_TRAIN_MINUTES (default 8) minutes or less if the budget is short. Data: the
#               engine generates GPU_TRAIN_PHANTOMS (64000) 64x64 phantoms (seed 0) on the
#               device, unless .gpu/train/phantoms.npy was carried (gpu-prepare.sh
#               GPU_PREPARE_TRAIN_SET=N). The EMA weights (f16, GPU_TRAIN_DTYPE) and the loss
#               log are written to $OUT every minute, so a cut-off run still returns them.
#               Continues, when it finds one: the full checkpoint of an earlier call on the
#               same (still warm) machine, $GPU_TRAIN_WORK/train.ckpt (exact resume), else
#               weights carried in .gpu/train/resume.safetensors (or .part files) with their
#               loss log .gpu/train/train.csv (warm start: fresh optimiser, lr warm-up);
#   3. check    the engine (.gpu/diffrecon --device cuda) loads the export and computes eps on
#               4 held-out phantoms (seed 1) noised to t = 200: eps at t = 50 vs t = 350,
#               relative difference ||e50 - e350|| / max(||e50||, ||e350||) (the base-16
#               prior, which ignores t, for comparison); engine eps vs PyTorch float32 (TF32 off) on the
#               same exported weights at t = 200 (relative L2); what f16 storage changed in eps
#               (PyTorch, float32 weights vs their f16 rounding);
#   4. samples  diffrecon sample --count 16 --steps 50 --seed 0 with the export (DDIM, eta 0);
#   5. summary  loss.svg (the loss curve, drawn without matplotlib) and summary.md, written last
#               (a partial summary.md is written before training, in case the call is killed).
#
# $OUT (default ./gpu-out) gets at most 7 files (the device tool returns at most 8, each at most
# 16 MiB): summary.md, train.log, train.csv, loss.svg, samples.png and the weights: the notebook
# config is 12.4 M parameters, 23.6 MiB in f16, so it comes back as prior.safetensors.part0 and
# .part1 (15 MiB each at most). Join them here with
#   cat prior.safetensors.part0 prior.safetensors.part1 > prior.safetensors
# (summary.md gives the sha256 of the joined file). The full checkpoint (model, EMA, AdamW:
# ~190 MiB) stays on the device in $GPU_TRAIN_WORK (default /tmp/gpu-train): it cannot come back.
# To continue on a later machine, copy the joined weights and train.csv into .gpu/train/ as
# resume.safetensors and train.csv (after gpu-prepare.sh, which rebuilds .gpu/) and carry .gpu.
#
# Time: GPU_TRAIN_TOTAL (default 585 s) bounds the whole script, for the tool's 600 s limit:
# training gets min(GPU_TRAIN_MINUTES, what is left after the startup (35 s kept) and the
# checks (50 s kept)): 8 minutes of loop fit exactly. If training fails before it exported
# anything (e.g. this PyTorch lacks a bf16 or channels-last kernel), it is rerun once in plain
# float32 with the time left.
# Settings (environment): GPU_TRAIN_MINUTES, GPU_TRAIN_TOTAL, GPU_TRAIN_DEVICE (cuda), GPU_TRAIN_BATCH,
# GPU_TRAIN_LR, GPU_TRAIN_EMA, GPU_TRAIN_WARMUP, GPU_TRAIN_PHANTOMS, GPU_TRAIN_SIZE,
# GPU_TRAIN_DTYPE, GPU_TRAIN_MODEL_ARGS (default --notebook), GPU_TRAIN_EXTRA_ARGS (more
# train_prior.py flags), GPU_TRAIN_ENGINE (default .gpu/diffrecon), GPU_TRAIN_WORK.
#
# Exit status: 0 when training ran and the export loaded in the engine; 1 otherwise (details
# in summary.md); 3 when GPU_TRAIN_DEVICE=cuda and no GPU was found.
#
# Tested on the CPU (2026-12-01, no GPU), tiny: base 8, 32 phantoms of 32x32, 0.3 min, then a
# second call that resumes from the full checkpoint, then a warm start from the carried weights:
#   d=/tmp/gt; rm -rf $d; mkdir -p $d/g/train
#   common="GPU_TRAIN_DEVICE=cpu GPU_TRAIN_ENGINE=$CARGO_TARGET_DIR/release/diffrecon \
#     GPU_TRAIN_PHANTOMS=32 GPU_TRAIN_SIZE=32 GPU_TRAIN_BATCH=4 GPU_TRAIN_WARMUP=20 \
#     GPU_TRAIN_MODEL_ARGS='--base-ch 8 --channel-mults 1,2,4 --attn-levels 1,2 --time-dim 16 \
#     --num-heads 4' GPU_TRAIN_EXTRA_ARGS='--threads 1 --max-file-mib 0.2 --save-minutes 0.1'"
#   env $common GPU_TRAIN_MINUTES=0.3 GPU_TRAIN_WORK=$d/w OUT=$d/o1 bash scripts/gpu-train.sh
#   env $common GPU_TRAIN_MINUTES=0.2 GPU_TRAIN_WORK=$d/w OUT=$d/o2 bash scripts/gpu-train.sh
#   cat $d/o2/prior.safetensors.part* > $d/g/train/resume.safetensors; cp $d/o2/train.csv $d/g/train/
#   env $common GPU_TRAIN_MINUTES=0.2 GPU_TRAIN_WORK=$d/w3 GPU_TRAIN_GPU_DIR=$d/g OUT=$d/o3 \
#     bash scripts/gpu-train.sh
# (--max-file-mib 0.2 makes the 0.36 MiB tiny export come back in two parts, as the real one.)
# And with a real .gpu/ (GPU_PREPARE_TRAIN_SET=100 scripts/gpu-prepare.sh: 32.3 MiB, the
# carried 64x64 set) and no GPU_TRAIN_GPU_DIR/ENGINE/PHANTOMS/SIZE overrides. At full size,
# the notebook config's f16 export (24,731,858 bytes) was written as two parts (15 MiB + 8.6
# MiB) by two CPU steps of --notebook, joined with cat and loaded by `diffrecon eps`.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
REPO="$PWD"
G="${GPU_TRAIN_GPU_DIR:-$REPO/.gpu}"
if [[ -z "${OUT:-}" ]]; then
    OUT="$REPO/gpu-out"
    if gd="$(git rev-parse --git-dir 2>/dev/null)" && ! git check-ignore -q gpu-out 2>/dev/null; then
        mkdir -p "$gd/info" && echo "/gpu-out/" >>"$gd/info/exclude"
    fi
fi
MINUTES="${GPU_TRAIN_MINUTES:-8}"
TOTAL="${GPU_TRAIN_TOTAL:-585}"
DEVICE="${GPU_TRAIN_DEVICE:-cuda}"
ENGINE="${GPU_TRAIN_ENGINE:-$G/diffrecon}"
PHANTOMS="${GPU_TRAIN_PHANTOMS:-64000}"
SIZE="${GPU_TRAIN_SIZE:-64}"
BATCH="${GPU_TRAIN_BATCH:-128}"
LR="${GPU_TRAIN_LR:-2e-4}"
EMA="${GPU_TRAIN_EMA:-0.9995}"
WARMUP="${GPU_TRAIN_WARMUP:-500}"
DTYPE="${GPU_TRAIN_DTYPE:-f16}"
MODEL_ARGS="${GPU_TRAIN_MODEL_ARGS:---notebook}"
EXTRA_ARGS="${GPU_TRAIN_EXTRA_ARGS:-}"
WORK="${GPU_TRAIN_WORK:-/tmp/gpu-train}"
POST=50    # seconds kept for the checks, the samples and the summary
STARTUP=35 # seconds of train_prior.py outside its loop: imports, data, final export

mkdir -p "$OUT" "$WORK" || exit 1
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/train.log"
W="$WORK/prior.safetensors" # the joined export (not returned: $OUT has the parts)
: >"$LOG"
rm -f "$OUT/summary.md" "$WORK/check.json" "$WORK/train.json" "$W"
T0=$SECONDS
note() { echo "$*" | tee -a "$LOG"; }
left() { echo $((TOTAL - (SECONDS - T0))); }
export PYTHONUNBUFFERED=1
bash "$REPO/scripts/gpu-unpack.sh" "$G" 2>>"$LOG"
chmod +x "$ENGINE" 2>/dev/null
[[ "$DEVICE" == cuda ]] && ENGINE_DEVICE=cuda || ENGINE_DEVICE=cpu

# ------------------------------------------------------------------ 1. environment
note "gpu-train: repo $REPO, OUT=$OUT, work $WORK, budget ${TOTAL}s, $(date -u +%FT%TZ)"
{
    echo "--- nvidia-smi -L"
    timeout 20 nvidia-smi -L 2>&1
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    echo "--- python"
    timeout 60 python3 -c 'import sys, torch, numpy
print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__)
c = torch.cuda.is_available()
print("cuda", c, torch.version.cuda, torch.cuda.get_device_name(0) if c else "-",
      "bf16", torch.cuda.is_bf16_supported() if c else "-")' 2>&1
    echo "--- .gpu/manifest.txt"
    grep -v '^  ' "$G/manifest.txt" 2>&1
} >>"$LOG"
HAVE_GPU=0
grep -q '^GPU [0-9]' "$LOG" && HAVE_GPU=1
if [[ "$DEVICE" == cuda && "$HAVE_GPU" != 1 ]]; then
    note "error: no GPU found (nvidia-smi -L lists none)"
fi
if [[ ! -x "$ENGINE" ]]; then
    note "error: engine $ENGINE missing: run scripts/gpu-prepare.sh and carry .gpu"
fi

# ------------------------------------------------------------------ summary (partial, then final)
summary() { # $1 = 1 when final
    timeout 30 python3 - "$OUT" "$WORK" "$G" "$1" "$((SECONDS - T0))" >"$WORK/summary.md" <<'PYEOF' 2>>"$LOG"
import hashlib, json, os, sys
out, work, g, final, elapsed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]

def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

L = ["# diffrecon prior training on the device", ""]
if not final:
    L += ["**PARTIAL: written before training; the call did not reach its end.**", ""]
tr, ck = load(f"{work}/train.json"), load(f"{work}/check.json")
man = {}
try:
    for line in open(f"{g}/manifest.txt"):
        if ": " in line and not line.startswith("  "):
            k, v = line.rstrip("\n").split(": ", 1)
            man[k] = v
except OSError:
    pass
log = open(f"{out}/train.log", errors="replace").read() if os.path.exists(f"{out}/train.log") else ""
env = [l for l in log.splitlines() if l.startswith(("GPU ", "python ", "cuda "))]
L += ["| | |", "|---|---|"]
L += [f"| device | {'; '.join(env) or 'unknown'} |", f"| engine build | {man.get('commit', '?')} ({man.get('built_utc', '?')}) |",
      f"| script time | {elapsed} s |"]
if tr:
    h = tr["history"][-1]
    L += [f"| config | `{json.dumps(tr['config'], separators=(',', ':'))}`, {tr['parameters']:,} parameters |",
          f"| data | {tr['data']} |",
          f"| this run | {h['how']}: steps {h['start_step']} -> {tr['steps_total']} ({tr['steps_this_run']} steps, batch {tr['batch']}), {tr['wall_seconds']} s, {tr['seconds_per_step']} s/step, {tr['images_per_second']} images/s, amp {tr['amp']}, channels_last {tr['channels_last']}, torch {tr['torch']} |",
          f"| stop | {tr['stop']} |",
          f"| final smoothed loss | {tr['final_ema_loss']:.5f} |" if tr["final_ema_loss"] is not None else "| final smoothed loss | - |",
          f"| all runs | {len(tr['history'])}: {tr['steps_total']} steps, {tr['train_seconds_total']} s of training |"]
    if tr.get("storage_effect"):
        e = tr["storage_effect"]
        L.append(f"| {e['dtype']} storage (PyTorch, eps rel. L2 vs f32 weights) | " +
                 ", ".join(f"t={k}: {v:.2e}" for k, v in e["eps_rel_l2_by_t"].items()) + " |")
w = f"{work}/prior.safetensors"
if os.path.exists(w):
    sha = hashlib.sha256(open(w, "rb").read()).hexdigest()
    parts = sorted(p for p in os.listdir(out) if p.startswith("prior.safetensors"))
    L.append(f"| export | {', '.join(parts)} -> prior.safetensors, {os.path.getsize(w):,} bytes, sha256 {sha} |")
if ck:
    for k, v in ck.items():
        L.append(f"| {k} | {v} |")
L += ["", "Loss curve: loss.svg (data: train.csv). Samples: samples.png (DDIM 50 steps, seed 0).",
      "Steps and their exits: train.log (`== step` lines)."]
steps = [l for l in log.splitlines() if l.startswith("== ")]
if steps:
    L += ["", "```"] + steps + ["```"]
print("\n".join(L))
PYEOF
    cp "$WORK/summary.md" "$OUT/summary.md"
}
summary 0

# run_step NAME CAP -- CMD...: CMD under timeout min(CAP, budget left - RESERVE), output to the log.
run_step() {
    local name="$1" cap="$2" reserve="$3"
    shift 4
    local l=$(($(left) - reserve))
    local t=$((cap < l ? cap : l))
    if ((t < 5)); then
        note "== $name: skipped (no time left)"
        return 98
    fi
    echo "--- $name (timeout ${t}s): $*" >>"$LOG"
    local s=$SECONDS rc
    timeout -s TERM -k 30 "$t" "$@" >>"$LOG" 2>&1
    rc=$?
    note "== $name: exit $rc, $((SECONDS - s)) s [t=$((SECONDS - T0))s]"
    return "$rc"
}

# ------------------------------------------------------------------ 2. train
DATA_ARGS=(--phantoms "$PHANTOMS" --phantom-size "$SIZE" --phantom-seed 0 --engine "$ENGINE")
[[ -f "$G/train/phantoms.npy" ]] && DATA_ARGS=(--data "$G/train/phantoms.npy")
START_ARGS=()
if [[ -f "$WORK/train.ckpt" ]]; then
    START_ARGS=(--resume)
    note "continuing: full checkpoint $WORK/train.ckpt (exact resume)"
elif [[ -f "$G/train/resume.safetensors" || -f "$G/train/resume.safetensors.part0" ]]; then
    START_ARGS=(--warm-start "$G/train/resume.safetensors")
    [[ -f "$G/train/train.csv" ]] && cp "$G/train/train.csv" "$OUT/train.csv"
    note "continuing: warm start from $G/train/resume.safetensors"
else
    rm -f "$OUT/train.csv"
    note "starting fresh"
fi
# The minutes of loop that fit in what is left of the budget (at most GPU_TRAIN_MINUTES), and
# the process cap in seconds: sets TRAIN_MIN and TRAIN_CAP.
fit_training() {
    TRAIN_CAP=$(($(left) - POST))
    TRAIN_MIN="$(awk -v m="$MINUTES" -v c="$TRAIN_CAP" -v s="$STARTUP" 'BEGIN {
        b = (c - s) / 60; if (b < m) m = b; if (m < 0) m = 0; printf "%.2f", m }')"
}
# train NAME [more train_prior.py flags]: one training process within TRAIN_MIN / TRAIN_CAP.
train() {
    local name="$1"
    shift
    # shellcheck disable=SC2086  # MODEL_ARGS and EXTRA_ARGS are flag lists
    run_step "$name" "$TRAIN_CAP" "$POST" -- python3 tools/train_prior.py "${DATA_ARGS[@]}" \
        $MODEL_ARGS --device "$DEVICE" --batch "$BATCH" --steps 100000000 --minutes "$TRAIN_MIN" \
        --lr "$LR" --warmup "$WARMUP" --ema "$EMA" --flip --export-dtype "$DTYPE" \
        --out-dir "$OUT" --max-file-mib 15 --ckpt "$WORK/train.ckpt" \
        --summary-json "$WORK/train.json" --log-every 50 --save-minutes 1 "${START_ARGS[@]}" \
        $EXTRA_ARGS "$@"
}
enough() { awk -v m="$TRAIN_MIN" -v lo="$1" 'BEGIN { exit !(m >= lo) }'; }
fit_training
note "training: ${TRAIN_MIN} min of loop (asked ${MINUTES}), process cap ${TRAIN_CAP} s"
TRAIN_RC=99
if enough 0.05; then
    train train
    TRAIN_RC=$?
    if ((TRAIN_RC != 0 && TRAIN_RC != 143)) && [[ "$DEVICE" != cuda || "$HAVE_GPU" == 1 ]] &&
        [[ ! -f "$OUT/prior.safetensors" && ! -f "$OUT/prior.safetensors.part0" ]]; then
        fit_training
        note "training failed before any export: rerun in float32 (--amp off --channels-last off), ${TRAIN_MIN} min"
        if enough 0.5; then
            train train_f32 --amp off --channels-last off
            TRAIN_RC=$?
        fi
    fi
else
    note "== train: skipped (no time left)"
fi
rm -f "$OUT"/*.tmp

# ------------------------------------------------------------------ 3. check with the engine
if [[ -f "$OUT/prior.safetensors" ]]; then
    cp "$OUT/prior.safetensors" "$W"
elif [[ -f "$OUT/prior.safetensors.part0" ]]; then
    cat "$OUT"/prior.safetensors.part? >"$W"
fi
CHECK_RC=1
if [[ -f "$W" ]]; then
    BUNDLED="$REPO/weights/base16/prior.safetensors" # the first bundled prior, which ignores t
    run_step check 120 25 -- python3 - "$ENGINE" "$ENGINE_DEVICE" "$W" "$BUNDLED" "$WORK" "$SIZE" <<'PYEOF'
import json, os, subprocess, sys
import numpy as np
import torch
sys.path.insert(0, "tools")
import reference as R
from train_prior import read_safetensors

engine, device, w, bundled, work, size = sys.argv[1:7]
res = {}

def sh(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stderr.strip()

held = f"{work}/held.npy"
sh(engine, "phantoms", "--count", "4", "--seed", "1", "--size", size, "--out", held)
x0 = torch.from_numpy(np.load(held))
ab = R.cosine_alpha_bars()
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
x200 = ab[200].sqrt() * x0 + (1 - ab[200]).sqrt() * noise
np.save(f"{work}/x200.npy", x200.numpy())
np.save(f"{work}/x200x2.npy", torch.cat([x200, x200]).numpy())

def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b)))

def t_sensitivity(weights):
    out = f"{work}/e_t.npy"
    warn = sh(engine, "eps", "--device", device, "--weights", weights, "--input", f"{work}/x200x2.npy",
              "--t", ",".join(["50"] * 4 + ["350"] * 4), "--out", out)
    e = np.load(out).astype(np.float64)
    return rel(e[:4], e[4:]), ("warns: t ignored" if "ignores the timestep" in warn else "no warning")

v, how = t_sensitivity(w)
res["t-sensitivity, export (engine eps at t=50 vs 350, x at t=200)"] = f"{v:.3e} ({how})"
print(f"export: eps(t=50) vs eps(t=350) relative difference {v:.3e} ({how})")
if os.path.exists(bundled):
    v, how = t_sensitivity(bundled)
    res["t-sensitivity, base-16 prior"] = f"{v:.3e} ({how})"
    print(f"base-16 prior: relative difference {v:.3e} ({how})")
# The engine on the exported weights vs PyTorch float32 on the same (widened) weights.
sh(engine, "eps", "--device", device, "--weights", w, "--input", f"{work}/x200.npy", "--t", "200",
   "--out", f"{work}/e_engine.npy")
tensors, meta = read_safetensors(w)
cfg = json.loads(meta["config"])
model = R.build_model(cfg)
model.load_state_dict(tensors, strict=True)
model.eval()
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
dev = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
with torch.no_grad():
    e_ref = model.to(dev)(x200.to(dev), torch.full((4,), 200, device=dev)).cpu().double().numpy()
e_eng = np.load(f"{work}/e_engine.npy").astype(np.float64)
err = float(np.linalg.norm(e_eng - e_ref) / np.linalg.norm(e_ref))
res[f"engine ({device}) vs PyTorch f32 on the export, eps at t=200"] = f"{err:.2e} relative L2"
print(f"engine ({device}) vs PyTorch float32 on the export: relative L2 {err:.2e}")
json.dump(res, open(f"{work}/check.json", "w"), indent=1)
sys.exit(0 if err < 1e-3 else 1)
PYEOF
    CHECK_RC=$?
    # ---------------------------------------------------------------- 4. samples
    run_step samples 90 20 -- "$ENGINE" sample --device "$ENGINE_DEVICE" --weights "$W" --count 16 \
        --steps 50 --seed 0 --size "$SIZE" --out "$WORK/samples.png" &&
        cp "$WORK/samples.png" "$OUT/samples.png"
else
    note "== check: skipped (no exported weights)"
fi

# ------------------------------------------------------------------ 5. loss curve, summary
if [[ -f "$OUT/train.csv" ]]; then
    timeout 30 python3 - "$OUT/train.csv" "$OUT/loss.svg" <<'PYEOF' >>"$LOG" 2>&1
import csv, math, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
pts = [(int(r["step"]), float(r["loss"]), float(r["ema_loss"])) for r in rows
       if float(r["loss"]) > 0 and float(r["ema_loss"]) > 0]
if not pts:
    sys.exit("no loss rows")
W, H, m = 720, 360, 50
s0, s1 = 0, max(p[0] for p in pts) or 1
lo = math.log10(min(min(p[1], p[2]) for p in pts))
hi = math.log10(max(max(p[1], p[2]) for p in pts))
lo, hi = math.floor(lo * 4) / 4, math.ceil(hi * 4) / 4 + (1e-9 if hi == lo else 0)
X = lambda s: m + (W - 2 * m) * (s - s0) / (s1 - s0)
Y = lambda v: H - m - (H - 2 * m) * (math.log10(v) - lo) / (hi - lo)
line = lambda k, c, wd: ('<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>' %
                         (c, wd, " ".join("%.1f,%.1f" % (X(p[0]), Y(p[k])) for p in pts)))
svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>',
       '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (m, m, W - 2 * m, H - 2 * m),
       line(1, "#bbbbbb", 1), line(2, "#c0392b", 2),
       '<text x="%d" y="%d" text-anchor="middle">step (0 .. %d)</text>' % (W // 2, H - 12, s1),
       '<text x="%d" y="30" text-anchor="middle">eps MSE: per logged step (grey), smoothed (red); log axis %.3g .. %.3g</text>' % (W // 2, 10 ** lo, 10 ** hi)]
for e in range(math.ceil(lo), math.floor(hi) + 1):
    svg.append('<text x="%d" y="%.1f" text-anchor="end">1e%d</text>' % (m - 4, Y(10 ** e) + 4, e))
svg.append("</svg>")
open(sys.argv[2], "w").write("\n".join(svg))
PYEOF
fi
summary 1
ls -la "$OUT" >>"$LOG"
cat "$OUT/summary.md"
if [[ "$DEVICE" == cuda && "$HAVE_GPU" != 1 ]]; then exit 3; fi
((TRAIN_RC == 0 || TRAIN_RC == 143)) && ((CHECK_RC == 0)) && exit 0
exit 1
