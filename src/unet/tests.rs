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
