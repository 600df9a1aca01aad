//! Seeds and mutators for the image readers: .npy and PNG.

use crate::mutations::{below, byte_edit, one_in, pick, text_edit, SIZES};
use diffrecon::io::npy::encode_npy;
use diffrecon::io::png::write_png_gray;
use diffrecon::rng::Rng;
use diffrecon::tensor::Tensor;

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

pub(crate) fn npy_seeds() -> Vec<Vec<u8>> {
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

pub(crate) fn mutate_npy(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
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
pub(crate) fn fix_png_crcs(b: &mut [u8]) {
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

pub(crate) fn png_seeds() -> Vec<Vec<u8>> {
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

pub(crate) fn mutate_png(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
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
