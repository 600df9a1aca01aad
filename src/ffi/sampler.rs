//! Samplers by name and their parameters.

use super::boundary::{free, guard, invalid, put, text};
use super::{diffrecon_sampler, diffrecon_status};
use crate::api::Sampler;
use std::ffi::c_char;

/// A sampler by name ("dps", "diffpir", "diffpir-pnp", "dps-paper", "tikhonov", "tv", "fbp")
/// with the command line's default parameters.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_sampler_new(
    name: *const c_char,
    out: *mut *mut diffrecon_sampler,
) -> diffrecon_status {
    guard(|| {
        let sampler = Sampler::from_name(text(name, "the sampler name", None)?)?;
        put(out, diffrecon_sampler { sampler })
    })
}

/// Set a numeric parameter ("steps", "lambda", "zeta", "cg_iters", … as the CLI's flags with
/// `_`; an unknown name or one the sampler does not take is refused with the list it takes).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_sampler_set(
    sampler: *mut diffrecon_sampler,
    param: *const c_char,
    value: f64,
) -> diffrecon_status {
    guard(|| {
        let s = sampler
            .as_mut()
            .ok_or_else(|| invalid("the sampler handle is NULL"))?;
        Ok(s.sampler
            .set(text(param, "the parameter name", None)?, value)?)
    })
}

/// Set diffpir-pnp's timestep spacing: "quad" or "uniform".
#[no_mangle]
pub unsafe extern "C" fn diffrecon_sampler_set_skip(
    sampler: *mut diffrecon_sampler,
    skip: *const c_char,
) -> diffrecon_status {
    guard(|| {
        let s = sampler
            .as_mut()
            .ok_or_else(|| invalid("the sampler handle is NULL"))?;
        Ok(s.sampler.set_skip(text(skip, "skip", None)?)?)
    })
}

/// Release a sampler (NULL: nothing).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_sampler_free(sampler: *mut diffrecon_sampler) {
    free(sampler)
}
