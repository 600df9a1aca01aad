"""Convert a DiffusionUNet checkpoint saved by the course library (IPPy) to safetensors.

    python3 tools/convert_ippy.py --in CKPT.pth --out W.safetensors [--num-heads 4]

Accepted inputs (loaded with torch.load(..., weights_only=True) unless --trust-pickle):
  * a plain state_dict (``torch.save(model.state_dict(), path)``);
  * an EMA checkpoint dict holding the state under ``shadow`` (also ``ema``, ``state_dict``,
    ``model``, ``model_state_dict``, ``ema_state_dict``, searched in that order, nested
    wrappers allowed; ``--key`` forces one);
  * keys may carry a leading ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix,
    which is stripped.

The architecture config (in_ch, base_ch, channel_mults, time_dim, attn_levels) is inferred from
the key names and shapes; num_heads cannot be inferred from weights and comes from --num-heads
(default 4, the notebook's). The reference model (tools/reference.py) is built from that config
and every expected key must be present with the expected shape, with no unexpected key.
Upsample convolutions numbered ``upsamples.0 .. upsamples.{L-2}`` (one per upsampling, in order)
are renumbered to the canonical ``upsamples.1 .. upsamples.{L-1}`` (indexed by the up level j
they start). Tensors are written as contiguous float32 with metadata ``num_heads`` and
``config`` (JSON).

Exit status: 0 on success, 2 on bad input (unreadable file, no state dict, missing/unexpected
keys, wrong shapes, inconsistent config).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

WRAPPER_KEYS = ("shadow", "ema", "state_dict", "model", "model_state_dict", "ema_state_dict")
PREFIXES = ("module.", "_orig_mod.")


class ConvertError(Exception):
    pass


def load_checkpoint(path: str, trust_pickle: bool):
    if not os.path.isfile(path):
        raise ConvertError(f"input file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        if not trust_pickle:
            raise ConvertError(
                f"could not load {path} as a tensor-only checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).\n"
                "If the file is a trusted pickle with custom objects, rerun with --trust-pickle.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"could not load {path}: {type(e).__name__}: {e}")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def extract_state_dict(obj, key: Optional[str] = None, trail: str = "") -> Tuple[Dict[str, torch.Tensor], str]:
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            have = sorted(obj.keys()) if isinstance(obj, dict) else type(obj).__name__
            raise ConvertError(f"--key {key!r} not found in the checkpoint (top level has: {have})")
        return extract_state_dict(obj[key], None, f"{trail}[{key!r}]")
    if _is_state_dict(obj):
        return dict(obj), trail or "<top level>"
    if isinstance(obj, dict):
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], (dict, torch.nn.Module)):
                try:
                    return extract_state_dict(obj[k], None, f"{trail}[{k!r}]")
                except ConvertError:
                    continue
        # A dict that mixes tensors with a few non-tensor entries is not accepted silently.
        keys = sorted(str(k) for k in obj.keys())
        shown = ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
        raise ConvertError(
            f"no state dict found{(' under ' + trail) if trail else ''}: expected a dict of tensors or a wrapper "
            f"with one of the keys {list(WRAPPER_KEYS)}; found keys: {shown}")
    raise ConvertError(f"unsupported checkpoint object{(' at ' + trail) if trail else ''}: {type(obj).__name__}")


def strip_prefixes(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for p in PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd


def _indices(sd, prefix: str) -> List[int]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd for m in [pat.match(k)] if m})


def _shape(sd, key) -> Tuple[int, ...]:
    if key not in sd:
        raise ConvertError(f"missing key {key!r} needed to infer the architecture")
    return tuple(sd[key].shape)


def renumber_upsamples(sd: Dict[str, torch.Tensor], n_levels: int) -> Tuple[Dict[str, torch.Tensor], str]:
    idx = _indices(sd, "upsamples")
    canonical = list(range(1, n_levels))
    sequential = list(range(0, n_levels - 1))
    if idx == canonical:
        return sd, "canonical (upsamples.1..L-1)"
    if idx == sequential:
        out = {}
        for k, v in sd.items():
            m = re.match(r"upsamples\.(\d+)\.(.*)$", k)
            out[f"upsamples.{int(m.group(1)) + 1}.{m.group(2)}" if m else k] = v
        return out, "renumbered from upsamples.0..L-2 to upsamples.1..L-1"
    raise ConvertError(
        f"upsample indices {idx} fit neither convention for {n_levels} levels "
        f"(expected {canonical} or {sequential})")


def infer_config(sd: Dict[str, torch.Tensor], num_heads: int) -> dict:
    w = _shape(sd, "init.weight")
    if len(w) != 4 or w[2:] != (3, 3):
        raise ConvertError(f"init.weight has shape {w}, expected (base_ch, in_ch, 3, 3)")
    base_ch, in_ch = w[0], w[1]
    t0 = _shape(sd, "time_mlp.0.weight")
    if len(t0) != 2 or t0[0] != 4 * t0[1]:
        raise ConvertError(f"time_mlp.0.weight has shape {t0}, expected (4*time_dim, time_dim)")
    time_dim = t0[1]
    levels = _indices(sd, "down_blocks")
    if not levels or levels != list(range(len(levels))):
        raise ConvertError(f"down_blocks indices {levels} are not 0..L-1")
    mults, attn = [], []
    for l in levels:
        c = _shape(sd, f"down_blocks.{l}.0.conv1.weight")[0]
        if c % base_ch != 0:
            raise ConvertError(f"level {l} has {c} channels, not a multiple of base_ch {base_ch}")
        mults.append(c // base_ch)
        if any(k.startswith(f"down_blocks.{l}.2.") for k in sd):
            attn.append(l)
    for c in [base_ch * mults[l] for l in attn] + [base_ch * mults[-1]]:
        if c % num_heads != 0:
            raise ConvertError(f"num_heads {num_heads} does not divide the attention width {c}; pass --num-heads")
    return {"in_ch": in_ch, "base_ch": base_ch, "channel_mults": mults, "time_dim": time_dim,
            "attn_levels": attn, "num_heads": num_heads}


def verify(sd: Dict[str, torch.Tensor], config: dict) -> None:
    model = R.build_model(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in expected if k in sd and tuple(sd[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): " + ", ".join(
            f"{k} {tuple(sd[k].shape)} != {expected[k]}" for k in wrong[:10]) + (" ..." if len(wrong) > 10 else ""))
    if problems:
        raise ConvertError("checkpoint does not match the DiffusionUNet inferred as "
                           f"{R.config_json(config)}:\n  " + "\n  ".join(problems))
    for k, v in sd.items():
        if not (v.is_floating_point()):
            raise ConvertError(f"tensor {k} has non-float dtype {v.dtype}")
    # Strict load into the reference model, as a last check.
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)


def convert(inp: str, out: str, num_heads: int = 4, key: Optional[str] = None, trust_pickle: bool = False,
            smoke: bool = False, quiet: bool = False) -> dict:
    obj = load_checkpoint(inp, trust_pickle)
    sd, where = extract_state_dict(obj, key)
    sd = strip_prefixes(sd)
    levels = _indices(sd, "down_blocks")
    sd, up_note = renumber_upsamples(sd, len(levels) if levels else 0)
    config = infer_config(sd, num_heads)
    verify(sd, config)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:
        print(f"warning: non-finite values in {len(bad)} tensor(s): {', '.join(bad[:5])}", file=sys.stderr)
    if smoke:
        model = R.build_model(config)
        model.load_state_dict(tensors, strict=True)
        model.eval()
        div = 2 ** (len(config["channel_mults"]) - 1)
        with torch.no_grad():
            e = model(torch.zeros(1, config["in_ch"], 8 * div, 8 * div), torch.tensor([10]))
        if not torch.isfinite(e).all():
            raise ConvertError("smoke forward produced non-finite values")
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    R.save_weights(out, tensors, config)
    n_params = sum(v.numel() for v in tensors.values())
    if not quiet:
        print(f"read {len(tensors)} tensors from {inp} {where}; upsamples: {up_note}")
        print(f"config: {R.config_json(config)}")
        print(f"wrote {out}: {len(tensors)} tensors, {n_params} parameters (float32)")
    return config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in", dest="inp", required=True, help="checkpoint (.pth/.pt) saved with torch.save")
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--num-heads", type=int, default=4, help="attention heads (not stored in the weights; default 4)")
    ap.add_argument("--key", default=None, help="take the state dict from this top-level key")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="allow full unpickling (only for trusted files with custom objects)")
    ap.add_argument("--smoke", action="store_true", help="also run one small forward pass as a check")
    args = ap.parse_args(argv)
    if args.num_heads <= 0:
        print("error: --num-heads must be positive", file=sys.stderr)
        return 2
    try:
        convert(args.inp, args.out, args.num_heads, args.key, args.trust_pickle, args.smoke)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
