//! Multi-head self-attention over the H·W tokens of a (n, c, h, w) tensor, as PyTorch's
//! nn.MultiheadAttention with packed in-projection, and its input-VJP. Everything stays
//! channel-major ((c, tokens) per image), which is what the NCHW layout gives for free.

use super::gemm::{sgemm, View};
use rayon::prelude::*;

/// Attention weights: in_w (3c, c) rows q,k,v; in_b (3c); out_w (c, c); out_b (c).
pub struct AttnWeights<'a> {
    pub in_w: &'a [f32],
    pub in_b: &'a [f32],
    pub out_w: &'a [f32],
    pub out_b: &'a [f32],
}

/// Per-image projections and probabilities, kept by the forward for the VJP.
struct Heads {
    /// (3c, t): q, k, v rows, channel-major.
    qkv: Vec<f32>,
    /// (heads, t, t): softmax probabilities, row = query.
    probs: Vec<f32>,
    /// (c, t): concatenated head outputs before out_proj.
    ctx: Vec<f32>,
}

/// `out = attention(y)` for each image (no residual; the caller adds it).
pub fn attention(
    y: &[f32],
    wts: &AttnWeights,
    n: usize,
    c: usize,
    t: usize,
    heads: usize,
    out: &mut [f32],
) {
    assert_eq!(y.len(), n * c * t);
    assert_eq!(out.len(), y.len());
    out.par_chunks_mut(c * t)
        .zip(y.par_chunks(c * t))
        .for_each(|(o, yi)| {
            let hs = forward_heads(yi, wts, c, t, heads);
            project_out(&hs.ctx, wts, c, t, o);
        });
}

/// dy for `attention` given dout.
pub fn attention_vjp(
    y: &[f32],
    wts: &AttnWeights,
    n: usize,
    c: usize,
    t: usize,
    heads: usize,
    dout: &[f32],
    dy: &mut [f32],
) {
    assert_eq!(y.len(), n * c * t);
    assert_eq!(dout.len(), y.len());
    assert_eq!(dy.len(), y.len());
    dy.par_chunks_mut(c * t)
        .zip(y.par_chunks(c * t).zip(dout.par_chunks(c * t)))
        .for_each(|(dyi, (yi, douti))| {
            let hs = forward_heads(yi, wts, c, t, heads);
            backward_image(&hs, wts, c, t, heads, douti, dyi);
        });
}

fn forward_heads(y: &[f32], wts: &AttnWeights, c: usize, t: usize, heads: usize) -> Heads {
    let d = c / heads;
    let mut qkv = vec![0.0f32; 3 * c * t];
    for (r, row) in qkv.chunks_mut(t).enumerate() {
        row.fill(wts.in_b[r]);
    }
    sgemm(
        3 * c,
        c,
        t,
        View::rows(wts.in_w, c),
        View::rows(y, t),
        1.0,
        &mut qkv,
    );
    let scale = 1.0 / (d as f32).sqrt();
    let mut probs = vec![0.0f32; heads * t * t];
    let mut ctx = vec![0.0f32; c * t];
    probs
        .par_chunks_mut(t * t)
        .zip(ctx.par_chunks_mut(d * t))
        .enumerate()
        .for_each(|(h, (p, ctx_h))| {
            let (q, k, v) = head_rows(&qkv, c, t, d, h);
            // scores[i][j] = q_i · k_j: A = q^T (t×d), B = k (d×t).
            sgemm(t, d, t, View::transposed(q, t), View::rows(k, t), 0.0, p);
            p.chunks_mut(t).for_each(|row| softmax_scaled(row, scale));
            // ctx^T (d×t) = v (d×t) · P^T.
            sgemm(
                d,
                t,
                t,
                View::rows(v, t),
                View::transposed(p, t),
                0.0,
                ctx_h,
            );
        });
    Heads { qkv, probs, ctx }
}

