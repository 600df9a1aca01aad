//! Compiles every kernels/*.cu with nvcc into a fatbin (SASS for sm_80 and sm_90, PTX for
//! compute_90), embeds them, and keeps the `ptxas -v` report in OUT_DIR. Without nvcc the crate
//! builds with no kernels (a warning; the CUDA backend then says so at run time), unless
//! DIFFRECON_REQUIRE_KERNELS=1, which CI sets so that every kernel always compiles.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const ARCH_FLAGS: [&str; 6] = [
    "-gencode",
    "arch=compute_80,code=sm_80",
    "-gencode",
    "arch=compute_90,code=sm_90",
    "-gencode",
    "arch=compute_90,code=compute_90",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    for var in ["NVCC", "CUDA_HOME", "DIFFRECON_REQUIRE_KERNELS", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let required = env::var("DIFFRECON_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let sources = kernel_sources();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    let compiled = match find_nvcc() {
        Some(nvcc) => compile_all(&nvcc, &sources, &out, required),
        None => {
            let msg = "nvcc not found (NVCC, CUDA_HOME, PATH, .toolchain/): building without CUDA kernels; run scripts/install-nvcc.sh";
            if required {
                panic!("DIFFRECON_REQUIRE_KERNELS=1 but {msg}");
            }
            println!("cargo:warning={msg}");
            Vec::new()
        }
    };
    write_index(&out, &compiled);
}

fn kernel_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("kernels")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// NVCC, then CUDA_HOME/bin/nvcc, then PATH, then the project-local toolchain.
fn find_nvcc() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = env::var("NVCC") {
        candidates.push(p.into());
    }
    if let Ok(h) = env::var("CUDA_HOME") {
        candidates.push(Path::new(&h).join("bin/nvcc"));
    }
    if let Ok(path) = env::var("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.push(PathBuf::from(".toolchain/cuda/bin/nvcc"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Compile each kernel file; returns (name, fatbin path). A failed compile is a warning, or an
/// error when kernels are required.
fn compile_all(
    nvcc: &Path,
    sources: &[PathBuf],
    out: &Path,
    required: bool,
) -> Vec<(String, PathBuf)> {
    let mut compiled = Vec::new();
    let mut report = String::new();
    for src in sources {
        let name = src
            .file_stem()
            .expect("a .cu file")
            .to_string_lossy()
            .to_string();
        let fatbin = out.join(format!("{name}.fatbin"));
        let result = Command::new(nvcc)
            .args(["-fatbin", "-O3", "-std=c++17", "-Xptxas", "-v", "-Ikernels"])
            .args(ARCH_FLAGS)
            .arg("-o")
            .arg(&fatbin)
            .arg(src)
            .output();
        match result {
            Ok(o) if o.status.success() => {
                let _ = writeln!(report, "== {name}\n{}", String::from_utf8_lossy(&o.stderr));
                compiled.push((name, fatbin));
            }
            Ok(o) => fail(
                required,
                &format!(
                    "nvcc failed on {}:\n{}",
                    src.display(),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => fail(required, &format!("cannot run {}: {e}", nvcc.display())),
        }
    }
    std::fs::write(out.join("ptxas_report.txt"), report).expect("write the ptxas report");
    compiled
}

fn fail(required: bool, msg: &str) {
    if required {
        panic!("{msg}");
    }
    for line in msg.lines().take(20) {
        println!("cargo:warning={line}");
    }
}

/// OUT_DIR/kernels.rs: the embedded fatbins and the ptxas report.
fn write_index(out: &Path, compiled: &[(String, PathBuf)]) {
    let mut s = String::from("/// (module name, fatbin) for every compiled kernels/*.cu.\npub const KERNELS: &[(&str, &[u8])] = &[\n");
    for (name, path) in compiled {
        let _ = writeln!(
            s,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    s.push_str("];\n");
    let report = out.join("ptxas_report.txt");
    if !report.exists() {
        std::fs::write(&report, "").expect("write an empty ptxas report");
    }
    let _ = writeln!(s, "/// nvcc's `-Xptxas -v` output for every kernel (empty without nvcc).\npub const PTXAS_REPORT: &str = include_str!({:?});", report.display().to_string());
    std::fs::write(out.join("kernels.rs"), s).expect("write kernels.rs");
}
