"""PyTorch CPU timings of the notebook's workload, as a baseline for the Rust engine.

    python3 tools/torch_bench.py [--repeats 5] [--warmup 1] [--threads N] [--json PATH]

Model: the notebook's DiffusionUNet (in_ch 1, base_ch 64, mults (1,2,4), time_dim 256,
attention at levels 1 and 2, 4 heads), random init, eval mode, float32, 64x64 images,
motion blur k=9 a=20. Ops timed (median of --repeats runs after --warmup runs):
  * forward   : eps = model(x, t) under no_grad, batch 1 and 8;
  * vjp       : x.requires_grad, eps = model(x, t), autograd.grad(eps, x, r); forward + backward
                together, batch 1 and 8;
  * dps_step  : one notebook DPS step at batch 1 (forward, x0_hat + clamp, loss, gradient,
                DDIM update, guidance, clamp);
  * diffpir_step : one DiffPIR-style step at batch 1 (no_grad forward, x0_hat + clamp, DDIM,
                K / K^T correction, clamp).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402


def timeit(fn, warmup: int, repeats: int):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--batch-large", type=int, default=8)
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = dict(R.NOTEBOOK_CONFIG)
    model = R.build_model(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # the DPS gradient is w.r.t. x only, as in a frozen prior
    alpha_bars = R.cosine_alpha_bars()
    kern = R.motion_kernel(9, 20)
    sched = R.timesteps(40)
    t_cur, t_next = sched[0], sched[1]
    sigma_y, guidance, tau = 0.01, 0.15, 0.6

    results = []

    def record(op, batch, fn):
        med, times = timeit(fn, args.warmup, args.repeats)
        results.append({"op": op, "batch": batch, "median_ms": med, "min_ms": min(times), "runs_ms": times})
        print(f"  {op:<13} b={batch:<2} median {med:9.1f} ms  min {min(times):9.1f} ms", file=sys.stderr, flush=True)

    for b in (1, args.batch_large):
        x = torch.randn(b, 1, 64, 64)
        t = torch.full((b,), t_cur, dtype=torch.long)

        def fwd():
            with torch.no_grad():
                model(x, t)
        record("forward", b, fwd)

    for b in (1, args.batch_large):
        x = torch.randn(b, 1, 64, 64)
        r = torch.randn(b, 1, 64, 64)
        t = torch.full((b,), t_cur, dtype=torch.long)

        def vjp():
            xr = x.detach().requires_grad_(True)
            eps = model(xr, t)
            torch.autograd.grad(eps, xr, r)
        record("vjp", b, vjp)

    x_true = torch.rand(1, 1, 64, 64) * 2 - 1
    y = R.blur(x_true, kern)
    y = y + R.relative_noise(y, 0.01)
    x_state = torch.randn(1, 1, 64, 64)
    t1 = torch.full((1,), t_cur, dtype=torch.long)

    def dps_step():
        x = x_state.detach().requires_grad_(True)
        eps = model(x, t1)
        x0 = R.x0_hat(x, eps, t1, alpha_bars).clamp(-1.0, 1.0)
        loss = torch.mean((R.blur(x0, kern) - y) ** 2) / (2 * sigma_y ** 2)
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            xn = R.ddim_step(x0, eps, t_next, alpha_bars)
            return (xn - guidance * g).clamp(-1.0, 1.0)
    record("dps_step", 1, dps_step)

    def diffpir_step():
        with torch.no_grad():
            eps = model(y, t1)
            x0 = R.x0_hat(y, eps, t1, alpha_bars).clamp(-1.0, 1.0)
            xp = R.ddim_step(x0, eps, t_next, alpha_bars)
            return (xp - tau * R.blur_adjoint(R.blur(xp, kern) - y, kern)).clamp(-1.0, 1.0)
    record("diffpir_step", 1, diffpir_step)

    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "config": cfg,
        "image": [64, 64],
        "operator": {"type": "motion", "k": 9, "angle": 20.0},
    }
    print(f"PyTorch {info['torch']} CPU, {info['threads']} threads, median of {args.repeats} runs "
          f"after {args.warmup} warm-up, notebook config, 64x64, float32\n")
    print("| op | batch | median ms | min ms |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['op']} | {r['batch']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
