//! Weight files: safetensors with the notebook library's state-dict names, validated against
//! the parameter table of the config they imply. Also deterministic synthetic weights for
//! benchmarks and golden tests (the same generator lives in tools/reference.py).
//!
//! Here: loading and parsing. Beside it: `names.rs` (file names → engine names), `validate.rs`
//! (the parameter table and weight magnitudes), `write.rs` (safetensors out), `synthetic.rs`.

mod names;
mod synthetic;
#[cfg(test)]
mod tests;
mod validate;
mod write;

pub use synthetic::synthetic;
pub use validate::check_params;
pub use write::{config_metadata, save, serialize};

use super::config::{ParamTable, UNetConfig, MAX_PARAMS};
use crate::bail;
use crate::error::{io_error, Error, Result};
use crate::tensor::Tensor;
use names::engine_names;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use validate::{check_against_table, check_magnitude};

pub type Params = BTreeMap<String, Tensor>;

/// Default head count when neither the file nor the user says otherwise (the notebook's).
pub const DEFAULT_HEADS: usize = 4;

/// The largest magnitude a weight may have. Trained weights are O(1) (the bundled prior's
/// largest is 1.2); far larger finite values make the forward pass overflow f32 (a 3e38 weight
/// gives Inf/NaN noise predictions), so such files are refused at load.
pub const MAX_WEIGHT_MAGNITUDE: f32 = 1e4;

/// Largest weights file read: the parameter cap in float32 plus safetensors' header cap.
const MAX_FILE_BYTES: u64 = 4 * MAX_PARAMS as u64 + 100_000_008;

/// Load, validate and return the config and the parameters of a weights file.
/// `heads_override` (a CLI flag) wins over the file's `num_heads` metadata. Warns on stderr
/// when the config makes the network ignore the timestep (`time_embedding_vanishes`).
pub fn load(path: &Path, heads_override: Option<usize>) -> Result<(UNetConfig, Params)> {
    let len = std::fs::metadata(path)
        .map_err(|e| io_error(path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        bail!(
            "weights '{}' is {len} bytes; at most {MAX_FILE_BYTES} (2^30 float32 parameters and \
             the header) are supported",
            path.display()
        );
    }
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let (cfg, params) = parse(&bytes, heads_override)
        .map_err(|e| e.context(format!("weights '{}'", path.display())))?;
    if cfg.time_embedding_vanishes() {
        eprintln!("{}", vanishing_time_warning(path, &cfg));
    }
    Ok((cfg, params))
}

/// The load-time warning for configs whose output does not depend on the timestep.
fn vanishing_time_warning(path: &Path, cfg: &UNetConfig) -> String {
    let widths: Vec<usize> = (0..cfg.levels()).map(|l| cfg.channels(l)).collect();
    format!(
        "warning: weights '{}': every ResBlock's norm2 has one channel per group (channels \
         {widths:?}, at most 32), so it removes the per-channel time bias exactly and the network \
         ignores the timestep",
        path.display()
    )
}

/// As `load`, from the bytes of a safetensors file. Names, dtypes, shapes and the config they
/// imply are all validated before any tensor data is copied.
pub fn parse(bytes: &[u8], heads_override: Option<usize>) -> Result<(UNetConfig, Params)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::input(format!(
            "not a valid safetensors file ({e}); was it truncated?"
        ))
    })?;
    let metadata = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default();
    let views = st.tensors();
    for (name, view) in &views {
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            bail!(
                "tensor '{name}' is {:?}; every tensor must be float32, float16 or bfloat16 \
                 (convert with tools/convert_ippy.py)",
                view.dtype()
            );
        }
    }
    // File name → engine name, then the shapes under the engine's names.
    let names = engine_names(views.iter().map(|(n, _)| n.as_str()))?;
    let shapes: ParamTable = views
        .iter()
        .map(|(n, v)| (names[n.as_str()].clone(), v.shape().to_vec()))
        .collect();
    let heads = match heads_override {
        Some(h) => h,
        None => heads_from_metadata(&metadata)?,
    };
    let cfg = UNetConfig::infer(&shapes, heads)?;
    check_against_table(&shapes, &cfg.param_table())?;
    let mut params = Params::new();
    for (name, view) in &views {
        let t = Tensor::new(view.shape().to_vec(), widen(view.dtype(), view.data()))?;
        check_magnitude(&t, name)?;
        params.insert(names[name.as_str()].clone(), t);
    }
    Ok((cfg, params))
}

/// Little-endian tensor bytes as f32. F16 and BF16 widen exactly (every half value is an f32),
/// so compact files change the weights only by the rounding done when they were written.
/// `dtype` is one of the three `parse` accepts; safetensors has checked the byte count.
fn widen(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

fn heads_from_metadata(metadata: &HashMap<String, String>) -> Result<usize> {
    match metadata.get("num_heads") {
        None => Ok(DEFAULT_HEADS),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(h) if h > 0 => Ok(h),
            _ => bail!("metadata num_heads = '{s}' is not a positive integer; pass --num-heads"),
        },
    }
}
