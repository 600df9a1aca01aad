//! A scene: the shapes of one slice in painting order plus its tissue texture and display
//! window, and how it is drawn (`generate`) and rendered (supersampled, windowed, 8-bit).

use super::anatomy;
#[cfg(test)]
use super::shapes::Class;
use super::shapes::{contains, Shape, NH, P};
use crate::rng::Rng;
use std::f64::consts::PI;

/// Supersampling factor per axis.
const SS: usize = 4;
/// Air, in HU.
const AIR: f32 = -1000.0;
/// Samples below this HU get no texture (air, gas, lung).
const TEXTURE_FLOOR: f32 = -300.0;

/// One low-frequency cosine of the tissue texture: amp · cos(kx·x + ky·y + phase).
#[derive(Clone, Debug)]
struct Wave {
    kx: f32,
    ky: f32,
    phase: f32,
    amp: f32,
}

/// One slice: its shapes in painting order, its texture and its display window.
#[derive(Clone, Debug)]
pub(super) struct Scene {
    shapes: Vec<Shape>,
    waves: Vec<Wave>,
    /// Display window in HU: [lo, hi] maps to [0, 1].
    lo: f32,
    hi: f32,
}

impl Scene {
    pub(super) fn render(&self, size: usize, out: &mut [f32]) {
        assert_eq!(out.len(), size * size, "output buffer size");
        if size == 0 {
            return;
        }
        let n = size * SS;
        let step = 2.0 / n as f32;
        let mut hu = vec![AIR; n * n];
        let coord = |i: usize| (i as f32 + 0.5) * step - 1.0;
        // Sample index range [i0, i1) whose coordinates may lie in [lo, hi].
        let range = |lo: f32, hi: f32| {
            let i0 = ((lo + 1.0) / step - 0.5).floor().clamp(0.0, n as f32) as usize;
            let i1 = (((hi + 1.0) / step - 0.5).ceil() + 1.0).clamp(0.0, n as f32) as usize;
            (i0, i1.max(i0))
        };
        for s in &self.shapes {
            let [bx0, bx1, by0, by1] = s.bbox;
            let (y0, y1) = range(by0, by1);
            let [qa, qb, qc] = s.q;
            for yi in y0..y1 {
                let y = coord(yi);
                // Span of this row inside the bounding ellipse ρ ≤ rmax.
                let dy = y - s.cy;
                let disc = qb * qb * dy * dy - qa * (qc * dy * dy - s.rmax2);
                if disc < 0.0 {
                    continue;
                }
                let root = disc.sqrt();
                let lo = s.cx + (-qb * dy - root) / qa;
                let hi = s.cx + (-qb * dy + root) / qa;
                let (x0, x1) = range(lo.max(bx0), hi.min(bx1));
                // Samples surely inside ρ ≤ rmin need no test of the shape itself.
                let (mut in0, mut in1) = (x1, x1);
                if s.simple {
                    let disc = qb * qb * dy * dy - qa * (qc * dy * dy - s.rmin2);
                    if disc > 0.0 {
                        let root = disc.sqrt();
                        let lo = s.cx + (-qb * dy - root) / qa;
                        let hi = s.cx + (-qb * dy + root) / qa;
                        let a = ((lo + 1.0) / step - 0.5).ceil() + 1.0;
                        let b = ((hi + 1.0) / step - 0.5).floor() - 1.0;
                        if b >= a {
                            in0 = (a.max(0.0) as usize).clamp(x0, x1);
                            in1 = ((b + 1.0).max(0.0) as usize).clamp(in0, x1);
                        }
                    }
                }
                // Scaled-frame coordinates along the row are affine in the sample index.
                let x_start = coord(x0) - s.cx;
                let u0 = (x_start * s.cos + dy * s.sin) * s.inv_a;
                let v0 = (dy * s.cos - x_start * s.sin) * s.inv_b;
                let du = step * s.cos * s.inv_a;
                let dv = -step * s.sin * s.inv_b;
                let row = &mut hu[yi * n + x0..yi * n + x1];
                for (k, h) in row.iter_mut().enumerate() {
                    let xi = x0 + k;
                    let x = coord(xi);
                    let inside = if (in0..in1).contains(&xi) {
                        true
                    } else {
                        let kf = k as f32;
                        s.own_uv(u0 + du * kf, v0 + dv * kf, x, y)
                    };
                    if inside && s.clip.is_none_or(|p| contains(&self.shapes, p, x, y)) {
                        *h = s.value;
                    }
                }
            }
        }

        // Separable texture tables: cos(kx x + ky y + φ) = cx·cy − sx·sy, per output pixel.
        let pstep = 2.0 / size as f64;
        let pc = |i: usize| (i as f64 + 0.5) * pstep - 1.0;
        let tables: Vec<[Vec<f32>; 4]> = self
            .waves
            .iter()
            .map(|w| {
                let ax = |i: usize| w.kx as f64 * pc(i) + w.phase as f64;
                let ay = |i: usize| w.ky as f64 * pc(i);
                [
                    (0..size)
                        .map(|i| (w.amp as f64 * ax(i).cos()) as f32)
                        .collect(),
                    (0..size)
                        .map(|i| (w.amp as f64 * ax(i).sin()) as f32)
                        .collect(),
                    (0..size).map(|i| ay(i).cos() as f32).collect(),
                    (0..size).map(|i| ay(i).sin() as f32).collect(),
                ]
            })
            .collect();

        let inv_w = 1.0 / (self.hi - self.lo);
        let norm = 1.0 / (SS * SS) as f32;
        for py in 0..size {
            for px in 0..size {
                let mut tex = 0.0f32;
                for t in &tables {
                    tex += t[0][px] * t[2][py] - t[1][px] * t[3][py];
                }
                let mut acc = 0.0f32;
                for sy in 0..SS {
                    let base = (py * SS + sy) * n + px * SS;
                    for &h in &hu[base..base + SS] {
                        let h = if h > TEXTURE_FLOOR { h + tex } else { h };
                        acc += ((h - self.lo) * inv_w).clamp(0.0, 1.0);
                    }
                }
                let level = (acc * norm * 255.0).round().clamp(0.0, 255.0);
                out[py * size + px] = level / 255.0;
            }
        }
    }

