use std::collections::BTreeMap;

use dta_crypto::secp256k1::{self, Network, PointEncoding};
use dta_crypto::threshold::SecretScalar;
use dta_protocol::Cid;
use dta_protocol::order::{Commitment, OrderRequest, ReleasePolicy, SecretBytes};
use serde_bytes::ByteBuf;

use super::*;

fn cid(n: u8) -> Cid {
    dta_protocol::block::cid_of(dta_protocol::block::RAW, &[n])
}

fn order(plugin: &str, n: u8, threshold: u32, input: &[(&str, &str)]) -> OrderRequest {
    OrderRequest {
        plugin: plugin.into(),
        principal: cid(0),
        fiduciaries: (1..=n).map(cid).collect(),
        threshold,
        beneficiary: Some(cid(9)),
        policy: ReleasePolicy::default(),
        input: input
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn commitment(output: BTreeMap<String, String>) -> Commitment {
    Commitment {
        order: cid(0),
        plugin: String::new(),
        threshold: 1,
        fiduciaries: Vec::new(),
        feldman: Vec::new(),
        key_shares: Vec::new(),
        beneficiary_share: None,
        public_key: ByteBuf::new(),
        output,
        generated: None,
        reshared: None,
    }
}

#[test]
fn plugins_are_found_by_name() {
    for name in [SAFEGUARD_SECRET, BITCOIN_WALLET, MILAGRO, MPIN_MASTER] {
        assert_eq!(find(name).map(|p| p.name()), Some(name));
    }
    assert!(find("SafeguardSecret").is_none());
    assert!(find("").is_none());
    assert_eq!(
        names(),
        "safeguardsecret, bitcoinwallet, milagro, mpin-master"
    );
}

#[test]
fn an_mpin_master_is_generated_over_bls12_381_at_least_two_of_n_and_never_released() {
    let plugin = find(MPIN_MASTER).unwrap();
    assert_eq!(plugin.key_source(), KeySource::Generated);
    assert_eq!(plugin.key_scheme(), Scheme::Bls12381);
    plugin.check_order(&order(MPIN_MASTER, 3, 2, &[])).unwrap();
    plugin.check_order(&order(MPIN_MASTER, 3, 3, &[])).unwrap();
    for (n, threshold) in [(1, 1), (3, 1)] {
        assert!(matches!(
            plugin.check_order(&order(MPIN_MASTER, n, threshold, &[])),
            Err(PluginError::ThresholdBelowTwo { .. })
        ));
    }
    assert!(matches!(
        plugin.check_order(&order(MPIN_MASTER, 3, 2, &[("coin", "1")])),
        Err(PluginError::TakesNoInput { .. })
    ));
    assert_eq!(
        plugin.check_release(),
        Err(PluginError::NeverReleased(MPIN_MASTER))
    );
    for other in [SAFEGUARD_SECRET, BITCOIN_WALLET, MILAGRO] {
        assert_eq!(find(other).unwrap().check_release(), Ok(()));
        assert_eq!(find(other).unwrap().key_scheme(), Scheme::Secp256k1Taproot);
    }
}

#[test]
fn safeguardsecret_needs_a_secret_and_takes_no_input() {
    let plugin = find(SAFEGUARD_SECRET).unwrap();
    assert_eq!(plugin.key_source(), KeySource::Dealt);
    assert!(
        plugin
            .check_order(&order(SAFEGUARD_SECRET, 3, 2, &[]))
            .is_ok()
    );
    let err = plugin
        .check_order(&order(SAFEGUARD_SECRET, 3, 2, &[("coin", "0")]))
        .unwrap_err();
    assert!(err.to_string().contains("takes no input"), "{err}");
    assert!(plugin.check_secret(None).is_err());
    // The original round-tripped empty text too.
    assert!(
        plugin
            .check_secret(Some(&SecretBytes::new(Vec::new())))
            .is_ok()
    );
    let too_big = SecretBytes::new(vec![1; MAX_SECRET_LEN + 1]);
    assert!(plugin.check_secret(Some(&too_big)).is_err());
    assert!(
        plugin
            .check_secret(Some(&SecretBytes::new(b"x".to_vec())))
            .is_ok()
    );
}

#[test]
fn safeguardsecret_opens_only_with_the_dealt_key() {
    let plugin = find(SAFEGUARD_SECRET).unwrap();
    let key = SecretScalar::random();
    let secret = SecretBytes::new(b"correct horse".to_vec());
    let output = plugin.seal("ref-1", &key, Some(&secret)).unwrap();
    assert!(!output[SEALED_SECRET].contains("correct"));
    let sealed = commitment(output);
    let opened = plugin
        .finish("ref-1", &sealed, RebuiltKey::Scalar(key.clone()))
        .unwrap();
    assert_eq!(opened.expose(), b"correct horse");
    // Another key, another reference or a generated key: nothing opens.
    let other = RebuiltKey::Scalar(SecretScalar::random());
    assert!(plugin.finish("ref-1", &sealed, other).is_err());
    assert!(
        plugin
            .finish("ref-2", &sealed, RebuiltKey::Scalar(key))
            .is_err()
    );
    let generated = RebuiltKey::Secp256k1(secp256k1::SecretKey::random());
    assert!(plugin.finish("ref-1", &sealed, generated).is_err());
}

#[test]
fn bitcoinwallet_checks_coin_threshold_and_secret() {
    let plugin = find(BITCOIN_WALLET).unwrap();
    assert_eq!(plugin.key_source(), KeySource::Generated);
    assert!(
        plugin
            .check_order(&order(BITCOIN_WALLET, 3, 3, &[("coin", "0")]))
            .is_ok()
    );
    assert!(
        plugin
            .check_order(&order(BITCOIN_WALLET, 3, 3, &[("coin", "1")]))
            .is_ok()
    );
    for (input, expect) in [
        (vec![], "needs input coin"),
        (vec![("coin", "2")], "unsupported coin"),
        (vec![("coin", "btc")], "unsupported coin"),
        (vec![("coin", "0"), ("x", "1")], "does not take input"),
    ] {
        let err = plugin
            .check_order(&order(BITCOIN_WALLET, 3, 3, &input))
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
    // t-of-n keys are generated without a dealer, which takes no threshold of 1.
    plugin
        .check_order(&order(BITCOIN_WALLET, 3, 2, &[("coin", "0")]))
        .expect("2-of-3");
    let err = plugin
        .check_order(&order(BITCOIN_WALLET, 3, 1, &[("coin", "0")]))
        .unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
    plugin
        .check_order(&order(BITCOIN_WALLET, 1, 1, &[("coin", "0")]))
        .expect("1-of-1");
    assert!(
        plugin
            .check_secret(Some(&SecretBytes::new(b"x".to_vec())))
            .is_err()
    );
    assert!(plugin.check_secret(None).is_ok());
    assert_eq!(
        plugin.beneficiary_share(&order(BITCOIN_WALLET, 3, 3, &[])),
        Some(cid(9))
    );
}

#[test]
fn bitcoinwallet_address_hashes_the_uncompressed_key_for_the_coin() {
    let plugin = find(BITCOIN_WALLET).unwrap();
    let key = secp256k1::SecretKey::random().public_key();
    for (coin, network) in [("0", Network::Mainnet), ("1", Network::Testnet)] {
        let output = plugin
            .key_output(&order(BITCOIN_WALLET, 1, 1, &[("coin", coin)]), &key)
            .unwrap();
        assert_eq!(
            output[ADDRESS],
            key.p2pkh_address(network, PointEncoding::Uncompressed)
        );
    }
    let mainnet = plugin
        .key_output(&order(BITCOIN_WALLET, 1, 1, &[("coin", "0")]), &key)
        .unwrap();
    assert!(mainnet[ADDRESS].starts_with('1'));
}

#[test]
fn generated_plugins_keep_the_rebuilt_key() {
    for name in [BITCOIN_WALLET, MILAGRO] {
        let plugin = find(name).unwrap();
        let key = secp256k1::SecretKey::random();
        let kept = plugin
            .finish(
                "r",
                &commitment(BTreeMap::new()),
                RebuiltKey::Secp256k1(key.clone()),
            )
            .unwrap();
        assert_eq!(kept.expose(), key.to_bytes().expose());
        let dealt = RebuiltKey::Scalar(SecretScalar::random());
        assert!(
            plugin
                .finish("r", &commitment(BTreeMap::new()), dealt)
                .is_err()
        );
    }
    let milagro = find(MILAGRO).unwrap();
    assert!(milagro.check_order(&order(MILAGRO, 2, 2, &[])).is_ok());
    assert!(milagro.check_order(&order(MILAGRO, 2, 1, &[])).is_err());
    assert!(
        milagro
            .check_order(&order(MILAGRO, 2, 2, &[("coin", "0")]))
            .is_err()
    );
    assert_eq!(milagro.beneficiary_share(&order(MILAGRO, 2, 2, &[])), None);
}
