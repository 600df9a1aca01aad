//! Single-precision GEMM over strided matrices, split across the thread pool by column blocks
//! of C so that each thread packs only its own part of B. At TF32 or BF16 precision both
//! operands are rounded first (copies), as the CUDA kernels round what they stage, and the
//! product accumulates in f32 as before.
//!
//! The products run on matrixmultiply, which picks its micro-kernels at run time for the
//! machine: AVX-512F where the CPU has it, AVX2+FMA elsewhere (then AVX, SSE2; NEON on Arm). It
//! runs single-threaded inside our column tasks, so each element's sum is formed the same way
//! on every run with the same thread count. Building without the default `avx512` feature
//! leaves the AVX-512 kernels out, which is how the AVX2+FMA path is tested on AVX-512 machines.

use crate::precision::Precision;
use rayon::prelude::*;

/// The instruction set of the micro-kernels the GEMM dispatches to on this machine (the same
/// tests, in the same order, as matrixmultiply's own dispatch).
pub fn gemm_isa_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if cfg!(feature = "avx512") && has!("avx512f") {
            return "avx512f";
        }
        if has!("fma") && has!("avx2") {
            return "avx2+fma";
        }
        if has!("avx") {
            return "avx";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        match std::arch::is_aarch64_feature_detected!("neon") {
            true => "neon",
            false => "scalar",
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    "scalar"
}

/// A read-only strided matrix view: element (i, j) lives at `data[i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Columns per parallel task: small GEMMs run on one thread.
const MIN_COLS_PER_TASK: usize = 128;

/// The rows × cols matrix of `v`, row-major, each element rounded to `prec`.
fn rounded(prec: Precision, rows: usize, cols: usize, v: View) -> Vec<f32> {
    (0..rows * cols)
        .map(|e| prec.round(v.data[(e / cols) * v.rs + (e % cols) * v.cs]))
        .collect()
}

/// A (m×k) and B (k×n) as `prec` rounds them, row-major; None at f32 (use them as they are).
fn rounded_operands(
    prec: Precision,
    (m, k, n): (usize, usize, usize),
    a: View,
    b: View,
) -> Option<(Vec<f32>, Vec<f32>)> {
    (prec != Precision::F32 && k > 0).then(|| (rounded(prec, m, k, a), rounded(prec, k, n, b)))
}

/// As `sgemm` on the calling thread only: for GEMMs inside an already parallel loop.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_serial(
    prec: Precision,
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: View,
    beta: f32,
    c: &mut [f32],
) {
    assert_eq!(c.len(), m * n, "sgemm: C has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    check_bounds(m, k, a, "A");
    check_bounds(k, n, b, "B");
    if let Some((ra, rb)) = rounded_operands(prec, (m, k, n), a, b) {
        let (a, b) = (View::rows(&ra, k), View::rows(&rb, n));
        return sgemm_serial(Precision::F32, m, k, n, a, b, beta, c);
    }
    // SAFETY: bounds checked above; C is exclusively borrowed.
    unsafe { product((m, k, n), a, b.data.as_ptr(), b, beta, c.as_mut_ptr(), n) }
}

/// `C = A·B + beta·C` for A (m×k), B (k×n), C row-major m×n (contiguous, `c.len() == m*n`),
/// with the operands rounded to `prec`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    prec: Precision,
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: View,
    beta: f32,
    c: &mut [f32],
) {
    assert_eq!(c.len(), m * n, "sgemm: C has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    check_bounds(m, k, a, "A");
    check_bounds(k, n, b, "B");
    if let Some((ra, rb)) = rounded_operands(prec, (m, k, n), a, b) {
        let (a, b) = (View::rows(&ra, k), View::rows(&rb, n));
        return sgemm(Precision::F32, m, k, n, a, b, beta, c);
    }
    let threads = rayon::current_num_threads().max(1);
    let tasks = (n / MIN_COLS_PER_TASK).clamp(1, threads * 2);
    let cols_per_task = n.div_ceil(tasks).next_multiple_of(16).min(n);
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(cols_per_task))
        .into_par_iter()
        .for_each(|t| {
            let j0 = t * cols_per_task;
            let nj = cols_per_task.min(n - j0);
            let c_ptr = &c_ptr;
            // SAFETY: bounds were checked above; each task writes a disjoint column range of C.
            unsafe {
                let b_cols = b.data.as_ptr().add(j0 * b.cs);
                product((m, k, nj), a, b_cols, b, beta, c_ptr.0.add(j0), n);
            }
        });
}