    /// The class of the last shape covering (x, y) (world coordinates), for tests.
    #[cfg(test)]
    pub(super) fn class_at(&self, x: f32, y: f32) -> Class {
        (0..self.shapes.len())
            .rev()
            .find(|&i| contains(&self.shapes, i, x, y))
            .map_or(Class::Air, |i| self.shapes[i].class)
    }
}

impl Scene {
    pub(super) fn generate(seed: u64) -> Scene {
        let mut r = Rng::new(seed);
        let t = Tissue::draw(&mut r);
        let mut b = Builder {
            r,
            shapes: Vec::with_capacity(96),
            t,
        };
        anatomy::draw_body(&mut b);

        // Texture: a few random low-frequency cosines (wavelengths ~1/2 to 1/10 of the image).
        let nw = b.count(4, 7);
        let total = b.u(6.0, 16.0);
        let waves = (0..nw)
            .map(|_| {
                let k = b.u(2.0, 10.0) * PI;
                let dir = b.u(0.0, 2.0 * PI);
                Wave {
                    kx: (k * dir.cos()) as f32,
                    ky: (k * dir.sin()) as f32,
                    phase: b.u(0.0, 2.0 * PI) as f32,
                    amp: (total / (nw as f64).sqrt() * b.u(0.5, 1.2)) as f32,
                }
            })
            .collect();

        let level = b.u(35.0, 60.0);
        let width = b.u(360.0, 480.0);
        let mut scene = Scene {
            shapes: b.shapes,
            waves,
            lo: (level - width / 2.0) as f32,
            hi: (level + width / 2.0) as f32,
        };
        scene.finish();
        scene
    }

