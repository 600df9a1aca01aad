//! Organ-level pieces the regions are assembled from (lesions, vessels, bowel loops,
//! vertebra, ribs, curved bone bands), placed in the patient's frame.

use super::scene::Builder;
use super::shapes::{Class, Shape, P};
use std::f64::consts::PI;

/// The patient's frame: centre, semi-axes and rotation of the body outline. `at(u, v)` maps
/// body-relative coordinates (u to image right, v to image bottom = posterior, ±1 at the
/// outline) to the image; `off` moves by absolute amounts along the body's axes.
pub(super) struct Frame {
    pub(super) c: P,
    pub(super) a: f64,
    pub(super) b: f64,
    pub(super) cos: f64,
    pub(super) sin: f64,
    pub(super) rot: f64,
}

impl Frame {
    pub(super) fn at(&self, u: f64, v: f64) -> P {
        self.off(self.c, u * self.a, v * self.b)
    }

    pub(super) fn off(&self, p: P, du: f64, dv: f64) -> P {
        (
            p.0 + du * self.cos - dv * self.sin,
            p.1 + du * self.sin + dv * self.cos,
        )
    }
}

pub(super) fn dist(p: P, q: P) -> f64 {
    (p.0 - q.0).hypot(p.1 - q.1)
}

impl Builder {
    /// Small round lesions inside `parent`, brighter or darker than `base`.
    pub(super) fn lesions(&mut self, parent: usize, base: f64, n: usize, size: f64) {
        for _ in 0..n {
            let p = self.shapes[parent].clone();
            let c = self.inside(&p, 0.6);
            let r = size * self.u(0.3, 1.0);
            let delta = if self.chance(0.7) {
                -self.u(25.0, 70.0)
            } else {
                self.u(25.0, 60.0)
            };
            let rot = self.u(0.0, PI);
            let asp = self.u(0.75, 1.0);
            let h = self.harmonics(0.08);
            self.push(
                Shape::new(c, r, r * asp, rot, base + delta, Class::Lesion)
                    .harm(h)
                    .clip(parent),
            );
        }
    }

    /// Small vessel cross-sections (dots and short ellipses) inside `parent`.
    pub(super) fn vessels(&mut self, parent: usize, value: f64, n: usize, size: f64, spread: f64) {
        for _ in 0..n {
            let p = self.shapes[parent].clone();
            let c = self.inside(&p, spread);
            let r = size * self.u(0.4, 1.0);
            let asp = self.u(0.4, 1.0);
            let rot = self.u(0.0, PI);
            self.push(Shape::new(c, r, r * asp, rot, value, Class::Vessel).clip(parent));
        }
    }

    /// A bowel loop: a soft-tissue wall around gas, fluid, or fluid with a gas cap.
    pub(super) fn bowel(&mut self, c: P, r: f64, clip: usize) {
        let asp = self.u(0.6, 1.0);
        let rot = self.u(0.0, PI);
        let h = self.harmonics(0.12);
        let wall = self.t.muscle - self.u(5.0, 20.0);
        let w = self.push(
            Shape::new(c, r, r * asp, rot, wall, Class::Soft)
                .harm(h)
                .clip(clip),
        );
        let inner = self.u(0.6, 0.8);
        let lumen = self.shapes[w]
            .scaled(inner, self.t.fluid, Class::Fluid)
            .clip(w);
        let kind = self.u(0.0, 1.0);
        if kind < 0.4 {
            let gas = self.t.gas;
            self.push(lumen.value(gas).class_(Class::Gas));
        } else if kind < 0.75 {
            let level = c.1 - r * asp * self.u(-0.3, 0.6);
            let gas = self.t.gas;
            self.push(lumen.clone());
            self.push(lumen.value(gas).class_(Class::Gas).plane(0.0, 1.0, level));
        } else if kind < 0.9 {
            let v = self.u(-10.0, 30.0);
            self.push(lumen.value(v));
        } else {
            // Faeces-like mottled content: mixed gas and soft material.
            let v = self.u(-350.0, -150.0);
            self.push(lumen.value(v).class_(Class::Gas));
        }
    }

