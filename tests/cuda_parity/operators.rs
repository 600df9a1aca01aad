//! The operators' ops: CT, downsample, inpaint, the TV baseline's updates.
//!
//! Their kernels repeat the CPU's arithmetic operation for operation (the _rn intrinsics, f64
//! sums over the same terms in the same order), and the CPU emulation of the kernels
//! (tests/kernel_emulation.rs with tests/emu/ops.cpp) reproduced the CPU functions bit for bit.
//! So here they are compared by bits, not by a tolerance.

use super::same_bits;
use crate::common::{gpu, rand, rand_scaled};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::{Backend, CtGeometry};
use diffrecon::rng::Rng;
use diffrecon::tensor::Tensor;

/// ⟨a, b⟩ over all values, in f64.
fn dot(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.data(), b.data());
    a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
}

/// |⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / max(|⟨Ax, y⟩|, |⟨x, Aᵀy⟩|), with Ax and Aᵀy computed on the GPU.
fn dot_gap(x: &Tensor, ax: &Tensor, y: &Tensor, aty: &Tensor) -> f64 {
    let (lhs, rhs) = (dot(ax, y), dot(x, aty));
    (lhs - rhs).abs() / lhs.abs().max(rhs.abs())
}

/// The (V, 2) angle table the CT operator uploads.
fn angle_table(geo: &CtGeometry) -> Tensor {
    let flat = geo.angles().into_iter().flat_map(|(c, s)| [c, s]).collect();
    Tensor::new(vec![geo.views, 2], flat).unwrap()
}

