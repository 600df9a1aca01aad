//! The header: magic, version, length, and the dict that gives dtype, order and shape.

use super::literal::{Lit, Parser};
use super::{Dtype, EXPECTED, MAGIC, MAX_HEADER_BYTES};
use crate::bail;
use crate::error::Result;

/// Check the magic and version; return (header text, data section).
pub(super) fn split_header<'a>(bytes: &'a [u8], name: &str) -> Result<(&'a str, &'a [u8])> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        bail!("{name}: not a .npy file (it does not start with the magic \\x93NUMPY); {EXPECTED}");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => bail!("{name}: .npy format version {major}.{minor} is not supported; expected 1.0, 2.0 or 3.0"),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        bail!("{name}: file ends inside the .npy header length field; the file is truncated");
    }
    let mut len = [0u8; 4];
    len[..len_bytes].copy_from_slice(&bytes[8..start]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_HEADER_BYTES {
        bail!(
            "{name}: the .npy header claims {header_len} bytes; at most {MAX_HEADER_BYTES} are \
             supported (numpy writes a few hundred)"
        );
    }
    let Some(header) = bytes.get(start..start.saturating_add(header_len)) else {
        bail!(
            "{name}: the .npy header claims {header_len} bytes but only {} follow; the file is \
             truncated",
            bytes.len() - start
        );
    };
    let Ok(text) = std::str::from_utf8(header) else {
        bail!("{name}: the .npy header is not ASCII/UTF-8 text; {EXPECTED}");
    };
    Ok((text, &bytes[start + header_len..]))
}

/// Interpret the header dictionary: dtype, fortran_order and shape.
pub(super) fn parse_header(text: &str, name: &str) -> Result<(Dtype, Vec<usize>)> {
    let malformed = |why: &str| {
        crate::error::Error::input(format!(
            "{name}: malformed .npy header ({why}): {:?}; expected a dict like \
             {{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 64, 64), }}",
            truncate(text.trim(), 200)
        ))
    };
    let mut p = Parser::new(text);
    let Some(Lit::Dict(entries)) = p.value() else {
        return Err(malformed("not a Python dict literal"));
    };
    if !p.at_end() {
        return Err(malformed("text after the dict"));
    }
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.as_str(),
        Some(_) => bail!("{name}: structured or non-string dtype in .npy header; {EXPECTED}"),
        None => return Err(malformed("no 'descr' key")),
    };
    let dtype = parse_descr(descr, name)?;
    match get("fortran_order") {
        Some(Lit::Bool(false)) => {}
        Some(Lit::Bool(true)) => bail!(
            "{name}: array is stored in Fortran order; re-save it in C order \
             (numpy.save(path, numpy.ascontiguousarray(a)))"
        ),
        _ => return Err(malformed("'fortran_order' missing or not True/False")),
    }
    let dims = match get("shape") {
        Some(Lit::Tuple(items)) => items.iter().map(|d| match d {
            Lit::Int(n) => Some(*n),
            _ => None,
        }),
        _ => return Err(malformed("'shape' missing or not a tuple")),
    };
    let Some(shape) = dims.collect::<Option<Vec<usize>>>() else {
        return Err(malformed(
            "'shape' holds something other than non-negative integers",
        ));
    };
    Ok((dtype, shape))
}

fn parse_descr(descr: &str, name: &str) -> Result<Dtype> {
    match descr {
        "<f4" => Ok(Dtype::F4),
        "<f8" => Ok(Dtype::F8),
        d if d.starts_with('>') => {
            bail!("{name}: dtype '{d}' is big-endian; {EXPECTED} (convert with a.astype('<f4'))")
        }
        d => {
            bail!("{name}: dtype '{d}' is not supported; {EXPECTED} (convert with a.astype('<f4'))")
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
