//! Anatomy: the body outline, table, fat and muscle layers, spine, and each region's organs
//! and bones (thorax, upper and lower abdomen, pelvis), drawn into a scene's `Builder`.
//!
//! The order of random draws is the generator's contract (the same seed gives the same
//! slice bit for bit): reordering any of them changes every later shape.

use super::organs::{dist, Frame};
use super::scene::Builder;
use super::shapes::{Class, Shape, P};
use std::f64::consts::PI;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Thorax,
    UpperAbdomen,
    LowerAbdomen,
    Pelvis,
}

/// The body drawn so far, which each region places its organs and bones in.
struct Body {
    f: Frame,
    outline: Shape,
    /// Centre and radius of the vertebral body.
    vc: P,
    rv: f64,
    /// Shape indices of the inner cavity and of the muscle wall (the regions' clip parents).
    cavity: usize,
    wall: usize,
    /// Thickness of the fat layer and of the muscle wall, as fractions of the outline.
    fat_frac: f64,
    wall_frac: f64,
}

/// The body outline, table, layers and spine, then the organs of a randomly drawn region.
pub(super) fn draw_body(b: &mut Builder) {
    let pick = b.u(0.0, 1.0);
    let region = if pick < 0.22 {
        Region::Thorax
    } else if pick < 0.55 {
        Region::UpperAbdomen
    } else if pick < 0.8 {
        Region::LowerAbdomen
    } else {
        Region::Pelvis
    };

    // Body outline.
    let a = b.u(0.62, 0.9);
    let aspect = match region {
        Region::Thorax => b.u(0.64, 0.8),
        Region::Pelvis => b.u(0.58, 0.72),
        _ => b.u(0.66, 0.86),
    };
    let bb = a * aspect;
    let rot = b.u(-0.12, 0.12);
    let c = (b.u(-0.06, 0.06), b.u(-0.07, 0.07));
    let f = Frame {
        c,
        a,
        b: bb,
        cos: rot.cos(),
        sin: rot.sin(),
        rot,
    };
    let mut h = b.harmonics(0.06);
    // Flatter back, rounder front; a squarer pelvis.
    h[1][1] += b.u(0.0, 0.04);
    if region == Region::Pelvis {
        h[2][0] -= b.u(0.01, 0.04);
    }
    let outline = Shape::new(c, a, bb, rot, b.t.fat, Class::Fat).harm(h);

    // Patient table under the body.
    if b.chance(0.65) {
        let rmax = (outline.rmax2 as f64).sqrt();
        let bottom = c.1 + bb * rmax + a * rot.sin().abs() * 0.3 + b.u(0.01, 0.05);
        let big = b.u(2.0, 4.0);
        let thick = b.u(0.015, 0.03);
        let half = (b.u(0.75, 1.1) / big).min(1.0).asin();
        let v = b.u(-200.0, 150.0);
        let tc = (c.0, bottom - big);
        b.push(
            Shape::circle(tc, big, v, Class::Table)
                .ring((big - thick) / big)
                .window(PI / 2.0, half),
        );
    }

    let fat_frac = b.u(0.04, 0.2);
    let wall_frac = b.u(0.025, 0.065);
    b.push(outline.clone());
    let muscle_v = b.t.muscle;
    let wall = b.push(outline.scaled(1.0 - fat_frac, muscle_v, Class::Soft));
    let cav_v = b.t.fat + b.u(0.0, 30.0);
    let cav_scale = 1.0 - fat_frac - wall_frac;
    let cavity = b.push(outline.scaled(cav_scale, cav_v, Class::Fat));

    // Spine and back muscles (all regions but the lower pelvis use a vertebra).
    let rv = a * b.u(0.085, 0.11);
    let v_vert = (1.0 - fat_frac - 3.9 * rv / bb).clamp(0.1, 0.7);
    let vc = f.at(b.u(-0.03, 0.03), v_vert);
    let low_pelvis = region == Region::Pelvis && b.chance(0.5);

    let body = Body {
        f,
        outline,
        vc,
        rv,
        cavity,
        wall,
        fat_frac,
        wall_frac,
    };
    match region {
        Region::Thorax => thorax(b, &body),
        Region::UpperAbdomen => abdomen(b, &body, true),
        Region::LowerAbdomen => abdomen(b, &body, false),
        Region::Pelvis => pelvis(b, &body, low_pelvis),
    }
}

