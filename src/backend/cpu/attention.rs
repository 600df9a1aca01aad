//! Multi-head self-attention over the H·W tokens of a (n, c, h, w) tensor, as PyTorch's
//! nn.MultiheadAttention with packed in-projection, and its input-VJP. Everything stays
//! channel-major ((c, tokens) per image), which is what the NCHW layout gives for free.

use super::conv::{pack_rows, rows_times_runs, DirectConvIsa, Rows};
use super::gemm::{sgemm, sgemm_serial, View};
use super::math::exp;
use super::simd::wide;
use crate::precision::Precision;
use rayon::prelude::*;

/// Attention weights: in_w (3c, c) rows q,k,v; in_b (3c); out_w (c, c); out_b (c).
pub struct AttnWeights<'a> {
    pub in_w: &'a [f32],
    pub in_b: &'a [f32],
    pub out_w: &'a [f32],
    pub out_b: &'a [f32],
    /// The precision of every product (projections and the attention core).
    pub precision: Precision,
}

/// Queries per block: three AVX-512 vectors (one register tile's runs, three AVX2 tiles'), so a
/// block's scores (tokens × this) stay in cache between the products.
const QUERY_BLOCK: usize = 48;

/// `out = attention(y)` for each image (no residual; the caller adds it).
/// `y` holds whole images of c×t values; their count follows from its length.
pub fn attention(y: &[f32], wts: &AttnWeights, c: usize, t: usize, heads: usize, out: &mut [f32]) {
    assert_eq!(y.len() % (c * t), 0);
    assert_eq!(out.len(), y.len());
    for (o, yi) in out.chunks_mut(c * t).zip(y.chunks(c * t)) {
        let qkv = project_in(yi, wts, c, t);
        let ctx = attend(&qkv, c, t, heads, wts.precision.attention_core(heads, t));
        project_out(&ctx, wts, c, t, o);
    }
}

/// dy for `attention` given dout. Probabilities are recomputed block by block, never stored.
pub fn attention_vjp(
    y: &[f32],
    wts: &AttnWeights,
    c: usize,
    t: usize,
    heads: usize,
    dout: &[f32],
    dy: &mut [f32],
) {
    assert_eq!(y.len() % (c * t), 0);
    assert_eq!(dout.len(), y.len());
    assert_eq!(dy.len(), y.len());
    let prec = wts.precision;
    for (dyi, (yi, douti)) in dy
        .chunks_mut(c * t)
        .zip(y.chunks(c * t).zip(dout.chunks(c * t)))
    {
        let qkv = project_in(yi, wts, c, t);
        // dctx (c×t) = out_wᵀ · dout.
        let mut dctx = vec![0.0f32; c * t];
        sgemm(
            prec,
            c,
            c,
            t,
            View::transposed(wts.out_w, c),
            View::rows(douti, t),
            0.0,
            &mut dctx,
        );
        let dqkv = attend_vjp(&qkv, &dctx, c, t, heads, prec);
        // dy (c×t) = in_wᵀ · dqkv.
        sgemm(
            prec,
            c,
            3 * c,
            t,
            View::transposed(wts.in_w, c),
            View::rows(&dqkv, t),
            0.0,
            dyi,
        );
    }
}

/// (3c, t) = in_w · y + in_b: q, k, v rows, channel-major.
fn project_in(y: &[f32], wts: &AttnWeights, c: usize, t: usize) -> Vec<f32> {
    let prec = wts.precision;
    let mut qkv = vec![0.0f32; 3 * c * t];
    for (r, row) in qkv.chunks_mut(t).enumerate() {
        row.fill(wts.in_b[r]);
    }
    sgemm(
        prec,
        3 * c,
        c,
        t,
        View::rows(wts.in_w, c),
        View::rows(y, t),
        1.0,
        &mut qkv,
    );
    qkv
}

fn project_out(ctx: &[f32], wts: &AttnWeights, c: usize, t: usize, out: &mut [f32]) {
    let prec = wts.precision;
    for (r, row) in out.chunks_mut(t).enumerate() {
        row.fill(wts.out_b[r]);
    }
    sgemm(
        prec,
        c,
        c,
        t,
        View::rows(wts.out_w, c),
        View::rows(ctx, t),
        1.0,
        out,
    );
}

