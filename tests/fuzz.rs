//! The fuzz targets of fuzz/targets.rs driven on stable by a seeded mutation loop: valid seeds
//! are mutated (bit flips, truncation, header text edits, size-field blow-ups, structural edits
//! of weight files) and every input must return Ok or an input error, never panic; the largest
//! single allocation is recorded and held to the readers' documented limits.
//!
//! The default run is short (a few seconds, fixed seed). A long run, one target at a time:
//!   DIFFRECON_FUZZ_ITERS=1000000 cargo test --release --test fuzz npy -- --nocapture
//! (DIFFRECON_FUZZ_SEED changes the seed). A failing input is saved and named in the failure.
//! DIFFRECON_FUZZ_WRITE_SEEDS=fuzz/corpus also writes the seeds there, for cargo-fuzz.

#[path = "../fuzz/targets.rs"]
mod targets;

use diffrecon::io::npy::{encode_npy, MAX_DATA_BYTES};
use diffrecon::io::png::{write_png_gray, MAX_PIXELS};
use diffrecon::rng::Rng;
use diffrecon::tensor::Tensor;
use diffrecon::unet::config::MAX_PARAMS;
use diffrecon::unet::weights::{config_metadata, serialize, synthetic};
use diffrecon::unet::UNetConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
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

// ---- generic byte mutations ----

/// Numbers a hostile header might hold, as text.
const NUMBERS: &[&str] = &[
    "0",
    "00",
    "1",
    "2",
    "3",
    "7",
    "13",
    "64",
    "65",
    "255",
    "4096",
    "65537",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "1e9",
    "01",
];

/// Integers a hostile size field might hold.
const SIZES: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

/// True once in `n` draws on average.
fn one_in(rng: &mut Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One structure-blind edit: bit flip, byte set, truncation, deletion, insertion, a size
/// written over some bytes, or a splice with another seed.
fn byte_edit(b: &mut Vec<u8>, seeds: &[Vec<u8>], rng: &mut Rng) {
    let n = b.len();
    match below(rng, 8) {
        0 if n > 0 => {
            let i = below(rng, n);
            b[i] ^= 1 << below(rng, 8);
        }
        1 if n > 0 => {
            let i = below(rng, n);
            let random = rng.next_u64() as u8;
            b[i] = *pick(rng, &[0u8, 1, 0x7f, 0x80, 0xff, random]);
        }
        2 => b.truncate(below(rng, n + 1)),
        3 if n > 0 => {
            let i = below(rng, n);
            let len = 1 + below(rng, 16.min(n - i));
            b.drain(i..i + len);
        }
        4 => {
            let i = below(rng, n + 1);
            let extra: Vec<u8> = (0..1 + below(rng, 16))
                .map(|_| rng.next_u64() as u8)
                .collect();
            b.splice(i..i, extra);
        }
        5 if n >= 8 => {
            let v = *pick(rng, SIZES);
            let width = *pick(rng, &[2usize, 4, 8]);
            let i = below(rng, n - width + 1);
            let bytes = if one_in(rng, 2) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[i..i + width].copy_from_slice(&bytes[..width]);
        }
        6 => {
            let other = pick(rng, seeds);
            let cut = below(rng, n + 1);
            let from = below(rng, other.len() + 1);
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
        _ => b.push(rng.next_u64() as u8),
    }
}

/// One edit of header text: a number swapped for a hostile one, a token swapped for another
/// from `tokens`, or a character deleted or inserted.
fn text_edit(text: &str, tokens: &[(&str, &str)], rng: &mut Rng) -> String {
    let bytes = text.as_bytes();
    match below(rng, 4) {
        0 => {
            let digits: Vec<usize> = (0..bytes.len())
                .filter(|&i| bytes[i].is_ascii_digit())
                .collect();
            if digits.is_empty() {
                return text.to_string();
            }
            let start = *pick(rng, &digits);
            let end = (start..bytes.len())
                .find(|&i| !bytes[i].is_ascii_digit())
                .unwrap_or(bytes.len());
            format!("{}{}{}", &text[..start], pick(rng, NUMBERS), &text[end..])
        }
        1 => {
            let (from, to) = *pick(rng, tokens);
            let hits: Vec<usize> = text.match_indices(from).map(|(i, _)| i).collect();
            if hits.is_empty() {
                return text.to_string();
            }
            let at = *pick(rng, &hits);
            format!("{}{to}{}", &text[..at], &text[at + from.len()..])
        }
        2 if !text.is_empty() => {
            let i = below(rng, text.len());
            if !text.is_char_boundary(i) || !text.is_char_boundary(i + 1) {
                return text.to_string();
            }
            format!("{}{}", &text[..i], &text[i + 1..])
        }
        _ => {
            let i = below(rng, text.len() + 1);
            if !text.is_char_boundary(i) {
                return text.to_string();
            }
            let c = *pick(
                rng,
                &[
                    '{', '}', '[', ']', '(', ')', ',', ':', '\'', '"', ' ', '0', '9', '-', '.', 'e',
                ],
            );
            format!("{}{c}{}", &text[..i], &text[i..])
        }
    }
}

// ---- .npy ----

fn npy_with_header(dict: &str, data: &[u8], major: u8) -> Vec<u8> {
    let text = format!("{dict}\n");
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let ramp = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|i| i as f32 * 0.25 - 1.0).collect(),
        )
        .unwrap()
    };
    let f8: Vec<u8> = [1.5f64, -2.0, 0.125, 7.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![
        encode_npy(&ramp(&[])),
        encode_npy(&ramp(&[3])),
        encode_npy(&ramp(&[2, 3])),
        encode_npy(&ramp(&[1, 1, 4, 4])),
        npy_with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &f8,
            2,
        ),
        npy_with_header(
            "{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f8\"}",
            &f8,
            3,
        ),
    ]
}

