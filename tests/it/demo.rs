//! The demo behind `dta demo`, checked end to end: six real nodes in this process.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_recovers_the_secret_and_passes_the_audit() {
    let report = dta_testnet::demo::run().await.expect("demo runs");
    assert!(
        report.secret_recovered,
        "beneficiary did not rebuild the secret"
    );
    assert!(report.audit_passed);
    assert!(report.custody_moved, "{report:?}");
    assert_eq!(report.certificate_signers, 3);
    // order, commitment, 3 share deals, 3 commitment signatures, certificate, release
    // request, 2 share releases, receipt: at least the principal's chain and what hangs off it.
    assert!(report.chain_length >= 5, "{report:?}");
    assert_eq!(report.nodes.len(), 6);
    let cids: std::collections::BTreeSet<&str> =
        report.nodes.iter().map(|n| n.identity.as_str()).collect();
    assert_eq!(cids.len(), 6, "identity CIDs are distinct");
    assert!(
        report
            .nodes
            .iter()
            .all(|n| n.address.starts_with("/ip4/127.0.0.1/")),
        "loopback only"
    );
}
