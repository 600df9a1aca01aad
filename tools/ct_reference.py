"""An independent NumPy reference of the CT operator (shared/OPERATORS.md, `ct`), and the golden
cases of tests/ct_golden.rs.

Usage:  python3 tools/ct_reference.py [--out tests/golden/ct]

Written from OPERATORS.md alone, in float64: Joseph's projector as an explicit list of
(ray, pixel, weight) triplets built vectorised per view, the back-projector as the same triplets
transposed, the Ram-Lak filter as a Toeplitz matrix, FBP as their composition times arc / V.
The angles stay float64 (the engine rounds cos/sin to f32), so at θ = 45° + m·90° the two may
take different branches of Joseph's method; there both branches give every pixel the same
weight, 1 − |x_j ± y_i − s·√2|, so the choice cannot show (checked on the 60-view case).

Deterministic: inputs come from a seeded numpy Generator and are saved (float32) next to the
outputs, which are computed from those float32 inputs and stored as float32 .npy, C order,
shape (1, 1, H, W) for images and (1, 1, V, D) for sinograms.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

def default_detectors(h: int, w: int) -> int:
    n = h * h + w * w
    r = math.isqrt(n)
    return r if r * r == n else r + 1


def angles(views: int, arc_degrees: float) -> np.ndarray:
    return np.deg2rad(arc_degrees) * np.arange(views) / views


def joseph_triplets(h: int, w: int, views: int, detectors: int, arc_degrees: float):
    """(ray index k·D + b, pixel index i·W + j, weight) of every nonzero of the projector."""
    s = np.arange(detectors) - (detectors - 1) / 2.0  # bin centres
    rays, pixels, weights = [], [], []
    for k, theta in enumerate(angles(views, arc_degrees)):
        c, sn = math.cos(theta), math.sin(theta)
        if abs(c) >= abs(sn):
            # One sample per row: the ray crosses y = y_i at x = (s − y_i sin)/cos.
            y = (h - 1) / 2.0 - np.arange(h)
            frac_col = (s[None, :] - y[:, None] * sn) / c + (w - 1) / 2.0  # (rows, bins)
            lower = np.floor(frac_col)
            f = frac_col - lower
            ii, bb = np.meshgrid(np.arange(h), np.arange(detectors), indexing="ij")
            for col, wt in ((lower, 1.0 - f), (lower + 1, f)):
                keep = (col >= 0) & (col < w)
                rays.append(k * detectors + bb[keep])
                pixels.append(ii[keep] * w + col[keep].astype(np.int64))
                weights.append(wt[keep] / abs(c))
        else:
            # One sample per column: the ray crosses x = x_j at y = (s − x_j cos)/sin.
            x = np.arange(w) - (w - 1) / 2.0
            frac_row = (h - 1) / 2.0 - (s[None, :] - x[:, None] * c) / sn  # (columns, bins)
            lower = np.floor(frac_row)
            f = frac_row - lower
            jj, bb = np.meshgrid(np.arange(w), np.arange(detectors), indexing="ij")
            for row, wt in ((lower, 1.0 - f), (lower + 1, f)):
                keep = (row >= 0) & (row < h)
                rays.append(k * detectors + bb[keep])
                pixels.append(row[keep].astype(np.int64) * w + jj[keep])
                weights.append(wt[keep] / abs(sn))
    return np.concatenate(rays), np.concatenate(pixels), np.concatenate(weights)


class Ct:
    def __init__(self, h: int, w: int, views: int, detectors: int | None, arc_degrees: float):
        self.h, self.w, self.views, self.arc = h, w, views, arc_degrees
        self.detectors = detectors if detectors is not None else default_detectors(h, w)
        self.rays, self.pixels, self.weights = joseph_triplets(h, w, views, self.detectors, arc_degrees)

    def project(self, img: np.ndarray) -> np.ndarray:
        vals = self.weights * img.astype(np.float64).reshape(-1)[self.pixels]
        out = np.bincount(self.rays, vals, minlength=self.views * self.detectors)
        return out.reshape(self.views, self.detectors)

    def backproject(self, sino: np.ndarray) -> np.ndarray:
        vals = self.weights * sino.astype(np.float64).reshape(-1)[self.rays]
        return np.bincount(self.pixels, vals, minlength=self.h * self.w).reshape(self.h, self.w)

    def ramp(self, sino: np.ndarray) -> np.ndarray:
        n = np.abs(np.arange(self.detectors)[:, None] - np.arange(self.detectors)[None, :])
        taps = np.where(n % 2 == 1, -1.0 / (np.pi * np.maximum(n, 1)) ** 2, 0.0)
        taps[n == 0] = 0.25
        return sino.astype(np.float64) @ taps.T  # out[b] = Σ_b' h[b − b'] s[b']

    def fbp(self, sino: np.ndarray) -> np.ndarray:
        return self.backproject(self.ramp(sino)) * np.deg2rad(self.arc) / self.views


def phantom(h: int, w: int) -> np.ndarray:
    """Ellipses on a background, in [−1, 1]: edges at every orientation."""
    y, x = np.meshgrid((h - 1) / 2.0 - np.arange(h), np.arange(w) - (w - 1) / 2.0, indexing="ij")
    r = min(h, w) / 2.0
    img = -np.ones((h, w))
    for cx, cy, ax, ay, phi, val in [(0, 0, 0.8, 0.65, 0.0, 1.4), (-0.25, 0.1, 0.2, 0.35, 0.5, 0.5),
                                     (0.3, -0.2, 0.25, 0.12, -0.7, -0.6), (0.1, 0.4, 0.08, 0.08, 0.0, 0.4)]:
        u = (x - cx * r) * math.cos(phi) + (y - cy * r) * math.sin(phi)
        v = -(x - cx * r) * math.sin(phi) + (y - cy * r) * math.cos(phi)
        img += val * ((u / (ax * r)) ** 2 + (v / (ay * r)) ** 2 <= 1.0)
    return np.clip(img, -1.0, 1.0)


CASES = [
    # name, H, W, views, detectors (None = default), arc (degrees), image
    ("small_24x20_v7_arc120", 24, 20, 7, None, 120.0, "random"),
    ("short_19x23_v3_d15_arc180", 19, 23, 3, 15, 180.0, "random"),
    ("phantom_64x64_v60_arc180", 64, 64, 60, None, 180.0, "phantom"),
]


def save(path: str, a: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(a, dtype="<f4")[None, None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "ct"))
    args = ap.parse_args()
    rng = np.random.default_rng(20261201)
    for name, h, w, views, det, arc, kind in CASES:
        ct = Ct(h, w, views, det, arc)
        x = rng.uniform(-1, 1, (h, w)) if kind == "random" else phantom(h, w)
        x = x.astype(np.float32)
        y = rng.standard_normal((views, ct.detectors)).astype(np.float32)
        p = ct.project(x)
        outputs = {"project": p, "backproject": ct.backproject(y), "ramp": ct.ramp(y),
                   "fbp": ct.fbp(p.astype(np.float32))}
        # The reference's own adjoint identity, as a check on the triplets.
        xt = rng.standard_normal((h, w))
        gap = abs(np.vdot(ct.project(xt), y) - np.vdot(xt, ct.backproject(y)))
        assert gap <= 1e-12 * abs(np.vdot(ct.project(xt), y)), gap
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        save(os.path.join(d, "x.npy"), x)
        save(os.path.join(d, "y.npy"), y)
        for k, v in outputs.items():
            save(os.path.join(d, f"{k}.npy"), v)
        meta = {"case": name, "height": h, "width": w, "views": views, "detectors": ct.detectors,
                "detectors_given": det is not None, "arc_degrees": arc, "image": kind,
                "inputs": {"x": "x.npy (image)", "y": "y.npy (sinogram)"},
                "outputs": {"project": "project(x)", "backproject": "backproject(y)",
                            "ramp": "ramp(y)", "fbp": "fbp(project.npy)"},
                "numpy": np.__version__}
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        print(f"{name}: D = {ct.detectors}, {len(ct.weights)} projector nonzeros, reference dot gap {gap:.1e}")


if __name__ == "__main__":
    main()