const NPY_TOKENS: &[(&str, &str)] = &[
    ("<f4", "<f8"),
    ("<f4", ">f4"),
    ("<f4", "<i4"),
    ("<f8", "<f4"),
    ("<f8", "|u1"),
    ("False", "True"),
    ("False", "0"),
    ("'shape'", "'shapes'"),
    ("(", "["),
    (",)", ")"),
    (", ", ", 0, "),
    ("}", "}}"),
    ("'descr'", "'descr': [('a', '<f4')], 'x'"),
];

/// The header text of a .npy file with its length field rewritten to match, so edits reach
/// the dict parser and the size checks rather than stopping at the length.
fn npy_header_edit(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let major = *b.get(6)?;
    let width = if major == 1 { 2 } else { 4 };
    let start = 8 + width;
    let mut len = [0u8; 4];
    len[..width].copy_from_slice(b.get(8..start)?);
    let end = start.checked_add(u32::from_le_bytes(len) as usize)?;
    let text = std::str::from_utf8(b.get(start..end)?).ok()?;
    let new = text_edit(text, NPY_TOKENS, rng);
    let mut out = b[..8].to_vec();
    if width == 2 {
        out.extend_from_slice(&u16::try_from(new.len()).ok()?.to_le_bytes());
    } else {
        out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&b[end..]);
    Some(out)
}