/// The back muscles either side of the spine.
fn paraspinal(b: &mut Builder, body: &Body) {
    let Body {
        ref f,
        vc,
        rv,
        wall,
        ..
    } = *body;
    for s in [-1.0, 1.0] {
        let p = f.off(vc, s * b.u(1.5, 1.9) * rv, b.u(1.9, 2.3) * rv);
        let ax = b.u(1.2, 1.6) * rv;
        let ay = b.u(1.0, 1.3) * rv;
        let h = b.harmonics(0.08);
        let m = b.t.muscle + b.u(-5.0, 5.0);
        b.push(
            Shape::new(p, ax, ay, f.rot + s * 0.2, m, Class::Soft)
                .harm(h)
                .clip(wall),
        );
    }
}

/// Scapulae, lungs with vessels and nodules, heart or great vessels, aorta, oesophagus,
/// vertebra, sternum and ribs.
fn thorax(b: &mut Builder, body: &Body) {
    let Body {
        ref f,
        vc,
        rv,
        cavity,
        wall,
        fat_frac,
        wall_frac,
        ..
    } = *body;
    let a = f.a;
    let (lung, muscle, blood, fat) = (b.t.lung, b.t.muscle, b.t.blood, b.t.fat);
    // Scapulae with their muscles, posterolateral, outside the ribs.
    if b.chance(0.6) {
        for s in [-1.0, 1.0] {
            let p = f.at(s * b.u(0.55, 0.68), b.u(0.55, 0.7));
            let ang = f.rot + s * b.u(0.4, 0.8);
            b.push(Shape::new(p, 0.3 * a, 0.09 * a, ang, muscle, Class::Soft).clip(wall));
            let v = b.t.cortex * 0.7;
            b.push(Shape::new(p, 0.22 * a, 0.022 * a, ang, v, Class::Bone).clip(wall));
        }
    }
    paraspinal(b, body);
    // Lungs.
    let mut lungs = Vec::new();
    for s in [-1.0, 1.0] {
        let p = f.at(s * b.u(0.48, 0.56), b.u(-0.02, 0.12));
        let ax = b.u(0.3, 0.38) * f.a;
        let ay = b.u(0.6, 0.76) * f.b;
        let h = b.harmonics(0.1);
        let rot = f.rot + s * b.u(-0.15, 0.2);
        let l = b.push(
            Shape::new(p, ax, ay, rot, lung, Class::Lung)
                .harm(h)
                .clip(cavity),
        );
        lungs.push(l);
    }
    // Heart or great vessels in the mediastinum.
    if b.chance(0.65) {
        let p = f.at(b.u(0.0, 0.15), b.u(-0.3, -0.05));
        let h = b.harmonics(0.08);
        let rot = f.rot + b.u(0.3, 0.8);
        let heart = Shape::new(
            p,
            b.u(0.22, 0.3) * a,
            b.u(0.17, 0.22) * a,
            rot,
            muscle,
            Class::Soft,
        )
        .harm(h)
        .clip(cavity);
        let fat_pad = heart.scaled(1.08, fat + 20.0, Class::Fat).clip(cavity);
        b.push(fat_pad);
        let hi = b.push(heart.clone());
        let ch = heart.scaled(b.u(0.6, 0.8), blood, Class::Vessel).clip(hi);
        b.push(ch);
    } else {
        let p = f.at(b.u(-0.1, 0.05), b.u(-0.45, -0.25));
        let (r0, r1) = (b.u(0.2, 0.26) * a, b.u(0.07, 0.1) * a);
        b.push(Shape::circle(p, r0, fat + 20.0, Class::Fat).clip(cavity));
        b.push(Shape::circle(p, r1, blood, Class::Vessel));
        let q = f.off(p, -b.u(0.13, 0.17) * a, b.u(-0.02, 0.04) * a);
        let r2 = b.u(0.04, 0.06) * a;
        b.push(Shape::circle(q, r2, blood, Class::Vessel));
        let q = f.off(p, b.u(0.12, 0.16) * a, b.u(0.0, 0.06) * a);
        let r3 = b.u(0.05, 0.07) * a;
        b.push(Shape::circle(q, r3, blood, Class::Vessel));
    }
    // Lung vessels and nodules.
    for &l in &lungs {
        let n = b.count(5, 14);
        let v = b.u(-80.0, 40.0);
        b.vessels(l, v, n, 0.022 * a, 0.9);
        if b.chance(0.35) {
            let p = b.shapes[l].clone();
            let c = b.inside(&p, 0.7);
            let v = b.u(10.0, 60.0);
            let rr = b.u(0.015, 0.045) * a;
            b.push(Shape::circle(c, rr, v, Class::Lesion).clip(l));
        }
    }
    // Descending aorta beside the spine, oesophagus in front of it.
    let ao = f.off(vc, b.u(0.6, 0.9) * rv, -b.u(1.2, 1.5) * rv);
    let ra = b.u(0.5, 0.65) * rv;
    b.push(Shape::circle(ao, ra, blood, Class::Vessel).clip(cavity));
    let oe = f.off(vc, -b.u(0.0, 0.3) * rv, -b.u(1.5, 1.9) * rv);
    b.push(Shape::circle(oe, 0.3 * rv, muscle, Class::Soft).clip(cavity));
    b.vertebra(f, vc, rv, wall);
    // Sternum.
    let st = f.at(b.u(-0.03, 0.03), -(1.0 - fat_frac - wall_frac * 0.7));
    let v = b.t.cortex * 0.8;
    b.push(Shape::new(st, 0.09 * a, 0.035 * a, f.rot, v, Class::Bone).clip(wall));
    // Ribs all around but the midline.
    rib_pairs(b, body, 5, -1.05, 0.55);
}

