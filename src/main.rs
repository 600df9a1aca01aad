use clap::Parser;
use diffrecon::cli::{report, run, Cli};

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        std::process::exit(report(&e));
    }
}

/// Every op allocates its output afresh. By default glibc serves each buffer over 128 KiB with
/// its own mapping (page faults and zeroing on first touch, an unmap on free) and trims the heap
/// after frees; a sampler step frees and re-allocates the same sizes hundreds of times. Keeping
/// freed memory in the process made notebook DPS steps ~12 % faster on a 2-core Zen 4
/// (BENCHMARKS.md); the peak stays what the live buffers need. Library hosts (C, Python) keep
/// their own allocator settings: this is the CLI's choice only.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
