//! The fuzz targets of fuzz/targets.rs driven on stable by a seeded mutation loop: valid seeds
//! are mutated (bit flips, truncation, header text edits, size-field blow-ups, structural edits
//! of weight files) and every input must return Ok or an input error, never panic; the largest
//! single allocation is recorded and held to the readers' documented limits.
//!
//! The default run is short (a few seconds, fixed seed). A long run, one target at a time:
//!   DIFFRECON_FUZZ_ITERS=1000000 cargo test --release --test fuzz npy -- --nocapture
//! (DIFFRECON_FUZZ_SEED changes the seed). A failing input is saved and named in the failure.
//! DIFFRECON_FUZZ_WRITE_SEEDS=fuzz/corpus also writes the seeds there, for cargo-fuzz.
//!
//! This file holds the loop and the tests; the seeds and mutators are in the modules below.

#[path = "../../fuzz/targets.rs"]
mod targets;

mod mutations;
mod readers;
mod weight_files;

use readers::{fix_png_crcs, mutate_npy, mutate_png, npy_seeds, png_seeds};
use weight_files::{mutate_weights, weights_seeds, weights_structural};

use diffrecon::io::npy::MAX_DATA_BYTES;
use diffrecon::io::png::MAX_PIXELS;
use diffrecon::rng::Rng;
use diffrecon::unet::config::MAX_PARAMS;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The system allocator, recording the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// The targets run one at a time, so LARGEST belongs to the one running.
static SERIAL: Mutex<()> = Mutex::new(());

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

type Mutator = fn(&[u8], &[Vec<u8>], &mut Rng) -> Vec<u8>;

/// Run `target` on every seed, then on `iters` mutated seeds; fail naming the first input that
/// panics (saved under the temp directory) or any allocation over `alloc_cap` bytes.
fn fuzz(
    name: &str,
    seeds: fn() -> Vec<Vec<u8>>,
    default_iters: u64,
    mutate: Mutator,
    target: fn(&[u8]) -> bool,
    alloc_cap: usize,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seeds = seeds();
    if let Ok(dir) = std::env::var("DIFFRECON_FUZZ_WRITE_SEEDS") {
        // Seeds for cargo-fuzz: DIFFRECON_FUZZ_WRITE_SEEDS=fuzz/corpus.
        let dir = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed_{i}")), s).unwrap();
        }
    }
    let iters = env_u64("DIFFRECON_FUZZ_ITERS").unwrap_or(default_iters);
    let seed = env_u64("DIFFRECON_FUZZ_SEED").unwrap_or(0x5eed_f022);
    for (i, s) in seeds.iter().enumerate() {
        assert!(target(s), "fuzz {name}: seed {i} is not accepted");
    }
    LARGEST.store(0, Ordering::Relaxed);
    let mut rng = Rng::new(seed ^ diffrecon::rng::mix64(name.len() as u64));
    let start = std::time::Instant::now();
    let mut accepted = 0u64;
    for i in 0..iters {
        let input = mutate(
            &seeds[(rng.next_u64() % seeds.len() as u64) as usize],
            &seeds,
            &mut rng,
        );
        match std::panic::catch_unwind(|| target(&input)) {
            Ok(ok) => accepted += ok as u64,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let path =
                    std::env::temp_dir().join(format!("diffrecon-fuzz-{name}-{seed}-{i}.bin"));
                std::fs::write(&path, &input).ok();
                panic!(
                    "fuzz {name}: input {i} (seed {seed}, {} bytes, saved to {}) panicked: {msg}",
                    input.len(),
                    path.display()
                );
            }
        }
        if iters >= 1_000_000 && (i + 1) % (iters / 10) == 0 {
            eprintln!(
                "fuzz {name}: {} of {iters} inputs, {accepted} accepted",
                i + 1
            );
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    println!(
        "fuzz {name}: {iters} mutated inputs (seed {seed}), {accepted} accepted, no panic; \
         largest allocation {largest} bytes; {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        largest <= alloc_cap,
        "fuzz {name}: an allocation of {largest} bytes exceeds the limit {alloc_cap}"
    );
}

// ---- the tests ----

#[test]
fn fuzz_npy_reader() {
    fuzz(
        "npy",
        npy_seeds,
        200_000,
        mutate_npy,
        targets::npy,
        MAX_DATA_BYTES,
    );
}

#[test]
fn fuzz_png_reader() {
    fuzz(
        "png",
        png_seeds,
        100_000,
        mutate_png,
        targets::png,
        8 * MAX_PIXELS as usize,
    );
}

#[test]
fn fuzz_weights_load_and_validate() {
    fuzz(
        "weights",
        weights_seeds,
        2_000,
        mutate_weights,
        targets::weights,
        4 * MAX_PARAMS,
    );
}

/// The mutators themselves: they change their input, and the structural ones keep files the
/// safetensors crate can read (otherwise the loop would test only the first parser).
#[test]
fn mutators_reach_past_the_first_parser() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seeds = weights_seeds();
    let mut rng = Rng::new(1);
    let readable = (0..200)
        .filter(|_| {
            let b = weights_structural(&seeds[0], &mut rng).unwrap();
            safetensors::SafeTensors::deserialize(&b).is_ok()
        })
        .count();
    assert!(
        readable >= 150,
        "{readable} of 200 structural edits readable"
    );
    let npy = npy_seeds();
    let edited = (0..200)
        .filter(|_| mutate_npy(&npy[3], &npy, &mut rng) != npy[3])
        .count();
    assert!(
        edited >= 150,
        "{edited} of 200 npy mutations changed the input"
    );
    let mut b = png_seeds()[0].clone();
    b[16..20].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    fix_png_crcs(&mut b);
    let e = diffrecon::io::png::decode_png(&b).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}
