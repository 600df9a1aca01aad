use super::*;
use crate::backend::cpu::CpuBackend;
use crate::rng::Rng;

fn tiny() -> UNetConfig {
    UNetConfig {
        in_ch: 1,
        base_ch: 4,
        channel_mults: vec![1, 2],
        time_dim: 8,
        attn_levels: vec![0, 1],
        num_heads: 2,
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(p, q)| *p as f64 * *q as f64)
        .sum()
}

/// Directional finite differences of <eps(x), r> against <Jᵀr, v>.
#[test]
fn vjp_matches_directional_finite_differences() {
    let be = CpuBackend::default();
    let cfg = tiny();
    let net = UNet::new(&be, cfg.clone(), &weights::synthetic(&cfg, 3)).unwrap();
    let mut rng = Rng::new(4);
    let shape = [2, 1, 8, 6];
    let x = Tensor::new(shape.to_vec(), rng.normal_vec(96)).unwrap();
    let r = Tensor::new(shape.to_vec(), rng.normal_vec(96)).unwrap();
    let t = [17.0, 250.0];
    let (eps, tape) = net.forward_with_tape(&be, &x, &t).unwrap();
    assert_eq!(
        eps,
        net.forward(&be, &x, &t).unwrap(),
        "taped and plain forward differ"
    );
    let g = net.vjp(&be, &tape, &r).unwrap();
    for seed in 0..3 {
        let v = Tensor::new(shape.to_vec(), Rng::new(100 + seed).normal_vec(96)).unwrap();
        // Small groups make the net strongly curved: h = 3e-3 balances curvature and f32 noise.
        let h = 3e-3f32;
        let shifted = |s: f32| {
            let xs = be.lincomb(&x, 1.0, &v, s).unwrap();
            dot(&net.forward(&be, &xs, &t).unwrap(), &r)
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
        let an = dot(&g, &v);
        assert!(
            (fd - an).abs() < 1e-2 * an.abs().max(1.0),
            "fd {fd} vs vjp {an}"
        );
    }
}

#[test]
fn parameters_of_another_config_are_refused_before_upload() {
    let be = CpuBackend::default();
    let other = UNetConfig {
        base_ch: 8,
        ..tiny()
    };
    let e = UNet::new(&be, tiny(), &weights::synthetic(&other, 3))
        .err()
        .expect("mismatched parameters accepted");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("has shape"), "{e}");
}

#[test]
fn bad_shapes_and_timesteps_are_input_errors() {
    let be = CpuBackend::default();
    let cfg = tiny();
    let net = UNet::new(&be, cfg.clone(), &weights::synthetic(&cfg, 3)).unwrap();
    let odd = Tensor::zeros(&[1, 1, 7, 8]);
    assert_eq!(net.forward(&be, &odd, &[1.0]).unwrap_err().exit_code(), 2);
    let two_ch = Tensor::zeros(&[1, 2, 8, 8]);
    assert_eq!(
        net.forward(&be, &two_ch, &[1.0]).unwrap_err().exit_code(),
        2
    );
    let ok = Tensor::zeros(&[2, 1, 8, 8]);
    assert_eq!(
        net.forward(&be, &ok, &[1.0, 2.0, 3.0])
            .unwrap_err()
            .exit_code(),
        2
    );
}

/// The stacked time projections give each ResBlock the bits of its own `linear` (SiLU input),
/// in ResBlock order; widths that do not sum to the stacked outputs are refused.
#[test]
fn stacked_time_projections_give_each_blocks_own_linear() {
    let be = CpuBackend::default();
    let cfg = tiny();
    let params = weights::synthetic(&cfg, 5);
    let net = UNet::new(&be, cfg.clone(), &params).unwrap();
    let mut rng = Rng::new(6);
    let temb = Tensor::new(vec![2, cfg.time_dim], rng.normal_vec(2 * cfg.time_dim)).unwrap();
    let tps = be
        .linear_split(
            &temb,
            &net.time_proj.w,
            &net.time_proj.b,
            true,
            &net.time_widths,
        )
        .unwrap();
    let blocks = [
        (&net.down[0].res0, "down_blocks.0.0"),
        (&net.down[1].res1, "down_blocks.1.1"),
        (&net.mid2, "mid_block2"),
        (&net.up[1].res0, "up_blocks.1.0"),
    ];
    for (rb, name) in blocks {
        let p = |f: &str| params.get(&format!("{name}.time_proj.1.{f}")).unwrap();
        let want = be.linear(&temb, p("weight"), p("bias"), true).unwrap();
        let got = &tps[rb.tp];
        assert_eq!(got.shape(), want.shape(), "{name}");
        assert!(
            got.data()
                .iter()
                .zip(want.data())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: not its own linear's bits"
        );
    }
    let short = net.time_widths[..net.time_widths.len() - 1].to_vec();
    let e = be
        .linear_split(&temb, &net.time_proj.w, &net.time_proj.b, true, &short)
        .unwrap_err();
    assert!(e.to_string().contains("linear_split"), "{e}");
}
