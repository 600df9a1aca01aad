//! Loading a prior onto a device.

use super::boundary::{free, guard, invalid, put, text, Failure};
use super::diffrecon_model;
use super::diffrecon_status::{self, *};
use crate::api::{self, Device, Error};
use crate::engine;
use crate::precision::Precision;
use std::ffi::c_char;
use std::path::Path;
use std::sync::Mutex;

/// Load a prior. `path`: a .safetensors file, NULL for the bundled prior. `device`: "auto"
/// (NULL), "cpu", "cuda" or "cuda:N". `precision`: "f32" (NULL), "tf32" or "bf16".
#[no_mangle]
pub unsafe extern "C" fn diffrecon_model_load(
    path: *const c_char,
    device: *const c_char,
    precision: *const c_char,
    out: *mut *mut diffrecon_model,
) -> diffrecon_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("the out-parameter is NULL"));
        }
        let device: Device = text(device, "device", Some("auto"))?
            .parse()
            .map_err(invalid)?;
        let precision = text(precision, "precision", Some("f32"))?;
        let precision =
            <Precision as clap::ValueEnum>::from_str(precision, false).map_err(|_| {
                invalid(format!(
                    "unknown precision '{precision}': use f32, tf32 or bf16"
                ))
            })?;
        let path = if path.is_null() {
            None
        } else {
            let p = Path::new(text(path, "path", None)?).to_path_buf();
            std::fs::File::open(&p).map_err(|e| {
                Failure(DIFFRECON_IO, format!("cannot open '{}': {e}", p.display()))
            })?;
            Some(p)
        };
        let resolved = match engine::resolve(device) {
            Ok(None) => Device::Cpu,
            Ok(Some(i)) => Device::Cuda(i),
            Err(e) => return Err(Failure(DIFFRECON_DEVICE, e.to_string())),
        };
        let model = api::load(path.as_deref(), resolved, precision).map_err(|e| match e {
            Error::Internal(_) if resolved != Device::Cpu => {
                Failure(DIFFRECON_DEVICE, e.to_string())
            }
            e => e.into(),
        })?;
        put(
            out,
            diffrecon_model {
                model: Mutex::new(model),
            },
        )
    })
}

/// Release a model (NULL: nothing).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_model_free(model: *mut diffrecon_model) {
    free(model)
}
