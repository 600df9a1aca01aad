//! The analytic shapes scenes are painted with: ellipses with a harmonic-perturbed radius,
//! optionally cut to a ring, an angular window, a half plane or the inside of an earlier shape.

/// Number of angular harmonics (k = 2 ..= NH + 1) perturbing a shape's radius.
pub(super) const NH: usize = 4;
/// Entries of a shape's radius table over the pseudo-angle [0, 4) (16 per quadrant).
pub(super) const TAB: usize = 64;

/// What a shape is made of; used by the tests to check contrast ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    #[cfg_attr(not(test), allow(dead_code))]
    Air,
    Table,
    Fat,
    Soft,
    Fluid,
    Gas,
    Lung,
    Vessel,
    Lesion,
    Bone,
}

/// An ellipse with a harmonic-perturbed radius r(θ) = 1 + Σ a_k cos kθ + b_k sin kθ in its own
/// scaled frame, optionally restricted to a ring, an angular window, a half plane, and the
/// inside of an earlier shape.
#[derive(Clone, Debug)]
pub(super) struct Shape {
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) a: f32,
    pub(super) b: f32,
    pub(super) cos: f32,
    pub(super) sin: f32,
    /// r(θ) sampled at TAB pseudo-angles (plus the wrap-around entry), interpolated
    /// linearly between; empty for a plain ellipse (r = 1).
    pub(super) radius: Vec<f32>,
    pub(super) rmin2: f32,
    pub(super) rmax2: f32,
    pub(super) inv_a: f32,
    pub(super) inv_b: f32,
    /// No ring, window or plane: everything with ρ ≤ rmin is inside.
    pub(super) simple: bool,
    /// Quadratic form of the scaled frame: ρ² = qa·dx² + 2·qb·dx·dy + qc·dy².
    pub(super) q: [f32; 3],
    /// World bounding box [x0, x1, y0, y1], set by `Scene::finish`.
    pub(super) bbox: [f32; 4],
    /// Ring: inside only where ρ ≥ inner · r(θ). 0 for a solid shape.
    pub(super) inner: f32,
    /// Angular window in the shape's scaled frame: (dir u, dir v, cos of half width).
    pub(super) window: Option<[f32; 3]>,
    /// Half plane in world coordinates: inside only where nx·x + ny·y ≤ d.
    pub(super) plane: Option<[f32; 3]>,
    /// Index of an earlier shape that this one must also lie inside.
    pub(super) clip: Option<usize>,
    pub(super) value: f32,
    pub(super) class: Class,
}

/// A point (x, y) in normalised image coordinates.
pub(super) type P = (f64, f64);

impl Shape {
    pub(super) fn new(c: P, a: f64, b: f64, rot: f64, value: f64, class: Class) -> Self {
        let mut s = Shape {
            cx: c.0 as f32,
            cy: c.1 as f32,
            a: a.max(1e-6) as f32,
            b: b.max(1e-6) as f32,
            cos: rot.cos() as f32,
            sin: rot.sin() as f32,
            radius: Vec::new(),
            rmin2: 1.0,
            rmax2: 1.0,
            q: [0.0; 3],
            inv_a: 1.0,
            inv_b: 1.0,
            simple: true,
            bbox: [-1.0, 1.0, -1.0, 1.0],
            inner: 0.0,
            window: None,
            plane: None,
            clip: None,
            value: value as f32,
            class,
        };
        s.bounds();
        s
    }

    pub(super) fn circle(c: P, r: f64, value: f64, class: Class) -> Self {
        Shape::new(c, r, r, 0.0, value, class)
    }

    fn bounds(&mut self) {
        // Linear interpolation stays within the extreme table entries.
        let rmin = self.radius.iter().cloned().fold(1.0f32, f32::min);
        let rmax = self.radius.iter().cloned().fold(1.0f32, f32::max);
        self.rmin2 = rmin * rmin;
        self.rmax2 = rmax * rmax;
        self.inv_a = 1.0 / self.a;
        self.inv_b = 1.0 / self.b;
        self.simple = self.inner == 0.0 && self.window.is_none() && self.plane.is_none();
        let (ia2, ib2) = (1.0 / (self.a * self.a), 1.0 / (self.b * self.b));
        let (c, s) = (self.cos, self.sin);
        self.q = [
            c * c * ia2 + s * s * ib2,
            c * s * (ia2 - ib2),
            s * s * ia2 + c * c * ib2,
        ];
    }

