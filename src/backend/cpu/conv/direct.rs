//! Stride-1 convolutions (k > 1) as a direct register-tiled kernel: no im2col and no GEMM
//! packing. The input is copied once into a zero-bordered buffer, so every tap of a run of
//! output pixels is one unaligned vector load; the weights are repacked per call into blocks of
//! `MR` output channels, tap-major, so a tile's broadcasts read consecutive floats.
//!
//! Each output is `bias`, then one fused multiply-add per tap in the order (ci, ky, kx): the
//! same operations in the same order for every vector width, so the AVX-512 and AVX2 kernels
//! give the same bits as each other and as the scalar definition (the tests compare bits), on
//! any thread count and at any batch size.

use super::ConvGeom;
use rayon::prelude::*;

/// Output channels per packed weight block (one tile's rows).
const MR: usize = 8;
/// The same, for the other packers of `Rows::Packed` blocks.
pub(super) const BLOCK_ROWS: usize = MR;
/// The widest vector (AVX-512: 16 floats): read slack after the padded input.
const MAX_LANES: usize = 16;
/// Output vectors per parallel task (a task also owns one weight block).
const VECTORS_PER_TASK: usize = 48;

/// The vector kernels this machine can run, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2 => "avx2+fma",
        }
    }

    /// Every kernel this machine supports (for tests that compare them).
    pub fn available() -> Vec<Isa> {
        use super::super::simd::{has_avx2_fma, has_avx512};
        let mut v = Vec::new();
        if has_avx512() {
            v.push(Isa::Avx512);
        }
        if has_avx2_fma() {
            v.push(Isa::Avx2);
        }
        v
    }

    /// The kernel `conv2d` uses here, or None (no AVX2+FMA: the im2col path runs instead).
    pub fn detect() -> Option<Isa> {
        static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| Isa::available().first().copied())
    }
}

/// Whether the direct kernel computes this geometry (1×1 convolutions stay plain GEMMs).
pub fn handles(g: &ConvGeom) -> bool {
    g.stride == 1 && g.k > 1
}

/// A run of up to `lanes` output pixels of one row: where its first tap is read in the padded
/// input, where it is written in the output plane, and how many of its lanes are real.
#[derive(Clone, Copy)]
struct Run {
    src: usize,
    dst: usize,
    len: usize,
}

/// Geometry of the zero-bordered copy of one image.
struct Padded {
    wp: usize,
    plane: usize,
}

/// The weights `conv2d_direct` applies, (cout, cin, k, k) of its geometry.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// As given.
    Plain(&'a [f32]),
    /// A stride-1 conv's adjoint read from that conv's weights `w` (cin, cout, k, k): w'[co][ci]
    /// [ky][kx] = w[ci][co][k-1-ky][k-1-kx], flipped in space with the channel axes swapped as
    /// they are packed (no flipped copy).
    Adjoint(&'a [f32]),
}

impl<'a> Weights<'a> {
    pub fn data(self) -> &'a [f32] {
        match self {
            Weights::Plain(w) | Weights::Adjoint(w) => w,
        }
    }

    /// The same layout over other values (e.g. a rounded copy).
    pub fn with_data<'b>(self, w: &'b [f32]) -> Weights<'b> {
        match self {
            Weights::Plain(_) => Weights::Plain(w),
            Weights::Adjoint(_) => Weights::Adjoint(w),
        }
    }
}

