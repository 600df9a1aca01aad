//! The `diffrecon` Python module over the engine's embedding API (`diffrecon::api`).
//!
//! Arrays: float32 (H, W) or (N, 1, H, W) numpy arrays in, float32 arrays of the same rank out;
//! float64 input is converted to float32 (values beyond float32's range become infinite and are
//! refused), other dtypes raise TypeError. Engine errors raise ValueError (bad input, with the
//! engine's message) or RuntimeError (internal). The GIL is released while the engine runs.

use engine::api::{self, Device, Error, Kernel, Mask, Operator, Precision, Sampler, SharedModel};
use numpy::ndarray::ArrayD;
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

fn py_err(e: Error) -> PyErr {
    match e {
        Error::Input(m) => PyValueError::new_err(m),
        Error::Internal(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// An image stack from numpy, and whether it came as a single (H, W) image.
fn stack_from(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(api::Tensor, bool)> {
    let (shape, data): (Vec<usize>, Vec<f32>) = if let Ok(a) = obj.downcast::<PyArrayDyn<f32>>() {
        let a = a.readonly();
        let v = a.as_array();
        (v.shape().to_vec(), v.iter().copied().collect())
    } else if let Ok(a) = obj.downcast::<PyArrayDyn<f64>>() {
        let a = a.readonly();
        let v = a.as_array();
        (v.shape().to_vec(), v.iter().map(|&x| x as f32).collect())
    } else {
        let kind = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| obj.get_type().to_string());
        return Err(PyTypeError::new_err(format!(
            "{what} must be a numpy float32 (or float64) array, got {kind}"
        )));
    };
    let single = shape.len() == 2;
    let nchw = match *shape.as_slice() {
        [h, w] => vec![1, 1, h, w],
        [n, 1, h, w] => vec![n, 1, h, w],
        _ => {
            return Err(PyValueError::new_err(format!(
                "{what} must have shape (H, W) or (N, 1, H, W), got {shape:?}"
            )))
        }
    };
    if nchw.contains(&0) {
        return Err(PyValueError::new_err(format!(
            "{what} has an empty dimension in shape {shape:?}"
        )));
    }
    Ok((api::Tensor::new(nchw, data).map_err(py_err)?, single))
}

/// A float32 numpy array of `t`, as (H, W) when the input was one.
fn to_numpy<'py>(py: Python<'py>, t: api::Tensor, single: bool) -> PyResult<Bound<'py, PyAny>> {
    let mut shape = t.shape().to_vec();
    if single {
        shape.drain(..2);
    }
    let a = ArrayD::from_shape_vec(shape, t.into_data())
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py).into_any())
}

/// Blur: `Blur(kind="motion", size=9, angle=20)`, `Blur(kind="gaussian", size=9, variance=2.0)`
/// or `Blur(kernel=K)` with a (k, k) float array used as given. Measurements are the image's size.
#[pyclass(frozen, module = "diffrecon")]
struct Blur {
    kernel: Kernel,
}

#[pymethods]
impl Blur {
    #[new]
    #[pyo3(signature = (kind="motion", size=9, angle=20.0, variance=None, kernel=None))]
    fn new(
        kind: &str,
        size: usize,
        angle: f64,
        variance: Option<f64>,
        kernel: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let kernel = match (kernel, kind) {
            (Some(k), _) => {
                let (t, _) = stack_from(k, "kernel")?;
                let k = t.shape()[3];
                Kernel::custom(&t.reshape(&[k, k]).map_err(py_err)?)
            }
            (None, "motion") => Kernel::motion(size, angle),
            (None, "gaussian") => match variance {
                Some(v) => Kernel::gaussian(size, v),
                None => return Err(PyValueError::new_err("a gaussian Blur needs variance=")),
            },
            (None, other) => {
                return Err(PyValueError::new_err(format!(
                    "unknown blur kind '{other}': use motion or gaussian (or kernel=)"
                )))
            }
        };
        Ok(Blur {
            kernel: kernel.map_err(py_err)?,
        })
    }

    fn __repr__(&self) -> String {
        format!("Blur({})", Operator::Blur(self.kernel.clone()).describe())
    }
}

/// Parallel-beam sparse-view CT of `size` = (H, W) images: `views` over `arc` degrees,
/// `detectors` bins (None: ceil(√(H² + W²))). Measurements are (views, detectors) sinograms.
#[pyclass(frozen, module = "diffrecon", name = "CT")]
struct Ct {
    op: Operator,
}

#[pymethods]
impl Ct {
    #[new]
    #[pyo3(signature = (views=60, arc=180.0, size=(64, 64), detectors=None))]
    fn new(
        views: usize,
        arc: f64,
        size: (usize, usize),
        detectors: Option<usize>,
    ) -> PyResult<Self> {
        let op = Operator::ct(size.0, size.1, views, detectors, arc).map_err(py_err)?;
        Ok(Ct { op })
    }

