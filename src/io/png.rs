//! PNG read (any colour type, reduced to one gray channel in [0, 1]) and grayscale write.

use std::io::Cursor;
use std::path::Path;

use ::png::{BitDepth, ColorType, Decoder, Encoder, Limits, Transformations};

use crate::bail;
use crate::error::{io_error, Error, Result};
use crate::tensor::Tensor;

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Largest width or height read (the PNG format allows 2^31 - 1).
pub const MAX_SIDE: u32 = 1 << 16;
/// Largest pixel count read: 2^27 (a 16384 × 8192 image; 512 MiB as float32).
pub const MAX_PIXELS: u64 = 1 << 27;
/// Largest decoder allocation: the decoded frame (at most 8 bytes a pixel, RGBA16) and the
/// metadata chunks, so a hostile header or a compressed text chunk cannot ask for terabytes.
const MAX_DECODED_BYTES: usize = 8 * MAX_PIXELS as usize;

/// Read a PNG as (1, 1, H, W) pixel values p in [0, 1] (v / 255 or v / 65535).
pub fn read_png(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    decode_png(&bytes).map_err(|e| e.context(path.display()))
}

/// Write `pixels01` (h·w values, row-major) as a grayscale PNG of 8 or 16 bits; values are clamped
/// to [0, 1] and rounded to the nearest level.
pub fn write_png_gray(
    path: &Path,
    pixels01: &[f32],
    h: usize,
    w: usize,
    bit_depth: u8,
) -> Result<()> {
    let max = match bit_depth {
        8 => 255.0,
        16 => 65535.0,
        d => {
            return Err(Error::internal(format!(
                "PNG bit depth {d} requested; use 8 or 16"
            )))
        }
    };
    if pixels01.len() != h * w {
        return Err(Error::internal(format!(
            "{} pixels given for a {h}x{w} PNG",
            pixels01.len()
        )));
    }
    let levels = pixels01
        .iter()
        .map(|&p| (p.clamp(0.0, 1.0) * max).round() as u16);
    let raw: Vec<u8> = if bit_depth == 8 {
        levels.map(|v| v as u8).collect()
    } else {
        levels.flat_map(u16::to_be_bytes).collect()
    };
    write_png_raw(path, &raw, h, w, bit_depth)
}

/// Write already-quantised grayscale samples (big-endian for 16 bits).
pub(crate) fn write_png_raw(
    path: &Path,
    raw: &[u8],
    h: usize,
    w: usize,
    bit_depth: u8,
) -> Result<()> {
    let (Ok(wu), Ok(hu)) = (u32::try_from(w), u32::try_from(h)) else {
        bail!(
            "{}: image of {h}x{w} pixels is too large for PNG",
            path.display()
        );
    };
    if h == 0 || w == 0 {
        bail!("{}: cannot write an empty {h}x{w} image", path.display());
    }
    let file = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
    let mut enc = Encoder::new(std::io::BufWriter::new(file), wu, hu);
    enc.set_color(ColorType::Grayscale);
    enc.set_depth(if bit_depth == 16 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    });
    let written = enc
        .write_header()
        .and_then(|mut wr| wr.write_image_data(raw).and_then(|_| wr.finish()));
    written.map_err(|e| match e {
        ::png::EncodingError::IoError(e) => io_error(path, e),
        e => Error::input(format!("cannot write '{}': {e}", path.display())),
    })
}

/// Decode PNG bytes; errors carry no file name (the caller adds it).
pub fn decode_png(bytes: &[u8]) -> Result<Tensor> {
    if !bytes.starts_with(SIGNATURE) {
        bail!("not a PNG file (the PNG signature is missing); expected a .png image");
    }
    let bad = |e: ::png::DecodingError| match e {
        ::png::DecodingError::LimitsExceeded => Error::input(format!(
            "PNG needs more than {MAX_DECODED_BYTES} bytes to decode; it is too large or corrupt"
        )),
        e => Error::input(format!(
            "cannot decode PNG ({e}); the file is truncated or corrupt"
        )),
    };
    check_palettes(bytes)?;
    let mut decoder = Decoder::new_with_limits(
        Cursor::new(bytes),
        Limits {
            bytes: MAX_DECODED_BYTES,
        },
    );
    // The dimensions are checked from the header alone, before anything is sized from them.
    let (w, h) = decoder.read_header_info().map_err(bad)?.size();
    if w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > MAX_PIXELS {
        bail!(
            "PNG of {w}x{h} pixels is too large (at most {MAX_SIDE} a side and {MAX_PIXELS} \
             pixels are read)"
        );
    }
    // EXPAND: palettes to RGB(A), 1/2/4-bit gray scaled to 8 bits, tRNS to an alpha channel.
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader.output_buffer_size();
    if size > MAX_DECODED_BYTES {
        let (w, h) = reader.info().size();
        bail!("PNG of {w}x{h} pixels is too large (over {MAX_DECODED_BYTES} bytes decoded)");
    }
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (h, w) = (info.height as usize, info.width as usize);
    let data = to_gray01(&buf, info.color_type, info.bit_depth, info.line_size, h, w)?;
    Tensor::new(vec![1, 1, h, w], data)
}