    /// The world bounding box of this shape alone.
    pub(super) fn own_bbox(&self) -> [f32; 4] {
        let (a, b, c, s) = (
            self.a as f64,
            self.b as f64,
            self.cos as f64,
            self.sin as f64,
        );
        let rmax = (self.rmax2 as f64).sqrt();
        let (cx, cy) = (self.cx as f64, self.cy as f64);
        let mut bb = match self.window {
            None => {
                let hx = rmax * (a * a * c * c + b * b * s * s).sqrt();
                let hy = rmax * (a * a * s * s + b * b * c * c).sqrt();
                [cx - hx, cx + hx, cy - hy, cy + hy]
            }
            Some([wu, wv, ch]) => {
                // Sample the sector's outline densely and pad for the chord error.
                let mid = (wv as f64).atan2(wu as f64);
                let half = (ch as f64).clamp(-1.0, 1.0).acos();
                let n = 48;
                let dt = 2.0 * half / n as f64;
                let rin = if self.inner > 0.0 {
                    self.inner as f64 * (self.rmin2 as f64).sqrt()
                } else {
                    0.0
                };
                let mut bb = [f64::MAX, f64::MIN, f64::MAX, f64::MIN];
                for i in 0..=n {
                    let t = mid - half + dt * i as f64;
                    for rho in [rin, rmax] {
                        let (u, v) = (rho * t.cos() * a, rho * t.sin() * b);
                        let (x, y) = (cx + u * c - v * s, cy + u * s + v * c);
                        bb = [bb[0].min(x), bb[1].max(x), bb[2].min(y), bb[3].max(y)];
                    }
                }
                let pad = rmax * a.max(b) * (1.0 - (dt / 2.0).cos()) + 1e-4;
                [bb[0] - pad, bb[1] + pad, bb[2] - pad, bb[3] + pad]
            }
        };
        if let Some([nx, ny, d]) = self.plane {
            if nx == 0.0 && ny > 0.0 {
                bb[3] = bb[3].min(d as f64 / ny as f64);
            }
        }
        [bb[0] as f32, bb[1] as f32, bb[2] as f32, bb[3] as f32]
    }

    /// Perturb the radius: r(θ) = 1 + Σ_k h[k-2]·(cos kθ, sin kθ), k = 2 ..= NH + 1.
    pub(super) fn harm(mut self, h: [[f64; 2]; NH]) -> Self {
        self.radius = (0..=TAB)
            .map(|j| {
                let d = (j % TAB) as f64 * 4.0 / TAB as f64;
                let (s1, c1) = pseudo_angle_inverse(d).sin_cos();
                // cos kθ and sin kθ by the angle-addition recurrence, from k = 2.
                let (mut ck, mut sk) = (c1 * c1 - s1 * s1, 2.0 * s1 * c1);
                let mut r = 1.0;
                for hk in &h {
                    r += hk[0] * ck + hk[1] * sk;
                    (ck, sk) = (ck * c1 - sk * s1, sk * c1 + ck * s1);
                }
                r.max(0.05) as f32
            })
            .collect();
        self.bounds();
        self
    }

    /// The same outline scaled about its centre by `g`, with another value and class.
    pub(super) fn scaled(&self, g: f64, value: f64, class: Class) -> Self {
        let mut s = self.clone();
        s.a *= g as f32;
        s.b *= g as f32;
        s.value = value as f32;
        s.class = class;
        s.inner = 0.0;
        s.window = None;
        s.plane = None;
        s.bounds();
        s
    }

    pub(super) fn ring(mut self, inner: f64) -> Self {
        self.inner = inner.clamp(0.0, 0.999) as f32;
        self.bounds();
        self
    }

