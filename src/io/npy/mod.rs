//! NumPy `.npy` files: read versions 1.0/2.0/3.0 with little-endian f4/f8 data in C order; write
//! version 1.0 '<f4' byte-identical to `numpy.save`. Parsing never panics on arbitrary bytes.
//!
//! Here: reading and decoding. Beside it: `header.rs` (magic, version and the header dict),
//! `literal.rs` (the Python-literal parser the dict needs), `encode.rs` (writing).

mod encode;
mod header;
mod literal;
#[cfg(test)]
mod tests;

pub use encode::encode_npy;

use std::path::Path;

use crate::bail;
use crate::error::{io_error, Result};
use crate::tensor::Tensor;
use encode::shape_repr;
use header::{parse_header, split_header};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy aligns the data section to this many bytes.
const ALIGN: usize = 64;
/// numpy leaves room after the header so the leading axis can grow in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const EXPECTED: &str = "expected a NumPy .npy file of little-endian float32 ('<f4') or float64 \
                        ('<f8') in C order, as written by numpy.save";

/// Largest header accepted. numpy writes a few hundred bytes (ours grows by 3 per dimension);
/// a hostile v2/v3 length field could otherwise claim 4 GiB.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest data section accepted (4 GiB: 1G float32 or 512M float64 values).
pub const MAX_DATA_BYTES: usize = 1 << 32;

/// Read a `.npy` file into a tensor; errors name the file. The header is read and the size it
/// declares checked against the file's length before the data is read.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    use std::io::Read;
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut prefix = Vec::new();
    file.take((12 + MAX_HEADER_BYTES) as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| io_error(path, e))?;
    let (header, rest) = split_header(&prefix, &name)?;
    let data_start = prefix.len() - rest.len();
    let (dtype, shape) = parse_header(header, &name)?;
    let on_disk = usize::try_from(file_len.saturating_sub(data_start as u64)).unwrap_or(usize::MAX);
    check_data_size(on_disk, dtype, &shape, &name)?;
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_npy(&bytes, &name)
}

/// Write `t` as a '<f4' C-order `.npy` file (version 1.0 unless the header needs 2.0).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, encode_npy(t)).map_err(|e| io_error(path, e))
}

/// Parse the bytes of a `.npy` file; `name` is used in error messages.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Tensor> {
    let (header, data) = split_header(bytes, name)?;
    let (dtype, shape) = parse_header(header, name)?;
    check_data_size(data.len(), dtype, &shape, name)?;
    let values = decode(data, dtype, name)?;
    Tensor::new(shape, values).map_err(|e| e.context(name))
}

/// The shape must declare at most MAX_DATA_BYTES, and the data section hold exactly that.
fn check_data_size(held: usize, dtype: Dtype, shape: &[usize], name: &str) -> Result<()> {
    let needed = element_count(shape, name)?.checked_mul(dtype.size());
    if let Some(n) = needed.filter(|&n| n > MAX_DATA_BYTES) {
        bail!(
            "{name}: shape {} of {} declares {n} bytes; at most {MAX_DATA_BYTES} are supported",
            shape_repr(shape),
            dtype.descr()
        );
    }
    if needed != Some(held) {
        let needs = needed.map_or("more than addressable".to_string(), |n| n.to_string());
        bail!(
            "{name}: data section holds {held} bytes but shape {} of {} needs {needs}; the file is \
             truncated or has trailing bytes",
            shape_repr(shape),
            dtype.descr()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F4,
    F8,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F8 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Dtype::F4 => "<f4",
            Dtype::F8 => "<f8",
        }
    }
}

fn element_count(shape: &[usize], name: &str) -> Result<usize> {
    match shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) => Ok(n),
        None => bail!("{name}: shape {} has too many elements", shape_repr(shape)),
    }
}

/// The values as f32; every one must be finite, and float64 values must fit float32.
fn decode(data: &[u8], dtype: Dtype, name: &str) -> Result<Vec<f32>> {
    let values: Vec<f32> = match dtype {
        Dtype::F4 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F8 => {
            let wide = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")));
            let mut out = Vec::with_capacity(data.len() / 8);
            for (i, v) in wide.enumerate() {
                if v.is_finite() && v.abs() > f32::MAX as f64 {
                    bail!("{name}: value {v:e} at flat index {i} is beyond float32's range");
                }
                out.push(v as f32);
            }
            out
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{name}: contains a non-finite value ({}) at flat index {i}; arrays must be finite",
            values[i]
        );
    }
    Ok(values)
}
