"""Write the golden test data under tests/golden/ from the PyTorch reference (tools/reference.py).

Usage:  python3 tools/make_golden.py [--out tests/golden]

Deterministic: every random input comes from a seeded torch.Generator and is saved next to the
outputs, so the Rust tests only read files. Arrays are .npy, float32, little-endian, C order.
The script is single-threaded in torch (set below) so its results do not depend on the
thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402
import rng as RNG  # noqa: E402

SMALL_CONFIG = {"in_ch": 1, "base_ch": 16, "channel_mults": [1, 2, 2], "time_dim": 32,
                "attn_levels": [1, 2], "num_heads": 2}
ODD_CONFIG = {"in_ch": 1, "base_ch": 12, "channel_mults": [1, 3], "time_dim": 17,
              "attn_levels": [0, 1], "num_heads": 3}
FULL_CONFIG = dict(R.NOTEBOOK_CONFIG)
FULL_SEED = 7

T = R.T_DEFAULT


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float32)


def blobs(shape, seed: int, lo: float = -0.9, hi: float = 0.9, n_blobs: int = 5) -> torch.Tensor:
    """Smooth test image(s): a sum of Gaussian blobs, rescaled per item to [lo, hi]."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    out = np.zeros(shape, dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            img = np.zeros((h, w))
            for _ in range(n_blobs):
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                sy, sx = rng.uniform(0.08, 0.25) * h, rng.uniform(0.08, 0.25) * w
                amp = rng.uniform(-1.0, 1.0)
                img += amp * np.exp(-((yy - cy) ** 2 / (2 * sy ** 2) + (xx - cx) ** 2 / (2 * sx ** 2)))
            img = (img - img.min()) / (img.max() - img.min())
            out[b, ch] = lo + (hi - lo) * img
    return torch.from_numpy(out.astype(np.float32))


def init_weights(config: dict, seed: int) -> nn.Module:
    """PyTorch default init under torch.manual_seed(seed), then non-trivial affine/bias parts:
    every GroupNorm weight = 1 + 0.1 randn, bias = 0.1 randn; every attention in_proj_bias and
    out_proj.bias (zero by default in PyTorch) = 0.1 randn. Modules visited in named_modules()
    order, weight before bias."""
    torch.manual_seed(seed)
    model = R.build_model(config)
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, nn.GroupNorm):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape))
            elif isinstance(mod, nn.MultiheadAttention):
                mod.in_proj_bias.copy_(0.1 * torch.randn(mod.in_proj_bias.shape))
                mod.out_proj.bias.copy_(0.1 * torch.randn(mod.out_proj.bias.shape))
    model.eval()
    return model


class Writer:
    def __init__(self, root: str):
        self.root = root

    def case_dir(self, name: str) -> str:
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        return d

    def npy(self, case: str, fname: str, t: torch.Tensor) -> dict:
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
        np.save(os.path.join(self.case_dir(case), fname), a, allow_pickle=False)
        return {"file": fname, "shape": list(a.shape)}

    def json(self, rel: str, obj, compact: bool = False) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            if compact:
                json.dump(obj, f, separators=(",", ":"), allow_nan=False)
            else:
                json.dump(obj, f, indent=1, allow_nan=False)
            f.write("\n")


