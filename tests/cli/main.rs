//! The command line as a user meets it: each bad input gets a message and exit code 2, never a
//! panic; the happy paths write what they promise. This file holds the helpers; the tests are
//! grouped by command in the modules below.

use diffrecon::io::npy::write_npy;
use diffrecon::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../common/mod.rs"]
mod common;
use common::golden;

mod evaluate;
mod input_errors;
mod limits;
mod operators;
mod reconstruct;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffrecon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffrecon"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exit code 2, no panic, and a message containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {err}");
    assert!(!err.contains("panicked"), "args {args:?} panicked: {err}");
    assert!(
        err.contains(needle),
        "args {args:?}: expected '{needle}' in: {err}"
    );
}

fn write(name: &str, t: &Tensor) -> PathBuf {
    let p = tmp(name);
    write_npy(&p, t).unwrap();
    p
}

fn image(name: &str, h: usize, w: usize, value: f32) -> PathBuf {
    write(
        name,
        &Tensor::new(vec![1, 1, h, w], vec![value; h * w]).unwrap(),
    )
}

fn small() -> String {
    s(&golden("small.safetensors")).to_string()
}

fn reconstruct_args<'a>(w: &'a str, y: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "reconstruct",
        "--weights",
        w,
        "--measurement",
        y,
        "--out",
        out,
    ];
    if !extra.contains(&"--device") {
        a.extend_from_slice(&["--device", "cpu"]);
    }
    a.extend_from_slice(extra);
    a
}
