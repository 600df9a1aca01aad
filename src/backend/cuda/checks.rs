//! The operand checks of the CUDA ops, as plain functions of shapes (unit-tested without a
//! GPU). The kernels index their operands by the sizes they are given and have no bounds of
//! their own, so every op checks every operand here before it launches: what the CPU twin's
//! asserts require, as an error instead of a panic. A mismatch between operands is the
//! caller's bug (the UNet and the samplers validate user input at the top): `Error::Internal`.

use crate::backend::CtGeometry;
use crate::error::{Error, Result};

/// Elements of a shape, None on overflow.
pub(super) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// (n, c, h, w) of an NCHW operand.
pub(super) fn nchw(op: &str, what: &str, shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *shape {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => Err(Error::internal(format!(
            "{op}: {what} has shape {shape:?}, expected (n, c, h, w)"
        ))),
    }
}

/// Both operands hold the same number of elements (the elementwise ops index both by one
/// flat index); returns that number.
pub(super) fn check_same_len(op: &str, a: &[usize], b: &[usize]) -> Result<usize> {
    match (numel(a), numel(b)) {
        (Some(la), Some(lb)) if la == lb => Ok(la),
        _ => Err(Error::internal(format!(
            "{op}: operands of shapes {a:?} and {b:?} differ in size"
        ))),
    }
}

/// `what` holds exactly `want` elements.
pub(super) fn check_len(op: &str, what: &str, shape: &[usize], want: usize) -> Result<()> {
    if numel(shape) != Some(want) {
        return Err(Error::internal(format!(
            "{op}: {what} has shape {shape:?}, expected {want} values"
        )));
    }
    Ok(())
}

/// The output's (ho, wo) of a square-kernel conv with weights (cout, cin, k, k) over an NCHW
/// input; the weights' cin must be the input's, and neither channel count zero (the implicit
/// GEMM divides by them).
pub(super) fn conv_out(
    op: &str,
    input: &[usize],
    weight: &[usize],
    stride: usize,
    pad: usize,
) -> Result<(usize, usize)> {
    let (_, cin, h, w) = nchw(op, "input", input)?;
    let bad = || {
        Error::internal(format!(
            "{op}: weight {weight:?}, input {input:?}, stride {stride}, pad {pad}"
        ))
    };
    let [cout, wcin, k, k2] = *weight else {
        return Err(bad());
    };
    let pad2 = pad.checked_mul(2).ok_or_else(bad)?;
    let (hp, wp) = (
        h.checked_add(pad2).ok_or_else(bad)?,
        w.checked_add(pad2).ok_or_else(bad)?,
    );
    if wcin != cin || cin == 0 || cout == 0 || k2 != k || k == 0 || stride == 0 || hp < k || wp < k
    {
        return Err(bad());
    }
    Ok(((hp - k) / stride + 1, (wp - k) / stride + 1))
}

/// The edge k of a blur kernel: shape (k, k), k odd (blur.rs centres it at k/2).
pub(super) fn blur_kernel(op: &str, kernel: &[usize]) -> Result<usize> {
    match *kernel {
        [k, k2] if k == k2 && k % 2 == 1 => Ok(k),
        _ => Err(Error::internal(format!(
            "{op}: blur kernel of shape {kernel:?}, expected (k, k) with k odd"
        ))),
    }
}

/// `what` has exactly the shape `want` (the operands the CPU twin requires to be alike).
pub(super) fn check_shape(op: &str, what: &str, shape: &[usize], want: &[usize]) -> Result<()> {
    if shape != want {
        return Err(Error::internal(format!(
            "{op}: {what} has shape {shape:?}, expected {want:?}"
        )));
    }
    Ok(())
}

/// A CT op's operands: the geometry within `CtGeometry::new`'s bounds (which keep a slice's
/// sizes far below the kernels' ints), `stack` of shape (n, 1, rows, cols) with (rows, cols) =
/// `plane` of the geometry, and the angle table (views, 2). Returns n.
pub(super) fn ct_operands(
    op: &str,
    stack: &[usize],
    plane: [usize; 2],
    g: &CtGeometry,
    angles: &[usize],
) -> Result<usize> {
    CtGeometry::new(g.height, g.width, g.views, Some(g.detectors), g.arc_degrees)
        .map_err(|e| Error::internal(format!("{op}: geometry {g:?}: {e}")))?;
    let n = match *stack {
        [n, 1, rows, cols] if [rows, cols] == plane => n,
        _ => {
            return Err(Error::internal(format!(
                "{op}: operand of shape {stack:?}, expected (n, 1, {}, {})",
                plane[0], plane[1]
            )))
        }
    };
    check_shape(op, "the angle table", angles, &[g.views, 2])?;
    Ok(n)
}

