use super::*;

fn key(hex_scalar: &str) -> SecretKey {
    let bytes: [u8; 32] = hex::decode(format!("{hex_scalar:0>64}"))
        .unwrap()
        .try_into()
        .unwrap();
    SecretKey::from_bytes(&bytes).unwrap()
}

/// Public keys and P2PKH addresses, computed independently of this crate (well known for
/// the generator: `1BgGZ9…` and `1EHNa6…`).
const KNOWN: &[(&str, &str, &str, [&str; 4])] = &[
    (
        "1",
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",
        [
            "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH",
            "1EHNa6Q4Jz2uvNExL497mE43ikXhwF6kZm",
            "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r",
            "mtoKs9V381UAhUia3d7Vb9GNak8Qvmcsme",
        ],
    ),
    (
        "deadbeef",
        "0276d2fdf1302d1fa9556f4df94ec84cefba6d482e54f47c6c2a238c1baa560f0e",
        "0476d2fdf1302d1fa9556f4df94ec84cefba6d482e54f47c6c2a238c1baa560f0eb754ac7e7a3e09c44184cb451a4f5fb557f32053eb015dffebb655b5cfd54d8a",
        [
            "16Y48h9KAzppPPER9weEcuzHFEagjkPZh7",
            "1KNrMaMfiqKzRC5fzi1gqTeDC96PAqJPZy",
            "mm41RkEHz2G5AVi2sWccSqCc7EBPeK8rP8",
            "mytoedSeXrmFCJZHiGz4fNrY48h67KrpTB",
        ],
    ),
    (
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140",
        "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798b7c52588d95c3b9aa25b0403f1eef75702e84bb7597aabe663b82f6f04ef2777",
        [
            "1GrLCmVQXoyJXaPJQdqssNqwxvha1eUo2E",
            "1JPbzbsAx1HyaDQoLMapWGoqf9pD5uha5m",
            "mwNHVpaPLqQZJgrv8CpFhJ4GpvJGumskXi",
            "mxuZHex9m2jEMKtR3vZCLC2AX9QuyLzj7L",
        ],
    ),
];

#[test]
fn known_public_keys_and_addresses() {
    for (scalar, compressed, uncompressed, addresses) in KNOWN {
        let public = key(scalar).public_key();
        assert_eq!(
            hex::encode(public.to_compressed()),
            *compressed,
            "key {scalar}"
        );
        assert_eq!(
            hex::encode(public.to_uncompressed()),
            *uncompressed,
            "key {scalar}"
        );
        let forms = [
            (Network::Mainnet, PointEncoding::Compressed),
            (Network::Mainnet, PointEncoding::Uncompressed),
            (Network::Testnet, PointEncoding::Compressed),
            (Network::Testnet, PointEncoding::Uncompressed),
        ];
        for ((network, encoding), address) in forms.iter().zip(addresses) {
            assert_eq!(
                public.p2pkh_address(*network, *encoding),
                *address,
                "key {scalar}"
            );
        }
    }
}

#[test]
fn both_encodings_decode_to_the_same_key() {
    for (scalar, compressed, uncompressed, _) in KNOWN {
        let a = PublicKey::from_sec1(&hex::decode(compressed).unwrap()).unwrap();
        let b = PublicKey::from_sec1(&hex::decode(uncompressed).unwrap()).unwrap();
        assert_eq!(a, b, "key {scalar}");
        assert_eq!(a, key(scalar).public_key());
    }
    assert_eq!(
        PublicKey::from_sec1(&[2; 32]),
        Err(Secp256k1Error::InvalidPublicKey { len: 32 })
    );
    // x = 5 is not the x-coordinate of any point (5^3 + 7 = 132 is not a square mod p).
    let mut off_curve = [0u8; 33];
    off_curve[0] = 2;
    off_curve[32] = 5;
    assert!(PublicKey::from_sec1(&off_curve).is_err());
}

#[test]
fn point_addition_matches_scalar_addition() {
    // 1·G + 2·G = 3·G, a well-known point.
    let sum = key("1").public_key().add(&key("2").public_key()).unwrap();
    assert_eq!(
        hex::encode(sum.to_compressed()),
        "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
    );
    let (a, b) = (key("1111"), key("2222"));
    let combined = a.add(&b).unwrap();
    assert_eq!(
        combined.public_key(),
        a.public_key().add(&b.public_key()).unwrap()
    );
    assert_eq!(
        hex::encode(combined.public_key().to_compressed()),
        "02ec6d499aefd540e90357f1004a136049d1f7df5ad99c44c46e3ed4169e40acb6"
    );
    // n-1 plus 1 is zero: refused, not wrapped.
    let minus_one = key("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140");
    assert_eq!(minus_one.add(&key("1")), Err(Secp256k1Error::Degenerate));
    assert_eq!(
        minus_one.public_key().add(&key("1").public_key()),
        Err(Secp256k1Error::Degenerate)
    );
}

#[test]
fn seeds_derive_stable_separate_keys() {
    let seed = [9u8; 48];
    assert_eq!(
        SecretKey::from_seed(&seed, b"wallet"),
        SecretKey::from_seed(&seed, b"wallet")
    );
    assert_ne!(
        SecretKey::from_seed(&seed, b"wallet"),
        SecretKey::from_seed(&seed, b"other")
    );
    assert_ne!(
        SecretKey::from_seed(&seed, b"wallet"),
        SecretKey::from_seed(&[8; 48], b"wallet")
    );
    assert!(SecretKey::from_bytes(&[0; 32]).is_err());
    assert!(SecretKey::from_bytes(&[0xff; 32]).is_err());
}

#[test]
fn coins_map_to_networks() {
    assert_eq!(Network::from_coin(0), Ok(Network::Mainnet));
    assert_eq!(Network::from_coin(1), Ok(Network::Testnet));
    assert_eq!(
        Network::from_coin(2),
        Err(Secp256k1Error::UnsupportedCoin(2))
    );
}

#[test]
fn debug_output_redacts_the_secret() {
    let shown = format!("{:?}", key("deadbeef"));
    assert!(shown.contains("redacted") && !shown.contains("deadbeef"));
}

#[test]
fn taproot_addresses_match_bip86_and_bip350() {
    let x = |text: &str| -> [u8; 32] { hex::decode(text).unwrap().try_into().unwrap() };
    // BIP-86's first two output keys and their addresses.
    for (output_key, address) in [
        (
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr",
        ),
        (
            "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
            "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh",
        ),
    ] {
        let mut compressed = vec![0x02];
        compressed.extend_from_slice(&x(output_key));
        let key = PublicKey::from_sec1(&compressed).unwrap();
        assert_eq!(key.x_only(), x(output_key));
        assert_eq!(key.p2tr_address(Network::Mainnet), address);
    }
    // BIP-350's valid version-1 addresses, mainnet and testnet.
    assert_eq!(
        p2tr_address(
            &x("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
            Network::Mainnet
        ),
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
    );
    assert_eq!(
        p2tr_address(
            &x("000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
            Network::Testnet
        ),
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c"
    );
}