/// The q, k, v rows (each d×t) of head `h`.
fn head_rows(qkv: &[f32], c: usize, t: usize, d: usize, h: usize) -> (&[f32], &[f32], &[f32]) {
    let row = |part: usize| &qkv[(part * c + h * d) * t..(part * c + (h + 1) * d) * t];
    (row(0), row(1), row(2))
}

/// The left operand of `product`: a view and, for one used in many products, the same matrix
/// packed once for the register tiles (`pack_rows`).
#[derive(Clone, Copy)]
struct Left<'a> {
    view: View<'a>,
    packed: Option<&'a [f32]>,
}

fn left(view: View) -> Left {
    Left { view, packed: None }
}

/// The register tiles `product` runs on at this precision, if any (else every product is the
/// GEMM and nothing is worth packing).
fn tiles_at(prec: Precision) -> Option<DirectConvIsa> {
    DirectConvIsa::detect().filter(|_| prec == Precision::F32)
}

/// C (m×n) = A (m×k) · B (k×n), or C += A · B with `accumulate`, on the calling thread. At f32
/// with B's rows contiguous and n a whole number of vectors (every product here at 64×64 and
/// 32×32 inputs), on the direct convolution's register tiles: B's row p is the tap read at
/// offset p·rs, one FMA per p in order from zero (or from C); otherwise the GEMM (and always at
/// TF32/BF16, whose emulation rounds copies).
fn product(
    prec: Precision,
    (m, k, n): (usize, usize, usize),
    a: Left,
    b: View,
    c: &mut [f32],
    accumulate: bool,
) {
    let isa = tiles_at(prec).filter(|i| b.cs == 1 && n % i.lanes() == 0);
    let Some(isa) = isa.filter(|_| k > 0 && m > 0) else {
        let beta = if accumulate { 1.0 } else { 0.0 };
        return sgemm_serial(prec, m, k, n, a.view, b, beta, c);
    };
    let taps: Vec<usize> = (0..k).map(|p| p * b.rs).collect();
    let cols: Vec<usize> = (0..n).step_by(isa.lanes()).collect();
    let rows = match a.packed {
        Some(p) => Rows::Packed(p),
        None => Rows::Strided(a.view.data, a.view.rs, a.view.cs),
    };
    rows_times_runs(
        rows,
        m,
        b.data,
        &taps,
        (&cols, &cols),
        (c, n),
        accumulate,
        isa,
    );
}

/// Softmax probabilities of queries i0..i0+nq of one head: (nq × t), row = query.
fn probs_block(
    q: &[f32],
    k: &[f32],
    (t, d): (usize, usize),
    (i0, nq): (usize, usize),
    prec: Precision,
) -> Vec<f32> {
    let mut p = vec![0.0f32; nq * t];
    // scores = q_blockᵀ (nq×d) · k (d×t).
    let qb = View {
        data: &q[i0..],
        rs: 1,
        cs: t,
    };
    product(prec, (nq, d, t), left(qb), View::rows(k, t), &mut p, false);
    softmax_rows(&mut p, t, (d as f32).sqrt().recip());
    p
}

/// The probabilities of `probs_block` transposed, (t × nq), column = query, each column not
/// yet divided by its sum: returns them and the columns' 1/Σ (see `exp_cols`).
fn exp_block_t(
    q: &[f32],
    k: &[f32],
    (t, d): (usize, usize),
    (i0, nq): (usize, usize),
    prec: Precision,
) -> (Vec<f32>, Vec<f32>) {
    let mut pt = vec![0.0f32; t * nq];
    // scoresᵀ = kᵀ (t×d) · q_block (d×nq).
    let qb = View {
        data: &q[i0..],
        rs: t,
        cs: 1,
    };
    let kt = View::transposed(k, t);
    product(prec, (t, d, nq), left(kt), qb, &mut pt, false);
    let inv = exp_cols(&mut pt, nq, (d as f32).sqrt().recip());
    (pt, inv)
}

