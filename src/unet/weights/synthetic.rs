//! Deterministic synthetic weights for benchmarks and golden tests.

use super::Params;
use crate::rng::{mix64, GOLDEN_GAMMA};
use crate::tensor::Tensor;
use crate::unet::config::UNetConfig;

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic weights of a plausible scale (see tools/reference.py for the same rule):
/// matrices and kernels uniform in ±1/sqrt(fan_in), GroupNorm gains 1 ± 0.1, biases ± 0.1.
pub fn synthetic(cfg: &UNetConfig, seed: u64) -> Params {
    cfg.param_table()
        .into_iter()
        .map(|(name, shape)| {
            let s = seed ^ fnv1a64(&name);
            let n: usize = shape.iter().product();
            let is_gain = shape.len() == 1 && {
                let parts: Vec<&str> = name.split('.').collect();
                parts.len() >= 2
                    && parts[parts.len() - 1] == "weight"
                    && parts[parts.len() - 2].contains("norm")
            };
            let fan_in: usize = shape.iter().skip(1).product();
            let data = (0..n as u64)
                .map(|j| {
                    let z = mix64(s.wrapping_add((j + 1).wrapping_mul(GOLDEN_GAMMA)));
                    let v = 2.0 * ((z >> 40) as f64 / (1u64 << 24) as f64) - 1.0;
                    let value = if shape.len() >= 2 {
                        v / (fan_in as f64).sqrt()
                    } else if is_gain {
                        1.0 + 0.1 * v
                    } else {
                        0.1 * v
                    };
                    value as f32
                })
                .collect();
            (
                name,
                Tensor::new(shape, data).expect("shape from the table"),
            )
        })
        .collect()
}
