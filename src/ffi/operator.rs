//! The forward operators: one constructor per kind, and the size queries.

use super::boundary::{free, guard, handle, invalid, put, stack};
use super::{diffrecon_operator, diffrecon_status};
use crate::api::{self, Kernel, Mask, Operator};

unsafe fn new_operator(
    out: *mut *mut diffrecon_operator,
    op: impl FnOnce() -> api::Result<Operator>,
) -> diffrecon_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("the out-parameter is NULL"));
        }
        put(out, diffrecon_operator { op: op()? })
    })
}

/// Motion blur: a line of length `size` (odd) at `angle_degrees`.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_motion(
    size: usize,
    angle_degrees: f64,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || {
        Ok(Operator::Blur(Kernel::motion(size, angle_degrees)?))
    })
}

/// Gaussian blur: a (size, size) kernel (size odd) of `variance` pixels².
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_gaussian(
    size: usize,
    variance: f64,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || {
        Ok(Operator::Blur(Kernel::gaussian(size, variance)?))
    })
}

/// Blur by a (size, size) row-major kernel, used as given.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_custom(
    size: usize,
    kernel: *const f32,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    guard(|| {
        let k = stack(kernel, 1, size, size, "kernel")?;
        let k = Kernel::custom(&k.reshape(&[size, size])?)?;
        if out.is_null() {
            return Err(invalid("the out-parameter is NULL"));
        }
        put(
            out,
            diffrecon_operator {
                op: Operator::Blur(k),
            },
        )
    })
}

/// Parallel-beam sparse-view CT of (h, w) images: `views` over `arc_degrees`, `detectors` bins
/// (0: ceil(√(h² + w²))). Measurements are (views, detectors) sinograms.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_ct(
    h: usize,
    w: usize,
    views: usize,
    detectors: usize,
    arc_degrees: f64,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || {
        Operator::ct(
            h,
            w,
            views,
            (detectors > 0).then_some(detectors),
            arc_degrees,
        )
    })
}

/// Inpainting of (h, w) images, each pixel observed with probability `keep` (mask from `seed`).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_inpaint_random(
    h: usize,
    w: usize,
    keep: f64,
    seed: u64,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || {
        Ok(Operator::Inpaint(Mask::random(h, w, keep, seed)?))
    })
}

/// Inpainting with an (h, w) row-major mask: non-zero = observed.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_inpaint_mask(
    h: usize,
    w: usize,
    mask: *const f32,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    guard(|| {
        let m = Mask::from_array(&stack(mask, 1, h, w, "mask")?)?;
        if out.is_null() {
            return Err(invalid("the out-parameter is NULL"));
        }
        put(
            out,
            diffrecon_operator {
                op: Operator::Inpaint(m),
            },
        )
    })
}

/// Inpainting of (h, w) images missing the `box_w` × `box_h` box whose top-left pixel is
/// column `x`, row `y`.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_inpaint_box(
    h: usize,
    w: usize,
    x: usize,
    y: usize,
    box_w: usize,
    box_h: usize,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || {
        Ok(Operator::Inpaint(Mask::missing_box(
            h,
            w,
            [x, y, box_w, box_h],
        )?))
    })
}

/// Super-resolution: the mean of each `factor` × `factor` block.
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_downsample(
    factor: usize,
    out: *mut *mut diffrecon_operator,
) -> diffrecon_status {
    new_operator(out, || Operator::downsample(factor))
}

/// Release an operator (NULL: nothing).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_free(op: *mut diffrecon_operator) {
    free(op)
}

/// The measurement's (rows, cols) for an image of (h, w) (the size query of
/// `diffrecon_simulate`'s output).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_measurement_size(
    op: *const diffrecon_operator,
    h: usize,
    w: usize,
    rows: *mut usize,
    cols: *mut usize,
) -> diffrecon_status {
    guard(|| {
        let op = &handle(op, "operator")?.op;
        if rows.is_null() || cols.is_null() {
            return Err(invalid("rows or cols is NULL"));
        }
        (*rows, *cols) = op.measurement_dims((h, w))?;
        Ok(())
    })
}

/// The image's (h, w) for a measurement of (rows, cols) (the size query of
/// `diffrecon_reconstruct`'s output: n·h·w floats).
#[no_mangle]
pub unsafe extern "C" fn diffrecon_operator_image_size(
    op: *const diffrecon_operator,
    rows: usize,
    cols: usize,
    h: *mut usize,
    w: *mut usize,
) -> diffrecon_status {
    guard(|| {
        let op = &handle(op, "operator")?.op;
        if h.is_null() || w.is_null() {
            return Err(invalid("h or w is NULL"));
        }
        (*h, *w) = op.image_dims((rows, cols))?;
        Ok(())
    })
}
