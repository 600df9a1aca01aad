//! Forward operators A: a host description (`Operator`), its uploaded form on a backend
//! (`Uploaded`), and the view the samplers use (`LinOp`: A, Aᵀ, ‖A‖, shapes). A sampler never
//! knows which operator it runs. The exact definitions are in OPERATORS.md (shared/).

pub mod blur;
pub mod noise;

pub use blur::Kernel;
pub use noise::{relative_noise, simulate};

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

/// A linear forward operator on model space, acting on each slice of an (N, 1, H, W) batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// 'Same'-size correlation with a (k, k) kernel, zero padding.
    Blur(Kernel),
}

impl From<Kernel> for Operator {
    fn from(k: Kernel) -> Self {
        Operator::Blur(k)
    }
}

impl Operator {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            Operator::Blur(k) => format!("blur, {}×{} kernel", k.size, k.size),
        }
    }

    /// The measurement's (rows, columns) for an image of (h, w).
    pub fn measurement_dims(&self, image: (usize, usize)) -> Result<(usize, usize)> {
        match self {
            Operator::Blur(_) => Ok(image),
        }
    }

    /// The image's (h, w) for a measurement of (rows, columns), checking that they fit.
    pub fn image_dims(&self, measurement: (usize, usize)) -> Result<(usize, usize)> {
        match self {
            Operator::Blur(_) => Ok(measurement),
        }
    }

    /// ‖A‖ (the operator 2-norm) or the upper bound the step sizes use. Blur: Σ|k| (Young's
    /// inequality), taken as exactly 1 for a non-negative kernel that sums to 1 up to f32
    /// rounding (motion, Gaussian), so τ keeps the notebook's meaning there.
    pub fn norm(&self) -> f64 {
        match self {
            Operator::Blur(k) => k.norm_bound(),
        }
    }

    /// The operator's buffers on `be`.
    pub fn upload<B: Backend>(&self, be: &B) -> Result<Uploaded<B>> {
        let buf = match self {
            Operator::Blur(k) => Some(be.upload(&k.to_tensor())?),
        };
        Ok(Uploaded {
            op: self.clone(),
            buf,
        })
    }

    /// A x on the CPU (simulation, residuals of results that did not come from a model).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let be = CpuBackend::default();
        let up = self.upload(&be)?;
        let op = up.view();
        op.check_image(image_dims(x.shape())?)?;
        op.apply(&be, x)
    }

    /// Aᵀ y on the CPU.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let be = CpuBackend::default();
        let up = self.upload(&be)?;
        let op = up.view();
        let (n, _, h, w) = dims4(y.shape())?;
        op.check_measurement(n, (h, w))?;
        op.adjoint(&be, y)
    }
}

fn dims4(shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *shape {
        [n, c, h, w] => Ok((n, c, h, w)),
        ref s => bail!("expected an (N, 1, H, W) stack, got shape {s:?}"),
    }
}

fn image_dims(shape: &[usize]) -> Result<(usize, usize)> {
    let (_, _, h, w) = dims4(shape)?;
    Ok((h, w))
}

/// An operator with its buffers on a backend.
pub struct Uploaded<B: Backend> {
    op: Operator,
    buf: Option<B::Buf>,
}

impl<B: Backend> Uploaded<B> {
    pub fn view(&self) -> LinOp<'_, B> {
        LinOp {
            op: &self.op,
            buf: self.buf.as_ref(),
        }
    }
}

/// What a sampler sees of an operator: its description and its (borrowed) device buffer.
pub struct LinOp<'a, B: Backend> {
    op: &'a Operator,
    buf: Option<&'a B::Buf>,
}

impl<B: Backend> Clone for LinOp<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for LinOp<'_, B> {}