/// out = conv(x, weight) + bias for a stride-1 geometry, on the kernel `isa`, the weights as
/// `pack_weights` packs them for `g`.
pub fn conv2d_direct(
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    isa: Isa,
) {
    assert_eq!(g.stride, 1, "direct conv: stride 1 only");
    let (ho, wo) = g.out_hw();
    let (in_len, npix, kdim) = (g.cin * g.h * g.w, ho * wo, g.cin * g.k * g.k);
    assert_eq!(x.len(), g.n * in_len);
    assert_eq!(out.len(), g.n * g.cout * npix);
    let packed_len = g.cout.div_ceil(MR) * kdim * MR;
    assert_eq!(packed.len(), packed_len, "direct conv: packed weights");
    assert_eq!(bias.len(), g.cout);
    let pad = Padded {
        wp: g.w + 2 * g.pad,
        plane: (g.h + 2 * g.pad) * (g.w + 2 * g.pad),
    };
    let taps = tap_offsets(g, &pad);
    let runs = output_runs(ho, wo, &pad, isa.lanes());
    let blocks = g.cout.div_ceil(MR);
    let chunks = runs.len().div_ceil(VECTORS_PER_TASK);
    // The padded copy lives in a per-thread buffer kept between calls: every value of it is
    // written for each image, so it needs neither an allocation nor zeroing per call.
    thread_local!(static PADDED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) });
    let mut xp = PADDED.take();
    xp.resize(g.cin * pad.plane + MAX_LANES, 0.0);
    for (xi, oi) in x.chunks(in_len).zip(out.chunks_mut(g.cout * npix)) {
        fill_padded(xi, g, &pad, &mut xp);
        let out_ptr = SendPtr(oi.as_mut_ptr());
        (0..blocks * chunks).into_par_iter().for_each(|task| {
            let (b, c) = (task / chunks, task % chunks);
            let rows = MR.min(g.cout - b * MR);
            let job = Job {
                xp: &xp,
                taps: &taps,
                wpk: &packed[b * kdim * MR..(b + 1) * kdim * MR],
                tap_stride: MR,
                bias: &bias[b * MR..b * MR + rows],
                accumulate: false,
                out: &out_ptr,
                co0: b * MR,
                npix,
            };
            let end = ((c + 1) * VECTORS_PER_TASK).min(runs.len());
            // SAFETY: the runs of this chunk and the channels of this block are written by this
            // task only; every read lies in `xp` (its slack covers the widest vector) or `wpk`.
            unsafe { job.run(isa, &runs[c * VECTORS_PER_TASK..end]) }
        });
    }
    PADDED.set(xp);
}

/// The left operand of [`rows_times_runs`]: a(r, tap) for rows r and taps.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// a(r, tap) = data[r·rs + tap·cs]. With rs = 1 and whole blocks of `MR` rows it is read
    /// where it lies (a block's rows of one tap are consecutive); otherwise each block is
    /// packed on the call.
    Strided(&'a [f32], usize, usize),
    /// Packed once by [`pack_rows`], for an operand used in many calls.
    Packed(&'a [f32]),
}

/// `a` (rows × taps) as blocks of `MR` rows, tap-major inside a block ([block][tap][row]),
/// rows past `rows` zero: what [`Rows::Packed`] takes.
pub fn pack_rows((a, rs, cs): (&[f32], usize, usize), rows: usize, taps: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; rows.div_ceil(MR) * taps * MR];
    for r in 0..rows {
        let (b, rr) = (r / MR, r % MR);
        for t in 0..taps {
            p[(b * taps + t) * MR + rr] = a[r * rs + t * cs];
        }
    }
    p
}

