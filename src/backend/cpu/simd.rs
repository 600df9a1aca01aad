//! Run-time selection of the vector width for the CPU's elementwise loops.
//!
//! The crate is built for baseline x86-64 (SSE2), so that one binary runs on any x86-64 machine;
//! `wide!` compiles a function body a second and third time with AVX-512F and AVX2 enabled and
//! calls the widest one the CPU has. Rust never fuses a multiply and an add on its own and never
//! reorders floating-point operations, so every version computes the same operations in the same
//! order: the same bits on every machine, only faster where the vectors are wider.

/// Whether the AVX-512F versions may run (the crate's `avx512` feature and the CPU).
pub fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| cfg!(feature = "avx512") && detected("avx512f"))
}

/// Whether the AVX2 versions may run.
pub fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| detected("avx2"))
}

/// Whether AVX2 with FMA is present (the direct convolution's 256-bit kernel).
pub fn has_avx2_fma() -> bool {
    has_avx2() && detected("fma")
}

fn detected(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match feature {
            "avx512f" => has!("avx512f"),
            "avx2" => has!("avx2"),
            "fma" => has!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// `wide! { fn name(args) -> R { body } }` defines `name` as the body compiled for the widest
/// vector unit present. Arguments are plain (no generics); the body must not start parallel
/// work (its closures would run outside the wide versions).
macro_rules! wide {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if $crate::backend::cpu::simd::has_avx512() {
                    // SAFETY: the CPU has AVX-512F (checked above).
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::backend::cpu::simd::has_avx2() {
                    // SAFETY: the CPU has AVX2 (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use wide;

#[cfg(test)]
mod tests {
    wide! {
        fn scaled_sum(x: &[f32], s: f32) -> f32 {
            x.iter().fold(0.0, |a, &v| a + v * s)
        }
    }

    /// The dispatched version gives the plain loop's bits (the order of a fold is fixed).
    #[test]
    fn dispatched_body_gives_the_baseline_bits() {
        let x: Vec<f32> = (0..1001).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let plain = x.iter().fold(0.0f32, |a, &v| a + v * 0.3);
        assert_eq!(scaled_sum(&x, 0.3).to_bits(), plain.to_bits());
    }
}
