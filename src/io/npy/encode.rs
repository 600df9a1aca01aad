//! Writing: the bytes `numpy.save` writes for a float32 C-order array.

use super::{ALIGN, GROWTH_AXIS_MAX_DIGITS, MAGIC};
use crate::tensor::Tensor;

/// Encode `t` exactly as `numpy.save` would encode a float32 C-order array of its shape.
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        shape_repr(t.shape())
    );
    if let Some(first) = t.shape().first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let header = wrap_header(&dict);
    let mut out = Vec::with_capacity(header.len() + 4 * t.len());
    out.extend_from_slice(&header);
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Magic, version, length and the dict padded with spaces and a newline so the data starts on
/// an ALIGN boundary; version 2.0 only when the length does not fit 1.0's u16 (as numpy does).
fn wrap_header(dict: &str) -> Vec<u8> {
    let padded = |prefix: usize| dict.len() + 1 + ALIGN - (prefix + dict.len() + 1) % ALIGN;
    let mut out = MAGIC.to_vec();
    if padded(10) <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(padded(10) as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(padded(12) as u32).to_le_bytes());
    }
    let prefix = out.len();
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padded(prefix) - dict.len() - 1));
    out.push(b'\n');
    out
}

/// Python's tuple repr: `()`, `(3,)`, `(1, 1, 64, 64)`.
pub(super) fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}
