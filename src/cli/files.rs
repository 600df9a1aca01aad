//! Reading the commands' input images and writing their outputs.

use crate::error::Result;
use crate::io;
use crate::tensor::Tensor;
use std::path::Path;

/// Read an image stack as (N,1,H,W), rejecting NaN/Inf.
pub(super) fn read_stack(path: &Path, what: &str) -> Result<Tensor> {
    let t = io::read_image(path)?
        .into_image_batch(what)
        .map_err(|e| e.context(path.display()))?;
    t.check_finite(what)
        .map_err(|e| e.context(path.display()))?;
    Ok(t)
}

/// Write `t` (format from the extension), printing each file written.
pub(super) fn write(path: &Path, t: &Tensor) -> Result<()> {
    for p in io::write_image(path, t)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Map [0, max] to model space [−1, 1] for display; also returns max.
pub(super) fn scaled_to_max(t: &Tensor) -> Result<(Tensor, f32)> {
    let max = t.data().iter().fold(0.0f32, |a, &b| a.max(b));
    let data = t
        .data()
        .iter()
        .map(|v| if max > 0.0 { 2.0 * v / max - 1.0 } else { -1.0 })
        .collect();
    Ok((Tensor::new(t.shape().to_vec(), data)?, max))
}
