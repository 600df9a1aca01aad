//! NumPy `.npy` files: read versions 1.0/2.0/3.0 with little-endian f4/f8 data in C order; write
//! version 1.0 '<f4' byte-identical to `numpy.save`. Parsing never panics on arbitrary bytes.

use std::path::Path;

use crate::bail;
use crate::error::{io_error, Result};
use crate::tensor::Tensor;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy aligns the data section to this many bytes.
const ALIGN: usize = 64;
/// numpy leaves room after the header so the leading axis can grow in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const EXPECTED: &str = "expected a NumPy .npy file of little-endian float32 ('<f4') or float64 \
                        ('<f8') in C order, as written by numpy.save";

/// Largest header accepted. numpy writes a few hundred bytes (ours grows by 3 per dimension);
/// a hostile v2/v3 length field could otherwise claim 4 GiB.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest data section accepted (4 GiB: 1G float32 or 512M float64 values).
pub const MAX_DATA_BYTES: usize = 1 << 32;

/// Read a `.npy` file into a tensor; errors name the file. The header is read and the size it
/// declares checked against the file's length before the data is read.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    use std::io::Read;
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut prefix = Vec::new();
    file.take((12 + MAX_HEADER_BYTES) as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| io_error(path, e))?;
    let (header, rest) = split_header(&prefix, &name)?;
    let data_start = prefix.len() - rest.len();
    let (dtype, shape) = parse_header(header, &name)?;
    let on_disk = usize::try_from(file_len.saturating_sub(data_start as u64)).unwrap_or(usize::MAX);
    check_data_size(on_disk, dtype, &shape, &name)?;
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_npy(&bytes, &name)
}

/// Write `t` as a '<f4' C-order `.npy` file (version 1.0 unless the header needs 2.0).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, encode_npy(t)).map_err(|e| io_error(path, e))
}

/// Parse the bytes of a `.npy` file; `name` is used in error messages.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Tensor> {
    let (header, data) = split_header(bytes, name)?;
    let (dtype, shape) = parse_header(header, name)?;
    check_data_size(data.len(), dtype, &shape, name)?;
    let values = decode(data, dtype, name)?;
    Tensor::new(shape, values).map_err(|e| e.context(name))
}

/// The shape must declare at most MAX_DATA_BYTES, and the data section hold exactly that.
fn check_data_size(held: usize, dtype: Dtype, shape: &[usize], name: &str) -> Result<()> {
    let needed = element_count(shape, name)?.checked_mul(dtype.size());
    if let Some(n) = needed.filter(|&n| n > MAX_DATA_BYTES) {
        bail!(
            "{name}: shape {} of {} declares {n} bytes; at most {MAX_DATA_BYTES} are supported",
            shape_repr(shape),
            dtype.descr()
        );
    }
    if needed != Some(held) {
        let needs = needed.map_or("more than addressable".to_string(), |n| n.to_string());
        bail!(
            "{name}: data section holds {held} bytes but shape {} of {} needs {needs}; the file is \
             truncated or has trailing bytes",
            shape_repr(shape),
            dtype.descr()
        );
    }
    Ok(())
}

/// Encode `t` exactly as `numpy.save` would encode a float32 C-order array of its shape.
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        shape_repr(t.shape())
    );
    if let Some(first) = t.shape().first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let header = wrap_header(&dict);
    let mut out = Vec::with_capacity(header.len() + 4 * t.len());
    out.extend_from_slice(&header);
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Magic, version, length and the dict padded with spaces and a newline so the data starts on
/// an ALIGN boundary; version 2.0 only when the length does not fit 1.0's u16 (as numpy does).
fn wrap_header(dict: &str) -> Vec<u8> {
    let padded = |prefix: usize| dict.len() + 1 + ALIGN - (prefix + dict.len() + 1) % ALIGN;
    let mut out = MAGIC.to_vec();
    if padded(10) <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(padded(10) as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(padded(12) as u32).to_le_bytes());
    }
    let prefix = out.len();
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padded(prefix) - dict.len() - 1));
    out.push(b'\n');
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F4,
    F8,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F8 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            Dtype::F4 => "<f4",
            Dtype::F8 => "<f8",
        }
    }
}