/// Concatenated head outputs ctx (c×t), computed per (head, query block) in parallel.
fn attend(qkv: &[f32], c: usize, t: usize, heads: usize, prec: Precision) -> Vec<f32> {
    let d = c / heads;
    let blocks = t.div_ceil(QUERY_BLOCK);
    // Each head's v (d×t) packed once for all its query blocks.
    let packed_v: Vec<Option<Vec<f32>>> = (0..heads)
        .map(|h| tiles_at(prec).map(|_| pack_rows((head_rows(qkv, c, t, d, h).2, t, 1), d, t)))
        .collect();
    let parts: Vec<Vec<f32>> = (0..heads * blocks)
        .into_par_iter()
        .map(|task| {
            let (h, i0) = (task / blocks, (task % blocks) * QUERY_BLOCK);
            let nq = QUERY_BLOCK.min(t - i0);
            let (q, k, v) = head_rows(qkv, c, t, d, h);
            let (pt, inv) = exp_block_t(q, k, (t, d), (i0, nq), prec);
            // ctx block (d×nq) = v (d×t) · pᵀ (t×nq), each query's column then divided by
            // its probabilities' sum.
            let mut cb = vec![0.0f32; d * nq];
            let v = Left {
                view: View::rows(v, t),
                packed: packed_v[h].as_deref(),
            };
            product(prec, (d, t, nq), v, View::rows(&pt, nq), &mut cb, false);
            for row in cb.chunks_mut(nq) {
                row.iter_mut().zip(&inv).for_each(|(c, &i)| *c *= i);
            }
            cb
        })
        .collect();
    let mut ctx = vec![0.0f32; c * t];
    for (task, cb) in parts.iter().enumerate() {
        let (h, i0) = (task / blocks, (task % blocks) * QUERY_BLOCK);
        let nq = QUERY_BLOCK.min(t - i0);
        for (e, row) in cb.chunks(nq).enumerate() {
            ctx[(h * d + e) * t + i0..][..nq].copy_from_slice(row);
        }
    }
    ctx
}

/// The (cols × rows) transpose of a row-major (rows × cols) matrix, in strips of 64 columns so
/// that the strip's output rows stay in L1 while every input row is read in runs.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const STRIP: usize = 64;
    let mut out = vec![0.0f32; rows * cols];
    for j0 in (0..cols).step_by(STRIP) {
        let j1 = (j0 + STRIP).min(cols);
        for (r, row) in m.chunks(cols).enumerate() {
            for (j, &v) in (j0..j1).zip(&row[j0..j1]) {
                out[j * rows + r] = v;
            }
        }
    }
    out
}

