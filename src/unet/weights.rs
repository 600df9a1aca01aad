//! Weight files: safetensors with the notebook library's state-dict names, validated against
//! the parameter table of the config they imply. Also deterministic synthetic weights for
//! benchmarks and golden tests (the same generator lives in tools/reference.py).

use super::config::{ParamTable, UNetConfig};
use crate::bail;
use crate::error::{io_error, Error, Result};
use crate::rng::{mix64, GOLDEN_GAMMA};
use crate::tensor::Tensor;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub type Params = BTreeMap<String, Tensor>;

/// Default head count when neither the file nor the user says otherwise (the notebook's).
pub const DEFAULT_HEADS: usize = 4;

/// Load, validate and return the config and the parameters of a weights file.
/// `heads_override` (a CLI flag) wins over the file's `num_heads` metadata.
pub fn load(path: &Path, heads_override: Option<usize>) -> Result<(UNetConfig, Params)> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse(&bytes, heads_override).map_err(|e| e.context(format!("weights '{}'", path.display())))
}

/// As `load`, from the bytes of a safetensors file.
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
    let mut params = Params::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!("tensor '{name}' is {:?}; every tensor must be float32 (convert with tools/convert_ippy.py)", view.dtype());
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let t = Tensor::new(view.shape().to_vec(), data)?;
        t.check_finite(&format!("tensor '{name}'"))?;
        params.insert(name, t);
    }
    normalise_upsample_names(&mut params);
    let heads = match heads_override {
        Some(h) => h,
        None => heads_from_metadata(&metadata)?,
    };
    let shapes: ParamTable = params
        .iter()
        .map(|(k, v)| (k.clone(), v.shape().to_vec()))
        .collect();
    let cfg = UNetConfig::infer(&shapes, heads)?;
    check_against_table(&shapes, &cfg.param_table())?;
    Ok((cfg, params))
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

/// Accept files whose `upsamples` list is numbered contiguously from 0 (a plain ModuleList)
/// as well as by up level (1..L-1), the numbering the engine uses.
fn normalise_upsample_names(params: &mut Params) {
    if !params.contains_key("upsamples.0.conv.weight") {
        return;
    }
    let mut renamed: Vec<(usize, String, String)> = params
        .keys()
        .filter_map(|k| {
            let (idx, tail) = k.strip_prefix("upsamples.")?.split_once('.')?;
            let i: usize = idx.parse().ok()?;
            Some((i, k.clone(), format!("upsamples.{}.{tail}", i + 1)))
        })
        .collect();
    renamed.sort_by_key(|r| std::cmp::Reverse(r.0)); // highest first, so no rename overwrites a source
    for (_, old, new) in renamed {
        let t = params.remove(&old).expect("key listed above");
        params.insert(new, t);
    }
}

/// Every expected tensor present with its shape, nothing else.
fn check_against_table(found: &ParamTable, expected: &ParamTable) -> Result<()> {
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

/// Write parameters as safetensors with string metadata.
pub fn save(path: &Path, params: &Params, metadata: HashMap<String, String>) -> Result<()> {
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
    let out = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(path, out).map_err(|e| io_error(path, e))
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

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic weights of a plausible scale (see tools/reference.py for the same rule):
/// matrices and kernels uniform in ±1/sqrt(fan_in), GroupNorm gains 1 ± 0.1, biases ± 0.1.
pub fn synthetic(cfg: &UNetConfig, seed: u64) -> Params {
    cfg.param_table()
        .into_iter()
        .map(|(name, shape)| {
            let s = seed ^ fnv1a64(&name);
            let n: usize = shape.iter().product();
            let is_gain = shape.len() == 1 && {
                let parts: Vec<&str> = name.split('.').collect();
                parts.len() >= 2
                    && parts[parts.len() - 1] == "weight"
                    && parts[parts.len() - 2].contains("norm")
            };
            let fan_in: usize = shape.iter().skip(1).product();
            let data = (0..n as u64)
                .map(|j| {
                    let z = mix64(s.wrapping_add((j + 1).wrapping_mul(GOLDEN_GAMMA)));
                    let v = 2.0 * ((z >> 40) as f64 / (1u64 << 24) as f64) - 1.0;
                    let value = if shape.len() >= 2 {
                        v / (fan_in as f64).sqrt()
                    } else if is_gain {
                        1.0 + 0.1 * v
                    } else {
                        0.1 * v
                    };
                    value as f32
                })
                .collect();
            (
                name,
                Tensor::new(shape, data).expect("shape from the table"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> UNetConfig {
        UNetConfig {
            in_ch: 1,
            base_ch: 8,
            channel_mults: vec![1, 2],
            time_dim: 8,
            attn_levels: vec![1],
            num_heads: 2,
        }
    }

    fn to_bytes(params: &Params, meta: HashMap<String, String>) -> Vec<u8> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("diffrecon-w-{}-{k}", std::process::id()));
        save(&dir, params, meta).unwrap();
        let b = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).ok();
        b
    }

    #[test]
    fn round_trip_infers_config_and_heads() {
        let cfg = small();
        let p = synthetic(&cfg, 1);
        let (got, params) = parse(&to_bytes(&p, config_metadata(&cfg)), None).unwrap();
        assert_eq!(got, cfg);
        assert_eq!(params, p);
        // Without metadata the head count falls back to 4, which divides 16: accepted.
        let (got, _) = parse(&to_bytes(&p, HashMap::new()), None).unwrap();
        assert_eq!(got.num_heads, DEFAULT_HEADS);
    }

    #[test]
    fn errors_name_the_offending_tensor() {
        let cfg = small();
        let mut p = synthetic(&cfg, 1);
        p.remove("mid_attn.attn.out_proj.bias");
        let e = parse(&to_bytes(&p, HashMap::new()), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("missing tensor(s) 'mid_attn.attn.out_proj.bias'"),
            "{e}"
        );

        let mut p = synthetic(&cfg, 1);
        p.insert("extra.weight".into(), Tensor::zeros(&[2]));
        let e = parse(&to_bytes(&p, HashMap::new()), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("unexpected tensor(s) 'extra.weight'"),
            "{e}"
        );

        let mut p = synthetic(&cfg, 1);
        p.insert("out_conv.bias".into(), Tensor::zeros(&[2]));
        let e = parse(&to_bytes(&p, HashMap::new()), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("'out_conv.bias' has shape [2], expected [1]"),
            "{e}"
        );

        let mut p = synthetic(&cfg, 1);
        p.get_mut("init.bias").unwrap().data_mut()[0] = f32::NAN;
        let e = parse(&to_bytes(&p, HashMap::new()), None).unwrap_err();
        assert!(e.to_string().contains("init.bias"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_files_are_input_errors() {
        let cfg = small();
        let b = to_bytes(&synthetic(&cfg, 1), HashMap::new());
        for cut in [0, 7, 8, 100, b.len() / 2, b.len() - 1] {
            let e = parse(&b[..cut], None).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }

    #[test]
    fn contiguously_numbered_upsamples_are_accepted() {
        let cfg = small();
        let mut p = synthetic(&cfg, 1);
        for suffix in ["weight", "bias"] {
            let t = p.remove(&format!("upsamples.1.conv.{suffix}")).unwrap();
            p.insert(format!("upsamples.0.conv.{suffix}"), t);
        }
        assert_eq!(
            parse(&to_bytes(&p, HashMap::new()), Some(2)).unwrap().0,
            cfg
        );
    }
}
