"""PyTorch timings of the notebook's workload, as the baseline for the Rust engine (CPU or GPU).

    python3 tools/torch_bench.py [--device cpu|cuda] [--repeats 5] [--warmup 1] [--threads N]
                                 [--batches 1,8,64] [--samplers [--sampler-batches 1,64]]
                                 [--steps 40] [--weights random|synthetic|W.safetensors]
                                 [--tf32] [--compile MODE [--forward-only]] [--json PATH]

Model: the notebook's DiffusionUNet (in_ch 1, base_ch 64, mults (1,2,4), time_dim 256,
attention at levels 1 and 2, 4 heads), eval mode, float32, 64x64 images, motion blur k=9 a=20.
Weights: torch's random init after manual_seed(0) (default), or `synthetic` = the hash-based
weights `diffrecon bench` uses without --weights (reference.synthetic_state_dict, seed 1), or a
safetensors file. Ops timed (median of --repeats runs after --warmup runs):
  * forward   : eps = model(x, t) under no_grad, at each batch of --batches;
  * vjp       : x.requires_grad, eps = model(x, t), autograd.grad(eps, x, r); forward + backward
                together, at each batch of --batches;
  * dps_step  : one notebook DPS step at batch 1 (forward, x0_hat + clamp, loss, gradient,
                DDIM update, guidance, clamp);
  * diffpir_step : one DiffPIR-style step at batch 1 (no_grad forward, x0_hat + clamp, DDIM,
                K / K^T correction, clamp);
  * with --samplers, also dps_<steps>, diffpir_<steps>, diffpir_pnp_<steps> and
    dps_paper_<steps> (published DiffPIR λ 1, ζ 1 and DPS ζ 3, η 1): the whole samplers of
    tools/reference.py (dps_sample / diffpir_sample), at each batch of --sampler-batches (default: 1 and the largest of
    --batches). Op names and batches match `diffrecon bench`'s table, so ratios pair rows.

--batches defaults to "1,<--batch-large>" (--batch-large defaults to 8), so the default run is
unchanged: forward and vjp at 1 and 8, the two single steps at 1.

--compile MODE times the forward of torch.compile(model, mode=MODE) instead of eager (MODE:
default, reduce-overhead (CUDA graphs on a GPU), max-autotune, max-autotune-no-cudagraphs):
its warm-up runs include the compilation, and before timing the compiled output is compared
with eager's at every batch (max |difference| printed and recorded; a difference above 1e-3 of
eager's largest value is an error, exit 1). The VJP, the single steps and the samplers stay
eager (use --forward-only to skip them). Op names get a suffix, e.g. forward_reduce-overhead,
so a compiled row never pairs with an eager one.

--device cuda moves the model and every input to the GPU and calls torch.cuda.synchronize()
before starting and before stopping each timed run, so every timing includes the GPU work.
TF32 is off unless --tf32 (diffrecon computes in strict float32).
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


def int_list(s: str):
    try:
        v = [int(p) for p in s.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")
    if not v or any(b <= 0 for b in v):
        raise argparse.ArgumentTypeError(f"expected positive batch sizes, got {s!r}")
    return v


def make_sync(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def timeit(fn, warmup: int, repeats: int, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), times


# --------------------------------------------------------------------------------------
# The reference samplers, on any device
# --------------------------------------------------------------------------------------
def load_model(weights: str, cfg: dict):
    if weights == "random":
        model = R.build_model(cfg)
    elif weights == "synthetic":
        model = R.build_model(cfg)
        model.load_state_dict(R.synthetic_state_dict(cfg, 1))
    else:
        model, cfg = R.load_weights(weights)
    return model.eval(), cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--batch-large", type=int, default=8, help="the second batch when --batches is not given")
    ap.add_argument("--batches", type=int_list, default=None,
                    help="batch sizes for forward and vjp, comma-separated (default: 1,<--batch-large>)")
    ap.add_argument("--samplers", action="store_true", help="also time the whole DPS and DiffPIR-style samplers")
    ap.add_argument("--sampler-batches", type=int_list, default=None,
                    help="batch sizes for --samplers (default: 1 and the largest of --batches)")
    ap.add_argument("--steps", type=int, default=40, help="sampler steps for --samplers (default 40)")
    ap.add_argument("--weights", default="random",
                    help="random (torch init, seed 0; default) | synthetic (diffrecon bench's, seed 1) | W.safetensors")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and matmuls on CUDA")
    ap.add_argument("--compile", default=None, dest="compile_mode",
                    choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                    help="time the forward of torch.compile(model, mode=...) instead of eager")
    ap.add_argument("--forward-only", action="store_true", help="time the forward only")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    if args.warmup < 0 or args.repeats < 1:
        ap.error("--warmup must be at least 0 and --repeats at least 1")
    batches = args.batches or [1, args.batch_large]
    sampler_batches = args.sampler_batches or sorted({1, max(batches)})

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    sync = make_sync(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(0)

    cfg = dict(R.NOTEBOOK_CONFIG)
    model, cfg = load_model(args.weights, cfg)
    for p in model.parameters():
        p.requires_grad_(False)  # the DPS gradient is w.r.t. x only, as in a frozen prior
    model = model.to(device)
    alpha_bars = R.cosine_alpha_bars().to(device)
    kern = R.motion_kernel(9, 20).to(device)
    sched = R.timesteps(40)
    t_cur, t_next = sched[0], sched[1]
    sigma_y, guidance, tau = 0.01, 0.15, 0.6

    def randn(*shape):
        return torch.randn(*shape).to(device)  # the CPU generator: the same inputs on any device

    results = []

    def record(op, batch, fn):
        med, times = timeit(fn, args.warmup, args.repeats, sync)
        results.append({"op": op, "batch": batch, "median_ms": med, "min_ms": min(times), "runs_ms": times})
        print(f"  {op:<13} b={batch:<2} median {med:9.1f} ms  min {min(times):9.1f} ms", file=sys.stderr, flush=True)

    compiled, forward_op, compile_diffs = model, "forward", {}
    if args.compile_mode:
        compiled = torch.compile(model, mode=args.compile_mode)
        forward_op = f"forward_{args.compile_mode}"
    for b in batches:
        x = randn(b, 1, 64, 64)
        t = torch.full((b,), t_cur, dtype=torch.long, device=device)
        if args.compile_mode:
            # The compiled forward must compute the eager one (the first call compiles).
            with torch.no_grad():
                want, got = model(x, t), compiled(x, t).clone()
            diff = (got - want).abs().max().item()
            compile_diffs[b] = diff
            print(f"  compiled forward b={b}: max |compiled - eager| {diff:.3e}", file=sys.stderr, flush=True)
            if not diff <= 1e-3 * want.abs().max().item():
                print(f"error: torch.compile({args.compile_mode}) forward differs from eager by {diff}",
                      file=sys.stderr)
                return 1

        def fwd():
            with torch.no_grad():
                compiled(x, t)
        record(forward_op, b, fwd)


    for b in [] if args.forward_only else batches:
        x = randn(b, 1, 64, 64)
        r = randn(b, 1, 64, 64)
        t = torch.full((b,), t_cur, dtype=torch.long, device=device)

        def vjp():
            xr = x.detach().requires_grad_(True)
            eps = model(xr, t)
            torch.autograd.grad(eps, xr, r)
        record("vjp", b, vjp)

    x_true = torch.rand(1, 1, 64, 64).to(device) * 2 - 1
    y = R.blur(x_true, kern)
    y = y + R.relative_noise(y.cpu(), 0.01).to(device)
    x_state = randn(1, 1, 64, 64)
    t1 = torch.full((1,), t_cur, dtype=torch.long, device=device)

    def dps_step():
        x = x_state.detach().requires_grad_(True)
        eps = model(x, t1)
        x0 = R.x0_hat(x, eps, t1, alpha_bars).clamp(-1.0, 1.0)
        loss = torch.mean((R.blur(x0, kern) - y) ** 2) / (2 * sigma_y ** 2)
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            xn = R.ddim_step(x0, eps, t_next, alpha_bars)
            return (xn - guidance * g).clamp(-1.0, 1.0)
    if not args.forward_only:
        record("dps_step", 1, dps_step)

    def diffpir_step():
        with torch.no_grad():
            eps = model(y, t1)
            x0 = R.x0_hat(y, eps, t1, alpha_bars).clamp(-1.0, 1.0)
            xp = R.ddim_step(x0, eps, t_next, alpha_bars)
            return (xp - tau * R.blur_adjoint(R.blur(xp, kern) - y, kern)).clamp(-1.0, 1.0)
    if not args.forward_only:
        record("diffpir_step", 1, diffpir_step)

    if args.samplers and not args.forward_only:
        for b in sampler_batches:
            xt = torch.rand(b, 1, 64, 64).to(device) * 2 - 1
            yb = R.blur(xt, kern)
            yb = yb + R.relative_noise(yb.cpu(), 0.01).to(device)
            x_T = randn(b, 1, 64, 64)
            record(f"diffpir_{args.steps}", b,
                   lambda: R.diffpir_sample(model, yb, kern, alpha_bars, steps=args.steps, tau=tau))
            record(f"dps_{args.steps}", b,
                   lambda: R.dps_sample(model, yb, kern, alpha_bars, x_T, steps=args.steps,
                                      guidance=guidance, sigma_y=sigma_y))
            # The published samplers with the engine's defaults (noise drawn up front: the
            # engine draws it on the host too).
            z_steps = [randn(b, 1, 64, 64) for _ in range(args.steps - 1)]
            record(f"diffpir_pnp_{args.steps}", b,
                   lambda: R.diffpir_pnp_sample(model, yb, kern, alpha_bars, x_T, z_steps,
                                              steps=args.steps, lam=1.0, zeta=1.0))
            record(f"dps_paper_{args.steps}", b,
                   lambda: R.dps_paper_sample(model, yb, kern, alpha_bars, x_T, z_steps,
                                            steps=args.steps, zeta=3.0, eta=1.0))

    info = {
        "torch": torch.__version__,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "weights": args.weights,
        "compile": args.compile_mode,
        "compile_max_abs_diff": compile_diffs,
        "config": cfg,
        "image": [64, 64],
        "operator": {"type": "motion", "k": 9, "angle": 20.0},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({
            "device_name": torch.cuda.get_device_name(device),
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "multiprocessors": props.multi_processor_count,
            "tf32": args.tf32,
        })
    if device.type == "cuda":
        where = f"CUDA ({info['device_name']}, TF32 {'on' if args.tf32 else 'off'})"
    else:
        where = f"CPU, {info['threads']} threads"
    wdesc = "" if args.weights == "random" else f", weights {args.weights}"
    if args.compile_mode:
        wdesc += f", forward by torch.compile(mode={args.compile_mode})"
    print(f"PyTorch {info['torch']} {where}, median of {args.repeats} runs "
          f"after {args.warmup} warm-up, notebook config, 64x64, float32{wdesc}\n")
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
