//! Deblur two test images with published DiffPIR and the bundled prior, through the embedding
//! API: `cargo run --release --example deblur [STEPS]`.

use diffrecon::api::{self, Device, Kernel, Operator, Precision, Sampler, Tensor};

fn main() -> diffrecon::Result<()> {
    let steps: f64 = std::env::args()
        .nth(1)
        .map_or(Ok(20.0), |s| s.parse())
        .unwrap_or(20.0);
    // Two 64×64 images in model space [−1, 1]: a bright disc and a darker ring.
    let truth: Vec<f32> = (0..2 * 64 * 64)
        .map(|i| {
            let (slice, r, c) = (i / 4096, (i / 64) % 64, i % 64);
            let d = ((r as f32 - 32.0).powi(2) + (c as f32 - 32.0).powi(2)).sqrt();
            let inside = if slice == 0 {
                d < 20.0
            } else {
                (12.0..22.0).contains(&d)
            };
            if inside {
                0.6
            } else {
                -0.8
            }
        })
        .collect();
    let truth = Tensor::new(vec![2, 1, 64, 64], truth)?;

    let model = api::load(None, Device::Auto, Precision::F32)?; // weights/prior.safetensors
    let op = Operator::Blur(Kernel::motion(9, 20.0)?);
    let y = api::simulate(&truth, &op, 0.01, 0)?; // 1 % relative noise
    let mut sampler = Sampler::from_name("diffpir-pnp")?;
    sampler.set("steps", steps)?;
    let r = api::reconstruct(model.as_ref(), &y, &op, &sampler, 0, 1)?;

    for (i, res) in r.residual.iter().enumerate() {
        let err = r.image.items(i..i + 1)?.rel_l2(&truth.items(i..i + 1)?)?;
        println!("slice {i}: residual ‖Ax − y‖/‖y‖ = {res:.4}, relative error {err:.3}");
    }
    if let Some(cg) = r.cg {
        println!("CG: {} solves, at most {} iterations", cg.solves, cg.iters);
    }
    Ok(())
}
