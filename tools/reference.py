"""PyTorch reference for diffrecon, written from shared/REFERENCE.md.

This module is the ground truth the Rust engine is checked against. It holds:

* ``DiffusionUNet`` - the noise predictor, whose ``state_dict()`` keys are exactly the
  names the engine reads from a safetensors file;
* the cosine schedule (float32) and the sampling timestep lists;
* the motion-blur and Gaussian kernels, the operator ``K`` and its adjoint ``K^T``;
* ``x0_hat``, the deterministic DDIM step, the DPS gradient and both samplers;
* MSE / PSNR / SSIM as the course notebook computes them;
* ``synthetic_state_dict`` - hash-based deterministic weights that the Rust side regenerates
  bit-exactly (see the spec in the docstring).

Conventions that REFERENCE.md leaves open, and how they are fixed here:

* ``upsamples.{j}`` is indexed by the up level j it starts (j = 0 is the deepest level and has
  no upsample), so a model with L levels has ``upsamples.1 .. upsamples.{L-1}`` and no
  ``upsamples.0``. ``downsamples.{l}`` exists for l = 0 .. L-2. (``tools/convert_ippy.py``
  also accepts checkpoints numbered ``upsamples.0 .. upsamples.{L-2}`` and renumbers them.)
* The same ``attn_levels`` apply to the down path and the up path (``up_blocks.{j}`` has an
  attention block when its level ``l = L-1-j`` is an attention level).
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

T_DEFAULT = 400
COSINE_S = 0.008

NOTEBOOK_CONFIG = {
    "in_ch": 1,
    "base_ch": 64,
    "channel_mults": [1, 2, 4],
    "time_dim": 256,
    "attn_levels": [1, 2],
    "num_heads": 4,
}


# --------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------

def num_groups(channels: int) -> int:
    """Largest divisor of ``channels`` that is <= 32."""
    for g in range(min(32, channels), 0, -1):
        if channels % g == 0:
            return g
    raise ValueError(f"bad channel count {channels}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding, float32: [sin(t*f), cos(t*f)] (+ a zero column if dim is odd).

    Float32 evaluation order: ``freq = exp((-ln(10000) * i) / half)`` with i as float32 and
    ``-ln(10000)`` rounded to float32; ``arg = t_f32 * freq``.
    """
    half = dim // 2
    t = t.to(torch.float32).reshape(-1)
    idx = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * idx / half)
    args = t[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros(emb.shape[0], 1, dtype=emb.dtype, device=emb.device)], dim=1)
    return emb


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, time_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(c_in), c_in, eps=1e-5, affine=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))
        self.norm2 = nn.GroupNorm(num_groups(c_out), c_out, eps=1e-5, affine=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-5, affine=True)
        self.attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C), row-major tokens
        out, _ = self.attn(y, y, y, need_weights=False)
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiffusionUNet(nn.Module):
    def __init__(
        self,
        in_ch: int = 1,
        base_ch: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4),
        time_dim: int = 256,
        attn_levels: Sequence[int] = (1, 2),
        num_heads: int = 4,
    ):
        super().__init__()
        self.in_ch = int(in_ch)
        self.base_ch = int(base_ch)
        self.channel_mults = [int(m) for m in channel_mults]
        self.time_dim = int(time_dim)
        self.attn_levels = sorted(int(a) for a in attn_levels)
        self.num_heads = int(num_heads)
        n_levels = len(self.channel_mults)
        if n_levels < 1:
            raise ValueError("channel_mults must not be empty")
        for a in self.attn_levels:
            if not 0 <= a < n_levels:
                raise ValueError(f"attention level {a} out of range 0..{n_levels - 1}")
        chans = [self.base_ch * m for m in self.channel_mults]
        self.level_channels = chans
        td = self.time_dim

        self.init = nn.Conv2d(self.in_ch, self.base_ch, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(td, 4 * td), nn.SiLU(), nn.Linear(4 * td, td))

        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        c_prev = self.base_ch
        for l, c in enumerate(chans):
            blocks = [ResBlock(c_prev, c, td), ResBlock(c, c, td)]
            if l in self.attn_levels:
                blocks.append(SelfAttention2d(c, self.num_heads))
            self.down_blocks.append(nn.ModuleList(blocks))
            if l < n_levels - 1:
                self.downsamples.append(Downsample(c))
            c_prev = c

        c_mid = chans[-1]
        self.mid_block1 = ResBlock(c_mid, c_mid, td)
        self.mid_attn = SelfAttention2d(c_mid, self.num_heads)
        self.mid_block2 = ResBlock(c_mid, c_mid, td)

        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        c_h = c_mid
        for j in range(n_levels):
            l = n_levels - 1 - j
            c = chans[l]
            # index j of upsamples: Identity (no parameters) for j = 0, so the state-dict keys
            # are upsamples.1 .. upsamples.{L-1}, matching up_blocks.{j}.
            self.upsamples.append(nn.Identity() if j == 0 else Upsample(c_h))
            blocks = [ResBlock(c_h + c, c, td), ResBlock(c, c, td)]
            if l in self.attn_levels:
                blocks.append(SelfAttention2d(c, self.num_heads))
            self.up_blocks.append(nn.ModuleList(blocks))
            c_h = c

        self.out_norm = nn.GroupNorm(num_groups(self.base_ch), self.base_ch, eps=1e-5, affine=True)
        self.out_conv = nn.Conv2d(self.base_ch, self.in_ch, 3, padding=1)

    def config(self) -> dict:
        return {
            "in_ch": self.in_ch,
            "base_ch": self.base_ch,
            "channel_mults": list(self.channel_mults),
            "time_dim": self.time_dim,
            "attn_levels": list(self.attn_levels),
            "num_heads": self.num_heads,
        }

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.tensor(t)
        t = t.reshape(-1)
        if t.numel() == 1 and x.shape[0] > 1:
            t = t.expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.time_dim).to(x.dtype))
        n_levels = len(self.channel_mults)

        h = self.init(x)
        skips: List[torch.Tensor] = []
        for l in range(n_levels):
            blocks = self.down_blocks[l]
            h = blocks[0](h, temb)
            h = blocks[1](h, temb)
            if len(blocks) > 2:
                h = blocks[2](h)
            skips.append(h)
            if l < n_levels - 1:
                h = self.downsamples[l](h)

        h = self.mid_block1(h, temb)
        h = self.mid_attn(h)
        h = self.mid_block2(h, temb)

        for j in range(n_levels):
            l = n_levels - 1 - j
            if j > 0:
                h = self.upsamples[j](h)
            h = torch.cat([h, skips[l]], dim=1)
            blocks = self.up_blocks[j]
            h = blocks[0](h, temb)
            h = blocks[1](h, temb)
            if len(blocks) > 2:
                h = blocks[2](h)

        return self.out_conv(F.silu(self.out_norm(h)))


