//! Which forward operator (OperatorArgs): the flags of every operator, their checks, and the
//! image size a measurement reconstructs to.

use crate::error::Result;
use crate::operators::{Kernel, Mask, Operator};
use crate::{bail, io};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// Motion blur (--kernel-size, --angle).
    Motion,
    /// Gaussian blur (--kernel-size, --variance).
    Gaussian,
    /// A user blur kernel (--kernel-file).
    Custom,
    /// Sparse-view parallel-beam CT (--views, --arc, --detectors).
    Ct,
    /// Inpainting (--mask, or --keep with --mask-seed, or --box).
    Inpaint,
    /// Super-resolution by block averaging (--factor).
    Downsample,
}

/// The image size where nothing else gives it (CT measurements): the bundled prior's.
pub const MODEL_SIZE: (usize, usize) = (64, 64);

/// The CT view count when --views is not given.
pub const DEFAULT_VIEWS: usize = 60;
pub const DEFAULT_ARC: f64 = 180.0;

/// `evaluate --task`: which inverse problem the table is about.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Deblurring (--operator motion, gaussian or custom; default motion).
    Deblur,
    /// Sparse-view CT (--operator ct; default 60 views).
    Ct,
    /// Inpainting (--operator inpaint; default --keep 0.3: 70 % of pixels missing at random).
    Inpaint,
    /// Super-resolution (--operator downsample; default --factor 2).
    Sr,
}

#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// The forward operator A [default: motion].
    #[arg(long, value_enum)]
    pub operator: Option<OperatorKind>,
    #[arg(long, default_value_t = 9, allow_negative_numbers = true)]
    pub kernel_size: i64,
    /// Motion direction in degrees.
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    pub angle: f64,
    /// Gaussian variance (pixels²).
    #[arg(long, allow_negative_numbers = true)]
    pub variance: Option<f64>,
    /// A (k, k) .npy kernel for --operator custom, used as given.
    #[arg(long)]
    pub kernel_file: Option<PathBuf>,
    /// ct: number of views, evenly spaced over --arc [default: 60].
    #[arg(long, allow_negative_numbers = true)]
    pub views: Option<i64>,
    /// ct: the views' arc in degrees, in (0, 360] [default: 180].
    #[arg(long, allow_negative_numbers = true)]
    pub arc: Option<f64>,
    /// ct: detector bins [default: ceil(sqrt(H² + W²))].
    #[arg(long, allow_negative_numbers = true)]
    pub detectors: Option<i64>,
    /// inpaint: the mask, .png or .npy of the image's shape (non-zero = observed).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// inpaint: keep each pixel with probability F in (0, 1] (a random mask, see --mask-seed).
    #[arg(long, allow_negative_numbers = true)]
    pub keep: Option<f64>,
    /// inpaint: the random mask's seed.
    #[arg(long, default_value_t = 0)]
    pub mask_seed: u64,
    /// inpaint: a missing rectangle X,Y,W,H (top-left column and row, width, height).
    #[arg(long = "box", value_delimiter = ',', allow_negative_numbers = true)]
    pub missing_box: Vec<i64>,
    /// downsample: the block size F (H and W divisible by F).
    #[arg(long, allow_negative_numbers = true)]
    pub factor: Option<i64>,
}

/// A count flag as usize: positive, or a message naming the flag.
fn positive(v: i64, flag: &str) -> Result<usize> {
    if v < 1 {
        bail!("{flag} must be a positive integer, got {v}");
    }
    Ok(v as usize)
}

/// `--size H,W` (or one number for a square).
pub fn parse_size(v: &[i64]) -> Result<(usize, usize)> {
    match *v {
        [s] => Ok((positive(s, "--size")?, positive(s, "--size")?)),
        [h, w] => Ok((positive(h, "--size")?, positive(w, "--size")?)),
        _ => bail!("--size takes H,W (or one number for a square image), got {v:?}"),
    }
}

impl OperatorArgs {
    pub fn kind(&self) -> OperatorKind {
        self.operator.unwrap_or(OperatorKind::Motion)
    }

    /// These flags for `task`: the task's operator (an explicit --operator must agree) and
    /// its defaults where the flags leave them open.
    pub fn for_task(&self, task: Task) -> Result<OperatorArgs> {
        use OperatorKind::*;
        let (allowed, default): (&[OperatorKind], OperatorKind) = match task {
            Task::Deblur => (&[Motion, Gaussian, Custom], Motion),
            Task::Ct => (&[Ct], Ct),
            Task::Inpaint => (&[Inpaint], Inpaint),
            Task::Sr => (&[Downsample], Downsample),
        };
        let kind = self.operator.unwrap_or(default);
        if !allowed.contains(&kind) {
            bail!(
                "--task {task} does not go with --operator {kind}",
                task = format!("{task:?}").to_lowercase(),
                kind = format!("{kind:?}").to_lowercase()
            );
        }
        let mut args = self.clone();
        args.operator = Some(kind);
        let no_mask = args.mask.is_none() && args.keep.is_none() && args.missing_box.is_empty();
        if kind == Inpaint && no_mask {
            args.keep = Some(0.3);
        }
        if kind == Downsample && args.factor.is_none() {
            args.factor = Some(2);
        }
        Ok(args)
    }

