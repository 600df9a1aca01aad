//! Parameter bounds shared by every floor (samplers, baselines, operators, front ends): one
//! place for what a flag may be, so that no parameter's effect overflows f32.

use crate::bail;
use crate::error::Result;

// Bounds on what the samplers scale by, so that no parameter's effect overflows f32 (max
// ≈ 3.4e38): with the inputs' values and ‖A‖ at most MAX_INPUT (checked at the CLI), a
// residual is at most ~1e12, and a step of scale at most MAX_SCALE times that stays below ~1e30.
// Inside these bounds a run that still goes non-finite is caught by the output check.

/// The largest step-size-like parameter (--guidance, --zeta of dps-paper, --lambda) and the
/// largest value or operator norm of an input.
pub const MAX_SCALE: f64 = 1e6;
/// The largest magnitude of an input's values and of ‖A‖ (model space is [−1, 1]).
pub const MAX_INPUT: f64 = 1e6;
/// The smallest --sigma-y: DPS scales its gradient by 1/σ_y², at most 1e12.
pub const MIN_SIGMA_Y: f64 = 1e-6;
/// The largest relative noise level (--noise-level), as `simulate` allows.
pub const MAX_NOISE_LEVEL: f64 = 1e3;
/// The largest --tau: the gradient step is τ/‖A‖² (above 2 it already diverges).
pub const MAX_TAU: f64 = 1e3;

/// A non-negative finite parameter of at most MAX_SCALE, or a message naming the flag.
pub fn check_param(name: &str, v: f64, strictly_positive: bool) -> Result<()> {
    let low = if strictly_positive {
        f64::MIN_POSITIVE
    } else {
        0.0
    };
    check_range(name, v, low, MAX_SCALE)
}

/// A finite parameter in [low, high], or a message naming the flag and the range.
pub fn check_range(name: &str, v: f64, low: f64, high: f64) -> Result<()> {
    if !(v.is_finite() && v >= low && v <= high) {
        let need = if low == f64::MIN_POSITIVE {
            format!("a positive number of at most {high:e}")
        } else if low == 0.0 {
            format!("a non-negative number of at most {high:e}")
        } else {
            format!("a number in [{low:e}, {high:e}]")
        };
        let got = if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
            format!("{v:e}")
        } else {
            format!("{v}")
        };
        bail!("{name} must be {need}, got {got}");
    }
    Ok(())
}