def build_model(config: dict) -> DiffusionUNet:
    return DiffusionUNet(
        in_ch=config["in_ch"],
        base_ch=config["base_ch"],
        channel_mults=tuple(config["channel_mults"]),
        time_dim=config["time_dim"],
        attn_levels=tuple(config["attn_levels"]),
        num_heads=config.get("num_heads", 4),
    )


def config_json(config: dict) -> str:
    """Canonical JSON string of a config (the safetensors ``config`` metadata value)."""
    return json.dumps(
        {
            "in_ch": int(config["in_ch"]),
            "base_ch": int(config["base_ch"]),
            "channel_mults": [int(m) for m in config["channel_mults"]],
            "time_dim": int(config["time_dim"]),
            "attn_levels": [int(a) for a in config["attn_levels"]],
            "num_heads": int(config["num_heads"]),
        },
        separators=(",", ":"),
    )


def safetensors_metadata(config: dict) -> Dict[str, str]:
    return {"num_heads": str(int(config["num_heads"])), "config": config_json(config)}


def save_weights(
    path: str,
    state_dict: Dict[str, torch.Tensor],
    config: dict,
    extra_metadata: Optional[Dict[str, str]] = None,
    atomic: bool = False,
) -> None:
    """Write a float32 safetensors file with ``safetensors_metadata(config)``.

    Written by hand (the format is an 8-byte little-endian header length, a JSON header, then
    the raw little-endian data) so that the bytes are deterministic: the safetensors library
    emits the metadata map in a random order. Tensors are stored in sorted-name order; the
    header is padded with spaces to a multiple of 8 bytes, as the library does.

    ``extra_metadata`` (str -> str, e.g. ``tools/train_prior.py``'s ``training`` JSON) is added
    to the metadata; its keys must not repeat ``num_heads`` or ``config``. When it is given,
    the whole metadata map is written in sorted-key order (without it, the order is
    ``num_heads``, ``config`` as always). ``atomic=True`` creates the parent directory, writes
    ``path + ".tmp"`` and renames it over ``path``, so readers never see a partial file.
    """
    metadata = safetensors_metadata(config)
    if extra_metadata is not None:
        clash = sorted(set(extra_metadata) & set(metadata))
        if clash:
            raise ValueError(f"extra_metadata must not set {clash}")
        for k, v in extra_metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
        metadata.update(extra_metadata)
        metadata = {k: metadata[k] for k in sorted(metadata)}
    names = sorted(state_dict)
    header: Dict[str, object] = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in names:
        a = np.ascontiguousarray(state_dict[name].detach().cpu().to(torch.float32).numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hdr = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    target = path
    if atomic:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        target = path + ".tmp"
    with open(target, "wb") as f:
        f.write(len(hdr).to_bytes(8, "little"))
        f.write(hdr)
        for b in blobs:
            f.write(b)
    if atomic:
        os.replace(target, path)


def load_weights(path: str) -> Tuple[DiffusionUNet, dict]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    if "num_heads" in meta:
        config["num_heads"] = int(meta["num_heads"])
    model = build_model(config)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, config


def param_count(model: nn.Module) -> Tuple[int, int]:
    sd = model.state_dict()
    return sum(v.numel() for v in sd.values()), len(sd)


# --------------------------------------------------------------------------------------
# Synthetic deterministic weights (bit-exact spec shared with the Rust side)
# --------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & _MASK64
    return h


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def synthetic_tensor(name: str, shape: Sequence[int], seed: int) -> np.ndarray:
    """Deterministic tensor for ``name`` (see ``synthetic_state_dict``). Returns float32."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    s = (int(seed) ^ fnv1a64(name.encode("utf-8"))) & _MASK64
    with np.errstate(over="ignore"):
        j1 = np.arange(1, n + 1, dtype=np.uint64)
        z = _mix64(np.uint64(s) + j1 * np.uint64(GOLDEN))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    v = 2.0 * u - 1.0
    parts = name.split(".")
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        vals = v / math.sqrt(fan_in)
    elif len(parts) >= 2 and "norm" in parts[-2] and parts[-1] == "weight":
        vals = 1.0 + 0.1 * v
    else:
        vals = 0.1 * v
    return vals.astype(np.float32).reshape(shape)


def synthetic_state_dict(config: dict, seed: int) -> Dict[str, torch.Tensor]:
    """Deterministic weights for ``config`` that the Rust side reproduces bit-exactly.

    All integer arithmetic is mod 2^64::

        GOLDEN = 0x9E3779B97F4A7C15
        mix(z): z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                return z ^ (z >> 31)
        fnv1a64(name utf-8): h = 0xcbf29ce484222325; per byte b: h ^= b; h *= 0x100000001b3
        s = seed ^ fnv1a64(name)
        element j (0-based, row-major): z = mix(s + (j+1)*GOLDEN); u = (z >> 40) / 2**24
        v = 2u - 1 (float64); then, rounded to float32:
            rank >= 2:                                    v / sqrt(prod(shape[1:]))
            rank 1, name[-2] contains "norm", name[-1] == "weight":   1 + 0.1 v
            other rank 1:                                 0.1 v
    """
    model = build_model(config)
    out = {}
    for name, p in model.state_dict().items():
        out[name] = torch.from_numpy(synthetic_tensor(name, p.shape, seed))
    return out


# --------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------

def cosine_alpha_bars(T: int = T_DEFAULT, s: float = COSINE_S) -> torch.Tensor:
    """alpha_bars (length T, float32) of the cosine schedule, all in float32.

    Note: ``torch.cumprod`` on CPU accumulates in float64 and rounds each output to float32.
    """
    u = torch.linspace(0, T, T + 1, dtype=torch.float32)
    f = torch.cos(((u / T) + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = torch.clamp(1 - ab[1:] / ab[:-1], 1e-5, 0.999)
    alphas = 1.0 - betas
    return torch.cumprod(alphas, dim=0)


def timesteps(S: int, T: int = T_DEFAULT) -> List[int]:
    return [int(v) for v in torch.linspace(T - 1, 0, S, dtype=torch.long)]


def _gather(vals: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    t = t.reshape(-1).to(device=vals.device, dtype=torch.long)
    return vals.gather(0, t).reshape(t.shape[0], *([1] * (ndim - 1)))


def _as_t(t, batch: int, device=None) -> torch.Tensor:
    if torch.is_tensor(t):
        t = t.reshape(-1).to(torch.long)
    else:
        t = torch.tensor([int(t)], dtype=torch.long) if np.isscalar(t) else torch.tensor(list(t), dtype=torch.long)
    if t.numel() == 1 and batch > 1:
        t = t.expand(batch)
    return t.to(device) if device is not None else t


def x0_hat(x_t: torch.Tensor, eps: torch.Tensor, t, alpha_bars: torch.Tensor) -> torch.Tensor:
    t = _as_t(t, x_t.shape[0], x_t.device)
    s1 = _gather((1 - alpha_bars).sqrt(), t, x_t.ndim)
    s0 = _gather(alpha_bars.sqrt(), t, x_t.ndim)
    return (x_t - s1 * eps) / s0


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, t_next: int, alpha_bars: torch.Tensor) -> torch.Tensor:
    if t_next < 0:
        return x0
    ab = alpha_bars[t_next]
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * eps


# --------------------------------------------------------------------------------------
# Operator
# --------------------------------------------------------------------------------------

def motion_kernel(k: int, angle_deg: float) -> torch.Tensor:
    if k <= 0 or k % 2 == 0:
        raise ValueError(f"motion kernel size must be odd and positive, got {k}")
    K = torch.zeros(k, k, dtype=torch.float32)
    c = k // 2
    ca = math.cos(math.radians(angle_deg))
    sa = math.sin(math.radians(angle_deg))
    for i in range(k):
        x = int(c + (i - c) * ca)
        y = int(c + (i - c) * sa)
        if 0 <= x < k and 0 <= y < k:
            K[y, x] = 1.0
    return K / K.sum()


def gaussian_kernel(k: int, variance: float) -> torch.Tensor:
    """exp(-(i^2+j^2)/(2 variance)) on the centred grid, normalised; computed in float64 and
    rounded to float32 at the end."""
    if k <= 0 or k % 2 == 0:
        raise ValueError(f"gaussian kernel size must be odd and positive, got {k}")
    c = k // 2
    r = np.arange(k, dtype=np.float64) - c
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * variance))
    g = g / g.sum()
    return torch.from_numpy(g.astype(np.float32))


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """K(x): cross-correlation, zero padding, same size (per channel)."""
    c = x.shape[1]
    w = kernel.to(x.dtype)[None, None].expand(c, 1, *kernel.shape).contiguous()
    return F.conv2d(x, w, padding="same", groups=c)


def blur_adjoint(y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """K^T(y): the same with the kernel flipped in both axes."""
    return blur(y, torch.flip(kernel, dims=(0, 1)))


def relative_noise(y: torch.Tensor, noise_level: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """e = n / ||n|| * ||y|| * noise_level (norms over the whole tensor)."""
    n = torch.randn(y.shape, generator=generator, dtype=y.dtype)
    return n / torch.linalg.norm(n.reshape(-1)) * torch.linalg.norm(y.reshape(-1)) * noise_level


# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------

def dps_loss_and_grad(model, x, t, y, kernel, sigma_y, alpha_bars):
    """One DPS gradient evaluation at one timestep t (shared by all batch items).

    L = sum_i mean_pixels_i((K(x0_i) - y_i)^2) / (2 sigma_y^2),  x0 = clamp(x0_hat, -1, 1).
    Returns (grad dL/dx, L, eps, x0 clamped).
    """
    x = x.detach().requires_grad_(True)
    tt = _as_t(t, x.shape[0], x.device)
    eps = model(x, tt)
    x0 = x0_hat(x, eps, tt, alpha_bars).clamp(-1.0, 1.0)
    r = (blur(x0, kernel) - y) ** 2
    loss = r.reshape(r.shape[0], -1).mean(dim=1).sum() / (2 * sigma_y ** 2)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.detach(), loss.detach(), eps.detach(), x0.detach()


def dps_sample(model, y, kernel, alpha_bars, x_T, steps=40, guidance=0.15, sigma_y=0.01, T=T_DEFAULT,
               return_states=False):
    sched = timesteps(steps, T)
    x = x_T.clone()
    states, x0s = [], []
    for i in range(len(sched) - 1):
        t_cur, t_next = sched[i], sched[i + 1]
        grad, _, eps, x0 = dps_loss_and_grad(model, x, t_cur, y, kernel, sigma_y, alpha_bars)
        with torch.no_grad():
            x_next = ddim_step(x0, eps, t_next, alpha_bars)
            x = (x_next - guidance * grad).clamp(-1.0, 1.0)
        states.append(x.clone())
        x0s.append(x0.clone())
    with torch.no_grad():
        t0 = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        eps = model(x, t0)
        out = x0_hat(x, eps, t0, alpha_bars).clamp(-1.0, 1.0)
    if return_states:
        return out, states, x0s
    return out


def diffpir_sample(model, y, kernel, alpha_bars, steps=40, tau=0.6, T=T_DEFAULT, return_states=False):
    sched = timesteps(steps, T)
    x = y.clone()
    states, x0s = [], []
    with torch.no_grad():
        for i in range(len(sched) - 1):
            t_cur, t_next = sched[i], sched[i + 1]
            tt = _as_t(t_cur, x.shape[0], x.device)
            eps = model(x, tt)
            x0 = x0_hat(x, eps, tt, alpha_bars).clamp(-1.0, 1.0)
            xp = ddim_step(x0, eps, t_next, alpha_bars)
            x = (xp - tau * blur_adjoint(blur(xp, kernel) - y, kernel)).clamp(-1.0, 1.0)
            states.append(x.clone())
            x0s.append(x0.clone())
        out = x.clamp(-1.0, 1.0)
    if return_states:
        return out, states, x0s
    return out


# --------------------------------------------------------------------------------------
# Published samplers (DiffPIR, Zhu et al. 2023; DPS, Chung et al. 2023)
#
# Written from the engine's math (src/samplers/{diffpir_pnp,dps_paper,cg}.rs), in float32
# with per-slice scalars computed in float64 and rounded to float32 where the engine does.
# The noise is passed in explicitly (tools/rng.py reproduces the engine's), so these functions
# are exact and device-agnostic.
# --------------------------------------------------------------------------------------

def spaced_timesteps(t_start: int, steps: int, skip: str = "uniform") -> List[int]:
    """``steps`` strictly decreasing timesteps from t_start to 0: round(frac * t_start) with
    frac = u (uniform) or u^2 (quad), u = (steps-1-i)/(steps-1); repeats pushed apart from the
    end (t = 0 stays)."""
    if steps < 2 or steps > t_start + 1:
        raise ValueError(f"steps must be between 2 and t_start + 1 = {t_start + 1}, got {steps}")
    last = float(steps - 1)
    ts = []
    for i in range(steps):
        u = (last - i) / last
        frac = {"uniform": u, "quad": u * u}[skip]
        # Rust's f64::round rounds half away from zero (Python's round is half to even);
        # v >= 0 here and v - floor(v) is exact.
        v = frac * t_start
        ts.append(int(math.floor(v)) + (1 if v - math.floor(v) >= 0.5 else 0))
    for i in range(steps - 2, -1, -1):
        ts[i] = max(ts[i], ts[i + 1] + 1)
    return ts


def _f32(v) -> torch.Tensor:
    """A float32 scalar tensor (float64 values are rounded once, as Rust's ``as f32``)."""
    return torch.tensor(float(v), dtype=torch.float32)


def _per_item(vals: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-slice float32 coefficients, shaped (N, 1, 1, 1), on the device of `like`."""
    t = torch.tensor([float(v) for v in vals], dtype=torch.float32, device=like.device)
    return t.reshape(-1, 1, 1, 1)


def _sum_sq(x: torch.Tensor) -> List[float]:
    """Sum of squares per slice, accumulated in float64."""
    return (x.double() ** 2).reshape(x.shape[0], -1).sum(dim=1).tolist()


def _dot(a: torch.Tensor, b: torch.Tensor) -> List[float]:
    return (a.double() * b.double()).reshape(a.shape[0], -1).sum(dim=1).tolist()


def _coeffs(alpha_bars: torch.Tensor, t: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(ab_t), sqrt(1 - ab_t)) in float32."""
    ab = alpha_bars[t]
    return torch.sqrt(ab), torch.sqrt(1 - ab)


def cg_prox_solve(y, kernel, x0, mu, max_iters=20, tol=1e-4):
    """Per slice i: conjugate gradients on (K^T K + mu_i I) x = K^T y + mu_i x0 from x = x0.

    Each slice keeps its own step, beta and convergence (||r||^2 <= tol^2 ||b||^2); a converged
    slice (or one with curvature <= 0) is frozen. Returns (x, iterations per slice, final
    relative residual per slice, margin): margin = min over every convergence test of
    |rel_residual / tol - 1|, how close the stopping decisions came to flipping (a golden case
    wants it well above float32 noise).
    """
    n = x0.shape[0]
    mu_t = _per_item(mu, x0)

    def normal_op(v):
        return blur_adjoint(blur(v, kernel), kernel) + v * mu_t

    b = blur_adjoint(y, kernel) + x0 * mu_t
    bb = _sum_sq(b)
    x = x0.clone()
    r = b - normal_op(x)
    rr = _sum_sq(r)
    d = r.clone()
    done = [rr[i] <= tol * tol * bb[i] for i in range(n)]
    iters = [0] * n

    def margin_of(i):
        rel_i = math.sqrt(rr[i] / bb[i]) if bb[i] > 0 else math.sqrt(rr[i])
        return abs(rel_i / tol - 1.0)

    margin = min(margin_of(i) for i in range(n))
    for _ in range(max_iters):
        if all(done):
            break
        a_d = normal_op(d)
        curv = _dot(d, a_d)
        alpha = [0.0 if done[i] or curv[i] <= 0.0 else rr[i] / curv[i] for i in range(n)]
        alpha_t = _per_item(alpha, x0)
        x = x + d * alpha_t
        r = r + a_d * (-alpha_t)
        rr_new = _sum_sq(r)
        beta = [0.0 if done[i] or rr[i] == 0.0 else rr_new[i] / rr[i] for i in range(n)]
        d = r + d * _per_item(beta, x0)
        for i in range(n):
            if not done[i]:
                iters[i] += 1
                rr[i] = rr_new[i]
                done[i] = rr[i] <= tol * tol * bb[i] or curv[i] <= 0.0
                margin = min(margin, margin_of(i))
    rel = [math.sqrt(rr[i] / bb[i]) if bb[i] > 0 else math.sqrt(rr[i]) for i in range(n)]
    return x, iters, rel, margin


def diffpir_pnp_sample(model, y, kernel, alpha_bars, z_start, z_steps, steps=40, lam=7.0, zeta=0.3,
                       noise_level=0.01, t_start=T_DEFAULT - 1, skip="uniform", cg_iters=20,
                       cg_tol=1e-4, return_states=False):
    """Published DiffPIR (no FFT: CG for the data subproblem).

    x = sqrt(ab)*y + sqrt(1-ab)*z_start at t_start; per step t: eps = model(x, t),
    x0 = clamp(x0_hat), mu_i = lam * sigma_n_i^2 / sigma_bar_t^2 with
    sigma_n_i^2 = noise_level^2 ||y_i||^2 / n and sigma_bar_t^2 = (1-ab)/ab (float64, rounded to
    float32), x0d = clamp(prox(x0, mu)); then, if there is a next timestep,
    eps_hat = (x - sqrt(ab) x0d)/sqrt(1-ab) and
    x = sqrt(ab') x0d + sqrt(1-ab') (sqrt(1-zeta) eps_hat + sqrt(zeta) z_steps[i]).
    Returns x0d of the last step (t = 0). ``z_steps[i]`` is the noise of step i (length
    steps - 1; unused entries may be None when zeta = 0).
    """
    sched = spaced_timesteps(t_start, steps, skip)
    n = y.shape[0]
    pixels = y[0].numel()
    sigma_n2 = [noise_level ** 2 * yy / pixels for yy in _sum_sq(y)]
    sab0, s1m0 = _coeffs(alpha_bars, sched[0])
    states, x0s, cg_log = [], [], []
    with torch.no_grad():
        x = y * sab0 + z_start * s1m0
        for i, t in enumerate(sched):
            tt = _as_t(t, n, x.device)
            eps = model(x, tt)
            sab, s1m = _coeffs(alpha_bars, t)
            x0 = ((x - s1m * eps) / sab).clamp(-1.0, 1.0)
            ab = float(alpha_bars[t])
            sigma_bar2 = (1.0 - ab) / ab
            mu = [float(np.float32(lam * s2 / sigma_bar2)) for s2 in sigma_n2]
            x0d, iters, rel, margin = cg_prox_solve(y, kernel, x0, mu, cg_iters, cg_tol)
            x0d = x0d.clamp(-1.0, 1.0)
            cg_log.append({"t": t, "mu": mu, "iters": iters, "rel_residual": rel, "tol_margin": margin})
            x0s.append(x0d.clone())
            if i + 1 < len(sched):
                eps_hat = x * (1.0 / s1m) + x0d * (-sab / s1m)
                mixed = eps_hat * _f32(math.sqrt(1.0 - zeta))
                if zeta != 0.0:
                    mixed = mixed + z_steps[i] * _f32(math.sqrt(zeta))
                sab_n, s1m_n = _coeffs(alpha_bars, sched[i + 1])
                x = x0d * sab_n + mixed * s1m_n
            else:
                x = x0d
            states.append(x.clone())
    if return_states:
        return x, states, x0s, cg_log
    return x


def dps_paper_step_size_and_grad(model, x, t, y, kernel, alpha_bars):
    """grad of sum_i 1/2 ||K x0_i - y_i||^2 w.r.t. x (autograd through the clamp and the UNet),
    x0 = clamp(x0_hat(x, eps(x,t), t)), and the residual norms ||K x0_i - y_i|| (float64)."""
    x = x.detach().requires_grad_(True)
    tt = _as_t(t, x.shape[0], x.device)
    eps = model(x, tt)
    sab, s1m = _coeffs(alpha_bars, t)
    x0 = ((x - s1m * eps) / sab).clamp(-1.0, 1.0)
    res = blur(x0, kernel) - y
    loss = 0.5 * (res ** 2).sum()
    (grad,) = torch.autograd.grad(loss, x)
    norms = [math.sqrt(v) for v in _sum_sq(res.detach())]
    return grad.detach(), norms, x0.detach()


def dps_paper_ancestral(x, x0, t, t_next, eta, z, alpha_bars):
    """x' = sqrt(ab')*x0 + sqrt(1 - ab' - sigma^2)*eps + sigma*z with
    eps = (x - sqrt(ab) x0)/sqrt(1-ab), sigma = eta sqrt((1-ab')/(1-ab)) sqrt(1 - ab/ab')
    (coefficients in float64, rounded to float32)."""
    ab, ab_n = float(alpha_bars[t]), float(alpha_bars[t_next])
    sab, s1m = _coeffs(alpha_bars, t)
    eps = x * (1.0 / s1m) + x0 * (-sab / s1m)
    sigma = eta * math.sqrt((1.0 - ab_n) / (1.0 - ab)) * math.sqrt(max(1.0 - ab / ab_n, 0.0))
    eps_coef = math.sqrt(max(1.0 - ab_n - sigma * sigma, 0.0))
    mean = x0 * _f32(math.sqrt(ab_n)) + eps * _f32(eps_coef)
    if sigma == 0.0:
        return mean
    return mean + z * _f32(sigma)


def dps_paper_sample(model, y, kernel, alpha_bars, x_T, z_steps, steps=40, zeta=1.0, eta=1.0, T=T_DEFAULT,
                     return_states=False):
    """Published DPS over the notebook timesteps. Per step t (all of them, t = 0 included):
    g, norms = grad of 1/2||K x0 - y||^2 per slice; prior = ancestral step to t_next (x0 at the
    last step); x = prior - (zeta/||K x0_i - y_i||) g_i. Final clamp to [-1, 1].
    ``z_steps[i]`` is the ancestral noise of step i (length steps - 1; may be None when eta = 0).
    """
    sched = timesteps(steps, T)
    x = x_T.clone()
    states, x0s = [], []
    for i, t in enumerate(sched):
        grad, norms, x0 = dps_paper_step_size_and_grad(model, x, t, y, kernel, alpha_bars)
        step = _per_item([-zeta / nv if nv > 0.0 else 0.0 for nv in norms], x)
        with torch.no_grad():
            if i + 1 < len(sched):
                prior = dps_paper_ancestral(x, x0, t, sched[i + 1], eta,
                                            None if z_steps is None else z_steps[i], alpha_bars)
            else:
                prior = x0
            x = prior + grad * step
        states.append(x.clone())
        x0s.append(x0.clone())
    out = x.clamp(-1.0, 1.0)
    if return_states:
        return out, states, x0s
    return out


# --------------------------------------------------------------------------------------
# Metrics (notebook style, float32 torch, on images mapped to [0, 1])
# --------------------------------------------------------------------------------------

def to01(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp((x + 1) / 2, 0, 1)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.mean((to01(x.detach()) - to01(y.detach())) ** 2).item()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    m = mse(x, y)
    return float("inf") if m == 0 else -10 * math.log10(m)


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
         c1: float = 0.01 ** 2, c2: float = 0.03 ** 2) -> float:
    a = to01(x.detach())
    b = to01(y.detach())
    ch = a.shape[1]
    coords = torch.arange(window_size, dtype=a.dtype) - window_size // 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    win = torch.outer(g, g).expand(ch, 1, window_size, window_size).contiguous()
    pad = window_size // 2

    def filt(z):
        return F.conv2d(z, win, padding=pad, groups=ch)

    mu_a, mu_b = filt(a), filt(b)
    mu_a2, mu_b2, mu_ab = mu_a ** 2, mu_b ** 2, mu_a * mu_b
    var_a = filt(a * a) - mu_a2
    var_b = filt(b * b) - mu_b2
    cov = filt(a * b) - mu_ab
    smap = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_a2 + mu_b2 + c1) * (var_a + var_b + c2))
    return smap.mean().item()


if __name__ == "__main__":
    m = build_model(NOTEBOOK_CONFIG)
    n, k = param_count(m)
    print(f"notebook config: {n} parameters, {k} tensors")
    assert (n, k) == (12_356_161, 198), (n, k)
