//! Seeds and mutators for safetensors weight files: structural edits written back with
//! consistent offsets, and header-text edits.

use crate::mutations::{below, byte_edit, one_in, pick, text_edit, NUMBERS, SIZES};
use diffrecon::rng::Rng;
use diffrecon::unet::weights::{config_metadata, serialize, synthetic};
use diffrecon::unet::UNetConfig;
use std::collections::HashMap;

/// A weights file as entries, to be edited structurally and written back consistently.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn dtype_size(d: &str) -> usize {
    match d {
        "F64" => 8,
        "F32" | "I32" => 4,
        "F16" | "BF16" => 2,
        _ => 1,
    }
}

/// Entries in the file's order, and its metadata; None if the crate cannot read it.
fn read_entries(b: &[u8]) -> Option<(Vec<Entry>, HashMap<String, String>)> {
    let st = safetensors::SafeTensors::deserialize(b).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(b).ok()?;
    let mut entries: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| Entry {
            name,
            dtype: "F32",
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if st
        .tensors()
        .iter()
        .any(|(_, v)| v.dtype() != safetensors::Dtype::F32)
    {
        return None;
    }
    Some((entries, meta.metadata().clone().unwrap_or_default()))
}

/// Header JSON with offsets that match the data, then the data.
fn write_entries(entries: &[Entry], meta: &HashMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !meta.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(meta));
    }
    let mut offset = 0;
    for e in entries {
        header.insert(
            e.name.clone(),
            serde_json::json!({"dtype": e.dtype, "shape": e.shape,
                               "data_offsets": [offset, offset + e.data.len()]}),
        );
        offset += e.data.len();
    }
    let text = serde_json::Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    for e in entries {
        out.extend_from_slice(&e.data);
    }
    out
}

/// A random small config, often invalid on purpose (first multiplier 2, heads that do not
/// divide), so that both validation and the forward pass of what passes are exercised.
fn random_config(rng: &mut Rng) -> UNetConfig {
    let levels = 1 + below(rng, 3);
    let mut mults: Vec<usize> = (0..levels).map(|_| 1 + below(rng, 3)).collect();
    if !one_in(rng, 4) {
        mults[0] = 1;
    }
    UNetConfig {
        in_ch: 1 + below(rng, 2),
        base_ch: 1 + below(rng, 12),
        channel_mults: mults,
        time_dim: 1 + below(rng, 9),
        attn_levels: (0..levels).filter(|_| one_in(rng, 2)).collect(),
        num_heads: 1 + below(rng, 4),
    }
}

/// A numeric component of a dotted name changed: shifted, zero-padded or made huge.
fn renumber(name: &str, rng: &mut Rng) -> String {
    let mut parts: Vec<String> = name.split('.').map(str::to_string).collect();
    let numeric: Vec<usize> = (0..parts.len())
        .filter(|&i| parts[i].parse::<usize>().is_ok())
        .collect();
    if numeric.is_empty() {
        return format!("{name}.0");
    }
    let i = *pick(rng, &numeric);
    let v: usize = parts[i].parse().unwrap();
    parts[i] = match below(rng, 4) {
        0 => (v + 1).to_string(),
        1 => v.saturating_sub(1).to_string(),
        2 => format!("0{v}"),
        _ => pick(rng, NUMBERS).to_string(),
    };
    parts.join(".")
}

/// Special values a weight may be set to.
const VALUES: &[f32] = &[
    3e38,
    -3e38,
    f32::NAN,
    f32::INFINITY,
    1e4,
    -1.0001e4,
    1e5,
    -0.0,
    1e-45,
    65504.0,
];