    /// Bounding boxes: each shape's own, cut to its clip parent's (parents come first).
    fn finish(&mut self) {
        for i in 0..self.shapes.len() {
            let mut bb = self.shapes[i].own_bbox();
            if let Some(p) = self.shapes[i].clip {
                assert!(p < i, "clip parent must be painted earlier");
                let pb = self.shapes[p].bbox;
                bb = [
                    bb[0].max(pb[0]),
                    bb[1].min(pb[1]),
                    bb[2].max(pb[2]),
                    bb[3].min(pb[3]),
                ];
            }
            self.shapes[i].bbox = bb;
        }
    }
}

/// Per-slice tissue values (HU).
#[derive(Clone, Copy)]
pub(super) struct Tissue {
    pub(super) fat: f64,
    pub(super) muscle: f64,
    pub(super) blood: f64,
    pub(super) liver: f64,
    pub(super) spleen: f64,
    pub(super) kidney: f64,
    pub(super) fluid: f64,
    pub(super) gas: f64,
    pub(super) lung: f64,
    pub(super) cortex: f64,
    pub(super) marrow: f64,
}

impl Tissue {
    fn draw(r: &mut Rng) -> Self {
        let contrast = r.uniform() < 0.6;
        let (blood, liver, spleen, kidney) = if contrast {
            (
                r.range(130.0, 190.0),
                r.range(90.0, 120.0),
                r.range(100.0, 130.0),
                r.range(140.0, 190.0),
            )
        } else {
            (
                r.range(35.0, 50.0),
                r.range(55.0, 70.0),
                r.range(40.0, 52.0),
                r.range(28.0, 40.0),
            )
        };
        Tissue {
            fat: r.range(-115.0, -85.0),
            muscle: r.range(40.0, 60.0),
            blood,
            liver,
            spleen,
            kidney,
            fluid: r.range(0.0, 15.0),
            gas: r.range(-1000.0, -950.0),
            lung: r.range(-880.0, -800.0),
            cortex: r.range(800.0, 1200.0),
            marrow: r.range(250.0, 400.0),
        }
    }
}

/// A scene under construction: its random stream, shapes so far and tissue values.
pub(super) struct Builder {
    pub(super) r: Rng,
    pub(super) shapes: Vec<Shape>,
    pub(super) t: Tissue,
}

impl Builder {
    pub(super) fn push(&mut self, s: Shape) -> usize {
        self.shapes.push(s);
        self.shapes.len() - 1
    }

    pub(super) fn u(&mut self, lo: f64, hi: f64) -> f64 {
        self.r.range(lo, hi)
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.r.uniform() < p
    }

    pub(super) fn count(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.r.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Random harmonics with total amplitude about `amp`, decaying with order.
    pub(super) fn harmonics(&mut self, amp: f64) -> [[f64; 2]; NH] {
        let mut h = [[0.0; 2]; NH];
        for (k, hk) in h.iter_mut().enumerate() {
            let m = amp / (k as f64 + 1.5);
            let ang = self.u(0.0, 2.0 * PI);
            let mag = m * self.u(0.2, 1.0);
            *hk = [mag * ang.cos(), mag * ang.sin()];
        }
        h
    }

    /// A random point inside an ellipse of the given shape, within `frac` of its radius.
    pub(super) fn inside(&mut self, s: &Shape, frac: f64) -> P {
        let ang = self.u(0.0, 2.0 * PI);
        let rad = frac * self.u(0.0, 1.0).sqrt();
        let (u, v) = (rad * ang.cos() * s.a as f64, rad * ang.sin() * s.b as f64);
        let (c, sn) = (s.cos as f64, s.sin as f64);
        (s.cx as f64 + u * c - v * sn, s.cy as f64 + u * sn + v * c)
    }
}
