//! The arithmetic of the GEMMs (every convolution, forward and backward, and every product of
//! the attention): exact f32, or operands rounded to TF32 or BF16 for the GPU's tensor cores,
//! always accumulated in f32. Everything else (norms, softmax, the time MLP, samplers) is f32.
//!
//! The CUDA backend's `_tf32` / `_bf16` kernels round each operand as they stage it
//! (kernels/tensor_core.cuh); the CPU backend emulates the same rounding before its f32 GEMM,
//! so a fast-path run can be reproduced, and its effect measured, without a GPU. One GEMM on
//! the same inputs then differs only by summation order (and the tensor cores' own f32
//! accumulation); through a network the differences flip later roundings and grow to the size of
//! the rounding itself, so whole runs agree statistically, not to f32 parity.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Precision {
    /// f32 operands and FMA accumulation: the exact path the parity bounds hold for.
    #[default]
    F32,
    /// Operands rounded to TF32 (10 mantissa bits, round to nearest, ties away from zero).
    Tf32,
    /// Operands rounded to BF16 (7 mantissa bits, round to nearest even).
    Bf16,
}

impl Precision {
    /// The operand `v` as the tensor cores see it (unchanged for f32, Inf and NaN).
    pub fn round(self, v: f32) -> f32 {
        if !v.is_finite() {
            return v;
        }
        let bits = v.to_bits();
        match self {
            Precision::F32 => v,
            // cvt.rna.tf32.f32: add half a TF32 ulp to the magnitude, drop the 13 low bits.
            Precision::Tf32 => f32::from_bits((bits + 0x1000) & !0x1fff),
            // __float2bfloat16_rn: round to nearest even on the 16 low bits.
            Precision::Bf16 => {
                let lsb = (bits >> 16) & 1;
                f32::from_bits(bits.wrapping_add(0x7fff + lsb) & 0xffff_0000)
            }
        }
    }
}

/// Attention scores per image (heads·t²) past which the CUDA backend runs the forward attention
/// core as its fused kernel (the GEMM path's score buffer would pass 256 MB), which computes in
/// f32 at any precision; the CPU's emulation follows that rule. The VJP rounds at any size.
pub const FUSED_ATTENTION_SCORES: usize = 1 << 26;

impl Precision {
    /// The precision of the forward attention core (scores and context products) for one image
    /// of `t` tokens in `heads` heads: this one, or f32 where the GPU takes its fused kernel.
    pub fn attention_core(self, heads: usize, t: usize) -> Precision {
        match heads.saturating_mul(t).saturating_mul(t) > FUSED_ATTENTION_SCORES {
            true => Precision::F32,
            false => self,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Precision::*;

    #[test]
    fn tf32_rounds_to_nearest_with_ties_away_from_zero() {
        let ulp = 2f32.powi(-10); // TF32's spacing in [1, 2)
        assert_eq!(Tf32.round(1.0 + ulp * 0.49), 1.0);
        assert_eq!(Tf32.round(1.0 + ulp * 0.51), 1.0 + ulp);
        assert_eq!(
            Tf32.round(1.0 + ulp * 0.5),
            1.0 + ulp,
            "a tie goes away from zero"
        );
        assert_eq!(Tf32.round(-(1.0 + ulp * 0.5)), -(1.0 + ulp));
        assert_eq!(Tf32.round(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let ulp = 2f32.powi(-7);
        assert_eq!(
            Bf16.round(1.0 + ulp * 0.5),
            1.0,
            "a tie goes to the even neighbour"
        );
        assert_eq!(Bf16.round(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp);
        assert_eq!(Bf16.round(1.0 + ulp * 0.51), 1.0 + ulp);
        assert_eq!(Bf16.round(-3.0 - ulp * 0.51 * 2.0), -3.0 - 2.0 * ulp);
        assert_eq!(Bf16.round(std::f32::consts::PI), 3.140625);
    }

    #[test]
    fn the_attention_core_is_f32_past_the_fused_threshold() {
        assert_eq!(Bf16.attention_core(4, 1024), Bf16);
        assert_eq!(Bf16.attention_core(4, 4097), F32);
        assert_eq!(Tf32.attention_core(1, 8193), F32);
        assert_eq!(F32.attention_core(4, 1024), F32);
    }

    #[test]
    fn special_values_and_f32_pass_through() {
        for p in [F32, Tf32, Bf16] {
            assert!(p.round(f32::NAN).is_nan());
            assert_eq!(p.round(f32::INFINITY), f32::INFINITY);
            assert_eq!(p.round(0.0), 0.0);
            assert_eq!(p.round(-0.0).to_bits(), (-0.0f32).to_bits());
        }
        assert_eq!(F32.round(0.1), 0.1);
        // Every rounded value keeps only the operand type's bits.
        let x = 0.123_456_79f32;
        assert_eq!(Tf32.round(x).to_bits() & 0x1fff, 0);
        assert_eq!(Bf16.round(x).to_bits() & 0xffff, 0);
    }
}
