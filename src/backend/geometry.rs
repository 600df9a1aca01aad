//! Parallel-beam CT geometry (shared/OPERATORS.md, `ct`): image size, views over an arc, detector
//! bins. Validated once here so that the projector loops and kernels can index with plain `int`
//! per slice: every per-slice size stays far below 2^31.

use crate::bail;
use crate::error::Result;

/// At most this many image rows or columns.
pub const MAX_SIDE: usize = 4096;
/// At most this many views.
pub const MAX_VIEWS: usize = 4096;
/// At most this many detector bins: enough for the default of a MAX_SIDE² image (5793).
pub const MAX_DETECTORS: usize = 8192;

/// One slice's CT geometry: an (height, width) image, `views` angles evenly spaced over
/// `arc_degrees` (θ_k = arc·k/views, k = 0 … views − 1), `detectors` bins of spacing 1.
#[derive(Debug, Clone, PartialEq)]
pub struct CtGeometry {
    pub height: usize,
    pub width: usize,
    pub views: usize,
    pub detectors: usize,
    pub arc_degrees: f64,
}

impl CtGeometry {
    /// A checked geometry; `detectors: None` takes `default_detectors(height, width)`.
    pub fn new(
        height: usize,
        width: usize,
        views: usize,
        detectors: Option<usize>,
        arc_degrees: f64,
    ) -> Result<Self> {
        if height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
            bail!("CT images must be between 1×1 and {MAX_SIDE}×{MAX_SIDE} pixels, got {height}×{width}");
        }
        if views == 0 || views > MAX_VIEWS {
            bail!("the number of CT views must be between 1 and {MAX_VIEWS}, got {views}");
        }
        if !(arc_degrees.is_finite() && arc_degrees > 0.0 && arc_degrees <= 360.0) {
            bail!("the CT arc must be a number of degrees in (0, 360], got {arc_degrees}");
        }
        let detectors = match detectors {
            Some(d) => d,
            None => default_detectors(height, width)?,
        };
        if detectors == 0 || detectors > MAX_DETECTORS {
            bail!("the number of CT detector bins must be between 1 and {MAX_DETECTORS}, got {detectors}");
        }
        // Both products are bounded by the caps above (≤ 2^25); checked all the same, so that a
        // change of cap cannot silently overflow.
        if height.checked_mul(width).is_none() || views.checked_mul(detectors).is_none() {
            bail!("CT geometry {height}×{width}, {views} views × {detectors} bins is too large");
        }
        Ok(CtGeometry {
            height,
            width,
            views,
            detectors,
            arc_degrees,
        })
    }

    /// Pixels per slice.
    pub fn image_len(&self) -> usize {
        self.height * self.width
    }

    /// Sinogram values per slice (views × detectors).
    pub fn sinogram_len(&self) -> usize {
        self.views * self.detectors
    }

    /// (cos θ_k, sin θ_k) for every view, computed in f64 and rounded to f32 once. The projector,
    /// the back-projector and the kernels all read these same values, so their branch and floor
    /// decisions agree.
    pub fn angles(&self) -> Vec<(f32, f32)> {
        let arc = self.arc_degrees.to_radians();
        (0..self.views)
            .map(|k| {
                let theta = arc * k as f64 / self.views as f64;
                (theta.cos() as f32, theta.sin() as f32)
            })
            .collect()
    }

    /// The angular step arc / views (radians): FBP's scale after the back-projection.
    pub fn fbp_scale(&self) -> f32 {
        (self.arc_degrees.to_radians() / self.views as f64) as f32
    }
}

/// ceil(sqrt(h² + w²)) in integers: the image diagonal, so that every ray through the image hits
/// a bin (91 for 64 × 64).
pub fn default_detectors(height: usize, width: usize) -> Result<usize> {
    let sq = |v: usize| (v as u128).checked_mul(v as u128);
    let Some(n) = sq(height)
        .zip(sq(width))
        .and_then(|(a, b)| a.checked_add(b))
    else {
        bail!("image {height}×{width} is too large for a CT geometry");
    };
    let r = n.isqrt();
    let r = if r * r < n { r + 1 } else { r };
    usize::try_from(r).map_err(|_| {
        crate::error::Error::input(format!(
            "image {height}×{width} is too large for a CT geometry"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_detectors_is_the_exact_integer_ceiling() {
        assert_eq!(default_detectors(64, 64).unwrap(), 91);
        assert_eq!(default_detectors(3, 4).unwrap(), 5); // a perfect square stays
        assert_eq!(default_detectors(1, 1).unwrap(), 2);
        assert_eq!(default_detectors(24, 20).unwrap(), 32); // sqrt(976) = 31.24
                                                            // Near 2^53 an f64 sqrt would round: (2^26+1)² + 0² is a perfect square of 2^26+1.
        let s = (1usize << 26) + 1;
        assert_eq!(default_detectors(s, 0).unwrap(), s);
        assert_eq!(default_detectors(usize::MAX, 0).unwrap(), usize::MAX);
        assert!(default_detectors(usize::MAX, usize::MAX).is_err());
    }

    #[test]
    fn new_validates_and_defaults() {
        let g = CtGeometry::new(64, 64, 60, None, 180.0).unwrap();
        assert_eq!(g.detectors, 91);
        assert_eq!(g.sinogram_len(), 60 * 91);
        assert!(CtGeometry::new(64, 64, 0, None, 180.0).is_err());
        assert!(CtGeometry::new(64, 64, MAX_VIEWS + 1, None, 180.0).is_err());
        assert!(CtGeometry::new(0, 64, 60, None, 180.0).is_err());
        assert!(CtGeometry::new(64, MAX_SIDE + 1, 60, None, 180.0).is_err());
        assert!(CtGeometry::new(64, 64, 60, Some(0), 180.0).is_err());
        assert!(CtGeometry::new(64, 64, 60, Some(MAX_DETECTORS + 1), 180.0).is_err());
        for arc in [0.0, -10.0, 360.5, f64::NAN, f64::INFINITY] {
            let e = CtGeometry::new(64, 64, 60, None, arc).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        assert!(CtGeometry::new(64, 64, 60, None, 360.0).is_ok());
        let big = CtGeometry::new(MAX_SIDE, MAX_SIDE, MAX_VIEWS, None, 180.0).unwrap();
        assert_eq!(big.detectors, 5793);
    }

    #[test]
    fn angles_and_scale() {
        let g = CtGeometry::new(8, 8, 4, None, 180.0).unwrap();
        let a = g.angles();
        assert_eq!(a[0], (1.0, 0.0));
        assert_eq!(a[2].1, 1.0); // θ = π/2
        assert!(a[2].0.abs() < 1e-7);
        assert_eq!(a[1].0, std::f32::consts::FRAC_1_SQRT_2);
        assert_eq!(g.fbp_scale(), std::f32::consts::FRAC_PI_4);
        let g = CtGeometry::new(8, 8, 3, None, 120.0).unwrap();
        assert!((g.angles()[1].0 - 40f64.to_radians().cos() as f32).abs() == 0.0);
    }
}