/// `count` ribs on each side, mirrored about the midline: the first at `first` radians, then
/// every `step`, in the body wall.
fn rib_pairs(b: &mut Builder, body: &Body, count: usize, first: f64, step: f64) {
    let mut angles = Vec::new();
    for k in 0..count {
        let t = first + k as f64 * step;
        angles.push(t);
        angles.push(PI - t);
    }
    let scale = 1.0 - body.fat_frac - body.wall_frac * 0.15;
    let thick = body.wall_frac * 0.8 + 0.012;
    b.ribs(&body.outline, scale, thick, &angles, body.wall);
}

/// Bowel, colon, liver, spleen, stomach, pancreas (upper) or the liver's tip (lower),
/// kidneys, aorta and vena cava, mesenteric vessels, vertebra and (upper) the lower ribs.
fn abdomen(b: &mut Builder, body: &Body, upper: bool) {
    let Body {
        ref f,
        vc,
        rv,
        cavity,
        wall,
        ..
    } = *body;
    let a = f.a;
    let t = b.t;
    paraspinal(b, body);
    if !upper {
        for s in [-1.0, 1.0] {
            let p = f.off(vc, s * b.u(1.6, 2.0) * rv, -b.u(0.0, 0.4) * rv);
            let ax = b.u(0.6, 0.9) * rv;
            let ay = b.u(0.7, 1.0) * rv;
            b.push(Shape::new(p, ax, ay, f.rot + s * 0.3, t.muscle, Class::Soft).clip(cavity));
        }
    }
    // Bowel loops in the anterior cavity.
    let nb = if upper { b.count(1, 5) } else { b.count(9, 18) };
    for _ in 0..nb {
        let p = f.at(b.u(-0.7, 0.7), b.u(-0.85, 0.25));
        let rr = b.u(0.06, 0.13) * a;
        b.bowel(p, rr, cavity);
    }
    // Colon on both flanks (lower abdomen).
    if !upper {
        for s in [-1.0, 1.0] {
            if b.chance(0.75) {
                let p = f.at(s * b.u(0.58, 0.7), b.u(-0.1, 0.25));
                let rr = b.u(0.08, 0.13) * a;
                b.bowel(p, rr, cavity);
            }
        }
    }
    if upper {
        // Liver, with vessels, perhaps a gallbladder and lesions.
        let p = f.at(-b.u(0.35, 0.48), b.u(-0.15, 0.1));
        let sc = b.u(0.85, 1.15);
        let h = b.harmonics(0.14);
        let rot = f.rot + b.u(-0.3, 0.3);
        let liver = b.push(
            Shape::new(p, 0.45 * a * sc, 0.62 * f.b * sc, rot, t.liver, Class::Soft)
                .harm(h)
                .clip(cavity),
        );
        let nv = b.count(2, 6);
        b.vessels(liver, t.blood, nv, 0.035 * a, 0.8);
        if b.chance(0.3) {
            let lp = b.shapes[liver].clone();
            let c = b.inside(&lp, 0.7);
            let v = t.fluid;
            let h = b.harmonics(0.05);
            let rr = b.u(0.05, 0.08) * a;
            let rot = b.u(0.0, PI);
            b.push(
                Shape::new(c, rr, rr * 0.7, rot, v, Class::Fluid)
                    .harm(h)
                    .clip(liver),
            );
        }
        let nl = if b.chance(0.6) { b.count(1, 3) } else { 0 };
        b.lesions(liver, t.liver, nl, 0.07 * a);
        // Spleen.
        if b.chance(0.85) {
            let p = f.at(b.u(0.52, 0.64), b.u(0.15, 0.4));
            let h = b.harmonics(0.1);
            let rot = f.rot - b.u(0.4, 0.9);
            let (ax, ay) = (b.u(0.1, 0.15) * a, b.u(0.22, 0.3) * a);
            let sp = b.push(
                Shape::new(p, ax, ay, rot, t.spleen, Class::Soft)
                    .harm(h)
                    .clip(cavity),
            );
            if b.chance(0.15) {
                b.lesions(sp, t.spleen, 1, 0.05 * a);
            }
        }
        // Stomach with contents and a gas cap.
        if b.chance(0.75) {
            let p = f.at(b.u(0.15, 0.4), b.u(-0.55, -0.25));
            let rr = b.u(0.15, 0.24) * a;
            let h = b.harmonics(0.1);
            let (asp, rot) = (b.u(0.6, 0.9), b.u(0.0, PI));
            let st = b.push(
                Shape::new(p, rr, rr * asp, rot, t.muscle - 5.0, Class::Soft)
                    .harm(h)
                    .clip(cavity),
            );
            let content = b.u(-40.0, 30.0);
            let g = b.u(0.75, 0.85);
            let lumen = b.shapes[st].scaled(g, content, Class::Fluid).clip(st);
            b.push(lumen.clone());
            if b.chance(0.7) {
                let level = p.1 - rr * b.u(0.0, 0.5);
                b.push(lumen.value(t.gas).class_(Class::Gas).plane(0.0, 1.0, level));
            }
        }
        // Pancreas.
        if b.chance(0.5) {
            let p = f.at(b.u(0.0, 0.2), b.u(0.0, 0.2));
            let h = b.harmonics(0.1);
            let v = b.u(40.0, 100.0);
            let rot = f.rot - b.u(0.1, 0.5);
            b.push(
                Shape::new(p, 0.26 * a, 0.05 * a, rot, v, Class::Soft)
                    .harm(h)
                    .clip(cavity),
            );
        }
    } else if b.chance(0.3) {
        // The liver's tip.
        let p = f.at(-b.u(0.55, 0.65), b.u(-0.1, 0.2));
        let h = b.harmonics(0.1);
        let rr = b.u(0.1, 0.18) * a;
        b.push(
            Shape::new(p, rr, rr * 1.3, f.rot, t.liver, Class::Soft)
                .harm(h)
                .clip(cavity),
        );
    }
    // Kidneys.
    if b.chance(if upper { 0.55 } else { 0.4 }) {
        for s in [-1.0, 1.0] {
            let p = f.off(vc, s * b.u(2.4, 3.0) * rv, -b.u(0.0, 0.5) * rv);
            let k = b.u(0.8, 1.2);
            let rot = f.rot - s * b.u(0.3, 0.7);
            let h = b.harmonics(0.06);
            let kid = b.push(
                Shape::new(p, 0.95 * rv * k, 1.4 * rv * k, rot, t.kidney, Class::Soft)
                    .harm(h)
                    .clip(cavity),
            );
            let hp = f.off(p, -s * 0.6 * rv * k, -0.2 * rv);
            let v = if b.chance(0.5) { t.fluid } else { t.fat + 40.0 };
            b.push(Shape::new(hp, 0.45 * rv * k, 0.35 * rv * k, rot, v, Class::Fluid).clip(kid));
            if b.chance(0.15) {
                b.lesions(kid, t.kidney, 1, 0.45 * rv);
            }
        }
    }
    // Aorta and inferior vena cava in front of the spine.
    let ao = f.off(vc, b.u(0.2, 0.5) * rv, -b.u(1.35, 1.6) * rv);
    let ra = b.u(0.45, 0.6) * rv;
    b.push(Shape::circle(ao, ra, t.blood, Class::Vessel).clip(cavity));
    let ivc = f.off(vc, -b.u(1.1, 1.5) * rv, -b.u(1.2, 1.5) * rv);
    let r = b.u(0.45, 0.6) * rv;
    b.push(Shape::new(ivc, r, r * 0.7, f.rot, t.blood, Class::Vessel).clip(cavity));
    // Mesenteric vessels.
    let cav = b.shapes[cavity].clone();
    let n = b.count(2, 6);
    for _ in 0..n {
        let p = b.inside(&cav, 0.45);
        let rr = b.u(0.01, 0.022) * a;
        b.push(Shape::circle(p, rr, t.blood, Class::Vessel).clip(cavity));
    }
    b.vertebra(f, vc, rv, wall);
    if upper {
        // Lower ribs at the sides and back.
        rib_pairs(b, body, 4, -0.55, 0.45);
    }
}

