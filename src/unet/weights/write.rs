//! Parameters written as safetensors, with the metadata the engine reads back.

use super::Params;
use crate::error::{io_error, Error, Result};
use crate::unet::config::UNetConfig;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// Write parameters as safetensors with string metadata.
pub fn save(path: &Path, params: &Params, metadata: HashMap<String, String>) -> Result<()> {
    let out = serialize(params, metadata)?;
    std::fs::write(path, out).map_err(|e| io_error(path, e))
}

/// The safetensors bytes `save` writes.
pub fn serialize(params: &Params, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape().to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| {
            let v = safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map_err(|e| Error::internal(e.to_string()))?;
            Ok((k.clone(), v))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, &Some(metadata)).map_err(|e| Error::internal(e.to_string()))
}

/// Metadata the engine writes: the head count and the whole config as JSON.
pub fn config_metadata(cfg: &UNetConfig) -> HashMap<String, String> {
    let json = serde_json::json!({
        "in_ch": cfg.in_ch, "base_ch": cfg.base_ch, "channel_mults": cfg.channel_mults,
        "time_dim": cfg.time_dim, "attn_levels": cfg.attn_levels, "num_heads": cfg.num_heads,
    });
    HashMap::from([
        ("num_heads".to_string(), cfg.num_heads.to_string()),
        ("config".to_string(), json.to_string()),
    ])
}
