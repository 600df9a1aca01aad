//! The fuzz targets, shared by the cargo-fuzz crate (fuzz/fuzz_targets/*.rs) and the seeded
//! mutation loop on stable (tests/fuzz/). Each takes arbitrary bytes and must return,
//! whatever they hold: an Ok or an input error, never a panic, an abort or an allocation
//! beyond the documented limits.
#![allow(dead_code)] // each cargo-fuzz binary uses one target

use diffrecon::backend::cpu::CpuBackend;
use diffrecon::error::Error;
use diffrecon::io::npy::parse_npy;
use diffrecon::io::png::decode_png;
use diffrecon::tensor::Tensor;
use diffrecon::unet::{weights, UNet};

/// Errors from hostile bytes must be the user's (exit 2), never internal.
fn input_error_or_ok<T>(r: diffrecon::Result<T>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(Error::Input(_)) => None,
        Err(e) => panic!("{what}: hostile bytes gave an internal error: {e}"),
    }
}

/// A `.npy` file's bytes; true when they were accepted.
pub fn npy(data: &[u8]) -> bool {
    let Some(t) = input_error_or_ok(parse_npy(data, "fuzz.npy"), "npy") else {
        return false;
    };
    assert!(
        t.data().iter().all(|v| v.is_finite()),
        "npy: non-finite value accepted"
    );
    true
}

/// A PNG file's bytes; true when they were accepted.
pub fn png(data: &[u8]) -> bool {
    let Some(t) = input_error_or_ok(decode_png(data), "png") else {
        return false;
    };
    let s = t.shape();
    assert!(s.len() == 4 && s[..2] == [1, 1], "png: shape {s:?}");
    assert!(
        t.data().iter().all(|v| (0.0..=1.0).contains(v)),
        "png: value outside [0, 1]"
    );
    true
}

/// A safetensors weights file: load and validate it; weights that pass must build the network
/// and run one forward pass on the smallest input the config accepts (the class of files that
/// validated and then panicked in the CPU ops). True when they were accepted.
pub fn weights(data: &[u8]) -> bool {
    let Some((cfg, params)) = input_error_or_ok(weights::parse(data, None), "weights") else {
        return false;
    };
    let be = CpuBackend::default();
    let net = UNet::new(&be, cfg.clone(), &params).expect("validated weights must build");
    let m = cfg.size_multiple();
    let n = cfg.in_ch * m * m;
    let x = Tensor::new(
        vec![1, cfg.in_ch, m, m],
        (0..n).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect(),
    )
    .expect("sized above");
    let eps = net
        .forward(&be, &x, &[37.0])
        .expect("validated weights must run a forward pass");
    assert_eq!(eps.shape(), x.shape(), "weights: output shape");
    true
}
