"""Exact Python port of the engine's random numbers (``src/rng.rs``).

The published samplers (``diffpir_pnp``, ``dps_paper``) draw their noise with
``rng::slice_noise(shape, seeds, stream)``; this module reproduces those values bit for bit so
that the PyTorch reference can be fed the same noise:

* ``Rng(seed)``: xoshiro256++ whose four state words are splitmix64 outputs
  (``state += GOLDEN_GAMMA; mix64(state)``, four times);
* ``uniform()``: ``(next_u64() >> 11) * 2**-53``;
* ``normal()``: Box-Muller in float64, both values used: ``u1 = 1 - uniform()``,
  ``u2 = uniform()``, ``r = sqrt(-2 ln u1)``, returns ``r cos(2 pi u2)`` and keeps
  ``r sin(2 pi u2)`` for the next call;
* ``normal_vec(n)``: n normals rounded to float32;
* ``slice_noise(shape, seeds, stream)``: slice i is ``Rng(mix64(seeds[i] ^ mix64(stream + 0x5EED)))
  .normal_vec(prod(shape[1:]))``.

All integer arithmetic is mod 2^64. ``math.log/sin/cos`` call the same C library functions as
Rust's ``f64::ln/sin/cos`` on Linux, so the float64 values agree exactly (checked by
``tests/golden.rs`` against ``tests/golden/rng/slice_noise.json``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """splitmix64's output finaliser."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK64


class Rng:
    def __init__(self, seed: int):
        state = int(seed) & MASK64
        s = []
        for _ in range(4):
            state = (state + GOLDEN_GAMMA) & MASK64
            s.append(mix64(state))
        self.s = s
        self.spare_normal = None

    def next_u64(self) -> int:
        s = self.s
        result = (_rotl((s[0] + s[3]) & MASK64, 23) + s[0]) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self) -> float:
        return float(self.next_u64() >> 11) * (1.0 / float(1 << 53))

    def normal(self) -> float:
        if self.spare_normal is not None:
            z = self.spare_normal
            self.spare_normal = None
            return z
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        r = math.sqrt(-2.0 * math.log(u1))
        a = 2.0 * math.pi * u2
        self.spare_normal = r * math.sin(a)
        return r * math.cos(a)

    def normal_vec(self, n: int) -> np.ndarray:
        return np.array([self.normal() for _ in range(n)], dtype=np.float64).astype(np.float32)


def slice_noise(shape: Sequence[int], seeds: Sequence[int], stream: int) -> np.ndarray:
    """``rng::slice_noise``: float32 array of ``shape``, one stream per slice (``len(seeds)``
    must equal ``shape[0]``)."""
    shape = tuple(int(s) for s in shape)
    if len(seeds) != shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {shape[0]} slices")
    per = int(np.prod(shape[1:]))
    key = mix64((int(stream) + 0x5EED) & MASK64)
    data = [Rng(mix64((int(s) & MASK64) ^ key)).normal_vec(per) for s in seeds]
    return np.concatenate(data).reshape(shape)
