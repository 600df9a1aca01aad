//! The AVX2 register tile's tap loop, 4 rows × 3 runs, written in assembly.
//!
//! With 16 vector registers a 12-accumulator tile leaves exactly four for the three input
//! vectors and the broadcast weight. LLVM does not keep to that: its version of this loop
//! shuffled accumulators between registers and spilled one (46 against 85 GFLOP/s for the
//! 4 × 2 tile, one 2-core Zen 4 thread), so the loop names its registers here. Per tap it is the
//! intrinsics' loop in the same order: three loads, then per row one broadcast and three FMAs
//! (`vfmadd231ps acc, a, x` is `_mm256_fmadd_ps(a, x, acc)`), so every output keeps its bits.
//! 12 FMAs per 23 instructions, against 8 per 19 for the 4 × 2 tile: on a core that issues two
//! 256-bit FMAs per cycle the smaller tile needs more instructions per cycle than it can issue.

#[cfg(target_arch = "x86_64")]
use std::arch::{asm, x86_64::__m256};

/// acc[r][j] += Σ_tap w[tap·stride + r] · x[j][taps[tap] + lane], taps in order.
///
/// SAFETY: AVX2 and FMA are present; for every tap, `x[j] + taps[tap]` is followed by 8
/// readable floats and `w + tap·stride` by 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn taps_4x3(
    acc: &mut [[__m256; 3]; 4],
    x: [*const f32; 3],
    taps: &[usize],
    w: *const f32,
    stride: usize,
) {
    if taps.is_empty() {
        return;
    }
    let [[mut a00, mut a01, mut a02], [mut a10, mut a11, mut a12], [mut a20, mut a21, mut a22], [mut a30, mut a31, mut a32]] =
        *acc;
    // SAFETY: see the function's contract; the loop reads memory only and runs taps.len() times.
    unsafe {
        asm!(
            "2:",
            "mov {off}, qword ptr [{tap}]",
            "vmovups ymm12, ymmword ptr [{x0} + 4*{off}]",
            "vmovups ymm13, ymmword ptr [{x1} + 4*{off}]",
            "vmovups ymm14, ymmword ptr [{x2} + 4*{off}]",
            "vbroadcastss ymm15, dword ptr [{w}]",
            "vfmadd231ps {a00}, ymm15, ymm12",
            "vfmadd231ps {a01}, ymm15, ymm13",
            "vfmadd231ps {a02}, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 4]",
            "vfmadd231ps {a10}, ymm15, ymm12",
            "vfmadd231ps {a11}, ymm15, ymm13",
            "vfmadd231ps {a12}, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 8]",
            "vfmadd231ps {a20}, ymm15, ymm12",
            "vfmadd231ps {a21}, ymm15, ymm13",
            "vfmadd231ps {a22}, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 12]",
            "vfmadd231ps {a30}, ymm15, ymm12",
            "vfmadd231ps {a31}, ymm15, ymm13",
            "vfmadd231ps {a32}, ymm15, ymm14",
            "add {tap}, 8",
            "add {w}, {step}",
            "cmp {tap}, {end}",
            "jne 2b",
            tap = inout(reg) taps.as_ptr() => _,
            end = in(reg) taps.as_ptr().add(taps.len()),
            off = out(reg) _,
            x0 = in(reg) x[0],
            x1 = in(reg) x[1],
            x2 = in(reg) x[2],
            w = inout(reg) w => _,
            step = in(reg) stride * 4,
            a00 = inout(ymm_reg) a00,
            a01 = inout(ymm_reg) a01,
            a02 = inout(ymm_reg) a02,
            a10 = inout(ymm_reg) a10,
            a11 = inout(ymm_reg) a11,
            a12 = inout(ymm_reg) a12,
            a20 = inout(ymm_reg) a20,
            a21 = inout(ymm_reg) a21,
            a22 = inout(ymm_reg) a22,
            a30 = inout(ymm_reg) a30,
            a31 = inout(ymm_reg) a31,
            a32 = inout(ymm_reg) a32,
            out("ymm12") _,
            out("ymm13") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, readonly),
        );
    }
    *acc = [
        [a00, a01, a02],
        [a10, a11, a12],
        [a20, a21, a22],
        [a30, a31, a32],
    ];
}
