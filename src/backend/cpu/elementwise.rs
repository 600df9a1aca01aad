//! Small memory-bound ops of the UNet and the samplers: channel bias, nearest upsampling,
//! channel concatenation, linear layers of the time path, and the sampler arithmetic.

use super::math::silu;
use rayon::prelude::*;

/// Parallel chunk length for elementwise loops (small tensors stay on one thread).
const CHUNK: usize = 1 << 14;

/// h[n, c, :, :] += v[n, c].
pub fn add_channel_bias(h: &mut [f32], v: &[f32], hw: usize) {
    assert_eq!(h.len(), v.len() * hw);
    h.par_chunks_mut(hw)
        .zip(v.par_iter())
        .for_each(|(plane, &b)| plane.iter_mut().for_each(|x| *x += b));
}

/// a += b.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(p, q)| *p += q));
}

/// out = ca·a + cb·b, elementwise.
pub fn lincomb(a: &[f32], ca: f32, b: &[f32], cb: f32, out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (x, y))| {
            o.iter_mut()
                .zip(x.iter().zip(y))
                .for_each(|(o, (p, q))| *o = ca * p + cb * q)
        });
}

/// x0_hat = (x − s1m·eps) / sab, written exactly as the reference orders it.
pub fn predict_x0(x: &[f32], eps: &[f32], sab: f32, s1m: f32, out: &mut [f32]) {
    assert!(x.len() == eps.len() && x.len() == out.len());
    out.iter_mut()
        .zip(x.iter().zip(eps))
        .for_each(|(o, (a, e))| *o = (a - s1m * e) / sab);
}

/// Clamp in place.
pub fn clamp(x: &mut [f32], lo: f32, hi: f32) {
    x.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
}

/// d where lo ≤ reference ≤ hi, else 0: the gradient of `clamp` (bounds pass, as PyTorch).
pub fn clamp_vjp(reference: &[f32], lo: f32, hi: f32, d: &mut [f32]) {
    assert_eq!(reference.len(), d.len());
    d.iter_mut().zip(reference).for_each(|(g, &r)| {
        if !(lo..=hi).contains(&r) {
            *g = 0.0;
        }
    });
}

/// Nearest-neighbour ×2 upsampling of (planes, h, w) to (planes, 2h, 2w).
pub fn upsample2x(x: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    assert_eq!(x.len(), planes * h * w);
    assert_eq!(out.len(), 4 * x.len());
    out.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, p)| {
            for (oy, orow) in o.chunks_mut(2 * w).enumerate() {
                let src = &p[(oy / 2) * w..(oy / 2 + 1) * w];
                orow.iter_mut()
                    .enumerate()
                    .for_each(|(ox, v)| *v = src[ox / 2]);
            }
        });
}

/// Adjoint of `upsample2x`: each input pixel collects its 2×2 block.
pub fn upsample2x_vjp(dy: &[f32], planes: usize, h: usize, w: usize, dx: &mut [f32]) {
    assert_eq!(dx.len(), planes * h * w);
    assert_eq!(dy.len(), 4 * dx.len());
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(4 * h * w))
        .for_each(|(d, g)| {
            for y in 0..h {
                for x in 0..w {
                    let (r0, r1) = (2 * y * 2 * w, (2 * y + 1) * 2 * w);
                    d[y * w + x] =
                        g[r0 + 2 * x] + g[r0 + 2 * x + 1] + g[r1 + 2 * x] + g[r1 + 2 * x + 1];
                }
            }
        });
}

/// out (n, ca+cb, hw) = [a (n, ca, hw), b (n, cb, hw)] along channels.
pub fn concat_channels(a: &[f32], b: &[f32], n: usize, hw: usize, out: &mut [f32]) {
    let (la, lb) = (a.len() / n, b.len() / n);
    assert_eq!(out.len(), a.len() + b.len());
    assert!(la % hw == 0 && lb % hw == 0);
    out.par_chunks_mut(la + lb).enumerate().for_each(|(i, o)| {
        o[..la].copy_from_slice(&a[i * la..(i + 1) * la]);
        o[la..].copy_from_slice(&b[i * lb..(i + 1) * lb]);
    });
}

