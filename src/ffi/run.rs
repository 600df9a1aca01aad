//! Simulating measurements and reconstructing from them.

use super::boundary::{count, guard, handle, invalid, output, stack};
use super::{
    diffrecon_cg_report, diffrecon_model, diffrecon_operator, diffrecon_sampler, diffrecon_status,
};
use crate::api::{self, CgReport};
use std::sync::PoisonError;

/// y = A x + e for `n` images of (h, w) in `x`, with relative noise ‖e‖/‖Ax‖ = `noise_level`
/// per slice drawn from `seed`. `y` must hold exactly n·rows·cols floats
/// (`diffrecon_operator_measurement_size`).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_simulate(
    op: *const diffrecon_operator,
    x: *const f32,
    n: usize,
    h: usize,
    w: usize,
    noise_level: f64,
    seed: u64,
    y: *mut f32,
    y_len: usize,
) -> diffrecon_status {
    guard(|| {
        let op = &handle(op, "operator")?.op;
        let x = stack(x, n, h, w, "image")?;
        let sim = api::simulate(&x, op, noise_level, seed)?;
        output(y, y_len, sim.len(), "measurement")?.copy_from_slice(sim.data());
        Ok(())
    })
}

/// Reconstruct `n` measurements of (rows, cols) in `y`. `x` must hold exactly n·h·w floats
/// (`diffrecon_operator_image_size`); `samples` > 1 writes the mean of that many samples per
/// slice (stochastic samplers). Optional (NULL to skip): `stddev` (n·h·w floats, the samples'
/// per-pixel standard deviation, zero when samples = 1), `residual` (n doubles,
/// ‖Ax − y‖/‖y‖ per slice) and `cg`. The result equals `diffrecon reconstruct` with the same
/// sampler, parameters and seed.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_reconstruct(
    model: *const diffrecon_model,
    op: *const diffrecon_operator,
    sampler: *const diffrecon_sampler,
    y: *const f32,
    n: usize,
    rows: usize,
    cols: usize,
    seed: u64,
    samples: usize,
    x: *mut f32,
    x_len: usize,
    stddev: *mut f32,
    residual: *mut f64,
    cg: *mut diffrecon_cg_report,
) -> diffrecon_status {
    guard(|| {
        let model = handle(model, "model")?;
        let op = &handle(op, "operator")?.op;
        let sampler = &handle(sampler, "sampler")?.sampler;
        let y = stack(y, n, rows, cols, "measurement")?;
        let (h, w) = op.image_dims((rows, cols))?;
        let need = count(&[n, h, w], "image")?;
        let x = output(x, x_len, need, "image")?;
        let r = {
            let m = model.model.lock().unwrap_or_else(PoisonError::into_inner);
            api::reconstruct(m.as_ref(), &y, op, sampler, seed, samples)?
        };
        x.copy_from_slice(r.image.data());
        if !stddev.is_null() {
            let s = output(stddev, need, need, "stddev")?;
            match &r.std {
                Some(t) => s.copy_from_slice(t.data()),
                None => s.fill(0.0),
            }
        }
        if !residual.is_null() {
            if !residual.is_aligned() {
                return Err(invalid("the residual buffer is not aligned for double"));
            }
            std::slice::from_raw_parts_mut(residual, n).copy_from_slice(&r.residual);
        }
        if !cg.is_null() {
            *cg = report(r.cg);
        }
        Ok(())
    })
}

fn report(cg: Option<CgReport>) -> diffrecon_cg_report {
    match cg {
        Some(c) => diffrecon_cg_report {
            has_cg: 1,
            solves: c.solves,
            iters: c.iters,
            rel_residual: c.rel_residual,
        },
        None => diffrecon_cg_report::default(),
    }
}