/// A 0/1 mask of (h, w) keeping about 40% of the pixels.
fn mask(h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let m = (0..h * w)
        .map(|_| (rng.uniform() < 0.4) as u8 as f32)
        .collect();
    Tensor::new(vec![h, w], m).unwrap()
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn ct_ops_match_the_cpu_bit_for_bit_and_are_adjoint() {
    let Some(g) = gpu("ct_ops") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let cases = [
        (24, 20, 1, 180.0, 3),
        (24, 20, 7, 180.0, 3),
        (24, 20, 1, 120.0, 3),
        (24, 20, 7, 120.0, 3),
        (64, 64, 60, 180.0, 2), // the CT problem's geometry: 45° and 135°, where branches meet
    ];
    for (i, &(h, w, views, arc, n)) in cases.iter().enumerate() {
        let geo = CtGeometry::new(h, w, views, None, arc).unwrap();
        let name = format!("{h}x{w} {views} views arc {arc} batch {n}");
        let (angles, ga) = (angle_table(&geo), up(&angle_table(&geo)));
        let x = rand(&[n, 1, h, w], 1100 + i as u64);
        let y = rand(&[n, 1, views, geo.detectors], 1200 + i as u64);
        let ax = g.ct_project(&up(&x), &geo, &ga).unwrap();
        let aty = g.ct_backproject(&up(&y), &geo, &ga).unwrap();
        let want_ax = cpu.ct_project(&x, &geo, &angles).unwrap();
        same_bits(&format!("ct_project {name}"), &g, &ax, &want_ax);
        let want_aty = cpu.ct_backproject(&y, &geo, &angles).unwrap();
        same_bits(&format!("ct_backproject {name}"), &g, &aty, &want_aty);
        let ry = g.ct_ramp_filter(&up(&y)).unwrap();
        let want_ry = cpu.ct_ramp_filter(&y).unwrap();
        same_bits(&format!("ct_ramp_filter {name}"), &g, &ry, &want_ry);
        let (ax, aty) = (g.download(&ax).unwrap(), g.download(&aty).unwrap());
        let gap = dot_gap(&x, &ax, &y, &aty);
        println!("parity ct dot test {name}: relative gap {gap:.2e}");
        // The CPU's dot test measures ≤ 6.7e-7 on these geometries (the f32 rounding of the
        // two outputs); the GPU's outputs are its bits.
        assert!(gap <= 1e-5, "ct dot test {name}: gap {gap:.2e}");
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn downsample_and_inpaint_match_the_cpu_bit_for_bit_and_are_adjoint() {
    let Some(g) = gpu("downsample_inpaint") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    for (i, &(n, c, h, w, f)) in [(3, 1, 21, 15, 3), (2, 2, 64, 64, 4), (3, 1, 5, 7, 1)]
        .iter()
        .enumerate()
    {
        let name = format!("{h}x{w} F {f} batch {n}x{c}");
        let x = rand(&[n, c, h, w], 1300 + i as u64);
        let y = rand(&[n, c, h / f, w / f], 1400 + i as u64);
        let ax = g.downsample(&up(&x), f).unwrap();
        same_bits(
            &format!("downsample {name}"),
            &g,
            &ax,
            &cpu.downsample(&x, f).unwrap(),
        );
        let aty = g.downsample_adjoint(&up(&y), f).unwrap();
        same_bits(
            &format!("downsample_adjoint {name}"),
            &g,
            &aty,
            &cpu.downsample_adjoint(&y, f).unwrap(),
        );
        let (ax, aty) = (g.download(&ax).unwrap(), g.download(&aty).unwrap());
        let gap = dot_gap(&x, &ax, &y, &aty);
        println!("parity downsample dot test {name}: relative gap {gap:.2e}");
        // The CPU's dot test bounds this by 1e-6 (one rounding of each output).
        assert!(gap <= 1e-5, "downsample dot test {name}: gap {gap:.2e}");
    }
    let (n, h, w) = (3, 23, 19);
    let m = mask(h, w, 1500);
    let (x, y) = (rand(&[n, 1, h, w], 1501), rand(&[n, 1, h, w], 1502));
    let mx = g.inpaint_mask(&up(&x), &up(&m)).unwrap();
    let want = cpu.inpaint_mask(&x, &m).unwrap();
    same_bits("inpaint_mask 23x19 batch 3", &g, &mx, &want);
    let my = g.inpaint_mask(&up(&y), &up(&m)).unwrap();
    let (mx, my) = (g.download(&mx).unwrap(), g.download(&my).unwrap());
    let gap = dot_gap(&x, &mx, &y, &my);
    println!("parity inpaint dot test 23x19 batch 3: relative gap {gap:.2e}");
    // The same products in the same order on both sides: the CPU's test finds them equal.
    assert!(gap <= 1e-5, "inpaint dot test: gap {gap:.2e}");
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn tv_updates_match_the_cpu_bit_for_bit() {
    let Some(g) = gpu("tv_updates") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let shape = [3, 1, 23, 19];
    // lam such that the projection scales some pairs and leaves others.
    let (step, lam) = (0.35f32, 0.5f32);
    let xbar = rand(&shape, 1600);
    let (mut px, mut py) = (
        rand_scaled(&shape, 1601, 0.05),
        rand_scaled(&shape, 1602, 0.05),
    );
    let (mut gpx, mut gpy) = (up(&px), up(&py));
    g.tv_dual_update(&mut gpx, &mut gpy, &up(&xbar), step, lam)
        .unwrap();
    cpu.tv_dual_update(&mut px, &mut py, &xbar, step, lam)
        .unwrap();
    same_bits("tv_dual_update px 23x19 batch 3", &g, &gpx, &px);
    same_bits("tv_dual_update py 23x19 batch 3", &g, &gpy, &py);
    // x partly outside [−1, 1] after the step, so the clamp acts.
    let (mut x, mut xb) = (rand_scaled(&shape, 1603, 0.9), rand(&shape, 1604));
    let atq = rand(&shape, 1605);
    let (mut gx, mut gxb) = (up(&x), up(&xb));
    g.tv_primal_update(&mut gx, &mut gxb, &up(&atq), &gpx, &gpy, step)
        .unwrap();
    cpu.tv_primal_update(&mut x, &mut xb, &atq, &px, &py, step)
        .unwrap();
    assert!(
        x.data().iter().any(|v| v.abs() == 1.0),
        "the clamp never acted"
    );
    same_bits("tv_primal_update x 23x19 batch 3", &g, &gx, &x);
    same_bits("tv_primal_update xbar 23x19 batch 3", &g, &gxb, &xb);
}

/// 65,544 planes: more than the grid's z limit of 65,535, so two launches per op (the second
/// with 9 planes), each offset to its planes; the channels count as planes.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn operator_batches_past_the_grid_limit_run_in_chunks() {
    let Some(g) = gpu("operator_chunks") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let x = rand(&[21_848, 3, 4, 4], 1700);
    let y = rand(&[21_848, 3, 2, 2], 1701);
    let name = "65,544 planes 4x4";
    let want = cpu.downsample(&x, 2).unwrap();
    same_bits(
        &format!("downsample {name}"),
        &g,
        &g.downsample(&up(&x), 2).unwrap(),
        &want,
    );
    let want = cpu.downsample_adjoint(&y, 2).unwrap();
    same_bits(
        &format!("downsample_adjoint {name}"),
        &g,
        &g.downsample_adjoint(&up(&y), 2).unwrap(),
        &want,
    );
    let m = mask(4, 4, 1702);
    let want = cpu.inpaint_mask(&x, &m).unwrap();
    same_bits(
        &format!("inpaint_mask {name}"),
        &g,
        &g.inpaint_mask(&up(&x), &up(&m)).unwrap(),
        &want,
    );
    let geo = CtGeometry::new(4, 4, 3, None, 180.0).unwrap();
    let (angles, ga) = (angle_table(&geo), up(&angle_table(&geo)));
    let stack = rand(&[65_544, 1, 4, 4], 1703);
    let want = cpu.ct_project(&stack, &geo, &angles).unwrap();
    same_bits(
        &format!("ct_project {name}"),
        &g,
        &g.ct_project(&up(&stack), &geo, &ga).unwrap(),
        &want,
    );
}

/// Operands of the wrong shape are errors (the kernels have no bounds of their own).
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn operator_ops_refuse_mismatched_operands() {
    let Some(g) = gpu("operator_checks") else {
        return;
    };
    let up = |t: &Tensor| g.upload(t).unwrap();
    let geo = CtGeometry::new(24, 20, 7, None, 180.0).unwrap();
    let x = up(&rand(&[2, 1, 24, 20], 1));
    let short = up(&rand(&[6, 2], 2));
    assert!(g.ct_project(&x, &geo, &short).is_err());
    assert!(g.ct_backproject(&x, &geo, &up(&angle_table(&geo))).is_err());
    assert!(g.downsample(&x, 7).is_err());
    assert!(g.downsample(&x, 0).is_err());
    assert!(g.inpaint_mask(&x, &up(&mask(20, 24, 3))).is_err());
    let (mut px, mut py) = (up(&rand(&[2, 1, 24, 20], 4)), up(&rand(&[2, 1, 20, 24], 5)));
    assert!(g.tv_dual_update(&mut px, &mut py, &x, 0.1, 0.1).is_err());
}
