//! The engine's names for the tensor names a weights file uses.

use crate::bail;
use crate::error::Result;
use std::collections::HashMap;

/// The engine's name for each tensor name in a file. Files whose `upsamples` list is numbered
/// contiguously from 0 (a plain ModuleList) are renumbered to the engine's numbering by up
/// level (1..L-1). Upsample indices must be canonical decimals (no `00`, no overflow), so no
/// two file names can land on one engine name.
pub(super) fn engine_names<'a>(
    file_names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, String>> {
    let file_names: Vec<&str> = file_names.collect();
    let shift = usize::from(file_names.contains(&"upsamples.0.conv.weight"));
    let mut map = HashMap::new();
    let mut taken = HashMap::new();
    for &name in &file_names {
        let engine = match name
            .strip_prefix("upsamples.")
            .and_then(|r| r.split_once('.'))
        {
            Some((idx, tail)) => {
                let Some(i) = canonical_index(idx) else {
                    bail!(
                        "tensor '{name}' has upsample index '{idx}'; expected a plain decimal \
                         index (0, 1, ..., no leading zeros)"
                    );
                };
                match i.checked_add(shift) {
                    Some(j) => format!("upsamples.{j}.{tail}"),
                    None => bail!("tensor '{name}' has an upsample index too large to renumber"),
                }
            }
            None => name.to_string(),
        };
        if let Some(other) = taken.insert(engine.clone(), name) {
            bail!("tensors '{other}' and '{name}' both name '{engine}'");
        }
        map.insert(name.to_string(), engine);
    }
    Ok(map)
}

/// `idx` as an index if it is written as Rust writes one (so `00`, `+1` or ` 1` are not).
fn canonical_index(idx: &str) -> Option<usize> {
    let i: usize = idx.parse().ok()?;
    (i.to_string() == idx).then_some(i)
}
