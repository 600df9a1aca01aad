//! The C ABI from C: include/diffrecon.h is what cbindgen makes of src/ffi/, the example
//! program compiles against the built library and reproduces the CLI's bits, and bad arguments
//! get the right status and message (examples/c/check_errors.c).

use diffrecon::api::{self, Kernel, Operator, Tensor};
use diffrecon::io::npy::{read_npy, write_npy};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The header regenerated with the pinned cbindgen equals the checked-in one
/// (DIFFRECON_BLESS=1 rewrites it instead).
#[test]
fn header_is_current() {
    let config = cbindgen::Config::from_file(Path::new(ROOT).join("cbindgen.toml")).unwrap();
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(Path::new(ROOT).join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen parses src/ffi/mod.rs")
        .write(&mut fresh);
    let path = Path::new(ROOT).join("include/diffrecon.h");
    if std::env::var_os("DIFFRECON_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap();
    assert!(
        checked_in == fresh,
        "include/diffrecon.h is stale: regenerate it with `cbindgen --config cbindgen.toml --output include/diffrecon.h` (or DIFFRECON_BLESS=1 cargo test --test c_abi)"
    );
}

/// target/<profile>: where cargo put this test's library (works under any CARGO_TARGET_DIR),
/// brought up to date once per run: `cargo test` builds the rlib only, and a shared library
/// left from an older build would test old code (a no-op build when it is current).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--lib", "--manifest-path"]);
            build.arg(Path::new(ROOT).join("Cargo.toml"));
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo, to build the shared library");
            assert!(status.success(), "building the shared library failed");
            assert!(
                dir.join("libdiffrecon.so").is_file() || dir.join("libdiffrecon.dylib").is_file(),
                "no shared library in {}",
                dir.display()
            );
            dir
        })
        .clone()
}

/// Compiles examples/c/NAME.c with the system C compiler against the shared library.
fn compile(name: &str, out: &Path) -> PathBuf {
    let lib = lib_dir();
    let exe = out.join(name);
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg(Path::new(ROOT).join(format!("examples/c/{name}.c")))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("-I{ROOT}/include"))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ldiffrecon", "-lm"])
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "compiling {name}.c failed");
    exe
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffrecon-c-abi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn c_example_reproduces_the_cli_bit_for_bit() {
    let dir = scratch("example");
    let exe = compile("reconstruct", &dir);
    // Two smooth 64×64 test images, blurred as the example's operator and the CLI's default.
    let truth: Vec<f32> = (0..2 * 64 * 64)
        .map(|i| {
            let (s, r, c) = (i / 4096, (i / 64) % 64, i % 64);
            ((r as f32 * 0.11 + s as f32).sin() * (c as f32 * 0.07).cos()).clamp(-1.0, 1.0)
        })
        .collect();
    let truth = Tensor::new(vec![2, 1, 64, 64], truth).unwrap();
    let op = Operator::Blur(Kernel::motion(9, 20.0).unwrap());
    let y = api::simulate(&truth, &op, 0.01, 3).unwrap();
    let y_path = dir.join("y.npy");
    write_npy(&y_path, &y).unwrap();
    let (c_out, cli_out) = (dir.join("c.npy"), dir.join("cli.npy"));

    let run = Command::new(&exe)
        .arg(&y_path)
        .arg(&c_out)
        .args(["3", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("2 slice(s), 3 CG solves"), "{stdout}");
    let cli = Command::new(env!("CARGO_BIN_EXE_diffrecon"))
        .args(["reconstruct", "--measurement"])
        .arg(&y_path)
        .args([
            "--sampler",
            "diffpir-pnp",
            "--steps",
            "3",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&cli_out)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let (from_c, from_cli) = (read_npy(&c_out).unwrap(), read_npy(&cli_out).unwrap());
    assert_eq!(from_c.shape(), &[2, 1, 64, 64]);
    assert_eq!(from_c.shape(), from_cli.shape());
    assert!(
        bits(&from_c) == bits(&from_cli),
        "the C example and the CLI differ"
    );
    // Not a trivial output: the two slices differ from each other and from y.
    assert_ne!(bits(&from_c)[..4096], bits(&from_c)[4096..]);
    assert_ne!(bits(&from_c), bits(&y));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_from_c_get_the_right_status_and_message() {
    let dir = scratch("errors");
    let exe = compile("check_errors", &dir);
    let run = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(stdout.contains("\n0 failure(s)"), "{stdout}");
    assert!(stdout.matches("ok   ").count() >= 30, "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}
