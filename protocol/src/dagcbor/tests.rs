use std::path::PathBuf;

use ipld_core::ipld::Ipld;

use super::*;
use crate::block::{DAG_CBOR, cid_of};

/// The fixture directory: `DTA_DAGCBOR_FIXTURES` if set, else the shared third-party set.
fn fixture_dir() -> PathBuf {
    match std::env::var_os("DTA_DAGCBOR_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/dag-cbor"),
    }
}

/// Every `<name>/<CID>.dag-cbor` under the fixture directory.
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let dir = fixture_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read DAG-CBOR fixtures at {}: {e}", dir.display()));
    for entry in entries {
        let fixture = entry.unwrap().path();
        if !fixture.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&fixture).unwrap() {
            let file = file.unwrap().path();
            if file.extension().and_then(|e| e.to_str()) != Some("dag-cbor") {
                continue;
            }
            let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
            let cid = file.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, cid, std::fs::read(&file).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn fixtures_decode_reencode_and_hash_to_their_names() {
    let fixtures = fixtures();
    assert!(
        !fixtures.is_empty(),
        "no fixtures found in {}",
        fixture_dir().display()
    );
    for (name, cid, bytes) in &fixtures {
        let value: Ipld = decode(bytes, Limits::default())
            .unwrap_or_else(|e| panic!("fixture {name} does not decode: {e}"));
        let again = encode(&value).unwrap_or_else(|e| panic!("fixture {name} re-encode: {e}"));
        assert_eq!(
            &again, bytes,
            "fixture {name} does not round-trip byte for byte"
        );
        assert_eq!(
            cid_of(DAG_CBOR, &again).to_string(),
            *cid,
            "fixture {name} CID"
        );
    }
}

fn reject(bytes: &[u8]) -> DecodeError {
    validate(bytes, Limits::default()).expect_err("must be rejected")
}

#[test]
fn non_minimal_integers_and_lengths() {
    assert_eq!(reject(&[0x18, 0x05]), DecodeError::NonMinimal { offset: 0 });
    assert_eq!(
        reject(&[0x19, 0x00, 0xff]),
        DecodeError::NonMinimal { offset: 0 }
    );
    assert_eq!(
        reject(&[0x1a, 0x00, 0x00, 0xff, 0xff]),
        DecodeError::NonMinimal { offset: 0 }
    );
    assert_eq!(
        reject(&[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        DecodeError::NonMinimal { offset: 0 }
    );
    assert_eq!(reject(&[0x38, 0x01]), DecodeError::NonMinimal { offset: 0 });
    // A one-byte string whose length is written in the long form.
    assert_eq!(
        reject(&[0x78, 0x01, b'a']),
        DecodeError::NonMinimal { offset: 0 }
    );
    assert_eq!(
        reject(&[0x81, 0x18, 0x00]),
        DecodeError::NonMinimal { offset: 1 }
    );
    validate(&[0x18, 0x18], Limits::default()).unwrap();
}

#[test]
fn indefinite_and_reserved_lengths() {
    assert_eq!(
        reject(&[0x9f, 0x01, 0xff]),
        DecodeError::IndefiniteLength { offset: 0 }
    );
    assert_eq!(
        reject(&[0x5f, 0x41, 0x00, 0xff]),
        DecodeError::IndefiniteLength { offset: 0 }
    );
    assert_eq!(
        reject(&[0xbf, 0xff]),
        DecodeError::IndefiniteLength { offset: 0 }
    );
    assert_eq!(reject(&[0x1c]), DecodeError::Reserved { offset: 0 });
}

#[test]
fn map_keys_must_be_sorted_unique_text() {
    // {"b": 1, "a": 2}
    assert_eq!(
        reject(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]),
        DecodeError::UnsortedMapKeys { offset: 4 }
    );
    // {"aa": 1, "b": 2}: length comes first.
    assert_eq!(
        reject(&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02]),
        DecodeError::UnsortedMapKeys { offset: 5 }
    );
    assert_eq!(
        reject(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]),
        DecodeError::DuplicateMapKey { offset: 4 }
    );
    assert_eq!(
        reject(&[0xa1, 0x01, 0x02]),
        DecodeError::MapKeyNotText { offset: 1 }
    );
    validate(
        &[0xa2, 0x61, b'b', 0x01, 0x62, b'a', b'a', 0x02],
        Limits::default(),
    )
    .unwrap();
}

