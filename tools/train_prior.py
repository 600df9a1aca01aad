#!/usr/bin/env python3
"""Train the engine's own diffusion prior: DDPM noise prediction on synthetic CT phantoms.

The model is the DiffusionUNet of shared/REFERENCE.md, imported from ``tools/reference.py``
(beside this file), as is the cosine schedule. Training objective: T = 400, cosine schedule
(s = 0.008, in float32), t uniform in [0, T-1], x_t = sqrt(ab[t])·x0 + sqrt(1-ab[t])·eps, MSE
between the predicted and the true eps. AdamW with a linear warm-up, gradient clipping and an
exponential moving average (EMA) of the weights; the EMA weights are exported. ``--notebook``
selects the notebook's configuration (base 64, mults (1,2,4), attention at levels 1 and 2,
time dim 256, 4 heads).

Data, one of:
  ``--data PHANTOMS.npy``  (N, 1, H, W) float32 in model space [-1, 1], as written by
                           ``diffrecon phantoms --count N --out PHANTOMS.npy``;
  ``--phantoms N``         generated now by the engine (``--engine``, default ``diffrecon`` on
                           PATH): ``diffrecon phantoms --count N --seed --phantom-seed --size
                           --phantom-size`` into a temporary file.
H and W must be divisible by 2^(levels-1). On CUDA the whole set is moved to the GPU.

Precision: ``--amp bf16`` runs the forward and the loss under bf16 autocast (float32 master
weights, optimiser and EMA; GroupNorm and the loss stay float32 as autocast does); ``auto``
(default) is bf16 on CUDA when the GPU supports it, float32 on the CPU. ``--channels-last``
(``auto``: on for CUDA) stores activations NHWC for cuDNN.

Time: ``--steps`` caps the optimiser steps; ``--minutes M`` also stops the loop after M
minutes of wall-clock time (counted from its first step, this process only).

Outputs (``--out-dir D`` sets the defaults D/prior.safetensors, D/train.ckpt, D/train.csv):
  ``--out``   EMA weights, safetensors with the exact REFERENCE.md names, stored as
              ``--export-dtype`` f32 (default), f16 or bf16 (round to nearest even; the engine
              widens f16/bf16 to f32 at load). Metadata (str -> str): ``num_heads``, ``config``
              (JSON) and ``training`` (JSON: data, steps, recipe, timing, and ``history``, one
              entry per run). Deterministic bytes (sorted names and keys), written atomically.
              With ``--max-file-mib M``, a file larger than M MiB is written instead as
              OUT.part0, OUT.part1, ... (each <= M MiB; join with ``cat OUT.part* > OUT``),
              for transports that limit the size of one file.
  ``--ckpt``  full checkpoint (model, EMA, optimiser, generator state, step, elapsed):
              ``--resume`` continues from it exactly (on the CPU: the same batches, t and noise
              as an uninterrupted run). ``--ckpt none`` writes none.
  ``--log``   loss log, CSV: step, loss, ema_loss, lr, seconds. A resume takes the earlier
              rows from the checkpoint (which keeps them), a warm start from the CSV; either
              trims them to the starting step, so the log never holds duplicate steps.
Both weights and checkpoint are written every ``--save-minutes`` (default 1) and every
``--save-every`` steps, at the end, and on SIGINT/SIGTERM (the loop stops after the current
step, saves, exports and exits 130/143), so a run cut off by a time limit still leaves weights.

``--warm-start W.safetensors`` (or its .part files) continues from exported weights when the
full checkpoint is not at hand (it is ~4x the weights and may not travel): model and EMA both
start from W, the step count and history come from W's ``training`` metadata, AdamW starts
fresh and the learning rate warms up again over ``--warmup`` steps. Not an exact resume.

``--summary-json PATH`` writes the run's figures (steps, time, throughput, losses, and for
f16/bf16 exports the relative L2 change of eps caused by the storage rounding, measured in
float32 on noised training images at t = 50, 200, 350).

Examples:
  The bundled prior (CPU): see weights/MODEL_CARD.md.
  The notebook's configuration on a GPU: scripts/gpu-train.sh (header: the CPU test commands).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (  # noqa: E402
    COSINE_S,
    NOTEBOOK_CONFIG,
    T_DEFAULT as T_STEPS,
    build_model,
    config_json,
    cosine_alpha_bars,
    safetensors_metadata,
)

MODEL_SOURCE = "tools/reference.py"  # recorded in the export's ``training`` metadata
MIB = 1 << 20

# --export-dtype -> (safetensors dtype, torch dtype, bytes per element)
EXPORT_DTYPES = {
    "f32": ("F32", torch.float32, 4),
    "f16": ("F16", torch.float16, 2),
    "bf16": ("BF16", torch.bfloat16, 2),
}
FILE_DTYPES = {v[0]: (v[1], v[2]) for v in EXPORT_DTYPES.values()}


def fail(msg: str):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def check_data(data: np.ndarray, levels: int, what: str) -> np.ndarray:
    if data.ndim != 4 or data.shape[1] != 1:
        fail(f"{what} has shape {data.shape}; expected (N, 1, H, W)")
    n, _, h, w = data.shape
    if n == 0:
        fail(f"{what} holds no images")
    div = 2 ** (levels - 1)
    if h % div or w % div:
        fail(f"image size {h}x{w} must be divisible by {div} for {levels} levels")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        fail(f"{what} contains NaN or infinite values")
    lo, hi = float(data.min()), float(data.max())
    if lo < -1.001 or hi > 1.001:
        fail(f"{what} ranges over [{lo:.3f}, {hi:.3f}]; expected model space [-1, 1]")
    return data


def load_data(a, levels: int) -> Tuple[np.ndarray, str]:
    """The training set and a description of it for the metadata."""
    if a.data:
        try:
            data = np.load(a.data, mmap_mode="r")
        except (OSError, ValueError) as e:
            fail(f"cannot read {a.data}: {e}")
        data = check_data(data, levels, a.data)
        n, _, h, w = data.shape
        return data, a.data_desc or f"{os.path.basename(a.data)}: {n} slices {h}x{w}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "phantoms.npy")
        cmd = [a.engine, "phantoms", "--count", str(a.phantoms), "--seed", str(a.phantom_seed),
               "--size", str(a.phantom_size), "--out", path]
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            fail(f"cannot run the engine {a.engine!r} ({e}); pass --engine PATH or --data")
        if r.returncode != 0:
            fail(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
        data = check_data(np.load(path), levels, "the generated phantoms")
        print(f"data: {a.phantoms} phantoms generated by the engine in {time.time() - t0:.1f} s",
              file=sys.stderr)
    desc = a.data_desc or (f"diffrecon phantoms --count {a.phantoms} --seed {a.phantom_seed} "
                           f"--size {a.phantom_size}")
    return data, desc


# --------------------------------------------------------------------------------------------
# Safetensors (written and read by hand: the device may lack the safetensors package)
# --------------------------------------------------------------------------------------------

def tensor_bytes(t: torch.Tensor, dtype: str) -> bytes:
    st, tdt, _ = EXPORT_DTYPES[dtype]
    x = t.detach().to("cpu", torch.float32).contiguous().to(tdt)
    if not torch.isfinite(x).all():
        fail(f"a weight is not finite in {dtype} (|w| beyond the {dtype} range?)")
    if tdt == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        return x.view(torch.int16).numpy().astype("<i2").tobytes()
    return x.numpy().astype("<f2" if tdt == torch.float16 else "<f4").tobytes()


def safetensors_bytes(state: Dict[str, torch.Tensor], metadata: Dict[str, str], dtype: str) -> bytes:
    """Sorted names, sorted metadata keys, header padded with spaces to 8 bytes (as the
    safetensors library and tools/reference.py's save_weights do)."""
    header: Dict[str, object] = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name in sorted(state):
        b = tensor_bytes(state[name], dtype)
        header[name] = {"dtype": EXPORT_DTYPES[dtype][0], "shape": list(state[name].shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    return len(hdr).to_bytes(8, "little") + hdr + b"".join(blobs)


def part_paths(path: str) -> List[str]:
    """Existing OUT.part0, OUT.part1, ... in order (stops at the first gap)."""
    parts = []
    while os.path.exists(f"{path}.part{len(parts)}"):
        parts.append(f"{path}.part{len(parts)}")
    return parts


def write_file(path: str, data: bytes, max_mib: float) -> List[str]:
    """Atomically write `data` to `path`, or to path.partK files of at most `max_mib` MiB when
    it is larger (max_mib > 0). Stale parts or a stale whole file are removed. All pieces are
    written as .tmp first and renamed together, so a reader sees a mixed set only if the process
    dies within the renames."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    limit = int(max_mib * MIB) if max_mib > 0 else len(data)
    if len(data) <= limit:
        pieces = [(path, data)]
    else:
        pieces = [(f"{path}.part{i}", data[o:o + limit])
                  for i, o in enumerate(range(0, len(data), limit))]
        if len(pieces) > 10:
            fail(f"{path}: {len(pieces)} parts; at most 10 (so that `cat OUT.part*` keeps order)")
    for p, d in pieces:
        with open(p + ".tmp", "wb") as f:
            f.write(d)
    keep = {p for p, _ in pieces}
    for p in [path] + part_paths(path):
        if p not in keep and os.path.exists(p):
            os.remove(p)
    for p, _ in pieces:
        os.replace(p + ".tmp", p)
    return [p for p, _ in pieces]


def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Float32 tensors and metadata of a safetensors file (or of its .part files), any of the
    three export dtypes."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            raw = f.read()
    else:
        parts = part_paths(path)
        if not parts:
            fail(f"{path}: no such file (nor {path}.part0)")
        raw = b"".join(open(p, "rb").read() for p in parts)
    if len(raw) < 8:
        fail(f"{path}: not a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError:
        fail(f"{path}: not a safetensors file (bad header)")
    meta = header.pop("__metadata__", {}) or {}
    body = raw[8 + n:]
    tensors = {}
    for name, h in header.items():
        if h["dtype"] not in FILE_DTYPES:
            fail(f"{path}: tensor {name} is {h['dtype']}; expected F32, F16 or BF16")
        tdt, size = FILE_DTYPES[h["dtype"]]
        lo, hi = h["data_offsets"]
        count = int(np.prod(h["shape"])) if h["shape"] else 1
        if hi > len(body) or hi - lo != count * size:
            fail(f"{path}: tensor {name} has a bad extent (truncated file or missing part?)")
        buf = bytearray(body[lo:hi])
        if tdt == torch.bfloat16:
            x = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16)
        else:
            x = torch.frombuffer(buf, dtype=tdt)
        tensors[name] = x.to(torch.float32).reshape(h["shape"]).clone()
    return tensors, meta


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------

def parse_ints(s: str) -> List[int]:
    s = s.strip()
    return [int(v) for v in s.split(",") if v.strip()] if s else []


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None, help="(N,1,H,W) float32 .npy in model space [-1,1]")
    d.add_argument("--phantoms", type=int, default=0, help="generate N phantoms with --engine")
    d.add_argument("--phantom-seed", type=int, default=0)
    d.add_argument("--phantom-size", type=int, default=64)
    d.add_argument("--engine", default="diffrecon", help="the diffrecon binary (for --phantoms)")
    d.add_argument("--data-desc", default=None, help="data description for the metadata")
    o = p.add_argument_group("outputs")
    o.add_argument("--out-dir", default=None, help="default directory of --out, --ckpt, --log")
    o.add_argument("--out", default=None, help="output safetensors (EMA weights)")
    o.add_argument("--export-dtype", choices=sorted(EXPORT_DTYPES), default="f32")
    o.add_argument("--max-file-mib", type=float, default=0.0,
                   help="split a larger export into OUT.partK files (0: never)")
    o.add_argument("--ckpt", default=None, help="full checkpoint path, or 'none'")
    o.add_argument("--resume", action="store_true", help="continue from --ckpt if it exists")
    o.add_argument("--warm-start", default=None, help="continue from exported weights")
    o.add_argument("--log", default=None, help="loss log CSV")
    o.add_argument("--summary-json", default=None)
    o.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps")
    o.add_argument("--save-minutes", type=float, default=1.0, help="and every M minutes")
    o.add_argument("--log-every", type=int, default=10)
    m = p.add_argument_group("model")
    m.add_argument("--notebook", action="store_true",
                   help="the notebook's config (overrides the five flags below)")
    m.add_argument("--in-ch", type=int, default=1)
    m.add_argument("--base-ch", type=int, default=32)
    m.add_argument("--channel-mults", default="1,2,2")
    m.add_argument("--attn-levels", default="2", help="comma list, may be empty")
    m.add_argument("--time-dim", type=int, default=128)
    m.add_argument("--num-heads", type=int, default=4)
    t = p.add_argument_group("training")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=20000, help="total optimiser steps (cap)")
    t.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget (0: none)")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup", type=int, default=500, help="linear lr warm-up steps")
    t.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="after warm-up: constant, or cosine decay to 10%% at --steps")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0: off)")
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--flip", action="store_true", help="random horizontal flips")
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    t.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    t.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    t.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if bool(a.data) == bool(a.phantoms):
        p.error("give exactly one of --data and --phantoms N")
    if a.phantoms < 0:
        p.error("--phantoms must be positive")
    if a.notebook:
        a.base_ch, a.time_dim, a.num_heads = (NOTEBOOK_CONFIG[k] for k in
                                              ("base_ch", "time_dim", "num_heads"))
        a.channel_mults = ",".join(map(str, NOTEBOOK_CONFIG["channel_mults"]))
        a.attn_levels = ",".join(map(str, NOTEBOOK_CONFIG["attn_levels"]))
    if not a.out:
        if not a.out_dir:
            p.error("give --out or --out-dir")
        a.out = os.path.join(a.out_dir, "prior.safetensors")
    base = os.path.join(a.out_dir, "train") if a.out_dir else os.path.splitext(a.out)[0]
    a.ckpt = a.ckpt or (os.path.join(a.out_dir, "train.ckpt") if a.out_dir else a.out + ".ckpt")
    if a.ckpt == "none":
        a.ckpt = None
    a.log = a.log or base + ".csv"
    if a.resume and a.warm_start:
        p.error("--resume and --warm-start exclude each other")
    if a.resume and not a.ckpt:
        p.error("--resume needs a checkpoint (--ckpt)")
    if a.batch < 1 or a.steps < 0 or not 0.0 <= a.ema < 1.0 or a.minutes < 0:
        p.error("need --batch >= 1, --steps >= 0, --minutes >= 0 and 0 <= --ema < 1")
    return a


def lr_at(step: int, a, warm_from: int = 0) -> float:
    """Learning rate for the update that produces step `step + 1`. A warm start re-warms from
    its starting step `warm_from` (its optimiser state is fresh)."""
    k = step - warm_from
    if a.warmup > 0 and k < a.warmup:
        return min(a.lr * (k + 1) / a.warmup, lr_at_schedule(step, a))
    return lr_at_schedule(step, a)


def lr_at_schedule(step: int, a) -> float:
    if a.lr_schedule == "cosine":
        span = max(1, a.steps - a.warmup)
        frac = min(1.0, max(0, step - a.warmup) / span)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    return a.lr


class Stop:
    """Set by SIGINT/SIGTERM; the loop checkpoints and exits after the current step."""

    def __init__(self):
        self.signum = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self.handle)

    def handle(self, signum, frame):
        if self.signum is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nsignal {signum}: saving after this step", file=sys.stderr, flush=True)


def recipe(a) -> dict:
    """Settings that must not change across a resume (the trajectory depends on them)."""
    return {"batch": a.batch, "lr": a.lr, "warmup": a.warmup, "lr_schedule": a.lr_schedule,
            "weight_decay": a.weight_decay, "grad_clip": a.grad_clip, "ema": a.ema,
            "flip": a.flip, "seed": a.seed}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

class Run:
    """Model, EMA, optimiser and the counters of one training process."""

    def __init__(self, a, config, dev):
        self.a, self.config, self.dev = a, config, dev
        torch.manual_seed(a.seed)  # parameter initialisation
        self.model = build_model(config).to(dev)
        self.channels_last = a.channels_last == "on" or (a.channels_last == "auto" and dev.type == "cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
        # Batches, t, noise, flips: on the training device (no host work per step on CUDA).
        self.gen = torch.Generator(device=dev).manual_seed(a.seed)
        self.step, self.elapsed, self.ema_loss = 0, 0.0, None
        self.warm_from = 0
        self.history: List[dict] = []  # earlier processes' entries
        self.session: dict = {}  # this process's entry (end_step added when written)
        self.log_rows: List[list] = []  # the loss log, also kept in the full checkpoint

    def full_history(self) -> List[dict]:
        return self.history + [dict(self.session, end_step=self.step)]

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "opt": self.opt.state_dict(), "gen": self.gen.get_state(), "step": self.step,
                "elapsed": self.elapsed, "ema_loss": self.ema_loss, "config": self.config,
                "recipe": recipe(self.a), "history": self.full_history(),
                "warm_from": self.warm_from, "log": self.log_rows}

    def resume(self, path: str):
        # On the CPU: the generator state must stay a CPU tensor; load_state_dict moves the rest.
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if ck["config"] != self.config:
            fail(f"checkpoint config {ck['config']} differs from the flags' {self.config}")
        if ck["recipe"] != recipe(self.a):
            fail(f"checkpoint recipe {ck['recipe']} differs from the flags' {recipe(self.a)}")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.gen.set_state(ck["gen"])
        self.step, self.elapsed, self.ema_loss = ck["step"], ck["elapsed"], ck["ema_loss"]
        self.history = ck.get("history", [])
        self.warm_from = ck.get("warm_from", 0)
        self.log_rows = ck.get("log") or read_log_rows(self.a.log)
        print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    def warm_start(self, path: str):
        tensors, meta = read_safetensors(path)
        try:
            cfg = json.loads(meta["config"])
        except (KeyError, ValueError):
            fail(f"{path}: no config metadata")
        if cfg != self.config:
            fail(f"{path}: config {cfg} differs from the flags' {self.config}")
        try:
            self.model.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            fail(f"{path}: {e}")
        self.ema.load_state_dict(self.model.state_dict())
        tr = json.loads(meta.get("training", "{}"))
        self.step = int(tr.get("steps", 0))
        self.elapsed = float(tr.get("train_seconds", 0.0))
        self.ema_loss = tr.get("final_ema_loss")
        self.history = tr.get("history", [])
        self.warm_from = self.step
        self.log_rows = read_log_rows(self.a.log)
        # A different stream of batches than the run that made W (which started at `seed`).
        self.gen.manual_seed(self.a.seed + 1_000_003 * (len(self.history) + 1))
        print(f"warm start from {path} at step {self.step} (fresh optimiser, lr warm-up)",
              file=sys.stderr)


def write_outputs(run: Run, data_desc: str, n_data: int, shape) -> List[str]:
    a = run.a
    if a.ckpt:
        tmp = a.ckpt + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(a.ckpt)), exist_ok=True)
        torch.save(run.state(), tmp)
        os.replace(tmp, a.ckpt)
    training = {
        "data": data_desc,
        "data_count": n_data,
        "image_size": list(shape),
        "steps": run.step,
        "batch": a.batch,
        "lr": a.lr,
        "lr_schedule": a.lr_schedule,
        "warmup": a.warmup,
        "weight_decay": a.weight_decay,
        "grad_clip": a.grad_clip,
        "ema": a.ema,
        "flip": a.flip,
        "seed": a.seed,
        "objective": "eps MSE, t uniform in [0, T-1]",
        "T": T_STEPS,
        "schedule": f"cosine s={COSINE_S}",
        "optimizer": "AdamW",
        "final_ema_loss": None if run.ema_loss is None else round(float(run.ema_loss), 6),
        "train_seconds": round(float(run.elapsed), 1),
        "export_dtype": a.export_dtype,
        "history": run.full_history(),
        "model_source": MODEL_SOURCE,
        "torch": torch.__version__,
    }
    if a.data:
        training["data_file"] = os.path.basename(a.data)
    meta = dict(safetensors_metadata(run.config))
    meta["training"] = json.dumps(training, separators=(",", ":"))
    return write_file(a.out, safetensors_bytes(run.ema.state_dict(), meta, a.export_dtype),
                      a.max_file_mib)


LOG_HEADER = ["step", "loss", "ema_loss", "lr", "seconds"]


def read_log_rows(path: str) -> List[list]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [r for r in csv.reader(f)][1:]


def open_log(a, run: "Run"):
    """The loss log: the rows of earlier runs (from the full checkpoint on a resume, else from
    the CSV) up to the starting step, so a resume never duplicates or loses steps."""
    run.log_rows = [r for r in run.log_rows if r and int(r[0]) <= run.step] if run.step else []
    os.makedirs(os.path.dirname(os.path.abspath(a.log)), exist_ok=True)
    logf = open(a.log, "w", newline="")
    log = csv.writer(logf)
    log.writerow(LOG_HEADER)
    log.writerows(run.log_rows)
    logf.flush()
    return logf, log


def storage_effect(run: Run, data: torch.Tensor, sqrt_ab, sqrt_1mab) -> Optional[dict]:
    """Relative L2 change of eps (float32 forward) when the EMA weights are rounded to the
    export dtype: 8 training images noised at t = 50, 200, 350 (fixed seed)."""
    dtype = run.a.export_dtype
    if dtype == "f32":
        return None
    tdt = EXPORT_DTYPES[dtype][1]
    # TF32 would round the float32 weights to 10 mantissa bits itself: measure in true float32.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rounded = copy.deepcopy(run.ema)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(tdt).to(torch.float32))
        g = torch.Generator(device=run.dev).manual_seed(12345)
        n = min(8, data.shape[0])
        x0 = data[:n].to(run.dev)
        res = {}
        for t_val in (50, 200, 350):
            t = torch.full((n,), t_val, dtype=torch.long, device=run.dev)
            eps = torch.randn(x0.shape, generator=g, device=run.dev)
            x_t = sqrt_ab[t_val] * x0 + sqrt_1mab[t_val] * eps
            e32, eh = run.ema(x_t, t), rounded(x_t, t)
            res[str(t_val)] = float((eh - e32).norm() / e32.norm())
    return {"dtype": dtype, "eps_rel_l2_by_t": res, "max": max(res.values())}


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but CUDA is not available")
    dev = torch.device(a.device)
    amp = a.amp == "bf16"
    if a.amp == "auto":
        amp = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    config = {
        "in_ch": a.in_ch,
        "base_ch": a.base_ch,
        "channel_mults": parse_ints(a.channel_mults),
        "time_dim": a.time_dim,
        "attn_levels": parse_ints(a.attn_levels),
        "num_heads": a.num_heads,
    }
    if not config["channel_mults"]:
        fail("--channel-mults must not be empty")

    data_np, data_desc = load_data(a, len(config["channel_mults"]))
    if data_np.shape[1] != a.in_ch:
        fail(f"data has {data_np.shape[1]} channels, --in-ch is {a.in_ch}")
    n_data, hw = data_np.shape[0], data_np.shape[2:]
    data = torch.from_numpy(data_np).to(dev)

    run = Run(a, config, dev)
    if a.resume and os.path.exists(a.ckpt):
        run.resume(a.ckpt)
    elif a.resume:
        print(f"note: no checkpoint at {a.ckpt}; starting fresh", file=sys.stderr)
    elif a.warm_start:
        run.warm_start(a.warm_start)
    ab = cosine_alpha_bars().to(dev)
    sqrt_ab, sqrt_1mab = ab.sqrt(), (1 - ab).sqrt()
    logf, log = open_log(a, run)

    n_params = sum(p.numel() for p in run.model.parameters())
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"model: {MODEL_SOURCE}, {n_params:,} parameters, config {config_json(config)}",
          file=sys.stderr)
    print(f"data: {n_data} slices {hw[0]}x{hw[1]} ({data_desc}); device {dev_name}, "
          f"amp {'bf16' if amp else 'off'}, channels_last {run.channels_last}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}", file=sys.stderr)

    run.session = {"start_step": run.step, "device": dev_name, "amp": "bf16" if amp else "off",
               "batch": a.batch, "how": "resume" if a.resume and run.step else
               ("warm start" if a.warm_start else "fresh")}
    stop = Stop()
    model = run.model
    model.train()
    params = list(model.parameters())
    ema_params = list(run.ema.parameters())
    mem = torch.channels_last if run.channels_last else torch.contiguous_format
    ema_loss = None if run.ema_loss is None else torch.tensor(float(run.ema_loss), device=dev)
    start_step, t_start = run.step, time.time()
    t_last, next_save = t_start, t_start + a.save_minutes * 60
    deadline = t_start + a.minutes * 60 if a.minutes > 0 else math.inf
    saves = 0
    while run.step < a.steps and stop.signum is None and time.time() < deadline:
        lr = lr_at(run.step, a, run.warm_from)
        for g in run.opt.param_groups:
            g["lr"] = lr
        gen = run.gen
        idx = torch.randint(0, n_data, (a.batch,), generator=gen, device=dev)
        x0 = data[idx]
        if a.flip:
            flip = torch.rand(a.batch, generator=gen, device=dev) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, T_STEPS, (a.batch,), generator=gen, device=dev)
        eps = torch.randn(x0.shape, generator=gen, device=dev)
        x_t = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * eps
        x_t = x_t.contiguous(memory_format=mem)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(x_t, t)
        loss = F.mse_loss(pred.float(), eps)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        run.opt.step()
        run.step += 1
        # EMA with a short warm-up of the decay, so early exports are not dominated by init.
        d = min(a.ema, (1 + run.step) / (10 + run.step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, d)
            torch._foreach_add_(ema_params, params, alpha=1 - d)
            lv = loss.detach()
            ema_loss = lv.clone() if ema_loss is None else 0.99 * ema_loss + 0.01 * lv
        now = time.time()
        run.elapsed += now - t_last
        t_last = now
        last = run.step == a.steps or stop.signum is not None or now >= deadline
        if run.step % a.log_every == 0 or last:
            run.ema_loss = float(ema_loss)  # one device sync per logged step
            row = [str(run.step), f"{float(lv):.6f}", f"{run.ema_loss:.6f}", f"{lr:.3e}",
                   f"{run.elapsed:.2f}"]
            run.log_rows.append(row)
            log.writerow(row)
            logf.flush()
            print(f"step {run.step}/{a.steps} loss {float(lv):.4f} ema {run.ema_loss:.4f} "
                  f"lr {lr:.2e} {run.elapsed:.1f}s", file=sys.stderr, flush=True)
        due = (a.save_every > 0 and run.step % a.save_every == 0) or now >= next_save
        if due and not last:
            run.ema_loss = float(ema_loss)
            write_outputs(run, data_desc, n_data, hw)
            saves += 1
            next_save = time.time() + a.save_minutes * 60
            t_last = time.time()  # saving time is not training time

    if ema_loss is not None:
        run.ema_loss = float(ema_loss)
    wall = time.time() - t_start
    written = write_outputs(run, data_desc, n_data, hw)
    logf.close()
    done = ("stopped by a signal" if stop.signum is not None else
            "time budget reached" if time.time() >= deadline and run.step < a.steps else "finished")
    steps_now = run.step - start_step
    print(f"{done} at step {run.step} ({steps_now} steps in this run, {wall:.1f} s wall, "
          f"{saves} intermediate saves): weights {', '.join(written)}, checkpoint {a.ckpt}, "
          f"log {a.log}", file=sys.stderr)
    if steps_now:
        print(f"{wall / steps_now:.4f} s/step, {steps_now * a.batch / wall:.1f} images/s",
              file=sys.stderr)
    if a.summary_json:
        effect = storage_effect(run, data, sqrt_ab, sqrt_1mab)
        summary = {
            "stop": done, "steps_total": run.step, "steps_this_run": steps_now,
            "wall_seconds": round(wall, 2), "train_seconds_total": round(run.elapsed, 1),
            "seconds_per_step": round(wall / steps_now, 5) if steps_now else None,
            "images_per_second": round(steps_now * a.batch / wall, 1) if steps_now else None,
            "final_ema_loss": run.ema_loss, "batch": a.batch, "parameters": n_params,
            "config": config, "device": dev_name, "amp": "bf16" if amp else "off",
            "channels_last": run.channels_last, "torch": torch.__version__,
            "data": data_desc, "export": written, "export_dtype": a.export_dtype,
            "storage_effect": effect, "history": run.full_history(),
        }
        os.makedirs(os.path.dirname(os.path.abspath(a.summary_json)), exist_ok=True)
        with open(a.summary_json, "w") as f:
            json.dump(summary, f, indent=1)
        if effect:
            print(f"{a.export_dtype} storage: eps relative L2 {effect['eps_rel_l2_by_t']}",
                  file=sys.stderr)
    return 130 if stop.signum == signal.SIGINT else (143 if stop.signum is not None else 0)


if __name__ == "__main__":
    sys.exit(main())