def motion_op(k, angle):
    return {"type": "motion", "k": k, "angle": float(angle)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    root = os.path.normpath(args.out)
    os.makedirs(root, exist_ok=True)
    # Remove previously generated data (keep README.md, which is written by hand).
    for entry in os.listdir(root):
        p = os.path.join(root, entry)
        if entry == "README.md":
            continue
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    W = Writer(root)
    report = {}

    alpha_bars = R.cosine_alpha_bars(T)

    # ---------------------------------------------------------------- weights
    small = init_weights(SMALL_CONFIG, 0)
    odd = init_weights(ODD_CONFIG, 1)
    R.save_weights(os.path.join(root, "small.safetensors"), small.state_dict(), SMALL_CONFIG)
    R.save_weights(os.path.join(root, "odd.safetensors"), odd.state_dict(), ODD_CONFIG)
    # Reload from the files so the goldens are computed with exactly what was written.
    small, _ = R.load_weights(os.path.join(root, "small.safetensors"))
    odd, _ = R.load_weights(os.path.join(root, "odd.safetensors"))
    full = R.build_model(FULL_CONFIG)
    full.load_state_dict(R.synthetic_state_dict(FULL_CONFIG, FULL_SEED), strict=True)
    full.eval()
    for nm, m in (("small", small), ("odd", odd), ("full", full)):
        report[f"params_{nm}"] = R.param_count(m)

    # ---------------------------------------------------------------- eps cases
    def eps_case(name, model, config, weights, x, t, extra=None):
        with torch.no_grad():
            eps = model(x, torch.tensor(t, dtype=torch.long))
        meta = {
            "case": name,
            "kind": "eps",
            "weights": weights,
            "config": config,
            "t": t,
            "image_shape": list(x.shape),
            "inputs": {"x": W.npy(name, "x.npy", x)},
            "outputs": {"eps": W.npy(name, "eps.npy", eps)},
        }
        if extra:
            meta.update(extra)
        W.json(f"{name}/meta.json", meta)
        report[name] = {"eps_abs_max": float(eps.abs().max()), "eps_std": float(eps.std())}

    eps_case("eps_small", small, SMALL_CONFIG, "small.safetensors", randn((2, 1, 32, 32), 101), [37, 311])
    eps_case("eps_odd", odd, ODD_CONFIG, "odd.safetensors", randn((2, 1, 24, 20), 102), [0, 399])
    eps_case("eps_full", full, FULL_CONFIG, None, randn((1, 1, 64, 64), 103), [123],
             extra={"synthetic_seed": FULL_SEED,
                    "note": "weights = synthetic_state_dict(config, seed=7); regenerate, not stored"})

    # ---------------------------------------------------------------- DPS gradient
    def dps_grad_case(name, x, x_true, t, k, angle, sigma_y, noise_seed):
        kern = R.motion_kernel(k, angle)
        y = R.blur(x_true, kern)
        y = y + R.relative_noise(y, 0.01, gen(noise_seed))
        grad, loss, eps, x0 = R.dps_loss_and_grad(small, x, t, y, kern, sigma_y, alpha_bars)
        # Cross-check autograd against the closed-form VJP of REFERENCE.md, per item.
        xr = x.detach().requires_grad_(True)
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        e = small(xr, tt)
        x0u = R.x0_hat(xr, e, tt, alpha_bars)
        mask = ((x0u >= -1) & (x0u <= 1)).to(torch.float32).detach()
        npix = x[0].numel()
        r = mask * R.blur_adjoint(R.blur(x0u.detach().clamp(-1, 1), kern) - y, kern) / (npix * sigma_y ** 2)
        (jtr,) = torch.autograd.grad(e, xr, r)
        ab = alpha_bars[t]
        g2 = (r - torch.sqrt(1 - ab) * jtr) / torch.sqrt(ab)
        rel = float((g2 - grad).abs().max() / grad.abs().max())
        meta = {
            "case": name,
            "kind": "dps_grad",
            "weights": "small.safetensors",
            "config": SMALL_CONFIG,
            "t": t,
            "sigma_y": sigma_y,
            "operator": motion_op(k, angle),
            "noise_level": 0.01,
            "loss": float(loss),
            "loss_definition": "sum over batch items of mean over the item's pixels of (K(x0)-y)^2, / (2 sigma_y^2); x0 = clamp(x0_hat(x, eps(x,t), t), -1, 1)",
            "unclamped_fraction": float(mask.mean()),
            "image_shape": list(x.shape),
            "inputs": {"x": W.npy(name, "x.npy", x), "y": W.npy(name, "y.npy", y),
                       "x_true": W.npy(name, "x_true.npy", x_true)},
            "outputs": {"grad": W.npy(name, "grad.npy", grad), "eps": W.npy(name, "eps.npy", eps),
                        "x0": W.npy(name, "x0.npy", x0)},
        }
        W.json(f"{name}/meta.json", meta)
        report[name] = {"loss": float(loss), "unclamped_fraction": float(mask.mean()),
                        "autograd_vs_closed_form_rel_maxdiff": rel, "grad_abs_max": float(grad.abs().max())}

    dps_grad_case("dps_grad_small", randn((1, 1, 32, 32), 201), blobs((1, 1, 32, 32), 202), 250, 5, 30, 0.01, 203)
    dps_grad_case("dps_grad_small_b2", randn((2, 1, 32, 32), 211), blobs((2, 1, 32, 32), 212), 250, 5, 30, 0.01, 213)

    # ---------------------------------------------------------------- trajectories
    steps = 4
    kern9 = R.motion_kernel(9, 20)
    x_true = blobs((1, 1, 32, 32), 301)
    y_clean = R.blur(x_true, kern9)
    y = y_clean + R.relative_noise(y_clean, 0.01, gen(302))
    x_T = randn((1, 1, 32, 32), 303)
    out, states, x0s = R.dps_sample(small, y, kern9, alpha_bars, x_T, steps=steps, guidance=0.15,
                                    sigma_y=0.01, return_states=True)
    meta = {
        "case": "dps_traj_small", "kind": "dps", "weights": "small.safetensors", "config": SMALL_CONFIG,
        "steps": steps, "timesteps": R.timesteps(steps), "guidance": 0.15, "sigma_y": 0.01,
        "operator": motion_op(9, 20), "noise_level": 0.01, "image_shape": [1, 1, 32, 32],
        "inputs": {"x_T": W.npy("dps_traj_small", "x_T.npy", x_T), "y": W.npy("dps_traj_small", "y.npy", y),
                   "x_true": W.npy("dps_traj_small", "x_true.npy", x_true)},
        "outputs": {"out": W.npy("dps_traj_small", "out.npy", out),
                    "states": W.npy("dps_traj_small", "states.npy", torch.stack(states)),
                    "x0s": W.npy("dps_traj_small", "x0s.npy", torch.stack(x0s))},
        "states_definition": "states[i] = x after loop step i (pair timesteps[i] -> timesteps[i+1]), before the final t=0 denoise; x0s[i] = clamped x0_hat of loop step i",
    }
    W.json("dps_traj_small/meta.json", meta)
    report["dps_traj_small"] = {"mse_vs_true": R.mse(out, x_true), "psnr_vs_true": R.psnr(out, x_true)}

    out, states, x0s = R.diffpir_sample(small, y, kern9, alpha_bars, steps=steps, tau=0.6, return_states=True)
    meta = {
        "case": "diffpir_traj_small", "kind": "diffpir", "weights": "small.safetensors", "config": SMALL_CONFIG,
        "steps": steps, "timesteps": R.timesteps(steps), "tau": 0.6,
        "operator": motion_op(9, 20), "noise_level": 0.01, "image_shape": [1, 1, 32, 32],
        "inputs": {"y": W.npy("diffpir_traj_small", "y.npy", y),
                   "x_true": W.npy("diffpir_traj_small", "x_true.npy", x_true)},
        "outputs": {"out": W.npy("diffpir_traj_small", "out.npy", out),
                    "states": W.npy("diffpir_traj_small", "states.npy", torch.stack(states)),
                    "x0s": W.npy("diffpir_traj_small", "x0s.npy", torch.stack(x0s))},
        "states_definition": "states[i] = x after loop step i; the sampler starts from x = y; out = clamp(states[-1])",
    }
    W.json("diffpir_traj_small/meta.json", meta)
    report["diffpir_traj_small"] = {"mse_vs_true": R.mse(out, x_true), "psnr_vs_true": R.psnr(out, x_true)}

    # ---------------------------------------------------------------- schedule
    W.npy("schedule", "alpha_bars.npy", alpha_bars)
    lists = {str(S): R.timesteps(S) for S in (2, 3, 4, 7, 10, 40, 50, 100, 399, 400)}
    W.json("schedule/timesteps.json", {"T": T, "lists": lists}, compact=True)
    report["schedule"] = {"alpha_bars[0]": float(alpha_bars[0]), "alpha_bars[250]": float(alpha_bars[250]),
                          "alpha_bars[399]": float(alpha_bars[399])}

    # ---------------------------------------------------------------- kernels
    motion_cases = []
    angles = [0, 20, 45, -30, 90, -90, 135, 180, 7.5, 360, -200]
    pairs = [(1, 0), (1, 45), (1, -200)]
    pairs += [(3, a) for a in angles]
    pairs += [(5, a) for a in (0, 30, 45, 90, -90, 135, 7.5)]
    pairs += [(9, a) for a in (20, 0, -30, 180, 360, -200)]
    pairs += [(15, a) for a in (7.5, 45, -30, 135)]
    pairs += [(31, a) for a in (20, -200, 90)]
    for k, a in pairs:
        kern = R.motion_kernel(k, a)
        motion_cases.append({"k": k, "angle": float(a), "kernel": [float(v) for v in kern.reshape(-1).tolist()]})
    gauss_cases = []
    for k, var in ((3, 0.5), (5, 1.0), (9, 2.0), (7, 10.0)):
        kern = R.gaussian_kernel(k, var)
        gauss_cases.append({"k": k, "variance": var, "kernel": [float(v) for v in kern.reshape(-1).tolist()]})
    W.json("kernels.json", {"motion": motion_cases, "gaussian": gauss_cases}, compact=True)
    report["kernels"] = {"motion_cases": len(motion_cases), "gaussian_cases": len(gauss_cases)}

    # ---------------------------------------------------------------- blur
    xb = randn((2, 1, 20, 24), 401)
    yb = randn((2, 1, 20, 24), 402)
    kb = R.motion_kernel(7, -35)
    kg = R.gaussian_kernel(5, 1.5)
    Kx = R.blur(xb, kb)
    KTy = R.blur_adjoint(yb, kb)
    meta = {
        "case": "blur", "kind": "blur", "image_shape": [2, 1, 20, 24],
        "operator": motion_op(7, -35), "gaussian": {"type": "gaussian", "k": 5, "variance": 1.5},
        "inputs": {"x": W.npy("blur", "x.npy", xb), "y": W.npy("blur", "y.npy", yb)},
        "outputs": {"Kx": W.npy("blur", "Kx.npy", Kx), "KTy": W.npy("blur", "KTy.npy", KTy),
                    "Kx_gauss": W.npy("blur", "Kx_gauss.npy", R.blur(xb, kg))},
        "adjoint_identity": {"<Kx,y>": float((Kx.double() * yb.double()).sum()),
                             "<x,KTy>": float((xb.double() * KTy.double()).sum())},
    }
    W.json("blur/meta.json", meta)
    report["blur"] = meta["adjoint_identity"]

    # ---------------------------------------------------------------- metrics
    shape = (1, 1, 64, 64)
    smooth = blobs(shape, 501)
    pairs = [
        ("smooth image vs. a noisy version of it (noise std 0.1, values leave [-1,1])",
         smooth, smooth + 0.1 * randn(shape, 502)),
        ("identical images (mse 0, psnr inf -> stored as null)",
         0.6 * randn(shape, 503), None),
        ("two independent wide noise images (std 1.5 and 1.2): the clamp to [0,1] matters",
         1.5 * randn(shape, 504), 1.2 * randn(shape, 505)),
        ("two different smooth images in [-1.3, 1.3] (clamped at both ends)",
         blobs(shape, 506, -1.3, 1.3), blobs(shape, 507, -1.3, 1.3)),
    ]
    recs = []
    for i, (desc, a, b) in enumerate(pairs):
        if b is None:
            b = a.clone()
        W.npy("metrics", f"a{i}.npy", a)
        W.npy("metrics", f"b{i}.npy", b)
        m = R.mse(a, b)
        p = R.psnr(a, b)
        s = R.ssim(a, b)
        recs.append({"a": f"a{i}.npy", "b": f"b{i}.npy", "description": desc, "mse": m,
                     "psnr": None if math.isinf(p) else p, "ssim": s,
                     "outside_unit_range_fraction": float(((a.abs() > 1).float().mean() + (b.abs() > 1).float().mean()) / 2)})
    W.json("metrics/metrics.json", {
        "definition": "images mapped to [0,1] by clamp((x+1)/2,0,1); mse = float32 torch mean; psnr = -10 log10(mse) in float64 (null = inf, mse 0); ssim = float32 torch, Gaussian 11x11 window sigma 1.5, zero padding 5, c1=0.01^2, c2=0.03^2, mean of the map",
        "pairs": recs})
    report["metrics"] = [{k: r[k] for k in ("mse", "psnr", "ssim")} for r in recs]

    # ---------------------------------------------------------------- published samplers
    # Reported in their own meta.json (and printed), not in manifest.json's report.
    published_report = published_cases(W, small, alpha_bars)

    W.json("manifest.json", {
        "generator": "tools/make_golden.py",
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "synthetic_check": {
            "config": FULL_CONFIG, "seed": FULL_SEED,
            "init.weight[:3]": [float(v) for v in R.synthetic_tensor("init.weight", (64, 1, 3, 3), 7).reshape(-1)[:3]],
            "out_norm.weight[:3]": [float(v) for v in R.synthetic_tensor("out_norm.weight", (64,), 7)[:3]],
        },
        "report": report,
    })
    print(json.dumps(report, indent=1))
    print(json.dumps(published_report, indent=1))


def published_cases(W: Writer, small, alpha_bars) -> dict:
    """Golden cases of the published samplers (reference.diffpir_pnp_sample, dps_paper_sample)
    and of the engine's noise generator (tools/rng.py), on the small weights.

    The engine draws its noise itself, from one seed per slice: slice_noise(shape, seeds, 0) is
    DiffPIR's start noise and slice_noise(shape, seeds, i + 1) the noise of step i (DiffPIR's
    re-injection, DPS's ancestral noise). The reference gets the same values from tools/rng.py.
    """
    report = {}

    # The generator itself: a few draws, including a seed and a stream that wrap mod 2^64.
    rng_cases = []
    for shape, seeds, stream in (([2, 1, 3, 4], [0, (1 << 64) - 1], 0), ([1, 2, 2, 3], [7], 5),
                                 ([3, 1, 1, 5], [1, 2, 0xDEADBEEFCAFEF00D], (1 << 64) - 1)):
        vals = RNG.slice_noise(shape, seeds, stream)
        rng_cases.append({"shape": shape, "seeds": seeds, "stream": stream,
                          "values": [float(v) for v in vals.reshape(-1)]})
    W.json("rng/slice_noise.json", {
        "definition": "rng::slice_noise(shape, seeds, stream) as float32, row-major; written as the "
                      "shortest repr of the exact float64 widening, so parsing as f64 and casting "
                      "to f32 is exact",
        "cases": rng_cases}, compact=True)
    report["rng"] = {"cases": len(rng_cases)}

    shape = (2, 1, 32, 32)
    kern9 = R.motion_kernel(9, 20)
    x_true = blobs(shape, 601)
    y_clean = R.blur(x_true, kern9)
    y = y_clean + R.relative_noise(y_clean, 0.01, gen(602))

    def noise(seeds, stream):
        return torch.from_numpy(RNG.slice_noise(shape, seeds, stream))

    cg = {"max_iters": 20, "tol": 1e-4}
    for name, zeta, t_start, skip, seeds in (("diffpir_pnp_small", 0.0, 399, "uniform", [11, 12]),
                                             ("diffpir_pnp_noise_small", 0.3, 300, "quad",
                                              [21, 0xFEEDFACECAFEBEEF])):
        steps, lam, noise_level = 4, 7.0, 0.01
        z_steps = [noise(seeds, i + 1) for i in range(steps - 1)]
        out, _, _, cg_log = R.diffpir_pnp_sample(
            small, y, kern9, alpha_bars, noise(seeds, 0), z_steps, steps=steps, lam=lam, zeta=zeta,
            noise_level=noise_level, t_start=t_start, skip=skip, cg_iters=cg["max_iters"],
            cg_tol=cg["tol"], return_states=True)
        rep = {"mse_vs_true": R.mse(out, x_true), "psnr_vs_true": R.psnr(out, x_true),
               "cg_iters_max": max(max(c["iters"]) for c in cg_log),
               "cg_rel_residual_max": max(max(c["rel_residual"]) for c in cg_log),
               "cg_tol_margin_min": min(c["tol_margin"] for c in cg_log)}
        # A stopping test within float32 noise of the tolerance could go the other way in the
        # engine (one CG iteration more or less): choose other inputs if this trips.
        assert rep["cg_tol_margin_min"] > 0.01, (name, rep)
        meta = {
            "case": name, "kind": "diffpir_pnp", "weights": "small.safetensors", "config": SMALL_CONFIG,
            "steps": steps, "timesteps": R.spaced_timesteps(t_start, steps, skip), "t_start": t_start,
            "skip": skip, "lambda": lam, "zeta": zeta, "noise_level": noise_level, "cg": cg,
            "seeds": seeds, "operator": motion_op(9, 20), "image_shape": list(shape),
            "inputs": {"y": W.npy(name, "y.npy", y)},
            "outputs": {"out": W.npy(name, "out.npy", out)},
            "cg_per_step": cg_log,
            "noise": "start: slice_noise(shape, seeds, 0); step i: slice_noise(shape, seeds, i + 1) (tools/rng.py)",
            "definition": "out = clamped CG solution x0d of the last step (t = 0); y = K(x_true) + 1 % relative noise, x_true = blobs(seed 601)",
            "report": rep,
        }
        W.json(f"{name}/meta.json", meta)
        report[name] = rep

    x_T = randn(shape, 603)
    for name, eta, seeds in (("dps_paper_small", 0.0, [31, 32]), ("dps_paper_noise_small", 1.0, [41, 42])):
        steps, zeta = 4, 1.0
        z_steps = [noise(seeds, i + 1) for i in range(steps - 1)]
        out, _, x0s = R.dps_paper_sample(small, y, kern9, alpha_bars, x_T, z_steps, steps=steps,
                                         zeta=zeta, eta=eta, return_states=True)
        rep = {"mse_vs_true": R.mse(out, x_true), "psnr_vs_true": R.psnr(out, x_true),
               "saturated_fraction": float((out.abs() >= 1).float().mean())}
        meta = {
            "case": name, "kind": "dps_paper", "weights": "small.safetensors", "config": SMALL_CONFIG,
            "steps": steps, "timesteps": R.timesteps(steps), "zeta": zeta, "eta": eta, "seeds": seeds,
            "operator": motion_op(9, 20), "image_shape": list(shape),
            "inputs": {"x_T": W.npy(name, "x_T.npy", x_T), "y": W.npy(name, "y.npy", y)},
            "outputs": {"out": W.npy(name, "out.npy", out)},
            "noise": "ancestral noise of step i: slice_noise(shape, seeds, i + 1) (tools/rng.py); none when eta = 0",
            "definition": "out = clamp(x) after the last step (t = 0, prior = x0); y = K(x_true) + 1 % relative noise, x_true = blobs(seed 601)",
            "report": rep,
        }
        W.json(f"{name}/meta.json", meta)
        report[name] = rep
    return report


if __name__ == "__main__":
    main()
