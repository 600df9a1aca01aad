//! Forward operators A: a host description (`Operator`), its uploaded form on a backend
//! (`Uploaded`), and the view the samplers use (`LinOp`: A, Aᵀ, ‖A‖, shapes). A sampler never
//! knows which operator it runs. The exact definitions are in OPERATORS.md (shared/).

pub mod blur;
pub mod ct;
pub mod inpaint;
pub mod noise;

pub use blur::Kernel;
pub use ct::CtOperator;
pub use inpaint::Mask;
pub use noise::{relative_noise, simulate};

use crate::backend::{self, Backend, CtGeometry};
use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

/// A linear forward operator on model space, acting on each slice of an (N, 1, H, W) batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// 'Same'-size correlation with a (k, k) kernel, zero padding.
    Blur(Kernel),
    /// Parallel-beam sparse-view CT (Joseph's projector): sinograms (V, D).
    Ct(CtOperator),
    /// y = M ⊙ x for a 0/1 mask of the image's shape.
    Inpaint(Mask),
    /// The mean of each F × F block: (H/F, W/F).
    Downsample(usize),
}

/// The largest `--factor` (a block of 256 × 256 pixels per measurement).
pub const MAX_FACTOR: usize = 256;

impl From<Kernel> for Operator {
    fn from(k: Kernel) -> Self {
        Operator::Blur(k)
    }
}

impl Operator {
    /// Sparse-view CT of an (h, w) image: `views` over `arc_degrees`, `detectors` bins (None:
    /// ceil(√(h² + w²))).
    pub fn ct(
        h: usize,
        w: usize,
        views: usize,
        detectors: Option<usize>,
        arc_degrees: f64,
    ) -> Result<Self> {
        let g = CtGeometry::new(h, w, views, detectors, arc_degrees)?;
        Ok(Operator::Ct(CtOperator::new(g)))
    }

    /// Block-average super-resolution by `factor`.
    pub fn downsample(factor: usize) -> Result<Self> {
        if factor == 0 || factor > MAX_FACTOR {
            bail!("--factor must be between 1 and {MAX_FACTOR}, got {factor}");
        }
        Ok(Operator::Downsample(factor))
    }