/// Gluteal muscles, bowel, bladder, rectum, iliac vessels, and either the femoral heads and a
/// small sacrum (`low`) or the sacrum with the iliac wings.
fn pelvis(b: &mut Builder, body: &Body, low: bool) {
    let Body {
        ref f,
        vc,
        rv,
        cavity,
        wall,
        ..
    } = *body;
    let a = f.a;
    let t = b.t;
    // Gluteal muscles, posterolateral.
    for s in [-1.0, 1.0] {
        let p = f.at(s * b.u(0.4, 0.55), b.u(0.45, 0.65));
        let h = b.harmonics(0.1);
        let rot = f.rot + s * b.u(0.3, 0.7);
        let ax = b.u(0.28, 0.36) * a;
        let ay = b.u(0.13, 0.18) * a;
        b.push(
            Shape::new(p, ax, ay, rot, t.muscle, Class::Soft)
                .harm(h)
                .clip(wall),
        );
    }
    let nb = if low { b.count(0, 3) } else { b.count(3, 8) };
    for _ in 0..nb {
        let p = f.at(b.u(-0.5, 0.5), b.u(-0.7, 0.2));
        let rr = b.u(0.05, 0.1) * a;
        b.bowel(p, rr, cavity);
    }
    // Bladder.
    if b.chance(if low { 0.85 } else { 0.35 }) {
        let p = f.at(b.u(-0.08, 0.08), b.u(-0.45, -0.15));
        let h = b.harmonics(0.08);
        let ax = b.u(0.16, 0.28) * a;
        let asp = b.u(0.6, 0.9);
        let bl = b.push(
            Shape::new(p, ax, ax * asp, f.rot, t.muscle, Class::Soft)
                .harm(h)
                .clip(cavity),
        );
        let lumen = b.shapes[bl].scaled(0.9, t.fluid, Class::Fluid).clip(bl);
        b.push(lumen);
    }
    // Rectum.
    let rp = f.off(vc, b.u(-0.3, 0.3) * rv, -b.u(1.3, 1.8) * rv);
    if low {
        let rr = b.u(0.6, 0.9) * rv;
        b.bowel(rp, rr, cavity);
    }
    // Iliac vessels.
    for s in [-1.0, 1.0] {
        for k in 0..2 {
            let p = f.at(s * b.u(0.25, 0.4), b.u(-0.05, 0.2) + 0.1 * k as f64);
            let rr = b.u(0.025, 0.045) * a;
            b.push(Shape::circle(p, rr, t.blood, Class::Vessel).clip(cavity));
        }
    }
    let (cortex, marrow) = (t.cortex, t.marrow);
    if low {
        // Femoral heads in their acetabula, a small sacrum/coccyx.
        for s in [-1.0, 1.0] {
            let p = f.at(s * b.u(0.45, 0.58), b.u(0.0, 0.25));
            let rr = b.u(0.09, 0.13) * a;
            let ac = Shape::circle(p, rr * 1.45, cortex * 0.85, Class::Bone)
                .ring(1.15 / 1.45)
                .window(if s > 0.0 { PI } else { 0.0 } + f.rot, b.u(1.0, 1.5))
                .clip(wall);
            b.push(ac);
            b.push(Shape::circle(p, rr, cortex, Class::Bone).clip(wall));
            b.push(Shape::circle(p, rr * 0.8, marrow, Class::Bone).clip(wall));
        }
        let p = f.off(vc, 0.0, b.u(0.5, 1.5) * rv);
        b.push(Shape::new(p, 0.7 * rv, 0.45 * rv, f.rot, cortex * 0.8, Class::Bone).clip(wall));
    } else {
        // Sacrum with its canal, iliac wings as curved bands from the sacroiliac joints.
        let sp = f.off(vc, 0.0, b.u(0.3, 0.8) * rv);
        let h = b.harmonics(0.06);
        let sac = Shape::new(sp, 2.1 * rv, 1.0 * rv, f.rot, cortex, Class::Bone).harm(h);
        let inner = sac.scaled(0.8, marrow, Class::Bone);
        b.push(sac);
        b.push(inner);
        let canal = f.off(sp, 0.0, 0.2 * rv);
        b.push(Shape::new(
            canal,
            0.5 * rv,
            0.3 * rv,
            f.rot,
            t.fluid,
            Class::Fluid,
        ));
        for s in [-1.0, 1.0] {
            let p1 = f.off(sp, s * 1.9 * rv, b.u(-0.2, 0.4) * rv);
            let p2 = f.at(s * b.u(0.6, 0.72), b.u(-0.25, 0.05));
            let sag = dist(p1, p2) * b.u(0.08, 0.16);
            // Iliacus muscle in the fossa, anteromedial to the wing.
            let m = ((p1.0 + p2.0) / 2.0, (p1.1 + p2.1) / 2.0);
            let to = f.at(0.0, -0.3);
            let d = dist(m, to).max(1e-6);
            let shift = b.u(0.05, 0.09) * a;
            let ic = (
                m.0 + (to.0 - m.0) / d * shift,
                m.1 + (to.1 - m.1) / d * shift,
            );
            let ang = (p2.1 - p1.1).atan2(p2.0 - p1.0);
            let len = 0.5 * dist(p1, p2);
            let ay = b.u(0.06, 0.09) * a;
            b.push(Shape::new(ic, len, ay, ang, t.muscle, Class::Soft).clip(cavity));
            // Bulge posterolaterally (the iliac fossa faces anteromedially).
            let (q1, q2) = if s > 0.0 { (p2, p1) } else { (p1, p2) };
            let thick = b.u(0.04, 0.065) * a;
            b.bone_arc(q1, q2, sag, thick, wall);
        }
    }
}