fn mutate_npy(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + below(rng, 3) {
        match below(rng, 3) {
            0 => b = npy_header_edit(&b, rng).unwrap_or(b),
            1 if b.len() >= 12 => {
                // The header length field blown up.
                let v = *pick(rng, SIZES);
                let width = if b[6] == 1 { 2 } else { 4 };
                b[8..8 + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            _ => byte_edit(&mut b, seeds, rng),
        }
    }
    b
}

// ---- PNG ----

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recompute every complete chunk's CRC, so that edits reach the decoder proper.
fn fix_png_crcs(b: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= b.len()) else {
            return;
        };
        let crc = crc32(&b[at + 4..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

fn encode_png(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    raw: &[u8],
    palette: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p.to_vec());
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(raw).unwrap();
        wr.finish().unwrap();
    }
    out
}

fn png_seeds() -> Vec<Vec<u8>> {
    use png::{BitDepth, ColorType};
    let dir = std::env::temp_dir().join(format!("diffrecon-fuzz-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.png");
    let mut seeds = Vec::new();
    for (depth, h, w) in [(8u8, 4, 4), (16, 3, 5)] {
        let px: Vec<f32> = (0..h * w).map(|i| i as f32 / (h * w) as f32).collect();
        write_png_gray(&path, &px, h, w, depth).unwrap();
        seeds.push(std::fs::read(&path).unwrap());
    }
    std::fs::remove_dir_all(&dir).ok();
    let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 37) as u8).collect();
    seeds.push(encode_png(
        3,
        2,
        ColorType::Rgb,
        BitDepth::Eight,
        &rgb,
        None,
    ));
    let rgba16: Vec<u8> = (0..2 * 2 * 8).map(|i| (i * 11) as u8).collect();
    seeds.push(encode_png(
        2,
        2,
        ColorType::Rgba,
        BitDepth::Sixteen,
        &rgba16,
        None,
    ));
    seeds.push(encode_png(
        2,
        1,
        ColorType::GrayscaleAlpha,
        BitDepth::Eight,
        &[9, 0, 200, 99],
        None,
    ));
    let palette = [0, 0, 0, 255, 255, 255, 255, 0, 0];
    seeds.push(encode_png(
        3,
        2,
        ColorType::Indexed,
        BitDepth::Two,
        &[0b1001_0000, 0b0110_0000],
        Some(&palette),
    ));
    seeds.push(encode_png(
        4,
        1,
        ColorType::Grayscale,
        BitDepth::One,
        &[0b1010_0000],
        None,
    ));
    seeds
}

fn mutate_png(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + below(rng, 3) {
        match below(rng, 4) {
            0 if b.len() >= 24 => {
                // IHDR width or height blown up (bytes 16..20 and 20..24).
                let v = *pick(rng, SIZES) as u32;
                let at = 16 + 4 * below(rng, 2);
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            1 if b.len() >= 12 => {
                // Some chunk's length field blown up: the IHDR's, or one further on.
                let further = 8 + 4 * below(rng, (b.len() - 8) / 4);
                let at = *pick(rng, &[8usize, 33, further]);
                if at + 4 <= b.len() {
                    b[at..at + 4].copy_from_slice(&(*pick(rng, SIZES) as u32).to_be_bytes());
                }
            }
            _ => byte_edit(&mut b, seeds, rng),
        }
    }
    if !one_in(rng, 4) {
        fix_png_crcs(&mut b);
    }
    b
}

// ---- safetensors weights ----

/// A weights file as entries, to be edited structurally and written back consistently.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn dtype_size(d: &str) -> usize {
    match d {
        "F64" => 8,
        "F32" | "I32" => 4,
        "F16" | "BF16" => 2,
        _ => 1,
    }
}

/// Entries in the file's order, and its metadata; None if the crate cannot read it.
fn read_entries(b: &[u8]) -> Option<(Vec<Entry>, HashMap<String, String>)> {
    let st = safetensors::SafeTensors::deserialize(b).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(b).ok()?;
    let mut entries: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| Entry {
            name,
            dtype: "F32",
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if st
        .tensors()
        .iter()
        .any(|(_, v)| v.dtype() != safetensors::Dtype::F32)
    {
        return None;
    }
    Some((entries, meta.metadata().clone().unwrap_or_default()))
}

/// Header JSON with offsets that match the data, then the data.
fn write_entries(entries: &[Entry], meta: &HashMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !meta.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(meta));
    }
    let mut offset = 0;
    for e in entries {
        header.insert(
            e.name.clone(),
            serde_json::json!({"dtype": e.dtype, "shape": e.shape,
                               "data_offsets": [offset, offset + e.data.len()]}),
        );
        offset += e.data.len();
    }
    let text = serde_json::Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    for e in entries {
        out.extend_from_slice(&e.data);
    }
    out
}

/// A random small config, often invalid on purpose (first multiplier 2, heads that do not
/// divide), so that both validation and the forward pass of what passes are exercised.
fn random_config(rng: &mut Rng) -> UNetConfig {
    let levels = 1 + below(rng, 3);
    let mut mults: Vec<usize> = (0..levels).map(|_| 1 + below(rng, 3)).collect();
    if !one_in(rng, 4) {
        mults[0] = 1;
    }
    UNetConfig {
        in_ch: 1 + below(rng, 2),
        base_ch: 1 + below(rng, 12),
        channel_mults: mults,
        time_dim: 1 + below(rng, 9),
        attn_levels: (0..levels).filter(|_| one_in(rng, 2)).collect(),
        num_heads: 1 + below(rng, 4),
    }
}

/// A numeric component of a dotted name changed: shifted, zero-padded or made huge.
fn renumber(name: &str, rng: &mut Rng) -> String {
    let mut parts: Vec<String> = name.split('.').map(str::to_string).collect();
    let numeric: Vec<usize> = (0..parts.len())
        .filter(|&i| parts[i].parse::<usize>().is_ok())
        .collect();
    if numeric.is_empty() {
        return format!("{name}.0");
    }
    let i = *pick(rng, &numeric);
    let v: usize = parts[i].parse().unwrap();
    parts[i] = match below(rng, 4) {
        0 => (v + 1).to_string(),
        1 => v.saturating_sub(1).to_string(),
        2 => format!("0{v}"),
        _ => pick(rng, NUMBERS).to_string(),
    };
    parts.join(".")
}

/// Special values a weight may be set to.
const VALUES: &[f32] = &[
    3e38,
    -3e38,
    f32::NAN,
    f32::INFINITY,
    1e4,
    -1.0001e4,
    1e5,
    -0.0,
    1e-45,
    65504.0,
];

