//! Sparse-view CT without a model: filtered back-projection and Tikhonov on the CPU, through
//! the embedding API: `cargo run --release --example ct_baselines`.

use diffrecon::api::{self, Device, Operator, Sampler, Tensor};

fn main() -> diffrecon::Result<()> {
    // A 64×64 square phantom in model space [−1, 1], 30 views over 180°.
    let truth: Vec<f32> = (0..64 * 64)
        .map(|i| {
            let (r, c) = (i / 64, i % 64);
            if (16..48).contains(&r) && (20..44).contains(&c) {
                0.5
            } else {
                -1.0
            }
        })
        .collect();
    let truth = Tensor::new(vec![1, 1, 64, 64], truth)?;
    let op = Operator::ct(64, 64, 30, None, 180.0)?;
    let y = api::simulate(&truth, &op, 0.01, 0)?;
    println!("{}: sinogram {:?}", op.describe(), y.shape());

    let solver = api::solver(Device::Cpu)?;
    for name in ["fbp", "tikhonov"] {
        let x = api::baseline(solver.as_ref(), &y, &op, &Sampler::from_name(name)?)?;
        let res = api::residual(&x, &y, &op)?[0];
        println!(
            "{name}: relative error {:.3}, residual {res:.4}",
            x.rel_l2(&truth)?
        );
    }
    Ok(())
}
