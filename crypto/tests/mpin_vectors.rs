//! Milagro's M-Pin test vectors for BLS12-381 (2019), entry by entry: server- and
//! client-secret shares and their sums, the token, one authentication's U and V, and the
//! server's verdict (0 accepted, −19 rejected). `DTA_MPIN_VECTORS` names another file of the
//! same shape.

use std::path::PathBuf;

use dta_crypto::mpin::{self, G1Point, G2Point, MpinScalar};
use serde::Deserialize;

fn vector_path() -> PathBuf {
    match std::env::var_os("DTA_MPIN_VECTORS") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/vectors/mpin/BLS381-dta.json"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Entry {
    test: u32,
    #[serde(rename = "MPINId")]
    mpin_id: String,
    ms1: String,
    ms2: String,
    pin1: u32,
    pin2: u32,
    ss1: String,
    ss2: String,
    ss: String,
    cs1: String,
    cs2: String,
    cs: String,
    token: String,
    x: String,
    u: String,
    y: String,
    v: String,
    #[serde(rename = "AuthResult")]
    auth_result: i32,
}

fn bytes(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hex in the vector file")
}

#[test]
fn every_vector_entry_is_reproduced() {
    let path = vector_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries: Vec<Entry> = serde_json::from_str(&text).expect("the vector file's shape");
    assert!(!entries.is_empty(), "no vectors in {}", path.display());
    let (mut accepted, mut rejected) = (0, 0);
    for entry in &entries {
        let at = format!("{} entry {}", path.display(), entry.test);
        let id = bytes(&entry.mpin_id);
        let ms1 = MpinScalar::from_bytes(&bytes(&entry.ms1)).unwrap();
        let ms2 = MpinScalar::from_bytes(&bytes(&entry.ms2)).unwrap();

        let ss1 = mpin::server_secret(&ms1);
        let ss2 = mpin::server_secret(&ms2);
        assert_eq!(hex::encode(ss1.to_bytes()), entry.ss1, "SS1, {at}");
        assert_eq!(hex::encode(ss2.to_bytes()), entry.ss2, "SS2, {at}");
        let ss = mpin::recombine_g2(&[ss1, ss2]).unwrap();
        assert_eq!(hex::encode(ss.to_bytes()), entry.ss, "SS, {at}");

        let cs1 = mpin::client_secret(&ms1, &id);
        let cs2 = mpin::client_secret(&ms2, &id);
        assert_eq!(hex::encode(cs1.to_bytes()), entry.cs1, "CS1, {at}");
        assert_eq!(hex::encode(cs2.to_bytes()), entry.cs2, "CS2, {at}");
        let cs = mpin::recombine_g1(&[cs1, cs2]).unwrap();
        assert_eq!(hex::encode(cs.to_bytes()), entry.cs, "CS, {at}");

        let token = mpin::extract_pin(&cs, &id, entry.pin1).unwrap();
        assert_eq!(hex::encode(token.to_bytes()), entry.token, "TOKEN, {at}");

        // The client authenticates with PIN2, with the vector's x and y.
        let x = MpinScalar::from_bytes(&bytes(&entry.x)).unwrap();
        let y = MpinScalar::from_bytes(&bytes(&entry.y)).unwrap();
        let first = mpin::client_first(&token, &id, entry.pin2, None, Some(x)).unwrap();
        assert_eq!(hex::encode(first.u.to_bytes()), entry.u, "U, {at}");
        let v = mpin::client_second(first.state, &y).unwrap();
        assert_eq!(hex::encode(v.to_bytes()), entry.v, "V, {at}");

        // The server decides from the encoded values, as it would receive them.
        let u = G1Point::from_bytes(&bytes(&entry.u)).unwrap();
        let v = G1Point::from_bytes(&bytes(&entry.v)).unwrap();
        let ss = G2Point::from_bytes(&bytes(&entry.ss)).unwrap();
        let verdict = match mpin::server_check(&id, None, &y, &ss, &u, &v) {
            Ok(()) => 0,
            Err(error) => error.milagro_code(),
        };
        assert_eq!(verdict, entry.auth_result, "AuthResult, {at}");
        // The vectors' own rule: accepted exactly when the PINs match.
        assert_eq!(verdict == 0, entry.pin1 == entry.pin2, "{at}");
        if verdict == 0 {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    eprintln!(
        "{} M-Pin vector entries: {accepted} accepted, {rejected} rejected",
        entries.len()
    );
}
