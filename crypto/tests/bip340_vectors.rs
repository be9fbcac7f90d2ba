//! BIP-340's own test vectors through dta's BIP-340 verifier, which checks the signatures FROST
//! makes: every row's verification result, valid and invalid alike (keys off the curve, R
//! with an odd y, s at the curve order, messages of 0 to 100 bytes).

use dta_crypto::secp256k1::verify_bip340;

#[test]
fn every_bip340_vector_verifies_as_the_bip_says() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/bip340-test-vectors.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut valid, mut invalid) = (0, 0);
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 8, "a row of 8 columns: {line}");
        let bytes = |field: &str| hex::decode(field).expect("hex in the vector file");
        let (public_key, message, signature) =
            (bytes(fields[2]), bytes(fields[4]), bytes(fields[5]));
        let expected = match fields[6] {
            "TRUE" => true,
            "FALSE" => false,
            other => panic!("verification result {other:?} in {line}"),
        };
        assert_eq!(
            verify_bip340(&public_key, &message, &signature),
            expected,
            "vector {} ({})",
            fields[0],
            fields[7]
        );
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert_eq!(
        (valid, invalid),
        (9, 10),
        "every vector of the file was read"
    );
}