/// One structural edit of a weights file, written back with consistent offsets.
fn weights_structural(seed: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let (mut entries, mut meta) = read_entries(seed)?;
    if one_in(rng, 8) {
        let cfg = random_config(rng);
        let bytes = serialize(&synthetic(&cfg, rng.next_u64()), config_metadata(&cfg)).ok()?;
        return Some(bytes);
    }
    let k = below(rng, entries.len());
    match below(rng, 8) {
        0 => {
            // One dimension changed; the data follows when small, else it becomes a
            // zero-element tensor with huge dimensions.
            let e = &mut entries[k];
            let d = below(rng, e.shape.len() + 1);
            let v = *pick(
                rng,
                &[0usize, 1, 2, 3, 5, 8, 16, 64, 1 << 20, 1 << 40, usize::MAX],
            );
            if d == e.shape.len() {
                e.shape.push(v);
            } else {
                e.shape[d] = v;
            }
            match e.shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x)) {
                Some(n) if n <= 1 << 16 => e.data.resize(4 * n, 0),
                _ => {
                    e.shape.insert(0, 0);
                    e.data.clear();
                }
            }
        }
        1 => entries[k].name = renumber(&entries[k].name, rng),
        2 => {
            entries.remove(k);
        }
        3 => {
            let mut copy = entries[k].clone();
            copy.name = renumber(&copy.name, rng);
            entries.push(copy);
        }
        4 => {
            let e = &mut entries[k];
            if e.data.len() >= 4 {
                let i = below(rng, e.data.len() / 4);
                e.data[4 * i..4 * i + 4].copy_from_slice(&pick(rng, VALUES).to_le_bytes());
            }
        }
        5 => {
            let e = &mut entries[k];
            e.dtype = *pick(rng, &["F16", "BF16", "F64", "I32", "U8"]);
            let n: usize = e.shape.iter().product();
            e.data.resize(n * dtype_size(e.dtype), 0);
        }
        6 => {
            let heads = pick(
                rng,
                &[
                    "0",
                    "1",
                    "2",
                    "3",
                    "4",
                    "8",
                    "x",
                    "-1",
                    "18446744073709551616",
                    " 2 ",
                ],
            );
            meta.insert("num_heads".into(), heads.to_string());
        }
        _ => {
            // Names that collide: one tensor given another's name.
            let other = entries[below(rng, entries.len())].name.clone();
            entries[k].name = other;
        }
    }
    Some(write_entries(&entries, &meta))
}

const SAFETENSORS_TOKENS: &[(&str, &str)] = &[
    ("F32", "F16"),
    ("F32", "I64"),
    ("shape", "shapes"),
    ("data_offsets", "offsets"),
    ("upsamples.1", "upsamples.01"),
    ("upsamples.1", "upsamples.0"),
    ("down_blocks.1", "down_blocks.2"),
    (".weight", ".bias"),
    ("[", "[0,"),
    ("num_heads", "num_head"),
    ("{", "{\"a\":1,"),
];

/// The JSON header edited as text, its length field rewritten to match.
fn weights_header_edit(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let end = 8usize.checked_add(n)?;
    let text = std::str::from_utf8(b.get(8..end)?).ok()?;
    let new = text_edit(text, SAFETENSORS_TOKENS, rng);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&b[end..]);
    Some(out)
}

fn mutate_weights(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + below(rng, 2) {
        match below(rng, 5) {
            0 | 1 => b = weights_structural(&b, rng).unwrap_or(b),
            2 => b = weights_header_edit(&b, rng).unwrap_or(b),
            3 if b.len() >= 8 => b[..8].copy_from_slice(&pick(rng, SIZES).to_le_bytes()),
            _ => byte_edit(&mut b, seeds, rng),
        }
    }
    b
}

fn weights_seeds() -> Vec<Vec<u8>> {
    let configs = [
        UNetConfig {
            in_ch: 1,
            base_ch: 8,
            channel_mults: vec![1, 2],
            time_dim: 8,
            attn_levels: vec![1],
            num_heads: 2,
        },
        UNetConfig {
            in_ch: 1,
            base_ch: 4,
            channel_mults: vec![1],
            time_dim: 5,
            attn_levels: vec![0],
            num_heads: 1,
        },
        UNetConfig {
            in_ch: 2,
            base_ch: 6,
            channel_mults: vec![1, 1, 2],
            time_dim: 3,
            attn_levels: vec![],
            num_heads: 3,
        },
    ];
    let mut seeds: Vec<Vec<u8>> = configs
        .iter()
        .map(|c| serialize(&synthetic(c, 7), config_metadata(c)).unwrap())
        .collect();
    // The first again with its upsamples numbered from 0 and no metadata.
    let mut p = synthetic(&configs[0], 8);
    for suffix in ["weight", "bias"] {
        let t = p.remove(&format!("upsamples.1.conv.{suffix}")).unwrap();
        p.insert(format!("upsamples.0.conv.{suffix}"), t);
    }
    let meta = HashMap::from([("num_heads".to_string(), "2".to_string())]);
    seeds.push(serialize(&p, meta).unwrap());
    seeds
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
