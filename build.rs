//! Build script. The CUDA kernels under kernels/ are compiled here once the CUDA backend lands;
//! until then the crate is CPU-only and there is nothing to build.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
}