/// Gradients of q, k, v (3c×t) given dctx, one task per head, query blocks in sequence.
fn attend_vjp(
    qkv: &[f32],
    dctx: &[f32],
    c: usize,
    t: usize,
    heads: usize,
    prec: Precision,
) -> Vec<f32> {
    let d = c / heads;
    let scale = (d as f32).sqrt().recip();
    let per_head: Vec<[Vec<f32>; 3]> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let (q, k, v) = head_rows(qkv, c, t, d, h);
            let packed_k = tiles_at(prec).map(|_| pack_rows((k, t, 1), d, t));
            let dctx_h = &dctx[h * d * t..(h + 1) * d * t];
            let (mut dq, mut dk, mut dv) = (
                vec![0.0f32; d * t],
                vec![0.0f32; d * t],
                vec![0.0f32; d * t],
            );
            for i0 in (0..t).step_by(QUERY_BLOCK) {
                let nq = QUERY_BLOCK.min(t - i0);
                let p = probs_block(q, k, (t, d), (i0, nq), prec);
                let dctx_b = View {
                    data: &dctx_h[i0..],
                    rs: t,
                    cs: 1,
                };
                // dv (d×t) += dctx_b (d×nq) · p (nq×t).
                product(
                    prec,
                    (d, nq, t),
                    left(dctx_b),
                    View::rows(&p, t),
                    &mut dv,
                    true,
                );
                // dp (nq×t) = dctx_bᵀ · v.
                let mut ds = vec![0.0f32; nq * t];
                let dctx_bt = View {
                    data: &dctx_h[i0..],
                    rs: 1,
                    cs: t,
                };
                product(
                    prec,
                    (nq, d, t),
                    left(dctx_bt),
                    View::rows(v, t),
                    &mut ds,
                    false,
                );
                softmax_rows_vjp(&mut ds, &p, t, scale);
                // dq block (d×nq) = k (d×t) · dsᵀ (t×nq); dk (d×t) += q_block (d×nq) · ds.
                let dst = transposed(&ds, nq, t);
                let mut dqb = vec![0.0f32; d * nq];
                let kl = Left {
                    view: View::rows(k, t),
                    packed: packed_k.as_deref(),
                };
                product(prec, (d, t, nq), kl, View::rows(&dst, nq), &mut dqb, false);
                for (e, row) in dqb.chunks(nq).enumerate() {
                    dq[e * t + i0..][..nq].copy_from_slice(row);
                }
                let qb = View {
                    data: &q[i0..],
                    rs: t,
                    cs: 1,
                };
                product(
                    prec,
                    (d, nq, t),
                    left(qb),
                    View::rows(&ds, t),
                    &mut dk,
                    true,
                );
            }
            [dq, dk, dv]
        })
        .collect();
    let mut dqkv = vec![0.0f32; 3 * c * t];
    for (h, parts) in per_head.iter().enumerate() {
        for (part, g) in parts.iter().enumerate() {
            dqkv[(part * c + h * d) * t..(part * c + (h + 1) * d) * t].copy_from_slice(g);
        }
    }
    dqkv
}

wide! {
    /// Softmax of `scale · row` for every row of `rows` (`t` wide), in place (max-subtracted).
    /// Written as separate passes with lane-wise reductions so that each pass vectorises.
    fn softmax_rows(rows: &mut [f32], t: usize, scale: f32) {
        for row in rows.chunks_mut(t) {
            let max = lanes_reduce(row, f32::NEG_INFINITY, larger) * scale;
            row.iter_mut().for_each(|v| *v = exp(*v * scale - max));
            let inv = 1.0 / lanes_reduce(row, 0.0, |a, b| a + b);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

wide! {
    /// Softmax of `scale · column` for every column of `m` (`n` wide, one column per query)
    /// without its last division: the columns become exp(scale·v − max) in place, and their
    /// 1/Σ is returned for the caller to apply to the product with v (n divisions per query
    /// block instead of t·n). Each pass runs along rows, a vector of queries at a time; at the
    /// block widths (48, and 16 or 32 for a last block) the running maxima and sums stay in
    /// registers.
    fn exp_cols(m: &mut [f32], n: usize, scale: f32) -> Vec<f32> {
        const NEG: f32 = f32::NEG_INFINITY;
        match n {
            QUERY_BLOCK => exp_cols_in(m, scale, &mut [NEG; QUERY_BLOCK], &mut [0.0; QUERY_BLOCK]),
            32 => exp_cols_in(m, scale, &mut [NEG; 32], &mut [0.0; 32]),
            16 => exp_cols_in(m, scale, &mut [NEG; 16], &mut [0.0; 16]),
            _ => exp_cols_in(m, scale, &mut vec![NEG; n], &mut vec![0.0; n]),
        }
    }
}

/// `exp_cols`'s two passes with `max.len()` columns, maxima and sums in the given rows; returns
/// the sums' reciprocals.
#[inline(always)]
fn exp_cols_in(m: &mut [f32], scale: f32, max: &mut [f32], sum: &mut [f32]) -> Vec<f32> {
    let n = max.len();
    for row in m.chunks_exact(n) {
        max.iter_mut()
            .zip(row)
            .for_each(|(a, &v)| *a = larger(*a, v));
    }
    max.iter_mut().for_each(|v| *v *= scale);
    for row in m.chunks_exact_mut(n) {
        for ((v, &mx), s) in row.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
            *v = exp(*v * scale - mx);
            *s += *v;
        }
    }
    sum.iter().map(|s| 1.0 / s).collect()
}

wide! {
    /// Softmax backward with the score scale folded in, per row: ds = scale·p ⊙ (dp − <dp, p>)
    /// (`ds` holds dp on entry).
    fn softmax_rows_vjp(ds: &mut [f32], p: &[f32], t: usize, scale: f32) {
        for (dsr, pr) in ds.chunks_mut(t).zip(p.chunks(t)) {
            let dot = dot(dsr, pr);
            dsr.iter_mut()
                .zip(pr)
                .for_each(|(g, &pv)| *g = scale * pv * (*g - dot));
        }
    }
}

/// The larger of two scores by one comparison, not f32::max (whose NaN handling costs two more
/// instructions per lane): scores are finite, as the inputs are checked.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// Reduce with 8 independent accumulators (a vector register's worth), then across them.
#[inline(always)]
fn lanes_reduce(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = f(acc[l], c[l]);
        }
    }
    tail.iter()
        .fold(acc.into_iter().fold(init, &f), |a, &b| f(a, b))
}

