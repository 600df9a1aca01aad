//! A plain host tensor: f32, row-major, contiguous. NCHW is the interchange layout.

use crate::bail;
use crate::error::Result;

/// The product of the dimensions, None on overflow.
fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Build a tensor; the data length must match the shape (whose element count must not
    /// overflow: a wrapped product could match a short buffer).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let Some(n) = elements(&shape) else {
            bail!("shape {shape:?} has more elements than memory can address");
        };
        if n != data.len() {
            bail!(
                "shape {:?} needs {} values but {} were given",
                shape,
                n,
                data.len()
            );
        }
        Ok(Tensor { shape, data })
    }

    /// Zeros of `shape`; callers size shapes from checked inputs (an overflowing shape is a bug
    /// and panics rather than wrapping).
    pub fn zeros(shape: &[usize]) -> Self {
        let n = elements(shape).expect("Tensor::zeros: the shape's element count overflows");
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; n],
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same data, another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if elements(shape) != Some(self.data.len()) {
            bail!("cannot reshape {:?} to {:?}", self.shape, shape);
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Batch items `range` (along the first axis) as a new tensor.
    pub fn items(&self, range: std::ops::Range<usize>) -> Result<Self> {
        let n = self.shape.first().copied().unwrap_or(0);
        if range.start > range.end || range.end > n {
            bail!("items {range:?} of a batch of {n}");
        }
        let per = self.data.len() / n.max(1);
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Tensor::new(
            shape,
            self.data[range.start * per..range.end * per].to_vec(),
        )
    }

    /// ‖self − reference‖₂ / ‖reference‖₂ in f64: the error measure of the golden and parity tests.
    pub fn rel_l2(&self, reference: &Tensor) -> Result<f64> {
        if self.shape != reference.shape {
            bail!(
                "cannot compare shapes {:?} and {:?}",
                self.shape,
                reference.shape
            );
        }
        let diff: f64 = self
            .data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        let norm: f64 = reference.data.iter().map(|b| (*b as f64).powi(2)).sum();
        Ok((diff / norm.max(1e-30)).sqrt())
    }

    /// Fails with a message naming `what` if any value is NaN or infinite.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{what} contains a non-finite value ({}) at flat index {i}; clean the input first",
                self.data[i]
            );
        }
        Ok(())
    }

    /// View an image stack as (N, 1, H, W). Accepts (H, W), (1, H, W) and (N, 1, H, W).
    pub fn into_image_batch(self, what: &str) -> Result<Self> {
        let s = self.shape.clone();
        let nchw = match s.as_slice() {
            [h, w] => vec![1, 1, *h, *w],
            [1, h, w] => vec![1, 1, *h, *w],
            [n, 1, h, w] => vec![*n, 1, *h, *w],
            _ => bail!(
                "{what} has shape {s:?}; expected (H, W), (1, H, W) or (N, 1, H, W) with one channel"
            ),
        };
        if nchw.contains(&0) {
            bail!("{what} has an empty dimension in shape {s:?}");
        }
        self.reshape(&nchw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_shapes_are_refused_not_wrapped() {
        // 2^62 · 2^12 wraps to 0 in usize: an empty buffer must not pass for it.
        let e = Tensor::new(vec![1 << 62, 1, 64, 64], vec![]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("more elements"), "{e}");
        let t = Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap();
        assert!(t.clone().reshape(&[1 << 63, 4]).is_err());
        assert_eq!(t.reshape(&[3, 2]).unwrap().shape(), &[3, 2]);
    }
}