#[test]
fn only_links_may_be_tagged() {
    assert_eq!(
        reject(&[0xc1, 0x01]),
        DecodeError::UnsupportedTag { tag: 1, offset: 0 }
    );
    let cid = cid_of(DAG_CBOR, b"x").to_bytes();
    let mut link = vec![0xd8, 42, 0x58, (cid.len() + 1) as u8, 0x00];
    link.extend_from_slice(&cid);
    validate(&link, Limits::default()).unwrap();
    // Without the 0x00 multibase prefix.
    let mut bare = vec![0xd8, 42, 0x58, cid.len() as u8];
    bare.extend_from_slice(&cid);
    assert_eq!(reject(&bare), DecodeError::InvalidLink { offset: 0 });
    // A CID followed by padding.
    let mut padded = vec![0xd8, 42, 0x58, (cid.len() + 2) as u8, 0x00];
    padded.extend_from_slice(&cid);
    padded.push(0);
    assert_eq!(reject(&padded), DecodeError::InvalidLink { offset: 0 });
}

#[test]
fn floats_and_simple_values() {
    assert_eq!(
        reject(&[0xf9, 0x3c, 0x00]),
        DecodeError::ShortFloat { offset: 0 }
    );
    assert_eq!(
        reject(&[0xfa, 0x3f, 0x80, 0, 0]),
        DecodeError::ShortFloat { offset: 0 }
    );
    let nan = [0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];
    assert_eq!(reject(&nan), DecodeError::NonFiniteFloat { offset: 0 });
    let infinity = [0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0];
    assert_eq!(reject(&infinity), DecodeError::NonFiniteFloat { offset: 0 });
    assert_eq!(
        reject(&[0xf7]),
        DecodeError::UnsupportedSimple {
            value: 23,
            offset: 0
        }
    );
    assert_eq!(
        reject(&[0xf8, 0x20]),
        DecodeError::UnsupportedSimple {
            value: 32,
            offset: 0
        }
    );
    for ok in [[0xf4], [0xf5], [0xf6]] {
        validate(&ok, Limits::default()).unwrap();
    }
}

#[test]
fn framing_size_depth_and_utf8() {
    assert_eq!(reject(&[]), DecodeError::Truncated { offset: 0 });
    assert_eq!(
        reject(&[0x01, 0x01]),
        DecodeError::TrailingBytes { offset: 1 }
    );
    assert_eq!(reject(&[0x82, 0x01]), DecodeError::Truncated { offset: 2 });
    // A length far beyond the input is refused before anything is allocated.
    assert_eq!(
        reject(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        DecodeError::Truncated { offset: 9 }
    );
    assert_eq!(
        reject(&[0x62, 0xc3, 0x28]),
        DecodeError::InvalidUtf8 { offset: 0 }
    );
    let limits = Limits {
        max_size: 4,
        max_depth: 2,
    };
    assert_eq!(
        validate(&[0x45, 1, 2, 3, 4, 5], limits),
        Err(DecodeError::TooLarge { size: 6, max: 4 })
    );
    assert_eq!(
        validate(&[0x81, 0x81, 0x81, 0x01], limits),
        Err(DecodeError::TooDeep { max: 2 })
    );
    validate(&[0x81, 0x81, 0x01], limits).unwrap();
}

#[test]
fn typed_decode_reports_shape_errors() {
    #[derive(serde::Deserialize, serde::Serialize, Debug)]
    struct Wanted {
        a: u64,
    }
    // {"b": 1} is canonical but not a `Wanted`.
    let err = decode::<Wanted>(&[0xa1, 0x61, b'b', 0x01], Limits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Shape(_)), "{err:?}");
}

