//! Every operator through simulate, apply and reconstruct, and the operator flags that cannot
//! work.

use super::{fails_with, image, run, s, tmp};
use diffrecon::io::npy::read_npy;

/// Every operator end to end: simulate writes the measurement's shape, apply's Aᵀ has the
/// image's, and FBP / TV reconstruct a CT sinogram to the image's shape.
#[test]
fn every_operator_from_the_command_line() {
    let x = image("op_x.npy", 32, 32, 0.25);
    let cases: [(&[&str], [usize; 4]); 4] = [
        (
            &["--operator", "ct", "--views", "7", "--arc", "120"],
            [1, 1, 7, 46],
        ),
        (
            &["--operator", "inpaint", "--keep", "0.5", "--mask-seed", "3"],
            [1, 1, 32, 32],
        ),
        (
            &["--operator", "inpaint", "--box", "4,4,8,8"],
            [1, 1, 32, 32],
        ),
        (&["--operator", "downsample", "--factor", "4"], [1, 1, 8, 8]),
    ];
    for (i, (flags, shape)) in cases.iter().enumerate() {
        let y = tmp(&format!("op_y{i}.npy"));
        let mut args = vec!["simulate", "--image", s(&x), "--out", s(&y), "--seed", "1"];
        args.extend_from_slice(flags);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(read_npy(&y).unwrap().shape(), shape, "{flags:?}");
        let back = tmp(&format!("op_back{i}.npy"));
        let mut args = vec!["apply", "--input", s(&y), "--adjoint", "--size", "32,32"];
        args.extend_from_slice(&["--device", "cpu", "--out", s(&back)]);
        args.extend_from_slice(flags);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            read_npy(&back).unwrap().shape(),
            [1, 1, 32, 32],
            "{flags:?}"
        );
    }
    let sino = tmp("op_y0.npy");
    for sampler in ["fbp", "tv"] {
        let rec = tmp(&format!("op_rec_{sampler}.npy"));
        let args = [
            "reconstruct",
            "--measurement",
            s(&sino),
            "--operator",
            "ct",
            "--views",
            "7",
            "--arc",
            "120",
            "--size",
            "32,32",
            "--sampler",
            sampler,
            "--device",
            "cpu",
            "--out",
            s(&rec),
        ];
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = read_npy(&rec).unwrap();
        assert_eq!(r.shape(), [1, 1, 32, 32]);
        assert!(r.data().iter().all(|v| v.is_finite()));
    }
}

/// Operator flags that cannot work: exit 2 with a message naming what to fix.
#[test]
fn operator_errors() {
    let x = image("ope_x.npy", 32, 32, 0.25);
    let out = tmp("ope_out.npy");
    let sim = |flags: &[&str], needle: &str| {
        let mut args = vec!["simulate", "--image", s(&x), "--out", s(&out)];
        args.extend_from_slice(flags);
        fails_with(&args, needle);
    };
    sim(&["--operator", "ct", "--views", "0"], "--views");
    sim(&["--operator", "ct", "--arc", "0"], "--arc");
    sim(&["--operator", "ct", "--arc", "361"], "--arc");
    sim(
        &["--operator", "downsample", "--factor", "3"],
        "does not divide",
    );
    sim(&["--operator", "downsample"], "--factor");
    sim(&["--operator", "inpaint", "--keep", "0"], "--keep");
    sim(&["--operator", "inpaint", "--keep", "1.5"], "--keep");
    sim(&["--operator", "inpaint", "--box", "30,30,8,8"], "inside");
    sim(&["--operator", "inpaint"], "exactly one of");
    sim(
        &["--operator", "inpaint", "--keep", "0.5", "--box", "1,1,2,2"],
        "exactly one of",
    );
    sim(
        &["--operator", "motion", "--views", "3"],
        "applies to --operator ct",
    );
    let mask = image("ope_mask.npy", 8, 8, 1.0);
    sim(
        &["--operator", "inpaint", "--mask", s(&mask)],
        "mask is 8×8",
    );
    let zeros = image("ope_zeros.npy", 32, 32, 0.0);
    sim(
        &["--operator", "inpaint", "--mask", s(&zeros)],
        "observes no pixel",
    );
    // A measurement that does not fit the operator names both shapes.
    fails_with(
        &[
            "reconstruct",
            "--measurement",
            s(&x),
            "--operator",
            "ct",
            "--sampler",
            "fbp",
            "--device",
            "cpu",
            "--out",
            s(&out),
        ],
        "sinogram of this CT geometry is 60×91",
    );
    fails_with(
        &[
            "reconstruct",
            "--measurement",
            s(&x),
            "--sampler",
            "fbp",
            "--out",
            s(&out),
        ],
        "--sampler fbp needs --operator ct",
    );
    fails_with(
        &[
            "apply",
            "--operator",
            "ct",
            "--input",
            s(&x),
            "--adjoint",
            "--out",
            s(&out),
        ],
        "needs --size",
    );
}
