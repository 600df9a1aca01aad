//! Inpainting (`inpaint`, OPERATORS.md): y = M ⊙ x with a fixed 0/1 mask of the image's shape,
//! from a file (non-zero = observed), a random subset of pixels, or a missing box.

use crate::bail;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Mixed into `--mask-seed` so the mask never repeats a noise stream.
const MASK_STREAM: u64 = 0x3A5C_0000_0000_0002;

/// A 0/1 mask (1 = observed) of one image's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Mask {
    /// Observed where the array is non-zero; (H, W) or (1, 1, H, W).
    pub fn from_array(t: &Tensor) -> Result<Self> {
        let (h, w) = match *t.shape() {
            [h, w] | [1, h, w] | [1, 1, h, w] => (h, w),
            ref s => bail!("--mask must hold one (H, W) image, got shape {s:?}"),
        };
        t.check_finite("--mask")?;
        Self::checked(
            h,
            w,
            t.data().iter().map(|&v| (v != 0.0) as u8 as f32).collect(),
        )
    }

    /// Each pixel kept with probability `keep`, deterministic per seed.
    pub fn random(h: usize, w: usize, keep: f64, seed: u64) -> Result<Self> {
        if !(keep > 0.0 && keep <= 1.0) {
            bail!("--keep must lie in (0, 1], got {keep}");
        }
        let len = pixels(h, w)?;
        let mut rng = Rng::new(seed ^ MASK_STREAM);
        let data = (0..len)
            .map(|_| (rng.uniform() < keep) as u8 as f32)
            .collect();
        Self::checked(h, w, data)
    }

    /// Everything observed except the box of `bw` × `bh` pixels whose top-left pixel is
    /// column `x`, row `y`.
    pub fn missing_box(h: usize, w: usize, rect: [usize; 4]) -> Result<Self> {
        let [x, y, bw, bh] = rect;
        let inside = |start: usize, len: usize, side: usize| {
            len > 0 && start.checked_add(len).is_some_and(|end| end <= side)
        };
        if !inside(x, bw, w) || !inside(y, bh, h) {
            bail!("--box {x},{y},{bw},{bh} (X,Y,W,H) must be a non-empty rectangle inside the {h}×{w} image");
        }
        let mut data = vec![1.0f32; pixels(h, w)?];
        for row in y..y + bh {
            data[row * w + x..row * w + x + bw].fill(0.0);
        }
        Self::checked(h, w, data)
    }

    fn checked(height: usize, width: usize, data: Vec<f32>) -> Result<Self> {
        if !data.iter().any(|&v| v != 0.0) {
            bail!("the inpainting mask observes no pixel: nothing to reconstruct from");
        }
        Ok(Mask {
            height,
            width,
            data,
        })
    }

    /// The fraction of observed pixels.
    pub fn kept(&self) -> f64 {
        self.data.iter().filter(|&&v| v != 0.0).count() as f64 / self.data.len() as f64
    }

    pub fn to_tensor(&self) -> Result<Tensor> {
        Tensor::new(vec![self.height, self.width], self.data.clone())
    }
}

fn pixels(h: usize, w: usize) -> Result<usize> {
    match h.checked_mul(w) {
        Some(n) if n > 0 && h <= 1 << 14 && w <= 1 << 14 => Ok(n),
        _ => bail!("a mask must be between 1×1 and 16384×16384 pixels, got {h}×{w}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_each_source() {
        let r = Mask::random(64, 64, 0.3, 1).unwrap();
        assert!((r.kept() - 0.3).abs() < 0.03, "{}", r.kept());
        assert_eq!(r, Mask::random(64, 64, 0.3, 1).unwrap());
        assert_ne!(r, Mask::random(64, 64, 0.3, 2).unwrap());
        let b = Mask::missing_box(8, 10, [2, 3, 4, 2]).unwrap();
        assert_eq!(b.data.iter().filter(|&&v| v == 0.0).count(), 8);
        assert_eq!(b.data[3 * 10 + 2], 0.0);
        assert_eq!(b.data[3 * 10 + 6], 1.0);
        let t = Tensor::new(vec![2, 2], vec![0.0, 0.5, -1.0, 0.0]).unwrap();
        assert_eq!(Mask::from_array(&t).unwrap().data, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn bad_masks_are_input_errors() {
        for keep in [0.0, -0.1, 1.5, f64::NAN] {
            assert_eq!(Mask::random(8, 8, keep, 0).unwrap_err().exit_code(), 2);
        }
        for rect in [
            [7, 0, 2, 1],
            [0, 0, 0, 1],
            [0, 8, 1, 1],
            [usize::MAX, 0, 2, 1],
        ] {
            assert_eq!(Mask::missing_box(8, 8, rect).unwrap_err().exit_code(), 2);
        }
        assert!(
            Mask::missing_box(8, 8, [0, 0, 8, 8]).is_err(),
            "nothing observed"
        );
        let zeros = Tensor::new(vec![3, 3], vec![0.0; 9]).unwrap();
        assert!(Mask::from_array(&zeros).is_err());
        let batch = Tensor::new(vec![2, 1, 3, 3], vec![1.0; 18]).unwrap();
        assert!(Mask::from_array(&batch).is_err());
    }
}
