//! 3×3 stride-1 convolutions with padding 1 by Winograd's F(2×2, 3×3): each 2×2 block of
//! outputs from a 4×4 block of inputs with 16 products per channel pair instead of 36, so the
//! multiply-adds fall 2.25×. Three stages per slab of tile rows of an image:
//!
//! 1. input transform, V = Bᵀ d B for every input channel and 4×4 input block d (stride 2);
//! 2. sixteen products, M[ξ] (cout × tiles) = U[ξ] (cout × cin) · V[ξ] (cin × tiles), one per
//!    position ξ of the 4×4 transform, on the direct convolution's register tiles (U = G g Gᵀ,
//!    transformed in f64 and packed once per model, as the direct kernel's weights are);
//! 3. output transform, Y = Aᵀ M A + bias, written as 2×2 output blocks, by the task that
//!    computed that block of output channels' products, while they are in cache.
//!
//! Only at f32 (TF32/BF16 keep the direct kernel, whose operand rounding is the GPU's) and with
//! 64 channels or more on both sides (`pays`).
//!
//! The transforms add and subtract in one fixed order and the products are one FMA per input
//! channel in order, so the results are the same on every vector width, thread count and
//! batch size (the tests compare bits); against the direct definition they differ by rounding
//! (the tests bound it).

use super::super::simd::wide;
use super::direct::{rows_times_runs, Isa, Rows, BLOCK_ROWS};
use super::ConvGeom;
use rayon::prelude::*;
use std::cell::Cell;

/// Positions of the 4×4 transform.
const XI: usize = 16;
/// A panel of the transformed input holds whole tile rows, a multiple of this many tiles (the
/// widest vector): for every ξ and input channel its tiles are consecutive, so a product's run
/// reads its taps (the input channels) a panel apart instead of a whole plane apart.
const PANEL_ALIGN: usize = 16;
/// Tiles per slab (rounded to whole panels, at least one): 3 MB of transformed input at 192
/// input channels.
const SLAB_TILES: usize = 256;
/// Channels below this on either side keep the direct kernel: the transforms cost (cin + cout)
/// per tile against the products' cin·cout, and on a 2-core Zen 4 the Winograd path lost at 16,
/// 32 and 40 channels (64×64) and won at 64 (64×64), 80 (32×32) and above.
const MIN_CHANNELS: usize = 64;

/// Whether `conv2d_winograd` computes this geometry: 3×3, stride 1, padding 1.
pub fn handles(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1
}

/// Whether `conv2d` takes this path for `g` (it computes any geometry `handles` accepts).
pub fn pays(g: &ConvGeom) -> bool {
    handles(g) && g.cin >= MIN_CHANNELS && g.cout >= MIN_CHANNELS
}

/// How the 2×2 output tiles of a plane are laid out: `th` × `tw` tiles, row-major, in panels
/// of `rows` tile rows (`len` = rows·tw tiles, a multiple of `PANEL_ALIGN`); `tiles` counts the
/// panels' tiles, past th·tw padding that is computed and never read.
#[derive(Clone, Copy)]
struct Tiling {
    th: usize,
    tw: usize,
    rows: usize,
    len: usize,
    tiles: usize,
}

