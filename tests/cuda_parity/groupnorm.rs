//! Group norm, with and without the fused SiLU, forward and VJP.

use super::{check, stale_buffer, OP_BOUND};
use crate::common::{gpu, rand};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::Backend;

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn group_norm_with_and_without_silu() {
    let Some(g) = gpu("group_norm") else { return };
    let cpu = CpuBackend::default();
    for (i, &(n, c, h, w, groups)) in [(2, 12, 5, 7, 6), (1, 64, 64, 64, 32), (1, 36, 3, 3, 18)]
        .iter()
        .enumerate()
    {
        let x = rand(&[n, c, h, w], 40 + i as u64);
        let (gam, bet) = (rand(&[c], 50), rand(&[c], 51));
        for silu in [false, true] {
            let want = cpu.group_norm(&x, &gam, &bet, groups, silu).unwrap();
            let got = g
                .group_norm(
                    &g.upload(&x).unwrap(),
                    &g.upload(&gam).unwrap(),
                    &g.upload(&bet).unwrap(),
                    groups,
                    silu,
                )
                .unwrap();
            check(
                &format!("group_norm c{c} g{groups} silu {silu}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn group_norm_vjp_with_and_without_silu() {
    let Some(g) = gpu("group_norm_vjp") else {
        return;
    };
    let cpu = CpuBackend::default();
    // (n, c, h, w, groups): 3, 3, 1, 3 and 2 channels per group (odd counts), odd planes.
    for (i, &(n, c, h, w, groups)) in [
        (2, 15, 5, 7, 5),
        (1, 21, 9, 11, 7),
        (3, 9, 3, 3, 9),
        (1, 36, 13, 5, 12),
        (1, 64, 32, 32, 32),
    ]
    .iter()
    .enumerate()
    {
        let x = rand(&[n, c, h, w], 400 + i as u64);
        let dy = rand(&[n, c, h, w], 410 + i as u64);
        let (gam, bet) = (rand(&[c], 420 + i as u64), rand(&[c], 430 + i as u64));
        let (gx, gg, gb, gdy) = (
            g.upload(&x).unwrap(),
            g.upload(&gam).unwrap(),
            g.upload(&bet).unwrap(),
            g.upload(&dy).unwrap(),
        );
        for silu in [false, true] {
            let want = cpu
                .group_norm_vjp(&x, &gam, &bet, groups, silu, &dy)
                .unwrap();
            stale_buffer(&g, x.shape());
            let got = g.group_norm_vjp(&gx, &gg, &gb, groups, silu, &gdy).unwrap();
            check(
                &format!("group_norm_vjp c{c} g{groups} {h}x{w} n{n} silu {silu}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}
