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
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
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