/// Python's tuple repr: `()`, `(3,)`, `(1, 1, 64, 64)`.
fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Check the magic and version; return (header text, data section).
fn split_header<'a>(bytes: &'a [u8], name: &str) -> Result<(&'a str, &'a [u8])> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        bail!("{name}: not a .npy file (it does not start with the magic \\x93NUMPY); {EXPECTED}");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => bail!("{name}: .npy format version {major}.{minor} is not supported; expected 1.0, 2.0 or 3.0"),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        bail!("{name}: file ends inside the .npy header length field; the file is truncated");
    }
    let mut len = [0u8; 4];
    len[..len_bytes].copy_from_slice(&bytes[8..start]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_HEADER_BYTES {
        bail!(
            "{name}: the .npy header claims {header_len} bytes; at most {MAX_HEADER_BYTES} are \
             supported (numpy writes a few hundred)"
        );
    }
    let Some(header) = bytes.get(start..start.saturating_add(header_len)) else {
        bail!(
            "{name}: the .npy header claims {header_len} bytes but only {} follow; the file is \
             truncated",
            bytes.len() - start
        );
    };
    let Ok(text) = std::str::from_utf8(header) else {
        bail!("{name}: the .npy header is not ASCII/UTF-8 text; {EXPECTED}");
    };
    Ok((text, &bytes[start + header_len..]))
}

/// Interpret the header dictionary: dtype, fortran_order and shape.
fn parse_header(text: &str, name: &str) -> Result<(Dtype, Vec<usize>)> {
    let malformed = |why: &str| {
        crate::error::Error::input(format!(
            "{name}: malformed .npy header ({why}): {:?}; expected a dict like \
             {{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 64, 64), }}",
            truncate(text.trim(), 200)
        ))
    };
    let mut p = Parser::new(text);
    let Some(Lit::Dict(entries)) = p.value() else {
        return Err(malformed("not a Python dict literal"));
    };
    if !p.at_end() {
        return Err(malformed("text after the dict"));
    }
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.as_str(),
        Some(_) => bail!("{name}: structured or non-string dtype in .npy header; {EXPECTED}"),
        None => return Err(malformed("no 'descr' key")),
    };
    let dtype = parse_descr(descr, name)?;
    match get("fortran_order") {
        Some(Lit::Bool(false)) => {}
        Some(Lit::Bool(true)) => bail!(
            "{name}: array is stored in Fortran order; re-save it in C order \
             (numpy.save(path, numpy.ascontiguousarray(a)))"
        ),
        _ => return Err(malformed("'fortran_order' missing or not True/False")),
    }
    let dims = match get("shape") {
        Some(Lit::Tuple(items)) => items.iter().map(|d| match d {
            Lit::Int(n) => Some(*n),
            _ => None,
        }),
        _ => return Err(malformed("'shape' missing or not a tuple")),
    };
    let Some(shape) = dims.collect::<Option<Vec<usize>>>() else {
        return Err(malformed(
            "'shape' holds something other than non-negative integers",
        ));
    };
    Ok((dtype, shape))
}

fn parse_descr(descr: &str, name: &str) -> Result<Dtype> {
    match descr {
        "<f4" => Ok(Dtype::F4),
        "<f8" => Ok(Dtype::F8),
        d if d.starts_with('>') => {
            bail!("{name}: dtype '{d}' is big-endian; {EXPECTED} (convert with a.astype('<f4'))")
        }
        d => {
            bail!("{name}: dtype '{d}' is not supported; {EXPECTED} (convert with a.astype('<f4'))")
        }
    }
}

fn element_count(shape: &[usize], name: &str) -> Result<usize> {
    match shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) => Ok(n),
        None => bail!("{name}: shape {} has too many elements", shape_repr(shape)),
    }
}

/// The values as f32; every one must be finite, and float64 values must fit float32.
fn decode(data: &[u8], dtype: Dtype, name: &str) -> Result<Vec<f32>> {
    let values: Vec<f32> = match dtype {
        Dtype::F4 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F8 => {
            let wide = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")));
            let mut out = Vec::with_capacity(data.len() / 8);
            for (i, v) in wide.enumerate() {
                if v.is_finite() && v.abs() > f32::MAX as f64 {
                    bail!("{name}: value {v:e} at flat index {i} is beyond float32's range");
                }
                out.push(v as f32);
            }
            out
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{name}: contains a non-finite value ({}) at flat index {i}; arrays must be finite",
            values[i]
        );
    }
    Ok(values)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The subset of Python literals that .npy headers use.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<Lit>),
    Dict(Vec<(String, Lit)>),
    /// Lists appear in structured dtypes, which we reject later with a clear message.
    List,
}