    /// The task's name in tables and `--task`.
    pub fn task(&self) -> &'static str {
        match self {
            Operator::Blur(_) => "deblur",
            Operator::Ct(_) => "ct",
            Operator::Inpaint(_) => "inpaint",
            Operator::Downsample(_) => "sr",
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            Operator::Blur(k) => format!("blur, {}×{} kernel", k.size, k.size),
            Operator::Ct(c) => {
                let g = &c.geometry;
                format!(
                    "parallel-beam CT, {} views over {}°, {} detectors, {}×{} image",
                    g.views, g.arc_degrees, g.detectors, g.height, g.width
                )
            }
            Operator::Inpaint(m) => format!(
                "inpainting, {:.1} % of {}×{} pixels observed",
                100.0 * m.kept(),
                m.height,
                m.width
            ),
            Operator::Downsample(f) => format!("super-resolution, {f}×{f} block average"),
        }
    }

    /// What the task's observation baseline is called (`LinOp::initial_estimate`).
    pub fn estimate_name(&self) -> &'static str {
        match self {
            Operator::Blur(_) => "Observation",
            Operator::Ct(_) => "FBP",
            Operator::Inpaint(_) => "Masked image",
            Operator::Downsample(_) => "Block replication",
        }
    }

    /// The measurement's (rows, columns) for an image of (h, w).
    pub fn measurement_dims(&self, image: (usize, usize)) -> Result<(usize, usize)> {
        let (h, w) = image;
        match self {
            Operator::Blur(_) => Ok(image),
            Operator::Ct(c) => {
                let g = &c.geometry;
                if (g.height, g.width) != image {
                    bail!(
                        "the image is {h}×{w} but the CT geometry is for {}×{} images (--size)",
                        g.height,
                        g.width
                    );
                }
                Ok((g.views, g.detectors))
            }
            Operator::Inpaint(m) => {
                if (m.height, m.width) != image {
                    bail!(
                        "the image is {h}×{w} but the inpainting mask is {}×{}",
                        m.height,
                        m.width
                    );
                }
                Ok(image)
            }
            Operator::Downsample(f) => {
                if !h.is_multiple_of(*f) || !w.is_multiple_of(*f) {
                    bail!("--factor {f} does not divide the {h}×{w} image");
                }
                Ok((h / f, w / f))
            }
        }
    }

    /// The image's (h, w) for a measurement of (rows, columns), checking that they fit.
    pub fn image_dims(&self, measurement: (usize, usize)) -> Result<(usize, usize)> {
        let (r, c) = measurement;
        match self {
            Operator::Blur(_) => Ok(measurement),
            Operator::Ct(ct) => {
                let g = &ct.geometry;
                if (g.views, g.detectors) != measurement {
                    bail!(
                        "the measurement is {r}×{c} but a sinogram of this CT geometry is {}×{} (views × detectors; see --views, --detectors, --size)",
                        g.views,
                        g.detectors
                    );
                }
                Ok((g.height, g.width))
            }
            Operator::Inpaint(m) => {
                if (m.height, m.width) != measurement {
                    bail!(
                        "the measurement is {r}×{c} but the inpainting mask is {}×{}",
                        m.height,
                        m.width
                    );
                }
                Ok(measurement)
            }
            Operator::Downsample(f) => match (r.checked_mul(*f), c.checked_mul(*f)) {
                (Some(h), Some(w)) if h <= 1 << 16 && w <= 1 << 16 => Ok((h, w)),
                _ => bail!("a {r}×{c} measurement at --factor {f} makes an image too large"),
            },
        }
    }

    /// ‖A‖ (the operator 2-norm) or the upper bound the step sizes use. Blur: Σ|k| (Young's
    /// inequality), taken as exactly 1 for a non-negative kernel that sums to 1 up to f32
    /// rounding (motion, Gaussian), so τ keeps the notebook's meaning there.
    pub fn norm(&self) -> f64 {
        match self {
            Operator::Blur(k) => k.norm_bound(),
            Operator::Ct(c) => c.norm(),
            // A 0/1 mask with an observed pixel: exactly 1.
            Operator::Inpaint(_) => 1.0,
            Operator::Downsample(f) => 1.0 / *f as f64,
        }
    }

    /// The operator's buffers on `be`.
    pub fn upload<B: Backend>(&self, be: &B) -> Result<Uploaded<B>> {
        let buf = match self {
            Operator::Blur(k) => Some(be.upload(&k.to_tensor())?),
            Operator::Ct(c) => Some(be.upload(&c.angle_table()?)?),
            Operator::Inpaint(m) => Some(be.upload(&m.to_tensor()?)?),
            Operator::Downsample(_) => None,
        };
        Ok(Uploaded {
            op: self.clone(),
            buf,
        })
    }

    /// A x on the reference backend (simulation, residuals of results that did not come from a
    /// model): the same bits on every machine.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let be = backend::reference();
        let up = self.upload(&be)?;
        let op = up.view();
        op.check_image(image_dims(x.shape())?)?;
        op.apply(&be, x)
    }

    /// Aᵀ y on the reference backend.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let be = backend::reference();
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
        self.buf
            .expect("operators with a buffer carry it from upload")
    }

    /// A x.
    pub fn apply(&self, be: &B, x: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) => be.blur(x, self.buf(), false),
            Operator::Ct(c) => be.ct_project(x, &c.geometry, self.buf()),
            Operator::Inpaint(_) => be.inpaint_mask(x, self.buf()),
            Operator::Downsample(f) => be.downsample(x, *f),
        }
    }

    /// Aᵀ y.
    pub fn adjoint(&self, be: &B, y: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) => be.blur(y, self.buf(), true),
            Operator::Ct(c) => be.ct_backproject(y, &c.geometry, self.buf()),
            Operator::Inpaint(_) => be.inpaint_mask(y, self.buf()),
            Operator::Downsample(f) => be.downsample_adjoint(y, *f),
        }
    }

    /// AᵀA x.
    pub fn normal(&self, be: &B, x: &B::Buf) -> Result<B::Buf> {
        self.adjoint(be, &self.apply(be, x)?)
    }

    pub fn norm(&self) -> f64 {
        self.op.norm()
    }

    /// An image-shaped first estimate from y — where the notebook's DiffPIR-style, published
    /// DiffPIR and TV start, and each task's observation baseline: blur and inpainting y itself
    /// (as the notebook does), CT filtered back-projection, super-resolution F²·Aᵀy (each
    /// value replicated into its block).
    pub fn initial_estimate(&self, be: &B, y: &B::Buf) -> Result<B::Buf> {
        match self.op {
            Operator::Blur(_) | Operator::Inpaint(_) => Ok(y.clone()),
            Operator::Ct(c) => {
                let g = &c.geometry;
                let bp = be.ct_backproject(&be.ct_ramp_filter(y)?, g, self.buf())?;
                be.lincomb(&bp, g.fbp_scale(), &bp, 0.0)
            }
            Operator::Downsample(f) => {
                let up = be.downsample_adjoint(y, *f)?;
                be.lincomb(&up, (f * f) as f32, &up, 0.0)
            }
        }
    }

    /// One gradient step on ½‖A x − y‖² with τ in units of 1/‖A‖², clamped to [−1, 1]:
    /// clamp(xp − τ/‖A‖²·Aᵀ(A xp − y)). Blur runs the backend's fused step.
    pub fn gradient_step(&self, be: &B, xp: &B::Buf, y: &B::Buf, tau: f64) -> Result<B::Buf> {
        let n2 = self.norm() * self.norm();
        let step = if n2 > 0.0 { tau / n2 } else { 0.0 };
        match self.op {
            Operator::Blur(_) => be.data_step(xp, y, self.buf(), step as f32),
            _ => {
                let r = be.lincomb(&self.apply(be, xp)?, 1.0, y, -1.0)?;
                let mut x = be.lincomb(xp, 1.0, &self.adjoint(be, &r)?, -step as f32)?;
                be.clamp(&mut x, -1.0, 1.0)?;
                Ok(x)
            }
        }
    }

    /// Values a captured CUDA graph depends on besides its inputs' shapes: scalars the
    /// operator's kernels take as arguments, and ‖A‖, which a sampler's step sizes divide by
    /// (a blur's bound depends on its kernel's values, which are an input, not a shape).
    pub fn key_values(&self) -> Vec<u64> {
        let mut values = match self.op {
            Operator::Blur(_) => vec![1],
            Operator::Ct(c) => {
                let g = &c.geometry;
                let dims = [g.height, g.width, g.views, g.detectors].map(|v| v as u64);
                [vec![2], dims.to_vec(), vec![g.arc_degrees.to_bits()]].concat()
            }
            Operator::Inpaint(_) => vec![3],
            Operator::Downsample(f) => vec![4, *f as u64],
        };
        values.push(self.norm().to_bits());
        values
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
        let (h, w) = (24, 20);
        let ops = [
            Operator::Blur(Kernel::motion(9, 20.0).unwrap()),
            Operator::Blur(Kernel::gaussian(5, 1.5).unwrap()),
            Operator::ct(h, w, 7, None, 120.0).unwrap(),
            Operator::ct(h, w, 1, None, 180.0).unwrap(),
            Operator::Inpaint(Mask::random(h, w, 0.3, 4).unwrap()),
            Operator::downsample(4).unwrap(),
        ];
        for op in ops {
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
            println!("{}: dot-test gap {gap:.1e}", op.describe());
            assert!(gap < 1e-5, "{}: gap {gap:e}", op.describe());
        }
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn shapes_that_do_not_fit_are_input_errors_naming_both() {
        let ct = Operator::ct(64, 64, 60, None, 180.0).unwrap();
        assert_eq!(ct.measurement_dims((64, 64)).unwrap(), (60, 91));
        assert_eq!(ct.image_dims((60, 91)).unwrap(), (64, 64));
        let e = ct.image_dims((64, 64)).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("64×64") && e.to_string().contains("60×91"),
            "{e}"
        );
        assert!(ct.measurement_dims((32, 32)).is_err());
        let sr = Operator::downsample(3).unwrap();
        assert_eq!(sr.measurement_dims((63, 30)).unwrap(), (21, 10));
        assert!(sr.measurement_dims((64, 30)).is_err());
        assert!(Operator::downsample(0).is_err());
        let m = Operator::Inpaint(Mask::random(8, 8, 0.5, 0).unwrap());
        assert!(m.image_dims((8, 9)).is_err());
        for bad in [
            Operator::ct(64, 64, 0, None, 180.0),
            Operator::ct(64, 64, 60, None, 0.0),
        ] {
            assert_eq!(bad.unwrap_err().exit_code(), 2);
        }
        assert!(Operator::ct(64, 64, 60, None, 361.0).is_err());
    }

    /// FBP (the CT operator's estimate) of a disc recovers the disc.
    #[test]
    fn ct_estimate_is_fbp() {
        let (h, w) = (32, 32);
        let disc: Vec<f32> = (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f32 - 15.5, (i % w) as f32 - 15.5);
                if x * x + y * y < 100.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let x = Tensor::new(vec![1, 1, h, w], disc).unwrap();
        let op = Operator::ct(h, w, 90, None, 180.0).unwrap();
        let y = op.apply(&x).unwrap();
        let be = CpuBackend::default();
        let up = op.upload(&be).unwrap();
        let fbp = up.view().initial_estimate(&be, &y).unwrap();
        let centre = fbp.data()[16 * w + 16];
        assert!((centre - 1.0).abs() < 0.05, "FBP centre {centre}");
        let corner = fbp.data()[w + 1];
        assert!(corner.abs() < 0.05, "FBP corner {corner}");
    }
}