/// (n, c, h, w) of downsample's input: a factor f ≥ 1 that divides h and w.
pub(super) fn downsample_dims(x: &[usize], f: usize) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = nchw("downsample", "x", x)?;
    if f == 0 || h % f != 0 || w % f != 0 {
        return Err(Error::internal(format!(
            "downsample: x of shape {x:?} is not divisible into {f}×{f} blocks"
        )));
    }
    Ok((n, c, h, w))
}

/// (n, c, h, w) of downsample_adjoint's full-size output for y (n, c, h/f, w/f), f ≥ 1.
pub(super) fn downsample_adjoint_dims(
    y: &[usize],
    f: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (n, c, ho, wo) = nchw("downsample_adjoint", "y", y)?;
    match (ho.checked_mul(f), wo.checked_mul(f)) {
        (Some(h), Some(w)) if f > 0 => Ok((n, c, h, w)),
        _ => Err(Error::internal(format!(
            "downsample_adjoint: factor {f} on y of shape {y:?}"
        ))),
    }
}

/// (n, fin, fout) of a linear layer: x (n, fin), w with fout·fin values, b with fout.
pub(super) fn linear_dims(x: &[usize], w: &[usize], b: &[usize]) -> Result<(usize, usize, usize)> {
    let [n, fin] = *x else {
        return Err(Error::internal(format!(
            "linear: input of shape {x:?}, expected (n, features)"
        )));
    };
    let fout = numel(b).unwrap_or(0);
    if fout == 0
        || fin
            .checked_mul(fout)
            .is_none_or(|want| numel(w) != Some(want))
    {
        return Err(Error::internal(format!(
            "linear: weight {w:?} and bias {b:?} for {fin} input features"
        )));
    }
    Ok((n, fin, fout))
}

/// (n, ca, cb, h, w) of a channel concat: both NCHW with the same n, h, w.
pub(super) fn concat_dims(a: &[usize], b: &[usize]) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, ca, h, w) = nchw("concat_channels", "a", a)?;
    let (nb, cb, hb, wb) = nchw("concat_channels", "b", b)?;
    if (nb, hb, wb) != (n, h, w) {
        return Err(Error::internal(format!(
            "concat_channels: operands of shapes {a:?} and {b:?} differ beyond channels"
        )));
    }
    Ok((n, ca, cb, h, w))
}

/// The split point `ca` lies within the channels.
pub(super) fn check_split(x: &[usize], ca: usize) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = nchw("split_channels", "x", x)?;
    if ca > c {
        return Err(Error::internal(format!(
            "split_channels: {ca} channels split off a tensor of shape {x:?}"
        )));
    }
    Ok((n, c, h, w))
}

/// (n, c, h/2, w/2) of upsample2x's VJP: dy's h and w must be even (dy is an upsampled shape).
pub(super) fn upsample_vjp_dims(dy: &[usize]) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h2, w2) = nchw("upsample2x_vjp", "dy", dy)?;
    if h2 % 2 != 0 || w2 % 2 != 0 {
        return Err(Error::internal(format!(
            "upsample2x_vjp: dy of shape {dy:?} is not an upsampled shape (odd h or w)"
        )));
    }
    Ok((n, c, h2 / 2, w2 / 2))
}

/// GroupNorm's operands: groups divide the channels, γ and β hold one value per channel.
pub(super) fn check_group_norm(
    op: &str,
    x: &[usize],
    gamma: &[usize],
    beta: &[usize],
    groups: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = nchw(op, "x", x)?;
    if groups == 0 || c % groups != 0 || numel(gamma) != Some(c) || numel(beta) != Some(c) {
        return Err(Error::internal(format!(
            "{op}: x {x:?}, γ {gamma:?}, β {beta:?}, {groups} groups"
        )));
    }
    Ok((n, c, h, w))
}

