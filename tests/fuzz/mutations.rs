//! Structure-blind mutations: byte edits and header-text edits, with the hostile numbers
//! and sizes they write.

use diffrecon::rng::Rng;

/// Numbers a hostile header might hold, as text.
pub(crate) const NUMBERS: &[&str] = &[
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
pub(crate) const SIZES: &[u64] = &[
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

pub(crate) fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

/// True once in `n` draws on average.
pub(crate) fn one_in(rng: &mut Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

pub(crate) fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One structure-blind edit: bit flip, byte set, truncation, deletion, insertion, a size
/// written over some bytes, or a splice with another seed.
pub(crate) fn byte_edit(b: &mut Vec<u8>, seeds: &[Vec<u8>], rng: &mut Rng) {
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
pub(crate) fn text_edit(text: &str, tokens: &[(&str, &str)], rng: &mut Rng) -> String {
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