    /// Keep the directions within `half` radians of `angle` (angles in the scaled frame).
    pub(super) fn window(mut self, angle: f64, half: f64) -> Self {
        self.window = Some([angle.cos() as f32, angle.sin() as f32, half.cos() as f32]);
        self.bounds();
        self
    }

    pub(super) fn plane(mut self, nx: f64, ny: f64, d: f64) -> Self {
        self.plane = Some([nx as f32, ny as f32, d as f32]);
        self.bounds();
        self
    }

    pub(super) fn clip(mut self, parent: usize) -> Self {
        self.clip = Some(parent);
        self
    }

    pub(super) fn value(mut self, v: f64) -> Self {
        self.value = v as f32;
        self
    }

    /// Whether (x, y) is inside this shape alone (ignoring the clip parent).
    #[inline]
    fn own(&self, x: f32, y: f32) -> bool {
        let dx = x - self.cx;
        let dy = y - self.cy;
        let u = (dx * self.cos + dy * self.sin) * self.inv_a;
        let v = (dy * self.cos - dx * self.sin) * self.inv_b;
        self.own_uv(u, v, x, y)
    }

    /// `own` with the scaled-frame coordinates (u, v) of (x, y) already computed.
    #[inline(always)]
    pub(super) fn own_uv(&self, u: f32, v: f32, x: f32, y: f32) -> bool {
        let r2 = u * u + v * v;
        if r2 > self.rmax2 {
            return false;
        }
        if let Some([nx, ny, d]) = self.plane {
            if nx * x + ny * y > d {
                return false;
            }
        }
        if self.simple && r2 <= self.rmin2 {
            return true;
        }
        self.boundary(u, v, r2)
    }

    /// The exact test near the outline (radius table, ring, window), without square roots.
    #[inline(never)]
    fn boundary(&self, u: f32, v: f32, r2: f32) -> bool {
        let r = if self.radius.is_empty() {
            1.0
        } else {
            let x = pseudo_angle(u, v) * (TAB as f32 / 4.0);
            let j = (x as usize).min(TAB - 1);
            let f = x - j as f32;
            let (r0, r1) = (self.radius[j], self.radius[j + 1]);
            r0 + f * (r1 - r0)
        };
        let rr = r * r;
        if r2 > rr || r2 < self.inner * self.inner * rr {
            return false;
        }
        if let Some([wu, wv, ch]) = self.window {
            // u·wu + v·wv ≥ ch·ρ, squared with the signs handled.
            let dot = u * wu + v * wv;
            let lim = ch * ch * r2;
            let ok = if ch >= 0.0 {
                dot >= 0.0 && dot * dot >= lim
            } else {
                dot >= 0.0 || dot * dot <= lim
            };
            if !ok {
                return false;
            }
        }
        true
    }

    pub(super) fn class_(mut self, c: Class) -> Self {
        self.class = c;
        self
    }
}

/// A monotone stand-in for the angle of (u, v): 0..4 counter-clockwise from +u (one unit per
/// quadrant), computed with one division.
#[inline(always)]
fn pseudo_angle(u: f32, v: f32) -> f32 {
    if v >= 0.0 {
        if u >= 0.0 {
            if u + v > 0.0 {
                v / (u + v)
            } else {
                0.0
            }
        } else {
            1.0 - u / (v - u)
        }
    } else if u < 0.0 {
        2.0 - v / (-u - v)
    } else {
        3.0 + u / (u - v)
    }
}

/// The angle θ (radians) whose pseudo-angle is d.
fn pseudo_angle_inverse(d: f64) -> f64 {
    let q = d.floor();
    let t = d - q;
    t.atan2(1.0 - t) + q * std::f64::consts::FRAC_PI_2
}

#[inline]
pub(super) fn contains(shapes: &[Shape], mut i: usize, x: f32, y: f32) -> bool {
    loop {
        let s = &shapes[i];
        if !s.own(x, y) {
            return false;
        }
        match s.clip {
            Some(p) => i = p,
            None => return true,
        }
    }
}