    fn __repr__(&self) -> String {
        format!("CT({})", self.op.describe())
    }
}

#[derive(Clone)]
enum MaskSpec {
    Random { keep: f64, seed: u64 },
    Array(Mask),
    Box([usize; 4]),
}

/// Inpainting: `Inpaint(keep=0.3, seed=0)` observes a random fraction of the pixels (the mask
/// drawn for the image's size), `Inpaint(mask=M)` where the (H, W) array M is non-zero, or
/// `Inpaint(box=(x, y, w, h))` everything but that box. Measurements are the image's size.
#[pyclass(frozen, module = "diffrecon")]
struct Inpaint {
    spec: MaskSpec,
}

#[pymethods]
impl Inpaint {
    #[new]
    #[pyo3(signature = (keep=None, seed=0, mask=None, r#box=None))]
    fn new(
        keep: Option<f64>,
        seed: u64,
        mask: Option<&Bound<'_, PyAny>>,
        r#box: Option<(usize, usize, usize, usize)>,
    ) -> PyResult<Self> {
        let spec = match (keep, mask, r#box) {
            (Some(keep), None, None) => {
                // Checked now with a 1×1 stand-in, built for the real size at use.
                Mask::random(1, 1, keep, seed).map_err(py_err)?;
                MaskSpec::Random { keep, seed }
            }
            (None, Some(m), None) => {
                let (t, _) = stack_from(m, "mask")?;
                MaskSpec::Array(Mask::from_array(&t).map_err(py_err)?)
            }
            (None, None, Some((x, y, w, h))) => MaskSpec::Box([x, y, w, h]),
            _ => {
                return Err(PyValueError::new_err(
                    "Inpaint takes exactly one of keep= (with seed=), mask= or box=",
                ))
            }
        };
        Ok(Inpaint { spec })
    }
}

impl Inpaint {
    fn operator(&self, h: usize, w: usize) -> api::Result<Operator> {
        Ok(Operator::Inpaint(match &self.spec {
            MaskSpec::Random { keep, seed } => Mask::random(h, w, *keep, *seed)?,
            MaskSpec::Array(m) => m.clone(),
            MaskSpec::Box(rect) => Mask::missing_box(h, w, *rect)?,
        }))
    }
}

/// Super-resolution: the mean of each `factor` × `factor` block, (H/F, W/F) measurements.
#[pyclass(frozen, module = "diffrecon")]
struct Downsample {
    op: Operator,
}

#[pymethods]
impl Downsample {
    #[new]
    #[pyo3(signature = (factor=2))]
    fn new(factor: usize) -> PyResult<Self> {
        Ok(Downsample {
            op: Operator::downsample(factor).map_err(py_err)?,
        })
    }
}

/// The engine's operator for a Python operator object (None: the CLI's default 9-pixel motion
/// blur at 20°), given the image's (h, w) where an inpainting mask must be drawn for it.
fn operator_of(obj: Option<&Bound<'_, PyAny>>, image: (usize, usize)) -> PyResult<Operator> {
    let Some(obj) = obj else {
        return Kernel::motion(9, 20.0).map(Operator::Blur).map_err(py_err);
    };
    if let Ok(b) = obj.downcast::<Blur>() {
        Ok(Operator::Blur(b.get().kernel.clone()))
    } else if let Ok(c) = obj.downcast::<Ct>() {
        Ok(c.get().op.clone())
    } else if let Ok(i) = obj.downcast::<Inpaint>() {
        i.get().operator(image.0, image.1).map_err(py_err)
    } else if let Ok(d) = obj.downcast::<Downsample>() {
        Ok(d.get().op.clone())
    } else {
        Err(PyTypeError::new_err(format!(
            "operator must be diffrecon.Blur, CT, Inpaint or Downsample, got {}",
            obj.get_type()
        )))
    }
}

/// y = A x + e for images `x` ((H, W) or (N, 1, H, W)), with relative noise
/// ‖e‖/‖Ax‖ = `noise_level` per slice from `seed` (as `diffrecon simulate`). float64 `x` is
/// converted to float32. Returns float32 of the same rank.
#[pyfunction]
#[pyo3(signature = (x, operator=None, noise_level=0.01, seed=0))]
fn simulate<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    operator: Option<&Bound<'py, PyAny>>,
    noise_level: f64,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, single) = stack_from(x, "x")?;
    let op = operator_of(operator, (x.shape()[2], x.shape()[3]))?;
    let y = py
        .allow_threads(|| api::simulate(&x, &op, noise_level, seed))
        .map_err(py_err)?;
    to_numpy(py, y, single)
}

