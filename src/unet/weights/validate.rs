//! A parameter set against the table its config implies, and weight magnitudes.

use super::{Params, MAX_WEIGHT_MAGNITUDE};
use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::unet::config::{ParamTable, UNetConfig};

/// Finite, and no larger than MAX_WEIGHT_MAGNITUDE.
pub(super) fn check_magnitude(t: &Tensor, name: &str) -> Result<()> {
    t.check_finite(&format!("tensor '{name}'"))?;
    if let Some((i, v)) = t
        .data()
        .iter()
        .enumerate()
        .find(|(_, v)| v.abs() > MAX_WEIGHT_MAGNITUDE)
    {
        bail!(
            "tensor '{name}' holds {v:e} at flat index {i}; weights beyond ±{MAX_WEIGHT_MAGNITUDE:e} \
             would overflow float32 in the forward pass (trained weights are of order 1)"
        );
    }
    Ok(())
}

/// `params` are exactly the tensors `cfg` needs, with their shapes (for parameters that did not
/// come through `parse`, e.g. built in code).
pub fn check_params(cfg: &UNetConfig, params: &Params) -> Result<()> {
    let shapes: ParamTable = params
        .iter()
        .map(|(k, v)| (k.clone(), v.shape().to_vec()))
        .collect();
    check_against_table(&shapes, &cfg.param_table())
}

/// Every expected tensor present with its shape, nothing else.
pub(super) fn check_against_table(found: &ParamTable, expected: &ParamTable) -> Result<()> {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        bail!("missing tensor(s) {}", list(&missing));
    }
    let unexpected: Vec<&String> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !unexpected.is_empty() {
        bail!(
            "unexpected tensor(s) {} for the inferred model",
            list(&unexpected)
        );
    }
    for (name, shape) in expected {
        if &found[name] != shape {
            bail!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                found[name]
            );
        }
    }
    Ok(())
}

fn list(names: &[&String]) -> String {
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("'{n}'")).collect();
    let more = names.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