/// `C = A·B + beta·C` on the calling thread for A (m×k) as `a`, B (k×n) at `b_ptr` with `b`'s
/// strides, C (m×n) at `c_ptr` with row stride `ldc`.
///
/// SAFETY: every element of A, B and C so addressed lies inside its allocation, and no other
/// thread touches C's elements during the call.
unsafe fn product(
    (m, k, n): (usize, usize, usize),
    a: View,
    b_ptr: *const f32,
    b: View,
    beta: f32,
    c_ptr: *mut f32,
    ldc: usize,
) {
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a.data.as_ptr(),
        a.rs as isize,
        a.cs as isize,
        b_ptr,
        b.rs as isize,
        b.cs as isize,
        beta,
        c_ptr,
        ldc as isize,
        1,
    );
}

fn check_bounds(rows: usize, cols: usize, v: View, name: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(last < v.data.len(), "sgemm: {name} view exceeds its buffer");
}

#[cfg(test)]
mod tests {
    use super::*;
    use Precision::*;

    fn naive(m: usize, k: usize, n: usize, a: View, b: View) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes_and_odd_sizes() {
        let mut rng = crate::rng::Rng::new(3);
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 301), (33, 5, 1000), (64, 576, 257)] {
            let a = rng.normal_vec(m * k);
            let b = rng.normal_vec(k * n);
            let (av, bv) = (View::rows(&a, k), View::rows(&b, n));
            let want = naive(m, k, n, av, bv);
            let mut c = vec![f32::NAN; m * n];
            sgemm(F32, m, k, n, av, bv, 0.0, &mut c);
            let err = want
                .iter()
                .zip(&c)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-3, "({m},{k},{n}) max err {err}");
            // A stored transposed (k×m row-major) gives the same product.
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let mut c2 = vec![f32::NAN; m * n];
            sgemm(F32, m, k, n, View::transposed(&at, m), bv, 0.0, &mut c2);
            let diff = c
                .iter()
                .zip(&c2)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-4, "transposed A differs by {diff}");
        }
    }

    /// Max over C of |c - exact| / Σ_p |a_ip·b_pj|: the error in units of the sum's own scale,
    /// which is what f32 rounding bounds (about k·eps for a plain sum).
    fn scaled_error(m: usize, k: usize, n: usize, a: View, b: View, c: &[f32]) -> f64 {
        let mut worst = 0.0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut scale) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                    s += t;
                    scale += t.abs();
                }
                worst = worst.max((c[i * n + j] as f64 - s).abs() / scale.max(f64::MIN_POSITIVE));
            }
        }
        worst
    }

    /// Plain f32 loop in index order: the scalar reference the SIMD kernels are held to.
    fn scalar_f32(m: usize, k: usize, n: usize, a: View, b: View) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs])
                    .sum();
            }
        }
        c
    }

    /// The kernels this build dispatches to on this machine (`gemm_isa_name`; the AVX2+FMA ones
    /// on an AVX-512 machine with `--no-default-features`), serial and split over the pool,
    /// against an f64 reference on odd shapes, transposed A included; and run to run the same bits.
    #[test]
    fn dispatched_kernels_match_f64_reference_and_repeat_bit_for_bit() {
        let mut rng = crate::rng::Rng::new(7);
        let shapes = [
            (1, 1, 1),
            (3, 1000, 5),
            (17, 577, 129),
            (33, 5, 1000),
            (65, 2305, 259),
        ];
        let (mut worst_ref, mut worst_simd) = (0.0f64, 0.0f64);
        for &(m, k, n) in &shapes {
            let a = rng.normal_vec(m * k);
            let b = rng.normal_vec(k * n);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bv = View::rows(&b, n);
            let scalar = scalar_f32(m, k, n, View::rows(&a, k), bv);
            worst_ref = worst_ref.max(scaled_error(m, k, n, View::rows(&a, k), bv, &scalar));
            for av in [View::rows(&a, k), View::transposed(&at, m)] {
                let mut runs = Vec::new();
                for serial in [false, true, false] {
                    let mut c = vec![f32::NAN; m * n];
                    match serial {
                        true => sgemm_serial(F32, m, k, n, av, bv, 0.0, &mut c),
                        false => sgemm(F32, m, k, n, av, bv, 0.0, &mut c),
                    }
                    worst_simd = worst_simd.max(scaled_error(m, k, n, av, bv, &c));
                    runs.push(c);
                }
                let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&runs[0]), bits(&runs[2]), "({m},{k},{n}): runs differ");
            }
        }
        // Measured on Zen 4: AVX-512F and AVX2+FMA both 1.5e-7, the scalar loop 2.9e-7
        // (the kernels' FMA sums in several accumulators round less than one running sum).
        // Bounds: about 10x those.
        println!(
            "gemm {}: scaled error {worst_simd:.2e} (scalar f32 loop {worst_ref:.2e})",
            gemm_isa_name()
        );
        assert!(worst_ref < 3e-6, "scalar reference {worst_ref:.2e}");
        assert!(worst_simd < 1.5e-6, "{}: {worst_simd:.2e}", gemm_isa_name());
    }

    /// beta = 1 accumulates into C; k = 0 leaves beta·C.
    #[test]
    fn accumulates_into_c_and_handles_empty_sums() {
        let mut rng = crate::rng::Rng::new(8);
        let (m, k, n) = (5, 33, 70);
        let (a, b, c0) = (
            rng.normal_vec(m * k),
            rng.normal_vec(k * n),
            rng.normal_vec(m * n),
        );
        let (av, bv) = (View::rows(&a, k), View::rows(&b, n));
        let ab = naive(m, k, n, av, bv);
        let mut c = c0.clone();
        sgemm(F32, m, k, n, av, bv, 1.0, &mut c);
        for ((got, x), y) in c.iter().zip(&c0).zip(&ab) {
            assert!((got - (x + y)).abs() < 1e-4, "{got} vs {}", x + y);
        }
        for beta in [0.0f32, 1.0] {
            let mut c = c0.clone();
            sgemm(
                F32,
                m,
                0,
                n,
                View::rows(&[], 0),
                View::rows(&[], n),
                beta,
                &mut c,
            );
            assert!(
                c.iter().zip(&c0).all(|(g, x)| *g == beta * x),
                "k = 0, beta {beta}"
            );
        }
    }

    #[test]
    fn reduced_precision_multiplies_the_rounded_operands() {
        let mut rng = crate::rng::Rng::new(5);
        let (m, k, n) = (9, 70, 300);
        let a = rng.normal_vec(m * k);
        let b = rng.normal_vec(k * n);
        for prec in [Tf32, Bf16] {
            let ra: Vec<f32> = a.iter().map(|&v| prec.round(v)).collect();
            let rb: Vec<f32> = b.iter().map(|&v| prec.round(v)).collect();
            let want = naive(m, k, n, View::rows(&ra, k), View::rows(&rb, n));
            let exact = naive(m, k, n, View::rows(&a, k), View::rows(&b, n));
            // A transposed view of A takes the same rounding.
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            for (serial, av) in [(false, View::rows(&a, k)), (true, View::transposed(&at, m))] {
                let mut c = vec![f32::NAN; m * n];
                let bv = View::rows(&b, n);
                match serial {
                    true => sgemm_serial(prec, m, k, n, av, bv, 0.0, &mut c),
                    false => sgemm(prec, m, k, n, av, bv, 0.0, &mut c),
                }
                let rel = |w: &[f32]| {
                    let num: f64 = w
                        .iter()
                        .zip(&c)
                        .map(|(x, y)| ((x - y) as f64).powi(2))
                        .sum();
                    let den: f64 = w.iter().map(|x| (*x as f64).powi(2)).sum();
                    (num / den).sqrt()
                };
                assert!(
                    rel(&want) < 1e-6,
                    "{prec}: {} from the rounded product",
                    rel(&want)
                );
                assert!(
                    rel(&exact) > 1e-5,
                    "{prec}: {} from f32: not rounded",
                    rel(&exact)
                );
            }
        }
    }
}