/// A loaded prior: `Model(path=None, device="auto", precision="f32")`; path None loads the
/// bundled prior. Load once, reconstruct many times; calls on one model from several threads
/// are serialized (use one model per thread for parallel work).
#[pyclass(frozen, module = "diffrecon")]
struct Model {
    model: Mutex<SharedModel>,
    device: String,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path=None, device="auto", precision="f32"))]
    fn new(py: Python<'_>, path: Option<PathBuf>, device: &str, precision: &str) -> PyResult<Self> {
        let device: Device = device.parse().map_err(PyValueError::new_err)?;
        let precision = match precision {
            "f32" => Precision::F32,
            "tf32" => Precision::Tf32,
            "bf16" => Precision::Bf16,
            p => {
                return Err(PyValueError::new_err(format!(
                    "unknown precision '{p}': use f32, tf32 or bf16"
                )))
            }
        };
        let model = py
            .allow_threads(|| api::load(path.as_deref(), device, precision))
            .map_err(py_err)?;
        Ok(Model {
            device: model.device(),
            model: Mutex::new(model),
        })
    }

    /// The backend, in words.
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// Reconstruct the measurement `y` ((rows, cols) or (N, 1, rows, cols); float64 is
    /// converted to float32) measured through `operator` (default: the CLI's 9-pixel motion
    /// blur at 20°) with `sampler` ("diffpir-pnp", "dps", "diffpir", "dps-paper", "tikhonov",
    /// "tv", "fbp"), `steps` (None: the sampler's default, 40), `seed` (slice i of a published
    /// sampler uses seed + i), `samples` per slice (their mean is returned) and the sampler's
    /// other parameters by name (lambda, zeta, noise_level, t_start, cg_iters, cg_tol,
    /// skip="quad"|"uniform", guidance, sigma_y, tau, eta). Returns the float32 image of y's
    /// rank; with `return_info=True` also a dict with the per-slice `residual`
    /// ‖Ax − y‖/‖y‖, the `cg` report (diffpir-pnp) and the samples' `std` (samples > 1).
    /// The bits equal `diffrecon reconstruct` with the same arguments.
    #[pyo3(signature = (y, operator=None, sampler="diffpir-pnp", steps=None, seed=0, samples=1, return_info=false, **params))]
    #[allow(clippy::too_many_arguments)]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        y: &Bound<'py, PyAny>,
        operator: Option<&Bound<'py, PyAny>>,
        sampler: &str,
        steps: Option<usize>,
        seed: u64,
        samples: usize,
        return_info: bool,
        params: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (y, single) = stack_from(y, "y")?;
        let mut s = Sampler::from_name(sampler).map_err(py_err)?;
        if let Some(steps) = steps {
            s.set("steps", steps as f64).map_err(py_err)?;
        }
        for (k, v) in params.into_iter().flatten() {
            let k: String = k.extract()?;
            if let Ok(text) = v.downcast::<PyString>() {
                if k != "skip" {
                    return Err(PyValueError::new_err(format!(
                        "sampler parameter {k} must be a number, got '{text}'"
                    )));
                }
                s.set_skip(&text.extract::<String>()?).map_err(py_err)?;
            } else {
                let value: f64 = v.extract().map_err(|_| {
                    PyTypeError::new_err(format!("sampler parameter {k} must be a number"))
                })?;
                s.set(&k, value).map_err(py_err)?;
            }
        }
        let rows_cols = (y.shape()[2], y.shape()[3]);
        // Inpainting's image is the measurement's size; the other operators ignore this.
        let op = operator_of(operator, rows_cols)?;
        let r = py
            .allow_threads(|| {
                let m = self.model.lock().unwrap_or_else(PoisonError::into_inner);
                api::reconstruct(m.as_ref(), &y, &op, &s, seed, samples)
            })
            .map_err(py_err)?;
        let image = to_numpy(py, r.image, single)?;
        if !return_info {
            return Ok(image);
        }
        let info = PyDict::new(py);
        info.set_item("residual", r.residual)?;
        match r.cg {
            Some(cg) => {
                let d = PyDict::new(py);
                d.set_item("solves", cg.solves)?;
                d.set_item("iters", cg.iters)?;
                d.set_item("rel_residual", cg.rel_residual)?;
                info.set_item("cg", d)?;
            }
            None => info.set_item("cg", py.None())?,
        }
        match r.std {
            Some(std) => info.set_item("std", to_numpy(py, std, single)?)?,
            None => info.set_item("std", py.None())?,
        }
        Ok((image, info).into_pyobject(py)?.into_any())
    }

    fn __repr__(&self) -> String {
        format!("diffrecon.Model(device='{}')", self.device)
    }
}

/// Diffusion-prior image reconstruction in-process: `Model`, the operators `Blur`, `CT`,
/// `Inpaint`, `Downsample`, and `simulate`.
#[pymodule]
#[pyo3(name = "diffrecon")]
fn diffrecon_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SAMPLERS", Sampler::NAMES.to_vec())?;
    m.add_class::<Model>()?;
    m.add_class::<Blur>()?;
    m.add_class::<Ct>()?;
    m.add_class::<Inpaint>()?;
    m.add_class::<Downsample>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    Ok(())
}