/// One structural edit of a weights file, written back with consistent offsets.
pub(crate) fn weights_structural(seed: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let (mut entries, mut meta) = read_entries(seed)?;
    if one_in(rng, 8) {
        let cfg = random_config(rng);
        let bytes = serialize(&synthetic(&cfg, rng.next_u64()), config_metadata(&cfg)).ok()?;
        return Some(bytes);
    }
    let k = below(rng, entries.len());
    match below(rng, 8) {
        0 => {
            // One dimension changed; the data follows when small, else it becomes a
            // zero-element tensor with huge dimensions.
            let e = &mut entries[k];
            let d = below(rng, e.shape.len() + 1);
            let v = *pick(
                rng,
                &[0usize, 1, 2, 3, 5, 8, 16, 64, 1 << 20, 1 << 40, usize::MAX],
            );
            if d == e.shape.len() {
                e.shape.push(v);
            } else {
                e.shape[d] = v;
            }
            match e.shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x)) {
                Some(n) if n <= 1 << 16 => e.data.resize(4 * n, 0),
                _ => {
                    e.shape.insert(0, 0);
                    e.data.clear();
                }
            }
        }
        1 => entries[k].name = renumber(&entries[k].name, rng),
        2 => {
            entries.remove(k);
        }
        3 => {
            let mut copy = entries[k].clone();
            copy.name = renumber(&copy.name, rng);
            entries.push(copy);
        }
        4 => {
            let e = &mut entries[k];
            if e.data.len() >= 4 {
                let i = below(rng, e.data.len() / 4);
                e.data[4 * i..4 * i + 4].copy_from_slice(&pick(rng, VALUES).to_le_bytes());
            }
        }
        5 => {
            let e = &mut entries[k];
            e.dtype = *pick(rng, &["F16", "BF16", "F64", "I32", "U8"]);
            let n: usize = e.shape.iter().product();
            e.data.resize(n * dtype_size(e.dtype), 0);
        }
        6 => {
            let heads = pick(
                rng,
                &[
                    "0",
                    "1",
                    "2",
                    "3",
                    "4",
                    "8",
                    "x",
                    "-1",
                    "18446744073709551616",
                    " 2 ",
                ],
            );
            meta.insert("num_heads".into(), heads.to_string());
        }
        _ => {
            // Names that collide: one tensor given another's name.
            let other = entries[below(rng, entries.len())].name.clone();
            entries[k].name = other;
        }
    }
    Some(write_entries(&entries, &meta))
}

const SAFETENSORS_TOKENS: &[(&str, &str)] = &[
    ("F32", "F16"),
    ("F32", "I64"),
    ("shape", "shapes"),
    ("data_offsets", "offsets"),
    ("upsamples.1", "upsamples.01"),
    ("upsamples.1", "upsamples.0"),
    ("down_blocks.1", "down_blocks.2"),
    (".weight", ".bias"),
    ("[", "[0,"),
    ("num_heads", "num_head"),
    ("{", "{\"a\":1,"),
];

/// The JSON header edited as text, its length field rewritten to match.
fn weights_header_edit(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let end = 8usize.checked_add(n)?;
    let text = std::str::from_utf8(b.get(8..end)?).ok()?;
    let new = text_edit(text, SAFETENSORS_TOKENS, rng);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&b[end..]);
    Some(out)
}

pub(crate) fn mutate_weights(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + below(rng, 2) {
        match below(rng, 5) {
            0 | 1 => b = weights_structural(&b, rng).unwrap_or(b),
            2 => b = weights_header_edit(&b, rng).unwrap_or(b),
            3 if b.len() >= 8 => b[..8].copy_from_slice(&pick(rng, SIZES).to_le_bytes()),
            _ => byte_edit(&mut b, seeds, rng),
        }
    }
    b
}

pub(crate) fn weights_seeds() -> Vec<Vec<u8>> {
    let configs = [
        UNetConfig {
            in_ch: 1,
            base_ch: 8,
            channel_mults: vec![1, 2],
            time_dim: 8,
            attn_levels: vec![1],
            num_heads: 2,
        },
        UNetConfig {
            in_ch: 1,
            base_ch: 4,
            channel_mults: vec![1],
            time_dim: 5,
            attn_levels: vec![0],
            num_heads: 1,
        },
        UNetConfig {
            in_ch: 2,
            base_ch: 6,
            channel_mults: vec![1, 1, 2],
            time_dim: 3,
            attn_levels: vec![],
            num_heads: 3,
        },
    ];
    let mut seeds: Vec<Vec<u8>> = configs
        .iter()
        .map(|c| serialize(&synthetic(c, 7), config_metadata(c)).unwrap())
        .collect();
    // The first again with its upsamples numbered from 0 and no metadata.
    let mut p = synthetic(&configs[0], 8);
    for suffix in ["weight", "bias"] {
        let t = p.remove(&format!("upsamples.1.conv.{suffix}")).unwrap();
        p.insert(format!("upsamples.0.conv.{suffix}"), t);
    }
    let meta = HashMap::from([("num_heads".to_string(), "2".to_string())]);
    seeds.push(serialize(&p, meta).unwrap());
    seeds
}