/// The direct kernel as a plain product on one thread: out[r·ld + dst_j + l] (+)= Σ_tap
/// a(r, tap) · x[src_j + taps[tap] + l] for rows r < `rows`, runs j and lanes l < the vector
/// width. Each output is one FMA per tap in tap order, from zero or, with `accumulate`, from
/// the value already in `out`. Every run is a full vector whose reads lie in `x` (the caller's
/// shapes ensure it).
#[allow(clippy::too_many_arguments)]
pub fn rows_times_runs(
    a: Rows,
    rows: usize,
    x: &[f32],
    taps: &[usize],
    (srcs, dsts): (&[usize], &[usize]),
    (out, ld): (&mut [f32], usize),
    accumulate: bool,
    isa: Isa,
) {
    let lanes = isa.lanes();
    let last_read = srcs
        .iter()
        .max()
        .map_or(0, |s| s + taps.iter().max().unwrap_or(&0) + lanes);
    assert!(last_read <= x.len(), "rows_times_runs: a run reads past x");
    let last_write = dsts.iter().max().map_or(0, |d| d + lanes);
    assert!(
        rows == 0 || (rows - 1) * ld + last_write <= out.len(),
        "rows_times_runs: out too small"
    );
    let blocks = rows.div_ceil(MR);
    match a {
        Rows::Strided(data, rs, cs) => assert!(
            rows == 0 || taps.is_empty() || (rows - 1) * rs + (taps.len() - 1) * cs < data.len(),
            "rows_times_runs: a view exceeds its buffer"
        ),
        Rows::Packed(p) => assert_eq!(
            p.len(),
            blocks * taps.len() * MR,
            "rows_times_runs: packing"
        ),
    }
    let runs: Vec<Run> = srcs
        .iter()
        .zip(dsts)
        .map(|(&src, &dst)| Run {
            src,
            dst,
            len: lanes,
        })
        .collect();
    let zeros = [0.0f32; MR];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let mut wpk = Vec::new();
    for b in 0..blocks {
        let n = MR.min(rows - b * MR);
        let (block, tap_stride): (&[f32], usize) = match a {
            Rows::Packed(p) => (&p[b * taps.len() * MR..(b + 1) * taps.len() * MR], MR),
            Rows::Strided(data, 1, cs) if rows.is_multiple_of(MR) => (&data[b * MR..], cs),
            Rows::Strided(data, rs, cs) => {
                wpk.clear();
                wpk.resize(taps.len() * MR, 0.0);
                for r in 0..n {
                    for t in 0..taps.len() {
                        wpk[t * MR + r] = data[(b * MR + r) * rs + t * cs];
                    }
                }
                (&wpk, MR)
            }
        };
        let job = Job {
            xp: x,
            taps,
            wpk: block,
            tap_stride,
            bias: &zeros[..n],
            accumulate,
            out: &out_ptr,
            co0: b * MR,
            npix: ld,
        };
        // SAFETY: reads and writes checked against the slices above; one thread.
        unsafe { job.run(isa, &runs) }
    }
}

/// `weight` as blocks of MR output channels, tap-major inside a block ([block][tap][row]; rows
/// past `cout` zero), the blocks packed in parallel.
pub fn pack_weights(weight: Weights, g: &ConvGeom) -> Vec<f32> {
    let (kk, kdim) = (g.k * g.k, g.cin * g.k * g.k);
    assert_eq!(weight.data().len(), g.cout * kdim, "direct conv: weights");
    let mut p = vec![0.0f32; g.cout.div_ceil(MR) * kdim * MR];
    // Tap-outer loops: a block's rows are read side by side and it is written in order.
    p.par_chunks_mut(kdim * MR)
        .enumerate()
        .for_each(|(b, block)| {
            let rows = b * MR..(b * MR + MR).min(g.cout);
            match weight {
                Weights::Plain(w) => {
                    for (t, taps) in block.chunks_exact_mut(MR).enumerate() {
                        for (r, co) in rows.clone().enumerate() {
                            taps[r] = w[co * kdim + t];
                        }
                    }
                }
                Weights::Adjoint(w) => {
                    for (ci, taps) in block.chunks_exact_mut(kk * MR).enumerate() {
                        for (r, co) in rows.clone().enumerate() {
                            let src = &w[(ci * g.cout + co) * kk..(ci * g.cout + co + 1) * kk];
                            for (j, &v) in src.iter().rev().enumerate() {
                                taps[j * MR + r] = v;
                            }
                        }
                    }
                }
            }
        });
    p
}

/// Offset in the padded input of each tap (ci, ky, kx) relative to a run's first tap.
fn tap_offsets(g: &ConvGeom, pad: &Padded) -> Vec<usize> {
    let mut t = Vec::with_capacity(g.cin * g.k * g.k);
    for ci in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                t.push(ci * pad.plane + ky * pad.wp + kx);
            }
        }
    }
    t
}

/// Every output row cut into runs of `lanes` pixels (the last one of a row may be shorter).
fn output_runs(ho: usize, wo: usize, pad: &Padded, lanes: usize) -> Vec<Run> {
    let mut runs = Vec::with_capacity(ho * wo.div_ceil(lanes));
    for oy in 0..ho {
        for ox in (0..wo).step_by(lanes) {
            runs.push(Run {
                src: oy * pad.wp + ox,
                dst: oy * wo + ox,
                len: lanes.min(wo - ox),
            });
        }
    }
    runs
}