/// A tiny recursive-descent parser; depth is bounded so hostile headers cannot overflow the stack.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        }
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.i == self.s.len()
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn value(&mut self) -> Option<Lit> {
        if self.depth > 16 {
            return None;
        }
        self.depth += 1;
        let v = match self.peek()? {
            b'{' => self.dict(),
            b'(' => self.tuple(),
            b'[' => self.list(),
            b'\'' | b'"' => self.string().map(Lit::Str),
            b'0'..=b'9' => self.int().map(Lit::Int),
            _ => self.word(),
        };
        self.depth -= 1;
        v
    }

    /// Comma-separated items up to `close`, allowing a trailing comma.
    fn items<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(item(self)?);
            if !self.eat(b',') {
                return self.eat(close).then_some(out);
            }
        }
    }

    fn dict(&mut self) -> Option<Lit> {
        self.i += 1;
        let entries = self.items(b'}', |p| {
            let key = p.string()?;
            p.eat(b':').then_some(())?;
            Some((key, p.value()?))
        })?;
        Some(Lit::Dict(entries))
    }

    fn tuple(&mut self) -> Option<Lit> {
        self.i += 1;
        Some(Lit::Tuple(self.items(b')', |p| p.value())?))
    }

    fn list(&mut self) -> Option<Lit> {
        self.i += 1;
        self.items(b']', |p| p.value())?;
        Some(Lit::List)
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|&q| q == b'\'' || q == b'"')?;
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == quote)?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }

    fn int(&mut self) -> Option<usize> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // Python 2 era files may write long integers as `64L`.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        text.parse().ok()
    }

    fn word(&mut self) -> Option<Lit> {
        let rest = &self.s[self.i..];
        for (w, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if rest.starts_with(w) {
                self.i += w.len();
                return Some(Lit::Bool(v));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::rng::Rng;

    fn sample(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|i| i as f32 * 0.5 - 3.0).collect(),
        )
        .unwrap()
    }

    /// A header as numpy would write it for arbitrary dict text (for dtype/order variants).
    fn with_header(dict: &str, data: &[u8], major: u8) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[major, 0]);
        let text = format!("{dict}\n");
        if major == 1 {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn input_msg(r: Result<Tensor>) -> String {
        match r {
            Err(Error::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn header_is_byte_identical_to_numpy() {
        // Prefix of numpy.save(np.zeros((1, 1, 64, 64), np.float32)), numpy 2.4.
        let bytes = encode_npy(&Tensor::zeros(&[1, 1, 64, 64]));
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 64, 64), }";
        let mut want = b"\x93NUMPY\x01\x00v\x00".to_vec();
        want.extend_from_slice(dict.as_bytes());
        want.extend(std::iter::repeat_n(b' ', 128 - 10 - dict.len() - 1));
        want.push(b'\n');
        assert_eq!(&bytes[..128], &want[..]);
        assert_eq!(bytes.len(), 128 + 4 * 64 * 64);
    }

    #[test]
    fn header_is_padded_to_64_for_every_rank() {
        for shape in [&[][..], &[3], &[7, 5], &[2, 1, 3, 4], &[1000000, 2]] {
            let bytes = encode_npy(&sample(shape));
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0, "shape {shape:?}");
            assert_eq!(bytes[10 + hlen - 1], b'\n');
        }
    }

    #[test]
    fn huge_headers_switch_to_version_2_like_numpy() {
        let t = sample(&[1; 25_000]);
        let bytes = encode_npy(&t);
        assert_eq!(&bytes[6..8], &[2, 0]);
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!((12 + hlen) % 64, 0);
        assert_eq!(parse_npy(&bytes, "big.npy").unwrap(), t);
    }

    #[test]
    fn round_trips_any_rank() {
        for shape in [&[][..], &[5], &[2, 3], &[2, 1, 3, 4], &[0, 4]] {
            let t = sample(shape);
            assert_eq!(parse_npy(&encode_npy(&t), "x.npy").unwrap(), t);
        }
    }

    #[test]
    fn reads_f8_and_versions_2_and_3() {
        let data: Vec<u8> = [1.5f64, -2.25, 1e-3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for major in [1, 2, 3] {
            let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
            let t = parse_npy(&with_header(dict, &data, major), "a.npy").unwrap();
            assert_eq!(t.shape(), &[3]);
            assert_eq!(t.data(), &[1.5, -2.25, 1e-3f64 as f32]);
        }
    }

    #[test]
    fn accepts_double_quotes_and_key_order() {
        let data = 7.0f32.to_le_bytes();
        let dict = "{\"shape\": (1, 1), \"fortran_order\": False, \"descr\": \"<f4\"}";
        let t = parse_npy(&with_header(dict, &data, 1), "a.npy").unwrap();
        assert_eq!((t.shape(), t.data()), (&[1usize, 1][..], &[7.0f32][..]));
    }

    #[test]
    fn rejects_unsupported_dtypes_and_orders_with_reasons() {
        let data = [0u8; 16];
        let cases = [
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }",
                "big-endian",
            ),
            (
                "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }",
                "'<i4'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                "Fortran order",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }",
                "structured",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, -1), }",
                "malformed",
            ),
            ("{'descr': '<f4', 'shape': (4,), }", "fortran_order"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4,) ",
                "malformed",
            ),
        ];
        for (dict, want) in cases {
            let msg = input_msg(parse_npy(&with_header(dict, &data, 1), "bad.npy"));
            assert!(msg.starts_with("bad.npy: "), "{msg}");
            assert!(msg.contains(want), "{dict} -> {msg}");
        }
    }

    #[test]
    fn size_mismatch_names_both_sizes() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 64, 64), }";
        let msg = input_msg(parse_npy(&with_header(dict, &[0; 1000], 1), "X.npy"));
        assert!(
            msg.contains(
                "X.npy: data section holds 1000 bytes but shape (1, 1, 64, 64) of <f4 needs 16384"
            ),
            "{msg}"
        );
        let msg = input_msg(parse_npy(&with_header(dict, &[0; 16388], 1), "X.npy"));
        assert!(msg.contains("16388") && msg.contains("trailing"), "{msg}");
    }

    #[test]
    fn bad_magic_and_version_are_input_errors() {
        assert!(input_msg(parse_npy(b"PK\x03\x04 zip file", "z.npy")).contains("magic"));
        let mut v9 = encode_npy(&sample(&[2]));
        v9[6] = 9;
        assert!(input_msg(parse_npy(&v9, "v.npy")).contains("version 9.0"));
    }

    #[test]
    fn huge_shape_does_not_overflow() {
        let dict =
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
        assert!(input_msg(parse_npy(&with_header(dict, &[], 1), "h.npy")).contains("too many"));
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }";
        assert!(input_msg(parse_npy(&with_header(dict, &[], 1), "h.npy")).contains("needs"));
    }

    #[test]
    fn never_panics_on_truncations_and_byte_flips() {
        let good = encode_npy(&sample(&[2, 3]));
        for n in 0..good.len() {
            assert!(parse_npy(&good[..n], "t.npy").is_err(), "prefix {n} parsed");
        }
        let mut rng = Rng::new(11);
        for _ in 0..20_000 {
            let mut bad = good.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = (rng.next_u64() % bad.len() as u64) as usize;
                bad[i] = rng.next_u64() as u8;
            }
            // Any outcome but a panic is acceptable; errors must be input errors.
            if let Err(e) = parse_npy(&bad, "t.npy") {
                assert!(matches!(e, Error::Input(_)), "{e:?}");
            }
        }
    }

    #[test]
    fn file_round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("diffrecon_npy_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let t = sample(&[1, 1, 4, 4]);
        write_npy(&path, &t).unwrap();
        assert_eq!(read_npy(&path).unwrap(), t);
        let err = read_npy(&dir.join("missing.npy")).unwrap_err();
        assert!(err.to_string().contains("missing.npy"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn declared_sizes_are_checked_before_the_data_is_read() {
        let dir = std::env::temp_dir().join(format!("diffrecon_npy_big_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A header declaring 2^40 float32 values over 16 bytes of data, and one declaring 4 MB
        // over 16 bytes: both refused from the header and the file's length alone.
        let path = dir.join("huge.npy");
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }";
        std::fs::write(&path, with_header(dict, &[0; 16], 1)).unwrap();
        let msg = input_msg(read_npy(&path));
        assert!(
            msg.contains("declares 4398046511104 bytes; at most"),
            "{msg}"
        );
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }";
        std::fs::write(&path, with_header(dict, &[0; 16], 1)).unwrap();
        let msg = input_msg(read_npy(&path));
        assert!(
            msg.contains("holds 16 bytes but shape (1000, 1000) of <f4 needs 4000000"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn huge_header_lengths_are_refused() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[2, 0]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(b"{'descr': '<f4'");
        let msg = input_msg(parse_npy(&b, "h.npy"));
        assert!(msg.contains("claims 4294967295 bytes; at most"), "{msg}");
    }

    #[test]
    fn non_finite_values_are_refused_with_their_index() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
        for (bad, shown) in [
            (f32::NAN, "NaN"),
            (f32::INFINITY, "inf"),
            (f32::NEG_INFINITY, "-inf"),
        ] {
            let data: Vec<u8> = [1.0, bad, 2.0]
                .iter()
                .flat_map(|v: &f32| v.to_le_bytes())
                .collect();
            let msg = input_msg(parse_npy(&with_header(dict, &data, 1), "n.npy"));
            assert!(
                msg.contains(&format!("non-finite value ({shown}) at flat index 1")),
                "{msg}"
            );
        }
        // float64 values that overflow float32 would silently become infinite.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let data: Vec<u8> = [1.0f64, -1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let msg = input_msg(parse_npy(&with_header(dict, &data, 1), "w.npy"));
        assert!(
            msg.contains("-1e300 at flat index 1 is beyond float32"),
            "{msg}"
        );
    }
}