/// Dot product with lane-wise accumulation.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    struct Owned {
        in_w: Vec<f32>,
        in_b: Vec<f32>,
        out_w: Vec<f32>,
        out_b: Vec<f32>,
    }

    fn weights(rng: &mut Rng, c: usize) -> Owned {
        let s = 1.0 / (c as f32).sqrt();
        let mut v = |n| rng.normal_vec(n).iter().map(|x| x * s).collect::<Vec<_>>();
        Owned {
            in_w: v(3 * c * c),
            in_b: v(3 * c),
            out_w: v(c * c),
            out_b: v(c),
        }
    }

    /// Token-major textbook attention in f64.
    fn naive(y: &[f32], w: &Owned, c: usize, t: usize, heads: usize) -> Vec<f32> {
        let d = c / heads;
        let tok = |i: usize, ch: usize| y[ch * t + i] as f64;
        let proj = |part: usize, i: usize, o: usize| {
            let r = part * c + o;
            w.in_b[r] as f64
                + (0..c)
                    .map(|ch| w.in_w[r * c + ch] as f64 * tok(i, ch))
                    .sum::<f64>()
        };
        let mut ctx = vec![0.0f64; c * t];
        for h in 0..heads {
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..d)
                            .map(|e| proj(0, i, h * d + e) * proj(1, j, h * d + e))
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for e in 0..d {
                    ctx[(h * d + e) * t + i] = (0..t)
                        .map(|j| (s[j] - m).exp() / z * proj(2, j, h * d + e))
                        .sum();
                }
            }
        }
        (0..c * t)
            .map(|idx| {
                let (o, i) = (idx / t, idx % t);
                (w.out_b[o] as f64
                    + (0..c)
                        .map(|ch| w.out_w[o * c + ch] as f64 * ctx[ch * t + i])
                        .sum::<f64>()) as f32
            })
            .collect()
    }

    fn view(w: &Owned) -> AttnWeights<'_> {
        AttnWeights {
            in_w: &w.in_w,
            in_b: &w.in_b,
            out_w: &w.out_w,
            out_b: &w.out_b,
            precision: Precision::F32,
        }
    }

    /// 70 tokens (two query blocks, products on the GEMM: 70 is no whole number of vectors)
    /// and 112 (48 + 48 + 16, on the register tiles where this CPU has them).
    const SHAPES: [(usize, usize, usize); 2] = [(6, 70, 3), (8, 112, 2)];

    #[test]
    fn forward_matches_textbook_attention() {
        let mut rng = Rng::new(21);
        for (c, t, heads) in SHAPES {
            let w = weights(&mut rng, c);
            let y = rng.normal_vec(2 * c * t);
            let mut out = vec![f32::NAN; y.len()];
            attention(&y, &view(&w), c, t, heads, &mut out);
            for img in 0..2 {
                let want = naive(&y[img * c * t..(img + 1) * c * t], &w, c, t, heads);
                let got = &out[img * c * t..(img + 1) * c * t];
                let err = want
                    .iter()
                    .zip(got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-5, "t {t}: max err {err}");
            }
        }
    }

    /// The column exponentials divided by their returned sums are the row softmax (the VJP's)
    /// of the transpose, to a few roundings.
    #[test]
    fn exp_cols_is_the_softmax_of_columns() {
        let mut rng = Rng::new(23);
        let (t, n) = (37, 32);
        let m: Vec<f32> = rng.normal_vec(t * n).iter().map(|v| 4.0 * v).collect();
        let mut cols = m.clone();
        let inv = exp_cols(&mut cols, n, 0.3);
        let mut rows = transposed(&m, t, n);
        softmax_rows(&mut rows, t, 0.3);
        let want = transposed(&rows, n, t);
        let err = cols
            .iter()
            .enumerate()
            .map(|(e, v)| ((v * inv[e % n] - want[e]) / want[e]).abs())
            .fold(0.0, f32::max);
        eprintln!("exp_cols vs softmax_rows: max relative difference {err:.2e}");
        assert!(err < 3e-6, "max relative difference {err:.2e}");
    }

    /// The register-tile path of `product` against the GEMM, with the views attention uses
    /// (A transposed or row-major, B's rows at a stride wider than n): the same sums in another
    /// order, so within a few f32 roundings of the sum's own scale.
    #[test]
    fn products_on_register_tiles_match_the_gemm() {
        if DirectConvIsa::detect().is_none() {
            eprintln!("SKIP: no direct kernel on this CPU (product is the GEMM itself)");
            return;
        }
        let mut rng = Rng::new(41);
        for (m, k, n, b_rs, a_transposed) in [
            (64, 32, 1024, 1024, true),
            (1024, 32, 48, 64, true),
            (64, 1024, 32, 128, false),
            (37, 64, 48, 64, false),
            (5, 3, 16, 80, true),
        ] {
            let a = rng.normal_vec(m * k);
            let b = rng.normal_vec(k * b_rs);
            let av = match a_transposed {
                true => View::transposed(&a, m),
                false => View::rows(&a, k),
            };
            let bv = View {
                data: &b,
                rs: b_rs,
                cs: 1,
            };
            let packed = pack_rows((av.data, av.rs, av.cs), m, k);
            let c0 = rng.normal_vec(m * n);
            // From zero and accumulating onto c0; A read as a view and packed once.
            for (accumulate, packed) in [(false, None), (true, None), (false, Some(&packed[..]))] {
                let start = || {
                    if accumulate {
                        c0.clone()
                    } else {
                        vec![f32::NAN; m * n]
                    }
                };
                let (mut got, mut want) = (start(), start());
                let a = Left { view: av, packed };
                product(Precision::F32, (m, k, n), a, bv, &mut got, accumulate);
                let beta = if accumulate { 1.0 } else { 0.0 };
                sgemm_serial(Precision::F32, m, k, n, av, bv, beta, &mut want);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                // Measured: equal bits up to k = 64 (both add the products in k order), 9.9e-5
                // at k = 1024 (entries ~32; the GEMM adds partial sums of k-blocks): bound 10×.
                let bound = 1e-3;
                assert!(
                    err <= bound,
                    "({m},{k},{n}) accumulate {accumulate}: max diff {err:.2e} > {bound:.2e}"
                );
            }
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(22);
        for (c, t, heads) in SHAPES {
            let w = weights(&mut rng, c);
            let y = rng.normal_vec(c * t);
            let r = rng.normal_vec(c * t);
            let mut dy = vec![f32::NAN; c * t];
            attention_vjp(&y, &view(&w), c, t, heads, &r, &mut dy);
            let loss = |y: &[f32]| {
                naive(y, &w, c, t, heads)
                    .iter()
                    .zip(&r)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            for i in (0..c * t).step_by(7) {
                let h = 1e-2f32;
                let (mut yp, mut ym) = (y.clone(), y.clone());
                yp[i] += h;
                ym[i] -= h;
                let fd = (loss(&yp) - loss(&ym)) / (2.0 * h as f64);
                assert!(
                    (fd - dy[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                    "t {t}, i {i}: fd {fd} vs {}",
                    dy[i]
                );
            }
        }
    }
}