/// Write one image's zero-bordered copy into `xp` (all of it: borders, interior and the read
/// slack past the last plane), plane by plane in parallel.
fn fill_padded(x: &[f32], g: &ConvGeom, pad: &Padded, xp: &mut [f32]) {
    let (planes, slack) = xp.split_at_mut(g.cin * pad.plane);
    slack.fill(0.0);
    let (p, w) = (g.pad, g.w);
    planes
        .par_chunks_mut(pad.plane)
        .zip(x.par_chunks(g.h * w))
        .for_each(|(dst, src)| {
            let (top, rest) = dst.split_at_mut(p * pad.wp);
            top.fill(0.0);
            let (body, bottom) = rest.split_at_mut(g.h * pad.wp);
            for (row, from) in body.chunks_exact_mut(pad.wp).zip(src.chunks_exact(w)) {
                row[..p].fill(0.0);
                row[p..p + w].copy_from_slice(from);
                row[p + w..].fill(0.0);
            }
            bottom.fill(0.0);
        });
}

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// One task's operands: a weight block against a range of output runs of one image.
struct Job<'a> {
    xp: &'a [f32],
    taps: &'a [usize],
    /// a(r, tap) of the block's rows at wpk[tap·tap_stride + r].
    wpk: &'a [f32],
    tap_stride: usize,
    bias: &'a [f32],
    /// Start from the values in `out` instead of `bias` (every run a full vector).
    accumulate: bool,
    out: &'a SendPtr,
    co0: usize,
    npix: usize,
}

