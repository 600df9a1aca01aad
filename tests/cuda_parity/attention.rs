//! Self-attention, forward and the VJP of its input.

use super::{check, same_bits, stale_buffer, OP_BOUND};
use crate::common::{gpu, rand, rand_scaled};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::cuda::{AttentionCore, CudaBackend, CudaTensor};
use diffrecon::backend::{AttnParams, Backend};
use diffrecon::tensor::Tensor;

/// Attention parameters for c channels, standard normal scaled by 1/sqrt(c) (seeds from `seed`).
fn scaled_params(c: usize, seed: u64) -> AttnParams<Tensor> {
    let s = 1.0 / (c as f32).sqrt();
    let scaled = |shape: &[usize], seed| {
        let t = rand(shape, seed);
        Tensor::new(t.shape().to_vec(), t.data().iter().map(|v| v * s).collect()).unwrap()
    };
    AttnParams {
        in_w: scaled(&[3 * c, c], seed),
        in_b: scaled(&[3 * c], seed + 1),
        out_w: scaled(&[c, c], seed + 2),
        out_b: scaled(&[c], seed + 3),
    }
}

/// `p` on the GPU backend `g`.
fn upload_params(g: &CudaBackend, p: &AttnParams<Tensor>) -> AttnParams<CudaTensor> {
    AttnParams {
        in_w: g.upload(&p.in_w).unwrap(),
        in_b: g.upload(&p.in_b).unwrap(),
        out_w: g.upload(&p.out_w).unwrap(),
        out_b: g.upload(&p.out_b).unwrap(),
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn attention_forward() {
    if gpu("attention").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    // Both paths of the attention core at every size (c288 heads 2: head width 144, past the
    // fused kernel's 128, runs the GEMM path either way), and both SGEMM tiles (the projections
    // and the GEMM path's products).
    let paths = [None, Some(AttentionCore::Fused), Some(AttentionCore::Gemm)];
    for (i, &(n, c, h, w, heads)) in [
        (2, 8, 7, 9, 2),
        (1, 128, 32, 32, 4),
        (1, 256, 16, 16, 4),
        (1, 128, 5, 13, 2),
        (3, 64, 8, 8, 4),
        (1, 288, 4, 5, 2),
        // 32×32, 4 heads: the GEMM path takes 4 images per group, here a group of 4 and one of 2.
        (6, 16, 32, 32, 4),
    ]
    .iter()
    .enumerate()
    {
        let y = rand(&[n, c, h, w], 60 + i as u64);
        let p = scaled_params(c, 70);
        let want = cpu.attention(&y, &p, heads).unwrap();
        for (path, tile) in paths
            .into_iter()
            .flat_map(|p| [None, Some(32), Some(64)].map(|t| (p, t)))
        {
            let gp = gpu("attention")
                .unwrap()
                .with_attention_core(path)
                .with_gemm_tile(tile);
            let pg = upload_params(&gp, &p);
            let gy = gp.upload(&y).unwrap();
            let got = gp.attention(&gy, &pg, heads).unwrap();
            // With the skip connection added in the out-projection's store: the bits of the
            // attention plus an add_assign on the device.
            let x = rand(&[n, c, h, w], 80 + i as u64);
            let gx = gp.upload(&x).unwrap();
            let fused = gp.attention_residual(&gy, &pg, heads, &gx).unwrap();
            let mut added = gp.attention(&gy, &pg, heads).unwrap();
            gp.add_assign(&mut added, &gx).unwrap();
            let what =
                format!("attention_residual {path:?} tile {tile:?} n{n} c{c} vs + add_assign");
            same_bits(&what, &gp, &fused, &gp.download(&added).unwrap());
            check(
                &format!(
                    "attention {path:?} gemm tile {tile:?} n{n} c{c} heads{heads} tokens{}",
                    h * w
                ),
                &gp,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn attention_vjp_input() {
    if gpu("attention_vjp").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    // (n, c, h, w, heads): 2 and 4 heads; 16, 64, 65 (odd) and 1024 tokens.
    for (i, &(n, c, h, w, heads)) in [
        (2, 8, 4, 4, 2),
        (1, 16, 4, 4, 4),
        (2, 12, 8, 8, 2),
        (1, 32, 8, 8, 4),
        (2, 8, 5, 13, 4),
        (1, 64, 32, 32, 4),
        // Groups of 4 images and a last group of 1 (attention_vjp's image groups).
        (5, 16, 32, 32, 4),
    ]
    .iter()
    .enumerate()
    {
        let y = rand(&[n, c, h, w], 500 + i as u64);
        let dout = rand(&[n, c, h, w], 510 + i as u64);
        let s = 1.0 / (c as f32).sqrt();
        let p = AttnParams {
            in_w: rand_scaled(&[3 * c, c], 520 + i as u64, s),
            in_b: rand_scaled(&[3 * c], 530 + i as u64, s),
            out_w: rand_scaled(&[c, c], 540 + i as u64, s),
            out_b: rand_scaled(&[c], 550 + i as u64, s),
        };
        let want = cpu.attention_vjp(&y, &p, heads, &dout).unwrap();
        for tile in [None, Some(32), Some(64)] {
            let g = gpu("attention_vjp").unwrap().with_gemm_tile(tile);
            let pg = upload_params(&g, &p);
            let (gy, gd) = (g.upload(&y).unwrap(), g.upload(&dout).unwrap());
            stale_buffer(&g, y.shape());
            let got = g.attention_vjp(&gy, &pg, heads, &gd).unwrap();
            check(
                &format!(
                    "attention_vjp gemm tile {tile:?} c{c} heads{heads} tokens{} n{n}",
                    h * w
                ),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

/// Grouping images in the attention GEMM path changes launches, not results: one image per
/// group (the loop of before) and the budget's groups give the same bits, forward and VJP.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn attention_groups_give_the_per_image_bits() {
    if gpu("attention_groups_give_the_per_image_bits").is_none() {
        return;
    }
    let (n, c, h, w, heads) = (5, 16, 32, 32, 4);
    let y = rand(&[n, c, h, w], 900);
    let dout = rand(&[n, c, h, w], 901);
    let p = scaled_params(c, 902);
    let run = |group: Option<usize>| {
        let g = gpu("attention_groups_give_the_per_image_bits")
            .unwrap()
            .with_attention_core(Some(AttentionCore::Gemm))
            .with_attention_group(group);
        let pg = upload_params(&g, &p);
        let (gy, gd) = (g.upload(&y).unwrap(), g.upload(&dout).unwrap());
        let fwd = g.download(&g.attention(&gy, &pg, heads).unwrap()).unwrap();
        let vjp = g
            .download(&g.attention_vjp(&gy, &pg, heads, &gd).unwrap())
            .unwrap();
        (fwd, vjp)
    };
    let (want_f, want_v) = run(Some(1));
    for group in [None, Some(2), Some(3)] {
        let (f, v) = run(group);
        assert_eq!(f.data(), want_f.data(), "forward, groups of {group:?}");
        assert_eq!(v.data(), want_v.data(), "VJP, groups of {group:?}");
        println!("parity attention groups {group:?}: relative error 0.00e0 (same bits)");
    }
}