/// Every PLTE chunk must hold 1 to 256 RGB entries. The png crate (0.17) trusts the length
/// and panics expanding a palette of 1 or 2 trailing bytes or of more than 256 entries (found
/// by tests/fuzz/), so such files are refused before decoding. Other chunk errors are left
/// to the decoder.
fn check_palettes(bytes: &[u8]) -> Result<()> {
    let mut at = SIGNATURE.len();
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if &head[4..8] == b"PLTE" && (len == 0 || !len.is_multiple_of(3) || len > 3 * 256) {
            bail!(
                "corrupt PNG: its palette (PLTE) is {len} bytes, not 1 to 256 RGB entries of 3 bytes"
            );
        }
        match at.checked_add(12).and_then(|a| a.checked_add(len)) {
            Some(next) if &head[4..8] != b"IEND" => at = next,
            _ => break,
        }
    }
    Ok(())
}

/// One gray value in [0, 1] per pixel: alpha dropped, RGB reduced to PIL's 'L' luma.
fn to_gray01(
    buf: &[u8],
    color: ColorType,
    depth: BitDepth,
    line_size: usize,
    h: usize,
    w: usize,
) -> Result<Vec<f32>> {
    let channels = match color {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => bail!("PNG palette was not expanded"),
    };
    let (bytes_per_sample, max) = match depth {
        BitDepth::Eight => (1, 255.0f32),
        BitDepth::Sixteen => (2, 65535.0f32),
        d => bail!("PNG bit depth {d:?} was not expanded to 8 bits"),
    };
    let sample = |px: &[u8], c: usize| -> u64 {
        let o = c * bytes_per_sample;
        if bytes_per_sample == 1 {
            px[o] as u64
        } else {
            u16::from_be_bytes([px[o], px[o + 1]]) as u64
        }
    };
    let mut out = Vec::with_capacity(h * w);
    for row in buf.chunks(line_size.max(1)).take(h) {
        for px in row.chunks_exact(channels * bytes_per_sample).take(w) {
            let v = if channels >= 3 {
                luma(sample(px, 0), sample(px, 1), sample(px, 2))
            } else {
                sample(px, 0)
            };
            out.push(v as f32 / max);
        }
    }
    Ok(out)
}