impl Job<'_> {
    /// SAFETY: see the call site; `isa` must be supported by this CPU.
    unsafe fn run(&self, isa: Isa, runs: &[Run]) {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match isa {
                Isa::Avx512 => {
                    let mut it = runs.chunks_exact(3);
                    for t in &mut it {
                        avx512::tile::<3>(self, [t[0], t[1], t[2]]);
                    }
                    for &r in it.remainder() {
                        avx512::tile::<1>(self, [r]);
                    }
                }
                Isa::Avx2 => {
                    let mut it = runs.chunks_exact(3);
                    for t in &mut it {
                        avx2::tile::<3>(self, [t[0], t[1], t[2]]);
                    }
                    match *it.remainder() {
                        [a, b] => avx2::tile::<2>(self, [a, b]),
                        [a] => avx2::tile::<1>(self, [a]),
                        _ => {}
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (isa, runs);
            unreachable!("no direct-conv kernel is detected off x86_64");
        }
    }

    /// Where row `r` of `run` is written (the first of its `run.len` outputs).
    #[inline(always)]
    fn dst(&self, r: usize, run: Run) -> *mut f32 {
        self.out
            .0
            .wrapping_add((self.co0 + r) * self.npix + run.dst)
    }
}

/// One tile kernel per instruction set: `R` output channels (rows `R0..R0+R` of the block) × `NV`
/// runs, accumulated in registers over every tap, then stored. The body is the same for every
/// width; only the intrinsics differ, and a tile of `$asm_nv` runs may take its tap loop from
/// an assembly function of the same order (`avx2_taps.rs`).
macro_rules! tile_kernel {
    ($modname:ident, $feature:literal, $lanes:expr, $vec:ty, $set1:ident, $loadu:ident,
     $fmadd:ident, $storeu:ident, [$($half:expr),+], $rows:expr
     $(, asm: $asm_nv:literal => $asm:path)?) => {
        #[cfg(target_arch = "x86_64")]
        mod $modname {
            use super::{Job, Run};
            use std::arch::x86_64::*;

            /// The tap loop of an `NV`-run tile from assembly, if this ISA has one for `NV`
            /// (returns whether it ran).
            /// SAFETY: as `tile`'s.
            #[inline(always)]
            #[allow(unused_variables)]
            unsafe fn asm_taps<const NV: usize>(
                acc: &mut [[$vec; NV]; $rows],
                job: &Job,
                runs: &[Run; NV],
                r0: usize,
            ) -> bool {
                $(
                    if NV == $asm_nv {
                        // SAFETY: the same type when NV == $asm_nv; the reads are those of the
                        // intrinsics' loop.
                        unsafe {
                            let acc = &mut *(acc as *mut [[$vec; NV]; $rows]
                                as *mut [[$vec; $asm_nv]; $rows]);
                            let x = std::array::from_fn(|j| job.xp.as_ptr().add(runs[j].src));
                            $asm(acc, x, job.taps, job.wpk.as_ptr().add(r0), job.tap_stride);
                        }
                        return true;
                    }
                )?
                false
            }

            /// SAFETY: the CPU has the feature; the reads of every run's taps lie inside
            /// `job.xp` and the writes are the job's own.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn tile<const NV: usize>(job: &Job, runs: [Run; NV]) {
                let rows = job.bias.len();
                let (xp, wpk, ts) = (job.xp.as_ptr(), job.wpk.as_ptr(), job.tap_stride);
                $(
                    let r0: usize = $half * $rows;
                    if r0 < rows {
                        // Constant trip counts throughout, so the accumulators stay in registers.
                        let mut acc: [[$vec; NV]; $rows] = [[$set1(0.0); NV]; $rows];
                        for r in 0..$rows {
                            if job.accumulate && r0 + r < rows {
                                for j in 0..NV {
                                    acc[r][j] = unsafe { $loadu(job.dst(r0 + r, runs[j])) };
                                }
                            } else {
                                let b = job.bias.get(r0 + r).copied().unwrap_or(0.0);
                                acc[r] = [$set1(b); NV];
                            }
                        }
                        // SAFETY: as this function's.
                        let in_asm = unsafe { asm_taps(&mut acc, job, &runs, r0) };
                        let taps: &[usize] = if in_asm { &[] } else { job.taps };
                        for (t, &off) in taps.iter().enumerate() {
                            let mut v: [$vec; NV] = [$set1(0.0); NV];
                            for j in 0..NV {
                                v[j] = unsafe { $loadu(xp.add(runs[j].src + off)) };
                            }
                            for r in 0..$rows {
                                let a = $set1(unsafe { *wpk.add(t * ts + r0 + r) });
                                for j in 0..NV {
                                    acc[r][j] = $fmadd(a, v[j], acc[r][j]);
                                }
                            }
                        }
                        for r in 0..$rows {
                            for j in 0..NV {
                                if r0 + r >= rows {
                                    continue;
                                }
                                let dst = job.dst(r0 + r, runs[j]);
                                if runs[j].len == $lanes {
                                    unsafe { $storeu(dst, acc[r][j]) };
                                } else {
                                    let mut lanes = [0.0f32; $lanes];
                                    unsafe {
                                        $storeu(lanes.as_mut_ptr(), acc[r][j]);
                                        std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, runs[j].len);
                                    }
                                }
                            }
                        }
                    }
                )+
            }
        }
    };
}