impl<'a, B: Backend> LinOp<'a, B> {
    pub fn operator(&self) -> &'a Operator {
        self.op
    }

    /// The device buffer, for `Backend::replay`'s inputs (None: the operator has none).
    pub fn buffer(&self) -> Option<&'a B::Buf> {
        self.buf
    }

    /// The same operator over another copy of its buffer (a replay's input).
    pub fn rebind<'b>(&self, buf: Option<&'b B::Buf>) -> LinOp<'b, B>
    where
        'a: 'b,
    {
        LinOp { op: self.op, buf }
    }

    fn buf(&self) -> &'a B::Buf {
        self.buf.expect("operators with a buffer carry it from upload")
    }

    /// A x.
    pub fn apply(&self, be: &B, x: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) => be.blur(x, self.buf(), false),
        }
    }

    /// Aᵀ y.
    pub fn adjoint(&self, be: &B, y: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) => be.blur(y, self.buf(), true),
        }
    }

    /// AᵀA x.
    pub fn normal(&self, be: &B, x: &B::Buf) -> Result<B::Buf> {
        self.adjoint(be, &self.apply(be, x)?)
    }

    pub fn norm(&self) -> f64 {
        self.op.norm()
    }

    /// An image-shaped first estimate from y (where the notebook's DiffPIR-style and published
    /// DiffPIR start). Blur: y itself, as the notebook does.
    pub fn initial_estimate(&self, _be: &B, y: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) => Ok(y.clone()),
        }
    }

    /// One gradient step on ½‖A x − y‖² with τ in units of 1/‖A‖², clamped to [−1, 1]:
    /// clamp(xp − τ/‖A‖²·Aᵀ(A xp − y)). Blur runs the backend's fused step.
    pub fn gradient_step(&self, be: &B, xp: &B::Buf, y: &B::Buf, tau: f64) -> Result<B::Buf> {
        let n2 = self.norm() * self.norm();
        let step = if n2 > 0.0 { tau / n2 } else { 0.0 };
        match self.op {
            Operator::Blur(_) => be.data_step(xp, y, self.buf(), step as f32),
        }
    }

    /// Values a captured CUDA graph depends on besides its inputs' shapes (scalars the
    /// operator's kernels take as arguments).
    pub fn key_values(&self) -> Vec<u64> {
        match self.op {
            Operator::Blur(_) => vec![1],
        }
    }

    /// Checks an image of (h, w) fits the operator.
    pub fn check_image(&self, image: (usize, usize)) -> Result<()> {
        self.op.measurement_dims(image).map(|_| ())
    }

    /// The image shape (N, 1, H, W) a measurement stack of `y_shape` reconstructs to.
    pub fn image_shape(&self, y_shape: &[usize]) -> Result<Vec<usize>> {
        let [n, c, rows, cols] = *y_shape else {
            bail!("the measurement must be an (N, 1, rows, cols) stack, got shape {y_shape:?}");
        };
        if c != 1 {
            bail!("the measurement must have one channel, got shape {y_shape:?}");
        }
        let (h, w) = self.check_measurement(n, (rows, cols))?;
        Ok(vec![n, c, h, w])
    }

    /// The image (h, w) a batch of `n` measurements of (rows, cols) reconstructs to.
    pub fn check_measurement(&self, n: usize, m: (usize, usize)) -> Result<(usize, usize)> {
        if n == 0 {
            bail!("the measurement holds no slices");
        }
        self.op.image_dims(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ for every operator, on odd sizes.
    #[test]
    fn adjoints_are_exact() {
        let mut rng = Rng::new(7);
        let ops = [
            Operator::Blur(Kernel::motion(9, 20.0).unwrap()),
            Operator::Blur(Kernel::gaussian(5, 1.5).unwrap()),
        ];
        for op in ops {
            let (h, w) = (24, 20);
            let (mh, mw) = op.measurement_dims((h, w)).unwrap();
            let x = Tensor::new(vec![2, 1, h, w], rng.normal_vec(2 * h * w)).unwrap();
            let y = Tensor::new(vec![2, 1, mh, mw], rng.normal_vec(2 * mh * mw)).unwrap();
            let ax = op.apply(&x).unwrap();
            let aty = op.adjoint(&y).unwrap();
            let dot = |a: &Tensor, b: &Tensor| -> f64 {
                a.data()
                    .iter()
                    .zip(b.data())
                    .map(|(p, q)| *p as f64 * *q as f64)
                    .sum()
            };
            let (l, r) = (dot(&ax, &y), dot(&x, &aty));
            let gap = (l - r).abs() / l.abs().max(r.abs());
            assert!(gap < 1e-6, "{}: gap {gap:e}", op.describe());
        }
    }
}