    /// Refuse flags that belong to another operator, so a typo never runs the wrong task.
    fn check_flags(&self) -> Result<()> {
        use OperatorKind::*;
        let op = self.kind();
        let given: [(&str, bool, &[OperatorKind]); 8] = [
            ("--views", self.views.is_some(), &[Ct]),
            ("--arc", self.arc.is_some(), &[Ct]),
            ("--detectors", self.detectors.is_some(), &[Ct]),
            ("--mask", self.mask.is_some(), &[Inpaint]),
            ("--keep", self.keep.is_some(), &[Inpaint]),
            ("--box", !self.missing_box.is_empty(), &[Inpaint]),
            ("--factor", self.factor.is_some(), &[Downsample]),
            ("--variance", self.variance.is_some(), &[Gaussian]),
        ];
        for (flag, on, owners) in given {
            if on && !owners.contains(&op) {
                let owner = format!("{:?}", owners[0]).to_lowercase();
                bail!(
                    "{flag} applies to --operator {owner}, not {op}",
                    op = format!("{op:?}").to_lowercase()
                );
            }
        }
        Ok(())
    }

    /// The operator for images of (h, w).
    pub fn operator(&self, image: (usize, usize)) -> Result<Operator> {
        self.check_flags()?;
        let (h, w) = image;
        match self.kind() {
            OperatorKind::Motion | OperatorKind::Gaussian | OperatorKind::Custom => {
                self.blur_kernel().map(Operator::Blur)
            }
            OperatorKind::Ct => {
                let views = match self.views {
                    Some(v) => positive(v, "--views")?,
                    None => DEFAULT_VIEWS,
                };
                let detectors = self
                    .detectors
                    .map(|d| positive(d, "--detectors"))
                    .transpose()?;
                let arc = self.arc.unwrap_or(DEFAULT_ARC);
                if !(arc.is_finite() && arc > 0.0 && arc <= 360.0) {
                    bail!("--arc must lie in (0, 360] degrees, got {arc}");
                }
                Operator::ct(h, w, views, detectors, arc)
            }
            OperatorKind::Inpaint => self.mask(h, w).map(Operator::Inpaint),
            OperatorKind::Downsample => match self.factor {
                Some(f) => {
                    let op = Operator::downsample(positive(f, "--factor")?)?;
                    op.measurement_dims(image)?;
                    Ok(op)
                }
                None => bail!("--operator downsample needs --factor F"),
            },
        }
    }

    /// The image size a measurement of (rows, cols) reconstructs to: CT from `size` (--size)
    /// or else `default` (the model's training size); super-resolution F times the
    /// measurement; a mask file its own size; else the measurement's.
    pub fn image_for(
        &self,
        m: (usize, usize),
        size: Option<(usize, usize)>,
        default: (usize, usize),
    ) -> Result<(usize, usize)> {
        let inferred = match self.kind() {
            OperatorKind::Ct => return Ok(size.unwrap_or(default)),
            OperatorKind::Downsample => match self.factor {
                Some(f) => Operator::downsample(positive(f, "--factor")?)?.image_dims(m)?,
                None => bail!("--operator downsample needs --factor F"),
            },
            _ => m,
        };
        if let Some(s) = size {
            if s != inferred {
                bail!(
                    "--size {}×{} contradicts the {}×{} images this measurement gives",
                    s.0,
                    s.1,
                    inferred.0,
                    inferred.1
                );
            }
        }
        Ok(inferred)
    }

    fn mask(&self, h: usize, w: usize) -> Result<Mask> {
        let sources = [
            self.mask.is_some(),
            self.keep.is_some(),
            !self.missing_box.is_empty(),
        ];
        if sources.iter().filter(|&&s| s).count() != 1 {
            bail!("--operator inpaint needs exactly one of --mask M, --keep F, --box X,Y,W,H");
        }
        if let Some(p) = &self.mask {
            return read_mask(p).map_err(|e| e.context(p.display()));
        }
        if let Some(keep) = self.keep {
            return Mask::random(h, w, keep, self.mask_seed);
        }
        let b = &self.missing_box;
        if b.len() != 4 || b.iter().any(|&v| v < 0) {
            bail!("--box takes four non-negative integers X,Y,W,H, got {b:?}");
        }
        Mask::missing_box(h, w, [b[0], b[1], b[2], b[3]].map(|v| v as usize))
    }

    fn blur_kernel(&self) -> Result<Kernel> {
        let size = || -> Result<usize> {
            if self.kernel_size <= 0 {
                bail!(
                    "--kernel-size must be a positive odd number, got {}",
                    self.kernel_size
                );
            }
            Ok(self.kernel_size as usize)
        };
        match self.kind() {
            OperatorKind::Gaussian => match self.variance {
                Some(v) => Kernel::gaussian(size()?, v),
                None => bail!("--operator gaussian needs --variance V"),
            },
            OperatorKind::Custom => match &self.kernel_file {
                Some(p) => {
                    Kernel::custom(&io::npy::read_npy(p)?).map_err(|e| e.context(p.display()))
                }
                None => bail!("--operator custom needs --kernel-file K.npy"),
            },
            _ => Kernel::motion(size()?, self.angle),
        }
    }
}

/// A mask file: a PNG's non-zero pixels (model value above −1) or a .npy's non-zero values.
fn read_mask(path: &Path) -> Result<Mask> {
    let t = io::read_image(path)?;
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        let observed = t.data().iter().map(|&v| (v > -1.0) as u8 as f32).collect();
        return Mask::from_array(&crate::tensor::Tensor::new(t.shape().to_vec(), observed)?);
    }
    Mask::from_array(&t)
}