// AVX-512: 8 rows × 3 runs = 24 accumulators + 3 loads + 1 broadcast of 32 registers.
tile_kernel!(
    avx512,
    "avx512f",
    16,
    __m512,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps,
    [0],
    8
);
// AVX2: two halves of 4 rows × 3 runs = 12 accumulators + 3 loads + 1 broadcast of 16, the
// tap loop in assembly (see avx2_taps.rs); a task's last one or two runs on 4 × 1 or 4 × 2.
tile_kernel!(
    avx2,
    "avx2,fma",
    8,
    __m256,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps,
    [0, 1],
    4,
    asm: 3 => super::super::avx2_taps::taps_4x3
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The definition in the kernels' order: bias, then one `mul_add` per tap (ci, ky, kx),
    /// padding taps included as products with zero.
    fn scalar(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeom) -> Vec<f32> {
        let (ho, wo) = g.out_hw();
        let mut out = Vec::with_capacity(g.n * g.cout * ho * wo);
        for n in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = b[co];
                        for ci in 0..g.cin {
                            for ky in 0..g.k {
                                for kx in 0..g.k {
                                    let (iy, ix) = ((oy + ky) as isize, (ox + kx) as isize);
                                    let (iy, ix) = (iy - g.pad as isize, ix - g.pad as isize);
                                    let inside = (0..g.h as isize).contains(&iy)
                                        && (0..g.w as isize).contains(&ix);
                                    let xv = match inside {
                                        true => {
                                            x[((n * g.cin + ci) * g.h + iy as usize) * g.w
                                                + ix as usize]
                                        }
                                        false => 0.0,
                                    };
                                    let wv = w[((co * g.cin + ci) * g.k + ky) * g.k + kx];
                                    acc = wv.mul_add(xv, acc);
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

    #[allow(clippy::too_many_arguments)]
    fn geom(
        n: usize,
        cin: usize,
        h: usize,
        w: usize,
        cout: usize,
        k: usize,
        pad: usize,
    ) -> ConvGeom {
        ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride: 1,
            pad,
        }
    }

    /// Rows not a multiple of either vector width, channel counts not a multiple of the block,
    /// k = 3 and 5, "same" and "valid" padding, a row narrower than the kernel's reach.
    fn geoms() -> Vec<ConvGeom> {
        vec![
            geom(2, 3, 7, 5, 4, 3, 1),
            geom(1, 5, 23, 19, 9, 3, 1),
            geom(2, 2, 9, 11, 17, 5, 2),
            geom(1, 2, 1, 3, 2, 5, 2),
            geom(1, 4, 10, 40, 8, 3, 0),
            geom(3, 16, 16, 16, 24, 3, 1),
            geom(1, 1, 33, 64, 1, 3, 1),
        ]
    }

    fn pack(w: &[f32], g: &ConvGeom) -> Vec<f32> {
        pack_weights(Weights::Plain(w), g)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|e| e.to_bits()).collect()
    }

    #[test]
    fn every_kernel_gives_the_bits_of_the_scalar_definition() {
        let isas = Isa::available();
        if isas.is_empty() {
            eprintln!("SKIP: no AVX2+FMA or AVX-512 on this CPU (the im2col path runs instead)");
            return;
        }
        let mut rng = Rng::new(21);
        for g in geoms() {
            let (ho, wo) = g.out_hw();
            let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
            let w = rng.normal_vec(g.cout * g.cin * g.k * g.k);
            let b = rng.normal_vec(g.cout);
            let want = bits(&scalar(&x, &w, &b, &g));
            for &isa in &isas {
                let mut out = vec![f32::NAN; g.n * g.cout * ho * wo];
                conv2d_direct(&x, &pack(&w, &g), &b, &g, &mut out, isa);
                assert_eq!(bits(&out), want, "{}: {g:?}", isa.name());
            }
        }
    }

    /// The same bits on one thread and on three, and for an image alone or inside a batch.
    #[test]
    fn bits_do_not_depend_on_threads_or_batch() {
        let Some(isa) = Isa::detect() else {
            eprintln!("SKIP: no direct-conv kernel on this CPU");
            return;
        };
        let g = geom(3, 16, 20, 36, 12, 3, 1);
        let (ho, wo) = g.out_hw();
        let mut rng = Rng::new(22);
        let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
        let w = rng.normal_vec(g.cout * g.cin * 9);
        let b = rng.normal_vec(g.cout);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![f32::NAN; g.n * g.cout * ho * wo];
            pool.install(|| conv2d_direct(&x, &pack(&w, &g), &b, &g, &mut out, isa));
            bits(&out)
        };
        let all = run(3);
        assert_eq!(run(1), all);
        let one = ConvGeom { n: 1, ..g };
        let per = g.cin * g.h * g.w;
        let mut second = vec![f32::NAN; g.cout * ho * wo];
        conv2d_direct(
            &x[per..2 * per],
            &pack(&w, &one),
            &b,
            &one,
            &mut second,
            isa,
        );
        let len = second.len();
        assert_eq!(bits(&second), all[len..2 * len].to_vec());
    }
}
