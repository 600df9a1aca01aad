//! Reading and writing .npy image stacks, for callers without a NumPy.

use super::boundary::{guard, invalid, output, stack, text, Failure};
use super::diffrecon_status::{self, *};
use std::ffi::c_char;
use std::path::Path;

/// Read a float32 .npy image stack as (n, 1, h, w) ((h, w) and (1, h, w) files are one slice):
/// `shape` receives {n, 1, h, w}; with `data` NULL only the shape is read (the size query),
/// else `data` must hold exactly n·h·w floats.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_npy_read(
    path: *const c_char,
    data: *mut f32,
    data_len: usize,
    shape: *mut usize,
) -> diffrecon_status {
    guard(|| {
        let p = Path::new(text(path, "path", None)?);
        if shape.is_null() {
            return Err(invalid("shape is NULL (it receives 4 sizes)"));
        }
        let bytes = std::fs::read(p)
            .map_err(|e| Failure(DIFFRECON_IO, format!("cannot read '{}': {e}", p.display())))?;
        let t = crate::io::npy::parse_npy(&bytes, &p.display().to_string())?
            .into_image_batch(&p.display().to_string())?;
        std::slice::from_raw_parts_mut(shape, 4).copy_from_slice(t.shape());
        if !data.is_null() {
            output(data, data_len, t.len(), "data")?.copy_from_slice(t.data());
        }
        Ok(())
    })
}

/// Write `n` images of (h, w) from `data` as a float32 (n, 1, h, w) .npy file.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_npy_write(
    path: *const c_char,
    data: *const f32,
    n: usize,
    h: usize,
    w: usize,
) -> diffrecon_status {
    guard(|| {
        let p = Path::new(text(path, "path", None)?);
        let t = stack(data, n, h, w, "data")?;
        std::fs::write(p, crate::io::npy::encode_npy(&t))
            .map_err(|e| Failure(DIFFRECON_IO, format!("cannot write '{}': {e}", p.display())))
    })
}
