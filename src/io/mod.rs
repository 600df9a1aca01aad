//! Image files by extension: `.npy` holds model-space arrays as stored, `.png` holds pixels in
//! [0, 1] that map to model space by x = (p - 0.5) / 0.5.

pub mod npy;
pub mod png;

use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

const ACCEPTED: &str = "accepted: .npy (float32/float64 array in model space [-1, 1]) or .png \
                        (grayscale image, pixels mapped to [-1, 1])";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Npy,
    Png,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => Ok(Format::Npy),
        Some("png") => Ok(Format::Png),
        _ => bail!(
            "{}: unknown image file extension; {ACCEPTED}",
            path.display()
        ),
    }
}

/// Read an image file into model space: `.npy` as stored (any shape), `.png` as (1, 1, H, W).
pub fn read_image(path: &Path) -> Result<Tensor> {
    match format_of(path)? {
        Format::Npy => npy::read_npy(path),
        Format::Png => {
            let mut t = png::read_png(path)?;
            for v in t.data_mut() {
                *v = (*v - 0.5) / 0.5;
            }
            Ok(t)
        }
    }
}

/// A stack of ground truths as (N, 1, H, W): an image file, or a directory whose `.png` and
/// `.npy` files (sorted by name) all have the same size.
pub fn read_image_stack(path: &Path) -> Result<Tensor> {
    if !path.is_dir() {
        return read_image(path)?.into_image_batch(&path.display().to_string());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| crate::error::io_error(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| format_of(p).is_ok())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{}: no .png or .npy images in this directory",
            path.display()
        );
    }
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for f in &files {
        let t = read_image(f)?.into_image_batch(&f.display().to_string())?;
        match &shape {
            None => shape = Some(t.shape().to_vec()),
            Some(s) if s[1..] != t.shape()[1..] => bail!(
                "{}: image of shape {:?} differs from the first image's {:?}; all images must share one size",
                f.display(),
                &t.shape()[1..],
                &s[1..]
            ),
            Some(_) => {}
        }
        data.extend_from_slice(t.data());
    }
    let mut shape = shape.expect("at least one file");
    shape[0] = data.len() / shape[1..].iter().product::<usize>();
    Tensor::new(shape, data)
}

/// Write a model-space tensor; returns the files written. `.png` writes one 16-bit grayscale
/// file per slice of the (N, 1, H, W) view: `path` itself when N == 1, else `stem_000.png`, ...
pub fn write_image(path: &Path, t: &Tensor) -> Result<Vec<PathBuf>> {
    match format_of(path)? {
        Format::Npy => {
            npy::write_npy(path, t)?;
            Ok(vec![path.to_path_buf()])
        }
        Format::Png => write_png_slices(path, t),
    }
}

fn write_png_slices(path: &Path, t: &Tensor) -> Result<Vec<PathBuf>> {
    let batch = t
        .clone()
        .into_image_batch(&format!("image for {}", path.display()))?;
    let (n, h, w) = (batch.shape()[0], batch.shape()[2], batch.shape()[3]);
    let paths = if n == 1 {
        vec![path.to_path_buf()]
    } else {
        (0..n).map(|i| numbered(path, i)).collect()
    };
    for (slice, p) in batch.data().chunks_exact(h * w).zip(&paths) {
        let pixels: Vec<f32> = slice
            .iter()
            .map(|&x| ((x + 1.0) / 2.0).clamp(0.0, 1.0))
            .collect();
        png::write_png_gray(p, &pixels, h, w, 16)?;
    }
    Ok(paths)
}

/// `dir/stem.png` -> `dir/stem_007.png`, keeping the extension's spelling.
fn numbered(path: &Path, i: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_{i:03}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("diffrecon_io_{tag}_{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| -1.2 + 2.4 * i as f32 / (n - 1) as f32)
            .collect();
        Tensor::new(shape.to_vec(), data).unwrap()
    }

    #[test]
    fn npy_round_trips_any_shape() {
        let d = TempDir::new("npy");
        let path = d.0.join("x.NPY");
        let t = ramp(&[2, 3, 5]);
        assert_eq!(write_image(&path, &t).unwrap(), vec![path.clone()]);
        assert_eq!(read_image(&path).unwrap(), t);
    }

    #[test]
    fn png_single_slice_round_trips_within_16_bit_precision() {
        let d = TempDir::new("one");
        let path = d.0.join("x.png");
        let t = ramp(&[8, 8]);
        assert_eq!(write_image(&path, &t).unwrap(), vec![path.clone()]);
        let back = read_image(&path).unwrap();
        assert_eq!(back.shape(), &[1, 1, 8, 8]);
        for (a, b) in back.data().iter().zip(t.data()) {
            let want = b.clamp(-1.0, 1.0);
            assert!((a - want).abs() <= 1.0 / 65535.0 + 1e-6, "{a} vs {want}");
        }
        assert_eq!(back.data()[0], -1.0);
        assert_eq!(back.data()[63], 1.0);
    }

    #[test]
    fn png_stack_writes_numbered_files() {
        let d = TempDir::new("stack");
        let t = ramp(&[3, 1, 4, 2]);
        let paths = write_image(&d.0.join("out.png"), &t).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["out_000.png", "out_001.png", "out_002.png"]);
        assert!(!d.0.join("out.png").exists());
        let second = read_image(&paths[1]).unwrap();
        let want = &t.data()[8..16];
        for (a, b) in second.data().iter().zip(want) {
            assert!((a - b.clamp(-1.0, 1.0)).abs() < 1e-4);
        }
    }

    #[test]
    fn png_rejects_shapes_that_are_not_image_stacks() {
        let d = TempDir::new("shape");
        let err = write_image(&d.0.join("x.png"), &ramp(&[2, 3, 4, 4])).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err:?}");
    }

    #[test]
    fn unknown_extension_lists_accepted_ones() {
        for name in ["x.jpg", "noext"] {
            let err = read_image(Path::new(name)).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains(".npy") && msg.contains(".png"),
                "{msg}"
            );
            assert_eq!(err.exit_code(), 2);
            assert!(write_image(Path::new(name), &ramp(&[2, 2])).is_err());
        }
    }
}
