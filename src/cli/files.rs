//! Reading the commands' input images and writing their outputs.
//!
//! Inputs are finite and at most `MAX_INPUT` in magnitude (model space is [−1, 1]; the bound
//! keeps every product the samplers form inside f32). Outputs are checked finite before
//! anything is written: a command never writes NaN or Inf and exits 0.
//!
//! A write that fails names the file and the system's reason. A full disk or a failing device is
//! exit 1 (not the caller's input; crate::error::io_error); a path that cannot be written
//! (missing directory, no permission) is exit 2.

use crate::error::{Error, Result};
use crate::io;
use crate::operators::Operator;
use crate::samplers::MAX_INPUT;
use crate::tensor::Tensor;
use std::path::Path;

/// Read an image stack as (N,1,H,W), rejecting NaN/Inf and values beyond ±MAX_INPUT.
pub(super) fn read_stack(path: &Path, what: &str) -> Result<Tensor> {
    let t = io::read_image(path)?
        .into_image_batch(what)
        .map_err(|e| e.context(path.display()))?;
    check_input(&t, what).map_err(|e| e.context(path.display()))?;
    Ok(t)
}

/// Finite, and no value beyond ±MAX_INPUT.
pub(super) fn check_input(t: &Tensor, what: &str) -> Result<()> {
    t.check_finite(what)?;
    if let Some(i) = t.data().iter().position(|v| (v.abs() as f64) > MAX_INPUT) {
        return Err(Error::input(format!(
            "{what} holds {:e} at flat index {i}; values must lie within ±{MAX_INPUT:e} (model space is [-1, 1]): rescale the input",
            t.data()[i]
        )));
    }
    Ok(())
}

/// An operator whose norm (bound) is at most MAX_INPUT: a user kernel of huge values would
/// overflow f32 in A x and Aᵀ A x. Only a blur kernel can exceed it: CT's norm is bounded by
/// its geometry's caps (below √(views · diagonal) < 5000), inpainting's and block averaging's
/// by 1 (and CT's power iteration is too costly to run for a check).
pub(super) fn check_operator(op: &Operator) -> Result<()> {
    let Operator::Blur(kernel) = op else {
        return Ok(());
    };
    let norm = kernel.norm_bound();
    if !(norm.is_finite() && norm <= MAX_INPUT) {
        return Err(Error::input(format!(
            "the blur kernel's norm bound Σ|k| = {norm:e} exceeds {MAX_INPUT:e}: normalise the kernel (--kernel-file)"
        )));
    }
    Ok(())
}

/// Fails unless every value of `t` is finite. `cause` names what the caller controls that can
/// push the result past f32's range (exit 2); None means nothing the caller gave can (exit 1).
pub(super) fn check_output(t: &Tensor, what: &str, cause: Option<&str>) -> Result<()> {
    let Some(i) = t.data().iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let per = t.len() / t.shape().first().copied().unwrap_or(1).max(1);
    let at = format!(
        "{what} is not finite ({} in slice {} at index {})",
        t.data()[i],
        i / per.max(1),
        i % per.max(1)
    );
    Err(match cause {
        Some(c) => Error::input(format!(
            "{at}; the likely cause: {c}, beyond what float32 can hold; nothing was written"
        )),
        None => Error::internal(format!("{at}; nothing was written")),
    })
}

/// Write `t` (format from the extension), printing each file written. The callers check the
/// output with `check_output` first; this check is the last line (exit 1).
pub(super) fn write(path: &Path, t: &Tensor) -> Result<()> {
    check_output(t, &format!("the output for {}", path.display()), None)?;
    for p in io::write_image(path, t)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Map [0, max] to model space [−1, 1] for display; also returns max (NaN if any value is).
pub(super) fn scaled_to_max(t: &Tensor) -> Result<(Tensor, f32)> {
    let max = t.data().iter().fold(0.0f32, |a, &b| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.max(b)
        }
    });
    let data = t
        .data()
        .iter()
        .map(|v| if max > 0.0 { 2.0 * v / max - 1.0 } else { -1.0 })
        .collect();
    Ok((Tensor::new(t.shape().to_vec(), data)?, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32]) -> Tensor {
        Tensor::new(vec![2, 1, 1, values.len() / 2], values.to_vec()).unwrap()
    }

    #[test]
    fn outputs_must_be_finite_and_the_cause_sets_the_exit_code() {
        assert!(check_output(&t(&[0.0, 1.0, -1.0, 2.0]), "x", None).is_ok());
        let bad = t(&[0.0, 1.0, f32::NAN, 2.0]);
        let e = check_output(&bad, "the reconstruction", Some("--tau 1")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "the reconstruction is not finite (NaN in slice 1 at index 0); the likely cause: --tau 1, beyond what float32 can hold; nothing was written"
        );
        let e = check_output(&t(&[f32::INFINITY, 0.0]), "phantoms", None).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn inputs_beyond_the_bound_are_refused() {
        assert!(check_input(&t(&[1e6, -1e6]), "y").is_ok());
        let e = check_input(&t(&[0.0, -2e6]), "y").unwrap_err();
        assert!(e.to_string().contains("within ±1e6"), "{e}");
        assert!(check_input(&t(&[0.0, f32::NAN]), "y").is_err());
    }
}