    /// A vertebra at `c` with body radius `rv`: cortical shell, marrow, posterior arch around
    /// the spinal canal, spinous and transverse processes. Posterior is +v of `f`.
    pub(super) fn vertebra(&mut self, f: &Frame, c: P, rv: f64, clip: usize) {
        let (cortex, marrow) = (self.t.cortex, self.t.marrow);
        let rot = f.rot + self.u(-0.08, 0.08);
        // Transverse processes and spinous process first, so the arch covers their roots.
        for s in [-1.0, 1.0] {
            let p = f.off(c, s * 1.15 * rv, 1.25 * rv);
            let ang = rot + s * self.u(0.2, 0.45);
            self.push(
                Shape::new(p, 0.65 * rv, 0.2 * rv, ang, cortex * 0.8, Class::Bone).clip(clip),
            );
        }
        let sp = f.off(c, 0.0, 2.35 * rv);
        self.push(Shape::new(sp, 0.2 * rv, 0.75 * rv, rot, cortex * 0.8, Class::Bone).clip(clip));
        let canal = f.off(c, 0.0, 1.45 * rv);
        self.push(
            Shape::new(canal, 0.82 * rv, 0.72 * rv, rot, cortex * 0.85, Class::Bone).clip(clip),
        );
        self.push(Shape::new(
            canal,
            0.48 * rv,
            0.42 * rv,
            rot,
            self.t.fluid + 5.0,
            Class::Fluid,
        ));
        let h = self.harmonics(0.05);
        let body = Shape::new(c, rv, rv * self.u(0.8, 0.92), rot, cortex, Class::Bone).harm(h);
        let inner = body.scaled(self.u(0.72, 0.82), marrow, Class::Bone);
        self.push(body);
        self.push(inner);
    }

    /// Ribs: short arcs of the body outline `outline` scaled to lie in the muscle wall, at
    /// angles (body frame, radians; 0 = image right, +π/2 = posterior) near those given.
    pub(super) fn ribs(
        &mut self,
        outline: &Shape,
        scale: f64,
        thick: f64,
        angles: &[f64],
        clip: usize,
    ) {
        for &a0 in angles {
            if self.chance(0.2) {
                continue;
            }
            let ang = a0 + self.u(-0.08, 0.08);
            let half = self.u(0.03, 0.07);
            let g = scale + self.u(-0.01, 0.01);
            let v = self.t.cortex * self.u(0.6, 0.9);
            let rib = outline
                .scaled(g, v, Class::Bone)
                .ring(1.0 - thick / g)
                .window(ang, half)
                .clip(clip);
            self.push(rib);
        }
    }

    /// A curved bony band from `p1` to `p2`, bulging by `sag` to the left of p1→p2.
    pub(super) fn bone_arc(&mut self, p1: P, p2: P, sag: f64, thick: f64, clip: usize) {
        let m = ((p1.0 + p2.0) / 2.0, (p1.1 + p2.1) / 2.0);
        let half_chord = dist(p1, p2) / 2.0;
        let (dx, dy) = (
            (p2.0 - p1.0) / (2.0 * half_chord),
            (p2.1 - p1.1) / (2.0 * half_chord),
        );
        // Normal to the left of p1→p2 in image coordinates (y down).
        let (nx, ny) = (dy, -dx);
        // Circle through p1, p2 whose arc bulges by `sag` towards (nx, ny).
        let r = (half_chord * half_chord + sag * sag) / (2.0 * sag);
        let c = (m.0 - nx * (r - sag), m.1 - ny * (r - sag));
        let ang = ny.atan2(nx);
        let half = (half_chord / r).clamp(-1.0, 1.0).asin();
        let (cortex, marrow) = (self.t.cortex, self.t.marrow);
        let outer = Shape::circle(c, r + thick / 2.0, cortex * 0.9, Class::Bone)
            .ring((r - thick / 2.0) / (r + thick / 2.0))
            .window(ang, half)
            .clip(clip);
        let inner = Shape::circle(c, r + thick / 4.0, marrow, Class::Bone)
            .ring((r - thick / 4.0) / (r + thick / 4.0))
            .window(ang, half * 0.9)
            .clip(clip);
        self.push(outer);
        self.push(inner);
    }
}
