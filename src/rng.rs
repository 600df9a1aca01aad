//! Deterministic random numbers, identical on every platform and release: xoshiro256++ seeded
//! through splitmix64, normals by Box–Muller. (PyTorch's generator cannot be reproduced; the
//! engine only promises that the same seed gives the same numbers on the same build.)

/// splitmix64's output finaliser; also used to derive synthetic weights (see `unet::synthetic`).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(GOLDEN_GAMMA);
            mix64(state)
        };
        Rng {
            s: [next(), next(), next(), next()],
            spare_normal: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller, both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 - uniform() lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare_normal = Some(r * s);
        r * c
    }

    /// `n` standard normal values as f32.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}

/// A tensor of standard normal values (e.g. DPS's starting noise x_T).
pub fn normal_tensor(shape: &[usize], seed: u64) -> crate::tensor::Tensor {
    let n = shape.iter().product();
    crate::tensor::Tensor::new(shape.to_vec(), Rng::new(seed).normal_vec(n))
        .expect("sized from the shape")
}

/// Standard normal noise with one stream per slice: slice i is drawn from `seeds[i]` and the
/// `stream` number, so a slice of a batch gets the same noise as the same slice run alone.
pub fn slice_noise(shape: &[usize], seeds: &[u64], stream: u64) -> crate::tensor::Tensor {
    let per: usize = shape[1..].iter().product();
    let data = seeds
        .iter()
        .flat_map(|&s| Rng::new(mix64(s ^ mix64(stream.wrapping_add(0x5EED)))).normal_vec(per))
        .collect();
    crate::tensor::Tensor::new(shape.to_vec(), data).expect("one seed per slice")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_different_seeds_differ() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(5);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(5);
        let b: Vec<u64> = (0..8).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(6);
        assert_ne!(a[0], r.next_u64());
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut r = Rng::new(1);
        let v = r.normal_vec(200_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }
}