fn project_out(ctx: &[f32], wts: &AttnWeights, c: usize, t: usize, out: &mut [f32]) {
    for (r, row) in out.chunks_mut(t).enumerate() {
        row.fill(wts.out_b[r]);
    }
    sgemm(
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

/// Softmax of `scale · row` in place (max-subtracted, sum in f64).
fn softmax_scaled(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    let mut sum = 0.0f64;
    for v in row.iter_mut() {
        *v = (*v * scale - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

fn backward_image(
    hs: &Heads,
    wts: &AttnWeights,
    c: usize,
    t: usize,
    heads: usize,
    dout: &[f32],
    dy: &mut [f32],
) {
    let d = c / heads;
    let scale = 1.0 / (d as f32).sqrt();
    // dctx (c×t) = out_w^T · dout.
    let mut dctx = vec![0.0f32; c * t];
    sgemm(
        c,
        c,
        t,
        View::transposed(wts.out_w, c),
        View::rows(dout, t),
        0.0,
        &mut dctx,
    );
    let mut dqkv = vec![0.0f32; 3 * c * t];
    let (dq_all, rest) = dqkv.split_at_mut(c * t);
    let (dk_all, dv_all) = rest.split_at_mut(c * t);
    dq_all
        .par_chunks_mut(d * t)
        .zip(
            dk_all
                .par_chunks_mut(d * t)
                .zip(dv_all.par_chunks_mut(d * t)),
        )
        .enumerate()
        .for_each(|(h, (dq, (dk, dv)))| {
            let (q, k, v) = head_rows(&hs.qkv, c, t, d, h);
            let p = &hs.probs[h * t * t..(h + 1) * t * t];
            let dctx_h = &dctx[h * d * t..(h + 1) * d * t];
            // dv (d×t) = dctx_h · P.
            sgemm(d, t, t, View::rows(dctx_h, t), View::rows(p, t), 0.0, dv);
            // dP (t×t) = dctx_h^T · v.
            let mut ds = vec![0.0f32; t * t];
            sgemm(
                t,
                d,
                t,
                View::transposed(dctx_h, t),
                View::rows(v, t),
                0.0,
                &mut ds,
            );
            // Softmax backward, folding in the score scale: dS = scale · P ⊙ (dP − <dP, P>_row).
            for (dsr, pr) in ds.chunks_mut(t).zip(p.chunks(t)) {
                let dot: f64 = dsr.iter().zip(pr).map(|(a, b)| *a as f64 * *b as f64).sum();
                for (g, &pv) in dsr.iter_mut().zip(pr) {
                    *g = scale * pv * (*g - dot as f32);
                }
            }
            // dq (d×t) = k · dS^T ; dk (d×t) = q · dS.
            sgemm(d, t, t, View::rows(k, t), View::transposed(&ds, t), 0.0, dq);
            sgemm(d, t, t, View::rows(q, t), View::rows(&ds, t), 0.0, dk);
        });
    // dy (c×t) = in_w^T · dqkv.
    sgemm(
        c,
        3 * c,
        t,
        View::transposed(wts.in_w, c),
        View::rows(&dqkv, t),
        0.0,
        dy,
    );
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
        }
    }

    #[test]
    fn forward_matches_textbook_attention() {
        let mut rng = Rng::new(21);
        let (c, t, heads) = (6, 7, 3);
        let w = weights(&mut rng, c);
        let y = rng.normal_vec(2 * c * t);
        let mut out = vec![f32::NAN; y.len()];
        attention(&y, &view(&w), 2, c, t, heads, &mut out);
        for img in 0..2 {
            let want = naive(&y[img * c * t..(img + 1) * c * t], &w, c, t, heads);
            let got = &out[img * c * t..(img + 1) * c * t];
            let err = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-5, "max err {err}");
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(22);
        let (c, t, heads) = (4, 5, 2);
        let w = weights(&mut rng, c);
        let y = rng.normal_vec(c * t);
        let r = rng.normal_vec(c * t);
        let mut dy = vec![f32::NAN; c * t];
        attention_vjp(&y, &view(&w), 1, c, t, heads, &r, &mut dy);
        let loss = |y: &[f32]| {
            naive(y, &w, c, t, heads)
                .iter()
                .zip(&r)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
        };
        for i in 0..c * t {
            let h = 1e-2f32;
            let (mut yp, mut ym) = (y.clone(), y.clone());
            yp[i] += h;
            ym[i] -= h;
            let fd = (loss(&yp) - loss(&ym)) / (2.0 * h as f64);
            assert!(
                (fd - dy[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                "i {i}: fd {fd} vs {}",
                dy[i]
            );
        }
    }
}