/// Attention's parameters for c channels in `heads` heads: in_w (3c × c), in_b (3c), out_w
/// (c × c), out_b (c).
pub(super) fn check_attention(
    op: &str,
    y: &[usize],
    params: [&[usize]; 4],
    heads: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = nchw(op, "y", y)?;
    let [in_w, in_b, out_w, out_b] = params;
    let fits = |shape: &[usize], rows: usize, cols: usize| {
        rows.checked_mul(cols)
            .is_some_and(|want| numel(shape) == Some(want))
    };
    let c3 = c.saturating_mul(3);
    if heads == 0
        || c % heads != 0
        || !fits(in_w, c3, c)
        || !fits(in_b, c3, 1)
        || !fits(out_w, c, c)
        || !fits(out_b, c, 1)
    {
        return Err(Error::internal(format!(
            "{op}: y {y:?} in {heads} heads with in_w {in_w:?}, in_b {in_b:?}, out_w {out_w:?}, out_b {out_b:?}"
        )));
    }
    Ok((n, c, h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_internal<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
        match r {
            Err(Error::Internal(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
            other => panic!("expected an internal error about {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn numel_checks_overflow() {
        assert_eq!(numel(&[2, 3, 4]), Some(24));
        assert_eq!(numel(&[]), Some(1));
        assert_eq!(numel(&[usize::MAX, 2]), None);
    }

    #[test]
    fn same_len_compares_element_counts() {
        assert_eq!(check_same_len("lincomb", &[2, 1, 4, 4], &[2, 16]), Ok(32));
        is_internal(
            check_same_len("lincomb", &[2, 1, 4, 4], &[1, 1, 4, 4]),
            "lincomb",
        );
        is_internal(
            check_same_len("add_assign", &[usize::MAX, 2], &[usize::MAX, 2]),
            "add_assign",
        );
        assert!(check_len("x", "v", &[2, 3], 6).is_ok());
        is_internal(check_len("add_channel_bias", "v", &[2, 3], 8), "8 values");
    }

    #[test]
    fn nchw_refuses_other_ranks() {
        assert_eq!(nchw("op", "x", &[1, 2, 3, 4]), Ok((1, 2, 3, 4)));
        is_internal(nchw("blur", "x", &[4, 4]), "(n, c, h, w)");
    }

    #[test]
    fn conv_geometry() {
        assert_eq!(
            conv_out("c", &[1, 3, 13, 11], &[5, 3, 3, 3], 1, 1),
            Ok((13, 11))
        );
        assert_eq!(
            conv_out("c", &[2, 17, 16, 16], &[33, 17, 3, 3], 2, 1),
            Ok((8, 8))
        );
        // Wrong cin, non-square kernel, zero stride, kernel larger than the padded input.
        is_internal(
            conv_out("conv2d", &[1, 4, 8, 8], &[5, 3, 3, 3], 1, 1),
            "conv2d",
        );
        is_internal(conv_out("c", &[1, 3, 8, 8], &[5, 3, 3, 1], 1, 1), "weight");
        is_internal(
            conv_out("c", &[1, 3, 8, 8], &[5, 3, 3, 3], 0, 1),
            "stride 0",
        );
        is_internal(conv_out("c", &[1, 3, 2, 2], &[5, 3, 5, 5], 1, 0), "weight");
        is_internal(
            conv_out("c", &[1, 3, 8, 8], &[5, 3, 3, 3], 1, usize::MAX),
            "pad",
        );
        is_internal(
            conv_out("c", &[1, 3, 8, 8], &[0, 3, 3, 3], 1, 1),
            "weight [0",
        );
        is_internal(conv_out("c", &[1, 0, 8, 8], &[5, 0, 3, 3], 1, 1), "weight");
    }

    #[test]
    fn blur_kernels_are_square_and_odd() {
        assert_eq!(blur_kernel("blur", &[5, 5]), Ok(5));
        is_internal(blur_kernel("blur", &[4, 4]), "k odd");
        is_internal(blur_kernel("data_step", &[5, 3]), "data_step");
        is_internal(blur_kernel("blur", &[25]), "(k, k)");
    }

    #[test]
    fn linear_needs_matching_weights_and_bias() {
        assert_eq!(linear_dims(&[3, 8], &[16, 8], &[16]), Ok((3, 8, 16)));
        is_internal(linear_dims(&[3, 8], &[16, 7], &[16]), "weight");
        is_internal(linear_dims(&[3, 8], &[16, 8], &[15]), "bias");
        is_internal(linear_dims(&[3, 8, 1], &[16, 8], &[16]), "(n, features)");
    }

    #[test]
    fn concat_split_and_upsample_shapes() {
        assert_eq!(
            concat_dims(&[2, 3, 4, 5], &[2, 1, 4, 5]),
            Ok((2, 3, 1, 4, 5))
        );
        is_internal(concat_dims(&[2, 3, 4, 5], &[1, 3, 4, 5]), "beyond channels");
        is_internal(concat_dims(&[2, 3, 4, 5], &[2, 3, 5, 4]), "beyond channels");
        assert!(check_split(&[2, 3, 4, 5], 3).is_ok());
        is_internal(check_split(&[2, 3, 4, 5], 4), "4 channels");
        assert_eq!(upsample_vjp_dims(&[1, 2, 8, 6]), Ok((1, 2, 4, 3)));
        is_internal(upsample_vjp_dims(&[1, 2, 8, 7]), "odd");
    }

    #[test]
    fn group_norm_and_attention_parameters() {
        let x = [2, 8, 4, 4];
        assert!(check_group_norm("gn", &x, &[8], &[8], 4).is_ok());
        is_internal(check_group_norm("gn", &x, &[8], &[7], 4), "β [7]");
        is_internal(check_group_norm("gn", &x, &[4], &[8], 4), "γ [4]");
        is_internal(check_group_norm("gn", &x, &[8], &[8], 3), "3 groups");
        is_internal(check_group_norm("gn", &x, &[8], &[8], 0), "0 groups");
        let ok: [&[usize]; 4] = [&[24, 8], &[24], &[8, 8], &[8]];
        assert!(check_attention("attention", &x, ok, 2).is_ok());
        is_internal(check_attention("attention", &x, ok, 3), "3 heads");
        for bad in 0..4 {
            let mut p = ok;
            p[bad] = &[1];
            is_internal(check_attention("attention", &x, p, 2), "attention");
        }
    }

    #[test]
    fn ct_operands_follow_the_geometry() {
        let g = CtGeometry::new(24, 20, 7, None, 120.0).unwrap();
        let d = g.detectors;
        assert_eq!(
            ct_operands("p", &[3, 1, 24, 20], [24, 20], &g, &[7, 2]),
            Ok(3)
        );
        assert_eq!(ct_operands("b", &[2, 1, 7, d], [7, d], &g, &[7, 2]), Ok(2));
        is_internal(
            ct_operands("ct_project", &[3, 1, 20, 24], [24, 20], &g, &[7, 2]),
            "ct_project: operand of shape [3, 1, 20, 24]",
        );
        is_internal(
            ct_operands("p", &[3, 2, 24, 20], [24, 20], &g, &[7, 2]),
            "(n, 1, 24, 20)",
        );
        is_internal(
            ct_operands("p", &[24, 20], [24, 20], &g, &[7, 2]),
            "(n, 1, 24, 20)",
        );
        is_internal(
            ct_operands("p", &[1, 1, 24, 20], [24, 20], &g, &[14]),
            "angle table",
        );
        is_internal(
            ct_operands("p", &[1, 1, 24, 20], [24, 20], &g, &[6, 2]),
            "[7, 2]",
        );
        // A geometry built by hand past CtGeometry::new's bounds.
        let bad = CtGeometry {
            views: 0,
            ..g.clone()
        };
        is_internal(
            ct_operands("p", &[1, 1, 24, 20], [24, 20], &bad, &[0, 2]),
            "views",
        );
        let huge = CtGeometry {
            detectors: usize::MAX,
            ..g
        };
        is_internal(
            ct_operands(
                "ct_backproject",
                &[1, 1, 7, usize::MAX],
                [7, usize::MAX],
                &huge,
                &[7, 2],
            ),
            "ct_backproject: geometry",
        );
    }

    #[test]
    fn downsample_factors_divide_the_image() {
        assert_eq!(downsample_dims(&[3, 1, 21, 15], 3), Ok((3, 1, 21, 15)));
        is_internal(downsample_dims(&[3, 1, 21, 15], 2), "2×2 blocks");
        is_internal(downsample_dims(&[3, 1, 21, 15], 0), "0×0 blocks");
        is_internal(downsample_dims(&[21, 15], 3), "(n, c, h, w)");
        assert_eq!(
            downsample_adjoint_dims(&[3, 1, 7, 5], 3),
            Ok((3, 1, 21, 15))
        );
        is_internal(downsample_adjoint_dims(&[3, 1, 7, 5], 0), "factor 0");
        is_internal(
            downsample_adjoint_dims(&[1, 1, usize::MAX, 5], 2),
            "factor 2",
        );
        assert!(check_shape("inpaint_mask", "m", &[19, 23], &[19, 23]).is_ok());
        is_internal(
            check_shape("inpaint_mask", "m", &[1, 1, 19, 23], &[19, 23]),
            "m has shape",
        );
    }
}