impl Tiling {
    fn of(g: &ConvGeom) -> Tiling {
        let (th, tw) = (g.h.div_ceil(2), g.w.div_ceil(2));
        let rows = PANEL_ALIGN / gcd(tw, PANEL_ALIGN);
        let len = rows * tw;
        Tiling {
            th,
            tw,
            rows,
            len,
            tiles: th.div_ceil(rows) * len,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The weights (cout, cin, 3, 3) as U = G g Gᵀ, packed for the products: blocks of
/// `BLOCK_ROWS` output channels, then ξ, then input channel, then the block's rows
/// ([block][ξ][ci][row], rows past `cout` zero). `adjoint`: the weights are (cin, cout, 3, 3)
/// of the conv whose adjoint `g` is (flipped in space, channel axes swapped).
pub fn pack_weights(w: &[f32], g: &ConvGeom, adjoint: bool) -> Vec<f32> {
    assert_eq!(w.len(), g.cout * g.cin * 9, "winograd: weights");
    let blocks = g.cout.div_ceil(BLOCK_ROWS);
    let block_len = XI * g.cin * BLOCK_ROWS;
    let mut p = vec![0.0f32; blocks * block_len];
    p.par_chunks_mut(block_len)
        .enumerate()
        .for_each(|(b, block)| {
            for co in b * BLOCK_ROWS..(b * BLOCK_ROWS + BLOCK_ROWS).min(g.cout) {
                let r = co - b * BLOCK_ROWS;
                for ci in 0..g.cin {
                    let taps: [f32; 9] = match adjoint {
                        false => std::array::from_fn(|t| w[(co * g.cin + ci) * 9 + t]),
                        true => std::array::from_fn(|t| w[(ci * g.cout + co) * 9 + 8 - t]),
                    };
                    for (xi, u) in filter_transform(&taps).into_iter().enumerate() {
                        block[(xi * g.cin + ci) * BLOCK_ROWS + r] = u;
                    }
                }
            }
        });
    p
}

/// G g Gᵀ of one 3×3 kernel (row-major), in f64, rounded once.
fn filter_transform(k: &[f32; 9]) -> [f32; XI] {
    // G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], applied to the columns of each row, then the rows.
    let g3 = |a: f64, b: f64, c: f64| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let k = k.map(f64::from);
    let rows: [[f64; 4]; 3] = std::array::from_fn(|r| g3(k[3 * r], k[3 * r + 1], k[3 * r + 2]));
    let mut u = [0.0f32; XI];
    for j in 0..4 {
        let col = g3(rows[0][j], rows[1][j], rows[2][j]);
        for i in 0..4 {
            u[4 * i + j] = col[i] as f32;
        }
    }
    u
}

/// out = conv(x, w) + bias for a geometry `handles` accepts, the weights as `pack_weights`
/// packs them for `g`.
pub fn conv2d_winograd(
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    isa: Isa,
) {
    assert!(handles(g), "winograd: geometry {g:?}");
    let (plane, tl) = (g.h * g.w, Tiling::of(g));
    assert_eq!(x.len(), g.n * g.cin * plane);
    assert_eq!(out.len(), g.n * g.cout * plane);
    assert_eq!(bias.len(), g.cout);
    let block_len = XI * g.cin * BLOCK_ROWS;
    assert_eq!(packed.len(), g.cout.div_ceil(BLOCK_ROWS) * block_len);
    // Each image in slabs of whole panels, so the transformed input and the products stay a
    // few MB at any image size (4·cin floats per pixel for a whole image).
    let (panels, slab) = (tl.tiles / tl.len, (SLAB_TILES / tl.len).max(1));
    let panel_len = XI * g.cin * tl.len;
    // The transformed input of one slab, kept per calling thread between calls (every value
    // read is written first, so it needs no zeroing).
    thread_local!(static V: Cell<Vec<f32>> = const { Cell::new(Vec::new()) });
    let mut v = V.take();
    v.resize(slab.min(panels) * panel_len, 0.0);
    // The products for ξ over a slab of st tiles: tap ci of the run at panel q, tiles l.. is
    // v[q·panel_len + (ξ·cin + ci)·len + l]; its outputs go to m[row·16·st + ξ·st + q·len + l].
    let taps: Vec<usize> = (0..g.cin).map(|ci| ci * tl.len).collect();
    let runs: Vec<(usize, usize)> = (0..slab.min(panels))
        .flat_map(|q| (0..tl.len).step_by(isa.lanes()).map(move |l| (q, l)))
        .collect();
    let dsts: Vec<usize> = runs.iter().map(|&(q, l)| q * tl.len + l).collect();
    let srcs: Vec<Vec<usize>> = (0..XI)
        .map(|xi| {
            let at = |&(q, l): &(usize, usize)| q * panel_len + xi * g.cin * tl.len + l;
            runs.iter().map(at).collect()
        })
        .collect();
    for (x_img, o_img) in x.chunks(g.cin * plane).zip(out.chunks_mut(g.cout * plane)) {
        for q0 in (0..panels).step_by(slab) {
            let np = slab.min(panels - q0);
            let (st, nruns) = (np * tl.len, np * tl.len / isa.lanes());
            v[..np * panel_len]
                .par_chunks_mut(panel_len)
                .enumerate()
                .for_each(|(q, vq)| input_panel(x_img, g.cin, g.h, g.w, tl, q0 + q, vq));
            // Tile rows of this slab that exist (the last panel may run past the plane).
            let rows = q0 * tl.rows..((q0 + np) * tl.rows).min(tl.th);
            // One task per block of output channels: its 16 products, then its output
            // transforms while the products are still in cache.
            o_img
                .par_chunks_mut(BLOCK_ROWS * plane)
                .zip(packed.par_chunks(block_len))
                .zip(bias.par_chunks(BLOCK_ROWS))
                .for_each(|((o, u), b)| {
                    thread_local!(static M: Cell<Vec<f32>> = const { Cell::new(Vec::new()) });
                    let mut m = M.take();
                    m.resize(b.len() * XI * st, 0.0);
                    for (xi, srcs) in srcs.iter().enumerate() {
                        rows_times_runs(
                            Rows::Packed(&u[xi * g.cin * BLOCK_ROWS..][..g.cin * BLOCK_ROWS]),
                            b.len(),
                            &v,
                            &taps,
                            (&srcs[..nruns], &dsts[..nruns]),
                            (&mut m[xi * st..], XI * st),
                            false,
                            isa,
                        );
                    }
                    for ((oc, mc), &bc) in o.chunks_mut(plane).zip(m.chunks(XI * st)).zip(b) {
                        output_transform(mc, bc, g.h, g.w, rows.clone(), tl.tw, st, oc);
                    }
                    M.set(m);
                });
        }
    }
    V.set(v);
}

wide! {
    /// Bᵀ d B for the 4×4 blocks d (stride 2, zero outside the h×w planes of `x`) of the tiles
    /// of panel q, every input channel: tile (ty, tx) at v[(ξ·cin + ci)·len + (ty − q·rows)·tw
    /// + tx], tile rows past the last zero. Per tile row, the four input rows are combined
    /// first, then the columns from the even and odd columns of each combined row: every loop
    /// contiguous and a tile row long (zipped slices, so that they vectorise).
    fn input_panel(x: &[f32], cin: usize, h: usize, w: usize, tl: Tiling, q: usize, v: &mut [f32]) {
        let tw = tl.tw;
        let zero = vec![0.0f32; w];
        // Combined rows over the padded columns (e[j] is column j − 1; the ends stay zero).
        let mut e: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0.0f32; 2 * tw + 2]);
        let (mut even, mut odd) = (vec![0.0f32; tw + 1], vec![0.0f32; tw + 1]);
        for ci in 0..cin {
            let xc = &x[ci * h * w..(ci + 1) * h * w];
            for r in 0..tl.rows {
                let (ty, at) = (q * tl.rows + r, ci * tl.len + r * tw);
                let mut outs = v.chunks_exact_mut(cin * tl.len).map(|c| &mut c[at..at + tw]);
                if ty >= tl.th {
                    outs.for_each(|o| o.fill(0.0));
                    continue;
                }
                let row = |i: usize| match (2 * ty + i).wrapping_sub(1) {
                    y if y < h => &xc[y * w..(y + 1) * w],
                    _ => &zero[..],
                };
                let [e0, e1, e2, e3] = &mut e;
                let ends = e0[1..=w].iter_mut().zip(&mut e1[1..=w]).zip(&mut e2[1..=w]);
                let inner = row(0).iter().zip(row(1)).zip(row(2)).zip(row(3));
                for ((((a0, a1), a2), a3), (((&x0, &x1), &x2), &x3)) in ends.zip(&mut e3[1..=w]).zip(inner) {
                    *a0 = x0 - x2;
                    *a1 = x1 + x2;
                    *a2 = x2 - x1;
                    *a3 = x1 - x3;
                }
                for ei in &e {
                    for ((ev, od), pair) in even.iter_mut().zip(odd.iter_mut()).zip(ei.chunks_exact(2)) {
                        *ev = pair[0];
                        *od = pair[1];
                    }
                    let (ev0, ev1, od0, od1) = (&even[..tw], &even[1..], &odd[..tw], &odd[1..]);
                    let (o0, o1, o2, o3) = (outs.next().unwrap(), outs.next().unwrap(), outs.next().unwrap(), outs.next().unwrap());
                    o0.iter_mut().zip(ev0).zip(ev1).for_each(|((o, &a), &b)| *o = a - b);
                    o1.iter_mut().zip(od0).zip(ev1).for_each(|((o, &a), &b)| *o = a + b);
                    o2.iter_mut().zip(ev1).zip(od0).for_each(|((o, &a), &b)| *o = a - b);
                    o3.iter_mut().zip(od0).zip(od1).for_each(|((o, &a), &b)| *o = a - b);
                }
            }
        }
    }
}

wide! {
    /// Aᵀ M A + bias for the tiles of tile rows `rows` (ty0..) of one output channel (m holds its 16
    /// rows, m[ξ·ts + (ty − ty0)·tw + tx]), written as the 2×2 blocks of the h×w plane `out` (a
    /// block's last row or column dropped where h or w is odd): the columns first, a[i][0] = m_i0 + m_i1 + m_i2 and a[i][1] = m_i1
    /// − m_i2 − m_i3 for each row i, then the rows, y0 = a0 + a1 + a2 and y1 = a1 − a2 − a3.
    fn output_transform(m: &[f32], bias: f32, h: usize, w: usize, rows: std::ops::Range<usize>, tw: usize, ts: usize, out: &mut [f32]) {
        let ty0 = rows.start;
        // a[(2i + c)·tw + tile]
        let mut a = vec![0.0f32; 8 * tw];
        let (mut y0, mut y1) = (vec![0.0f32; tw], vec![0.0f32; tw]);
        for ty in rows {
            let base = (ty - ty0) * tw;
            for (i, ai) in a.chunks_exact_mut(2 * tw).enumerate() {
                let (a0, a1) = ai.split_at_mut(tw);
                let row = |k: usize| &m[(4 * i + k) * ts + base..][..tw];
                let ms = row(0).iter().zip(row(1)).zip(row(2).iter().zip(row(3)));
                for ((o0, o1), ((&m0, &m1), (&m2, &m3))) in a0.iter_mut().zip(a1.iter_mut()).zip(ms) {
                    *o0 = m0 + m1 + m2;
                    *o1 = m1 - m2 - m3;
                }
            }
            for r in 0..2 {
                let oy = 2 * ty + r;
                if oy >= h {
                    break;
                }
                for (c, yc) in [&mut y0, &mut y1].into_iter().enumerate() {
                    let p = |i: usize| &a[(2 * i + c) * tw..][..tw];
                    match r {
                        0 => yc.iter_mut().zip(p(0)).zip(p(1)).zip(p(2))
                            .for_each(|(((o, &a0), &a1), &a2)| *o = a0 + a1 + a2 + bias),
                        _ => yc.iter_mut().zip(p(1)).zip(p(2)).zip(p(3))
                            .for_each(|(((o, &a1), &a2), &a3)| *o = a1 - a2 - a3 + bias),
                    }
                }
                // Interleave the two output columns of each tile into the row.
                let orow = &mut out[oy * w..(oy + 1) * w];
                let mut pairs = orow.chunks_exact_mut(2);
                for ((pair, &l), &rt) in (&mut pairs).zip(&y0).zip(&y1) {
                    pair[0] = l;
                    pair[1] = rt;
                }
                if let [last] = pairs.into_remainder() {
                    *last = y0[tw - 1];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn geom(n: usize, cin: usize, h: usize, w: usize, cout: usize) -> ConvGeom {
        ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            k: 3,
            stride: 1,
            pad: 1,
        }
    }

    /// The convolution in f64, the definition the rounding is measured against.
    fn exact(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeom) -> Vec<f64> {
        let mut out = Vec::with_capacity(g.n * g.cout * g.h * g.w);
        for n in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let mut acc = f64::from(b[co]);
                        for ci in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) =
                                        ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                                    if iy < g.h && ix < g.w {
                                        let xv = x[((n * g.cin + ci) * g.h + iy) * g.w + ix];
                                        let wv = w[((co * g.cin + ci) * 3 + ky) * 3 + kx];
                                        acc += f64::from(xv) * f64::from(wv);
                                    }
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        out
    }

    fn rel(got: &[f32], want: &[f64]) -> f64 {
        let num: f64 = got
            .iter()
            .zip(want)
            .map(|(&a, &b)| (f64::from(a) - b).powi(2))
            .sum();
        let den: f64 = want.iter().map(|b| b * b).sum();
        (num / den).sqrt()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|e| e.to_bits()).collect()
    }

    /// Even and odd sizes, a plane narrower than one vector of tiles, channel counts not a
    /// multiple of the weight block, planes of several slabs (the last one partial, and one
    /// whose last panel runs past the plane).
    fn geoms() -> Vec<ConvGeom> {
        vec![
            geom(1, 32, 40, 36, 32),
            geom(1, 32, 64, 62, 33),
            geom(1, 32, 8, 8, 32),
            geom(2, 33, 7, 9, 41),
            geom(1, 64, 16, 16, 64),
            geom(1, 32, 1, 5, 40),
            geom(1, 40, 13, 2, 32),
        ]
    }

    #[test]
    fn matches_the_exact_convolution_within_rounding_on_every_kernel() {
        let mut rng = Rng::new(31);
        for g in geoms() {
            let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
            let w = rng.normal_vec(g.cout * g.cin * 9);
            let b = rng.normal_vec(g.cout);
            let want = exact(&x, &w, &b, &g);
            let packed = pack_weights(&w, &g, false);
            let mut first: Option<Vec<u32>> = None;
            for isa in Isa::available() {
                let mut out = vec![f32::NAN; g.n * g.cout * g.h * g.w];
                conv2d_winograd(&x, &packed, &b, &g, &mut out, isa);
                let e = rel(&out, &want);
                // Measured 1.8e-7 to 2.7e-7 (Zen 4; the direct kernel on the same cases 1.8e-7
                // to 4.2e-7: its sums run over all cin·9 taps, these over cin).
                assert!(e < 3e-6, "{}: {g:?}: relative error {e:.2e}", isa.name());
                // Every vector width gives the same bits.
                match &first {
                    None => first = Some(bits(&out)),
                    Some(f) => assert_eq!(&bits(&out), f, "{}: {g:?}", isa.name()),
                }
            }
        }
    }

    /// The adjoint packing is the packing of the flipped, channel-swapped weights, bit for bit.
    #[test]
    fn adjoint_packing_is_the_flipped_weights_packing() {
        let mut rng = Rng::new(32);
        let g = geom(1, 33, 4, 4, 41);
        let w = rng.normal_vec(g.cin * g.cout * 9); // (cin, cout, 3, 3) of the forward conv
        let mut flipped = vec![0.0f32; w.len()];
        for co in 0..g.cout {
            for ci in 0..g.cin {
                for t in 0..9 {
                    flipped[(co * g.cin + ci) * 9 + t] = w[(ci * g.cout + co) * 9 + 8 - t];
                }
            }
        }
        assert_eq!(
            bits(&pack_weights(&w, &g, true)),
            bits(&pack_weights(&flipped, &g, false))
        );
    }

    /// The same bits on one thread and on three, and for an image alone or inside a batch.
    #[test]
    fn bits_do_not_depend_on_threads_or_batch() {
        let Some(isa) = Isa::detect() else {
            eprintln!("SKIP: no vector kernel on this CPU");
            return;
        };
        let g = geom(3, 32, 10, 12, 48);
        let mut rng = Rng::new(33);
        let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
        let w = rng.normal_vec(g.cout * g.cin * 9);
        let b = rng.normal_vec(g.cout);
        let packed = pack_weights(&w, &g, false);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![f32::NAN; g.n * g.cout * g.h * g.w];
            pool.install(|| conv2d_winograd(&x, &packed, &b, &g, &mut out, isa));
            bits(&out)
        };
        let all = run(3);
        assert_eq!(run(1), all);
        let one = ConvGeom { n: 1, ..g };
        let per = g.cin * g.h * g.w;
        let mut second = vec![f32::NAN; g.cout * g.h * g.w];
        conv2d_winograd(&x[per..2 * per], &packed, &b, &one, &mut second, isa);
        let len = second.len();
        assert_eq!(bits(&second), all[len..2 * len].to_vec());
    }
}