/// PIL's RGB -> 'L' conversion (ITU-R 601-2 weights in 16-bit fixed point, rounded).
fn luma(r: u64, g: u64, b: u64) -> u64 {
    (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let d =
                std::env::temp_dir().join(format!("diffrecon_png_{tag}_{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Encode raw samples with the png crate directly, for colour types we never write.
    fn encode(
        path: &Path,
        w: u32,
        h: u32,
        color: ColorType,
        depth: BitDepth,
        raw: &[u8],
        palette: Option<&[u8]>,
    ) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = Encoder::new(file, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p.to_vec());
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(raw).unwrap();
        wr.finish().unwrap();
    }

    #[test]
    fn gray8_and_gray16_round_trip_exactly() {
        let d = TempDir::new("rt");
        let px: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        for (depth, max) in [(8u8, 255.0f32), (16, 65535.0)] {
            let path = d.0.join(format!("g{depth}.png"));
            write_png_gray(&path, &px, 3, 4, depth).unwrap();
            let t = read_png(&path).unwrap();
            assert_eq!(t.shape(), &[1, 1, 3, 4]);
            for (a, b) in t.data().iter().zip(&px) {
                assert_eq!(*a, (b * max).round() / max);
            }
        }
    }

    #[test]
    fn write_clamps_out_of_range_values() {
        let d = TempDir::new("clamp");
        let path = d.0.join("c.png");
        write_png_gray(&path, &[-0.5, 1.7, 0.5], 1, 3, 8).unwrap();
        assert_eq!(read_png(&path).unwrap().data(), &[0.0, 1.0, 128.0 / 255.0]);
    }

    #[test]
    fn rgb_uses_pil_luma_and_alpha_is_dropped() {
        let d = TempDir::new("rgb");
        let path = d.0.join("rgb.png");
        // PIL: Image.new('RGB', ...) .convert('L') gives 76, 150, 29, 255 for R, G, B, white.
        let raw = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        encode(&path, 4, 1, ColorType::Rgb, BitDepth::Eight, &raw, None);
        let want: Vec<f32> = [76.0, 150.0, 29.0, 255.0]
            .iter()
            .map(|v| v / 255.0)
            .collect();
        assert_eq!(read_png(&path).unwrap().data(), &want[..]);
        let raw = [255, 0, 0, 7, 0, 255, 0, 0];
        encode(&path, 2, 1, ColorType::Rgba, BitDepth::Eight, &raw, None);
        assert_eq!(read_png(&path).unwrap().data(), &want[..2]);
        encode(
            &path,
            2,
            1,
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            &[9, 0, 200, 99],
            None,
        );
        assert_eq!(
            read_png(&path).unwrap().data(),
            &[9.0 / 255.0, 200.0 / 255.0]
        );
    }

    #[test]
    fn rgb16_uses_the_same_weights_on_16_bit_values() {
        let d = TempDir::new("rgb16");
        let path = d.0.join("rgb16.png");
        let (r, g, b) = (1000u16, 40000u16, 65535u16);
        let raw: Vec<u8> = [r, g, b].iter().flat_map(|v| v.to_be_bytes()).collect();
        encode(&path, 1, 1, ColorType::Rgb, BitDepth::Sixteen, &raw, None);
        let want = luma(r as u64, g as u64, b as u64);
        assert_eq!(
            want,
            (1000 * 19595 + 40000 * 38470 + 65535 * 7471 + 32768) >> 16
        );
        assert_eq!(read_png(&path).unwrap().data(), &[want as f32 / 65535.0]);
    }

    #[test]
    fn palette_and_low_bit_gray_are_expanded() {
        let d = TempDir::new("pal");
        let path = d.0.join("p.png");
        let palette = [0, 0, 0, 255, 255, 255, 255, 0, 0];
        // 2-bit indices 2, 1, 0 packed MSB-first.
        encode(
            &path,
            3,
            1,
            ColorType::Indexed,
            BitDepth::Two,
            &[0b1001_0000],
            Some(&palette),
        );
        assert_eq!(read_png(&path).unwrap().data(), &[76.0 / 255.0, 1.0, 0.0]);
        encode(
            &path,
            4,
            1,
            ColorType::Grayscale,
            BitDepth::One,
            &[0b1010_0000],
            None,
        );
        assert_eq!(read_png(&path).unwrap().data(), &[1.0, 0.0, 1.0, 0.0]);
        encode(
            &path,
            2,
            1,
            ColorType::Grayscale,
            BitDepth::Four,
            &[0x5F],
            None,
        );
        assert_eq!(read_png(&path).unwrap().data(), &[85.0 / 255.0, 1.0]);
    }

    #[test]
    fn bad_files_are_input_errors_naming_the_file() {
        let d = TempDir::new("bad");
        let good = d.0.join("good.png");
        write_png_gray(&good, &[0.25; 64 * 64], 64, 64, 16).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cases: [(&str, Vec<u8>); 3] = [
            ("text.png", b"hello, not an image".to_vec()),
            ("cut.png", bytes[..bytes.len() / 2].to_vec()),
            ("sig.png", bytes[..8].to_vec()),
        ];
        for (name, content) in cases {
            let path = d.0.join(name);
            std::fs::write(&path, content).unwrap();
            match read_png(&path) {
                Err(Error::Input(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            read_png(&d.0.join("none.png")),
            Err(Error::Input(_))
        ));
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let d = TempDir::new("flip");
        let good = d.0.join("good.png");
        write_png_gray(&good, &[0.5; 16], 4, 4, 8).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let mut rng = crate::rng::Rng::new(3);
        // Only the 12-byte IEND trailer may be missing.
        for n in 0..bytes.len() - 12 {
            assert!(decode_png(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        for _ in 0..2000 {
            let mut bad = bytes.clone();
            let i = (rng.next_u64() % bad.len() as u64) as usize;
            bad[i] = rng.next_u64() as u8;
            if let Ok(t) = decode_png(&bad) {
                assert!(t.data().iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }

    #[test]
    fn invalid_write_requests_fail() {
        let d = TempDir::new("wr");
        assert!(write_png_gray(&d.0.join("a.png"), &[0.0; 4], 2, 2, 4).is_err());
        assert!(write_png_gray(&d.0.join("a.png"), &[0.0; 3], 2, 2, 8).is_err());
        assert!(write_png_gray(&d.0.join("no/dir/a.png"), &[0.0; 4], 2, 2, 8).is_err());
    }

    /// CRC-32 (IEEE) as PNG chunks use it, so hand-made headers pass the decoder's check.
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

    /// A PNG signature and an IHDR chunk (8-bit RGBA) declaring `w` × `h`, then nothing.
    fn header_only(w: u32, h: u32) -> Vec<u8> {
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&w.to_be_bytes());
        chunk.extend_from_slice(&h.to_be_bytes());
        chunk.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        out
    }

    #[test]
    fn huge_dimensions_are_refused_from_the_header() {
        for (w, h) in [
            (MAX_SIDE + 1, 1),
            (1, 0x7fff_ffff),
            (0x7fff_ffff, 0x7fff_ffff),
            (16384, 16384),
        ] {
            match decode_png(&header_only(w, h)) {
                Err(Error::Input(m)) => {
                    assert!(m.contains(&format!("{w}x{h} pixels is too large")), "{m}")
                }
                other => panic!("{w}x{h}: {other:?}"),
            }
        }
        // Within the caps the same header is merely truncated.
        match decode_png(&header_only(16, 16)) {
            Err(Error::Input(m)) => assert!(m.contains("truncated"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// `png` with its (first) PLTE chunk's data replaced by `plte` and the CRC recomputed.
    fn with_palette(png: &[u8], plte: &[u8]) -> Vec<u8> {
        let at = png.windows(4).position(|w| w == b"PLTE").unwrap() - 4;
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let mut chunk = b"PLTE".to_vec();
        chunk.extend_from_slice(plte);
        let mut out = png[..at].to_vec();
        out.extend_from_slice(&(plte.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        out.extend_from_slice(&png[at + 12 + len..]);
        out
    }

    #[test]
    fn palettes_of_odd_length_or_over_256_entries_are_refused() {
        // The input tests/fuzz/ found: a 2-bit indexed image whose PLTE holds one byte.
        let found: [u8; 72] = [
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
            0x44, 0x52, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x02, 0x03, 0x00, 0x00,
            0x00, 0xe0, 0x1a, 0x8e, 0x89, 0x00, 0x00, 0x00, 0x01, 0x50, 0x4c, 0x54, 0x45, 0x00,
            0xc9, 0x48, 0xe2, 0x7f, 0x00, 0x00, 0x00, 0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0x01,
            0x01, 0x04, 0x00, 0xfb, 0xff, 0x00, 0x90, 0x00, 0x60, 0x02, 0x14, 0x00, 0xf1, 0x18,
            0x21, 0x5b,
        ];
        let d = TempDir::new("plte");
        let path = d.0.join("p.png");
        let palette: Vec<u8> = (0..9).collect();
        encode(
            &path,
            3,
            2,
            ColorType::Indexed,
            BitDepth::Two,
            &[0b1001_0000, 0b0110_0000],
            Some(&palette),
        );
        let good = std::fs::read(&path).unwrap();
        assert!(decode_png(&good).is_ok());
        let too_many: Vec<u8> = (0..3 * 257).map(|i| i as u8).collect();
        for (what, bytes, len) in [
            ("found", found.to_vec(), 1),
            ("two bytes", with_palette(&good, &[1, 2]), 2),
            ("257 entries", with_palette(&good, &too_many), 771),
            ("empty", with_palette(&good, &[]), 0),
        ] {
            match decode_png(&bytes) {
                Err(Error::Input(m)) => {
                    assert!(
                        m.contains(&format!("palette (PLTE) is {len} bytes")),
                        "{what}: {m}"
                    )
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // 256 entries is the most a palette may hold, and fine.
        let full: Vec<u8> = (0..3 * 256).map(|i| i as u8).collect();
        assert!(decode_png(&with_palette(&good, &full)).is_ok());
    }
}