#[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
struct WithOptional {
    a: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<u64>,
}

/// Found by the `identity` fuzz target: serde skips a key the type does not have, so the
/// decoded value stood for more encodings than one, and a signed document (whose signature
/// covers the value's encoding) could be given a second CID by adding a key.
#[test]
fn a_key_the_type_does_not_have_is_refused() {
    // {"a": 1, "z": 2}
    let bytes = [0xa2, 0x61, b'a', 0x01, 0x61, b'z', 0x02];
    validate(&bytes, Limits::default()).unwrap();
    let err = decode::<WithOptional>(&bytes, Limits::default()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::NotExact {
            size: 7,
            encoded: 4
        }
    );
    // What a node wrote itself under an older layout still reads.
    let old: WithOptional = decode_lenient(&bytes, Limits::default()).unwrap();
    assert_eq!(old, WithOptional { a: 1, b: None });
}

#[test]
fn a_default_written_out_is_refused() {
    // {"a": 1, "b": null}: `b` is left out when it is None.
    let bytes = [0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0xf6];
    let err = decode::<WithOptional>(&bytes, Limits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::NotExact { .. }), "{err:?}");
    let exact = encode(&WithOptional { a: 1, b: Some(2) }).unwrap();
    assert_eq!(
        decode::<WithOptional>(&exact, Limits::default()).unwrap(),
        WithOptional { a: 1, b: Some(2) }
    );
}

/// Found by the `dagcbor` fuzz target: the validator took negative zero, which the codec then
/// refused, so a block could pass validation and fail to decode.
#[test]
fn negative_zero_is_refused_by_the_validator_as_by_the_codec() {
    let negative_zero = [0xfb, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        validate(&negative_zero, Limits::default()),
        Err(DecodeError::NegativeZero { offset: 0 })
    );
    assert!(decode::<Ipld>(&negative_zero, Limits::default()).is_err());
    for float in [0.0f64, 1.5, -1.5, 5e-324, -5e-324] {
        let mut bytes = vec![0xfb];
        bytes.extend_from_slice(&float.to_bits().to_be_bytes());
        validate(&bytes, Limits::default()).unwrap();
        let value: Ipld = decode(&bytes, Limits::default()).unwrap();
        assert_eq!(encode(&value).unwrap(), bytes);
    }
}

/// Found by the `dagcbor` fuzz target: 128 nested one-entry maps and arrays passed the
/// validator (then 128 deep) and hit the codec's recursion limit, so a block could pass
/// validation and fail to decode. At the default depth, whatever validates decodes.
#[test]
fn what_the_default_depth_admits_the_codec_decodes() {
    for inner in [&[0xa1u8, 0x60][..], &[0x81]] {
        for depth in [
            DEFAULT_MAX_DEPTH - 1,
            DEFAULT_MAX_DEPTH,
            DEFAULT_MAX_DEPTH + 1,
            128,
        ] {
            let mut bytes = inner.repeat(depth);
            bytes.push(0x80);
            let valid = validate(&bytes, Limits::default()).is_ok();
            let decoded = decode::<Ipld>(&bytes, Limits::default()).is_ok();
            assert_eq!(valid, decoded, "{depth} levels of {inner:02x?}");
            assert_eq!(
                valid,
                depth <= DEFAULT_MAX_DEPTH,
                "{depth} levels of {inner:02x?}"
            );
        }
    }
}

#[test]
fn a_link_whose_cid_is_not_its_one_encoding_is_refused() {
    // Found by the fuzzer: a codec varint of ten bytes whose last carries bits past 64. The
    // CID parser takes it, but the value it means encodes otherwise, so the block could not
    // be the one encoding of its value.
    let bytes = hex::decode(
        "d82a58250001ffffffffffffe6cbaa07ffff5815352230aaeb35e11444aacb5815362230aaeb35e114",
    )
    .unwrap();
    assert!(matches!(reject(&bytes), DecodeError::InvalidLink { .. }));
    assert!(decode::<Ipld>(&bytes, Limits::default()).is_err());
}
