#!/usr/bin/env python3
"""Train the engine's own diffusion prior: DDPM noise prediction on synthetic CT phantoms.

The model is the DiffusionUNet of shared/REFERENCE.md, imported from ``tools/reference.py``
(beside this file), as are the cosine schedule and the safetensors writer. Training objective:
T = 400, cosine schedule (s = 0.008, in float32), t uniform in [0, T-1],
x_t = sqrt(ab[t])·x0 + sqrt(1-ab[t])·eps, MSE between the predicted and the true eps. AdamW
with a linear warm-up, gradient clipping and an exponential moving average (EMA) of the
weights; the EMA weights are exported.

Data: ``--data PHANTOMS.npy`` of shape (N, 1, H, W), float32, in model space [-1, 1]
(``diffrecon phantoms --count N --out PHANTOMS.npy`` writes one). H and W must be divisible by
2^(levels-1).

Checkpoints (``--ckpt PATH``) hold the model, EMA, optimiser, step, elapsed time and the
random generator state; they are written every ``--save-every`` steps, at the end, and when
the process gets SIGINT or SIGTERM (it then exits after finishing the current step).
``--resume`` continues from the checkpoint with the same trajectory (same batches, t and
noise) as an uninterrupted run. The loss log (``--log``, CSV: step, loss, ema_loss, lr,
seconds) is trimmed to the checkpoint's step on resume, so it never holds duplicate steps.

Export (``--out W.safetensors``, at the end and on a signal): float32 EMA weights with the
exact REFERENCE.md names; metadata (str -> str): ``num_heads``, ``config`` (JSON with in_ch,
base_ch, channel_mults, time_dim, attn_levels, num_heads) and ``training`` (JSON: data
description, steps, batch, lr, seed and the rest of the recipe). The file is written by
``reference.save_weights`` with a deterministic byte layout (sorted names, sorted metadata
keys) and atomically.

Example (the size the engine ships):
    python3 tools/train_prior.py --data phantoms.npy --out weights/prior.safetensors \\
        --ckpt train.ckpt --log train.csv --base-ch 32 --channel-mults 1,2,2 --attn-levels 2 \\
        --time-dim 128 --num-heads 4 --batch 16 --steps 40000 --device cuda --flip
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import signal
import sys
import time
from typing import List

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (  # noqa: E402
    COSINE_S,
    T_DEFAULT as T_STEPS,
    build_model,
    config_json,
    cosine_alpha_bars,
    save_weights,
)

MODEL_SOURCE = "tools/reference.py"  # recorded in the export's ``training`` metadata


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def load_data(path: str, levels: int) -> np.ndarray:
    data = np.load(path, mmap_mode="r")
    if data.ndim != 4 or data.shape[1] != 1:
        sys.exit(f"error: {path} has shape {data.shape}; expected (N, 1, H, W)")
    n, _, h, w = data.shape
    if n == 0:
        sys.exit(f"error: {path} holds no images")
    div = 2 ** (levels - 1)
    if h % div or w % div:
        sys.exit(f"error: image size {h}x{w} must be divisible by {div} for {levels} levels")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        sys.exit(f"error: {path} contains NaN or infinite values")
    lo, hi = float(data.min()), float(data.max())
    if lo < -1.001 or hi > 1.001:
        sys.exit(f"error: {path} ranges over [{lo:.3f}, {hi:.3f}]; expected model space [-1, 1]")
    return data


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def parse_ints(s: str) -> List[int]:
    s = s.strip()
    return [int(v) for v in s.split(",") if v.strip()] if s else []


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="(N,1,H,W) float32 .npy in model space [-1,1]")
    p.add_argument("--data-desc", default=None, help="data description for the metadata")
    p.add_argument("--out", required=True, help="output safetensors (EMA weights)")
    p.add_argument("--ckpt", default=None, help="checkpoint path (default: OUT.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue from --ckpt if it exists")
    p.add_argument("--log", default=None, help="loss log CSV (default: OUT.csv)")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--in-ch", type=int, default=1)
    p.add_argument("--base-ch", type=int, default=32)
    p.add_argument("--channel-mults", default="1,2,2")
    p.add_argument("--attn-levels", default="2", help="comma list, may be empty")
    p.add_argument("--time-dim", type=int, default=128)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20000, help="total optimiser steps")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=500, help="linear lr warm-up steps")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="after warm-up: constant, or cosine decay to 10%% at --steps")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0: off)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.ckpt = a.ckpt or a.out + ".ckpt"
    a.log = a.log or os.path.splitext(a.out)[0] + ".csv"
    return a


def lr_at(step: int, a) -> float:
    """Learning rate for the update that produces step `step + 1`."""
    if a.warmup > 0 and step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    if a.lr_schedule == "cosine":
        span = max(1, a.steps - a.warmup)
        frac = min(1.0, (step - a.warmup) / span)
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
        print(f"\nsignal {signum}: saving a checkpoint after this step", file=sys.stderr, flush=True)


def save_ckpt(path, model, ema, opt, gen, step, elapsed, ema_loss, config, a):
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "gen": gen.get_state(),
        "step": step,
        "elapsed": elapsed,
        "ema_loss": ema_loss,
        "config": config,
        "recipe": recipe(a),
    }
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def recipe(a) -> dict:
    """Settings that must not change across a resume (the trajectory depends on them)."""
    return {"batch": a.batch, "lr": a.lr, "warmup": a.warmup, "lr_schedule": a.lr_schedule,
            "weight_decay": a.weight_decay, "grad_clip": a.grad_clip, "ema": a.ema,
            "flip": a.flip, "seed": a.seed}


def export(a, ema, config, step, elapsed, ema_loss, n_data, shape):
    desc = a.data_desc or f"{os.path.basename(a.data)}: {n_data} slices {shape[0]}x{shape[1]}"
    training = {
        "data": desc,
        "data_file": os.path.basename(a.data),
        "data_count": n_data,
        "steps": step,
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
        "final_ema_loss": None if ema_loss is None else round(float(ema_loss), 6),
        "train_seconds": round(float(elapsed), 1),
        "model_source": MODEL_SOURCE,
        "torch": torch.__version__,
    }
    save_weights(a.out, ema.state_dict(), config,
                 extra_metadata={"training": json.dumps(training, separators=(",", ":"))},
                 atomic=True)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but CUDA is not available")
    dev = torch.device(a.device)
    config = {
        "in_ch": a.in_ch,
        "base_ch": a.base_ch,
        "channel_mults": parse_ints(a.channel_mults),
        "time_dim": a.time_dim,
        "attn_levels": parse_ints(a.attn_levels),
        "num_heads": a.num_heads,
    }
    if not config["channel_mults"]:
        sys.exit("error: --channel-mults must not be empty")
    if a.batch < 1 or a.steps < 0 or not 0.0 <= a.ema < 1.0:
        sys.exit("error: need --batch >= 1, --steps >= 0 and 0 <= --ema < 1")

    data_np = load_data(a.data, len(config["channel_mults"]))
    if data_np.shape[1] != a.in_ch:
        sys.exit(f"error: data has {data_np.shape[1]} channels, --in-ch is {a.in_ch}")
    n_data, hw = data_np.shape[0], data_np.shape[2:]
    data = torch.from_numpy(data_np)  # stays on the CPU; batches move to the device

    torch.manual_seed(a.seed)  # parameter initialisation
    model = build_model(config).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    gen = torch.Generator().manual_seed(a.seed)  # batches, t, noise, flips (CPU, exact resume)
    ab = cosine_alpha_bars().to(dev)
    sqrt_ab, sqrt_1mab = ab.sqrt(), (1 - ab).sqrt()

    step, elapsed, ema_loss = 0, 0.0, None
    if a.resume and os.path.exists(a.ckpt):
        ck = torch.load(a.ckpt, map_location=dev, weights_only=False)
        if ck["config"] != config:
            sys.exit(f"error: checkpoint config {ck['config']} differs from the flags' {config}")
        if ck["recipe"] != recipe(a):
            sys.exit(f"error: checkpoint recipe {ck['recipe']} differs from the flags' {recipe(a)}")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, elapsed, ema_loss = ck["step"], ck["elapsed"], ck["ema_loss"]
        print(f"resumed from {a.ckpt} at step {step}", file=sys.stderr)
    elif a.resume:
        print(f"note: no checkpoint at {a.ckpt}; starting fresh", file=sys.stderr)

    # Loss log: keep rows up to the checkpoint's step, so a resume never duplicates steps.
    rows = []
    if step > 0 and os.path.exists(a.log):
        with open(a.log, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= step]
    os.makedirs(os.path.dirname(os.path.abspath(a.log)), exist_ok=True)
    logf = open(a.log, "w", newline="")
    log = csv.writer(logf)
    log.writerow(["step", "loss", "ema_loss", "lr", "seconds"])
    log.writerows(rows)
    logf.flush()

    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {MODEL_SOURCE}, {n_params:,} parameters, config {config_json(config)}",
          file=sys.stderr)
    print(f"data: {n_data} slices {hw[0]}x{hw[1]} from {a.data}; device {a.device}, "
          f"threads {torch.get_num_threads()}", file=sys.stderr)

    stop = Stop()
    model.train()
    params = list(model.parameters())
    ema_params = list(ema.parameters())
    t_last = time.time()
    while step < a.steps and stop.signum is None:
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n_data, (a.batch,), generator=gen)
        x0 = data[idx]
        if a.flip:
            flip = torch.rand(a.batch, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, T_STEPS, (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        x0, t, eps = x0.to(dev, non_blocking=True), t.to(dev), eps.to(dev, non_blocking=True)
        x_t = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * eps
        loss = F.mse_loss(model(x_t, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        step += 1
        # EMA with a short warm-up of the decay, so early exports are not dominated by init.
        d = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, d)
            torch._foreach_add_(ema_params, params, alpha=1 - d)
        lv = float(loss.detach())
        ema_loss = lv if ema_loss is None else 0.99 * ema_loss + 0.01 * lv
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % a.log_every == 0 or step == a.steps or stop.signum is not None:
            log.writerow([step, f"{lv:.6f}", f"{ema_loss:.6f}", f"{lr:.3e}", f"{elapsed:.2f}"])
            logf.flush()
            print(f"step {step}/{a.steps} loss {lv:.4f} ema {ema_loss:.4f} lr {lr:.2e} "
                  f"{elapsed:.1f}s", file=sys.stderr, flush=True)
        if a.save_every > 0 and step % a.save_every == 0 and step < a.steps:
            save_ckpt(a.ckpt, model, ema, opt, gen, step, elapsed, ema_loss, config, a)
            t_last = time.time()  # checkpoint time is not training time

    save_ckpt(a.ckpt, model, ema, opt, gen, step, elapsed, ema_loss, config, a)
    export(a, ema, config, step, elapsed, ema_loss, n_data, hw)
    logf.close()
    done = "stopped" if stop.signum is not None else "finished"
    print(f"{done} at step {step}: checkpoint {a.ckpt}, EMA weights {a.out}, log {a.log}",
          file=sys.stderr)
    if step:
        print(f"{elapsed / step:.4f} s/step average", file=sys.stderr)
    return 130 if stop.signum == signal.SIGINT else (143 if stop.signum is not None else 0)


if __name__ == "__main__":
    sys.exit(main())