/// Inverse of `concat_channels`: split (n, ca+cb, hw) into its two parts.
pub fn split_channels(x: &[f32], n: usize, part_a: usize, da: &mut [f32], db: &mut [f32]) {
    let (la, lb) = (part_a, x.len() / n - part_a);
    assert!(da.len() == n * la && db.len() == n * lb);
    for (i, row) in x.chunks(la + lb).enumerate() {
        da[i * la..(i + 1) * la].copy_from_slice(&row[..la]);
        db[i * lb..(i + 1) * lb].copy_from_slice(&row[la..]);
    }
}

/// out (n, fout) = act(x) (n, fin) · w^T + b, with act = SiLU when `silu_input`.
pub fn linear(x: &[f32], w: &[f32], b: &[f32], fin: usize, silu_input: bool, out: &mut [f32]) {
    let fout = b.len();
    assert_eq!(w.len(), fout * fin);
    assert_eq!(out.len() / fout, x.len() / fin);
    for (xr, or) in x.chunks(fin).zip(out.chunks_mut(fout)) {
        let act: Vec<f32> = xr
            .iter()
            .map(|&v| if silu_input { silu(v) } else { v })
            .collect();
        for (o, (wr, &bias)) in or.iter_mut().zip(w.chunks(fin).zip(b)) {
            *o = bias + wr.iter().zip(&act).map(|(p, q)| p * q).sum::<f32>();
        }
    }
}

/// Sum of squares of each of the `n` equal slices, in f64.
pub fn sum_sq_per_item(x: &[f32], n: usize) -> Vec<f64> {
    x.chunks(x.len() / n)
        .map(|s| s.iter().map(|&v| v as f64 * v as f64).sum())
        .collect()
}

/// Σ a·b over each of the n items, in f64.
pub fn dot_per_item(a: &[f32], b: &[f32], n: usize) -> Vec<f64> {
    let per = a.len() / n;
    a.chunks(per)
        .zip(b.chunks(per))
        .map(|(p, q)| p.iter().zip(q).map(|(u, v)| *u as f64 * *v as f64).sum())
        .collect()
}

/// out = ca[i]·a + cb[i]·b over item i of n, each product rounded before the sum.
pub fn lincomb_per_item(a: &[f32], ca: &[f32], b: &[f32], cb: &[f32], out: &mut [f32]) {
    let per = a.len() / ca.len();
    for (i, ((o, x), y)) in out
        .chunks_mut(per)
        .zip(a.chunks(per))
        .zip(b.chunks(per))
        .enumerate()
    {
        for ((o, p), q) in o.iter_mut().zip(x).zip(y) {
            *o = ca[i] * p + cb[i] * q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsample_and_its_adjoint() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut up = vec![f32::NAN; 24];
        upsample2x(&x, 1, 2, 3, &mut up);
        assert_eq!(&up[..6], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(&up[18..], &[4.0, 4.0, 5.0, 5.0, 6.0, 6.0]);
        let dy: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let mut dx = vec![f32::NAN; 6];
        upsample2x_vjp(&dy, 1, 2, 3, &mut dx);
        // <up(x), dy> == <x, up^T(dy)>
        let lhs: f32 = up.iter().zip(&dy).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        assert_eq!(dx[0], 0.0 + 1.0 + 6.0 + 7.0);
    }

    #[test]
    fn concat_then_split_round_trips() {
        let a: Vec<f32> = (0..8).map(|i| i as f32).collect(); // n 2, 2 ch, hw 2
        let b: Vec<f32> = (0..4).map(|i| 100.0 + i as f32).collect(); // n 2, 1 ch
        let mut cat = vec![0.0; 12];
        concat_channels(&a, &b, 2, 2, &mut cat);
        assert_eq!(
            cat,
            vec![0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 4.0, 5.0, 6.0, 7.0, 102.0, 103.0]
        );
        let (mut da, mut db) = (vec![0.0; 8], vec![0.0; 4]);
        split_channels(&cat, 2, 4, &mut da, &mut db);
        assert_eq!((da, db), (a, b));
    }

    #[test]
    fn clamp_gradient_keeps_the_bounds() {
        let r = [-2.0, -1.0, 0.5, 1.0, 1.5];
        let mut d = [1.0; 5];
        clamp_vjp(&r, -1.0, 1.0, &mut d);
        assert_eq!(d, [0.0, 1.0, 1.0, 1.0, 0.0]);
    }
}
