//! The demo behind `dta demo`, checked end to end.

#[test]
fn the_demo_recovers_the_secret_and_passes_the_audit() {
    let report = dta_testnet::demo::run().expect("demo runs");
    assert!(
        report.secret_recovered,
        "beneficiary did not rebuild the secret"
    );
    assert!(report.audit_passed);
    // order, 3 share deals, commitment, certificate, release request, 2 share releases.
    assert_eq!(report.chain_length, 9);
    assert_eq!(report.identities.len(), 5);
    let cids: std::collections::BTreeSet<&str> = report
        .identities
        .iter()
        .map(|(_, cid)| cid.as_str())
        .collect();
    assert_eq!(cids.len(), 5, "identity CIDs are distinct");
    assert!(
        cids.iter().all(|cid| cid.starts_with("bafyrei")),
        "CIDv1 dag-cbor sha2-256"
    );
}
