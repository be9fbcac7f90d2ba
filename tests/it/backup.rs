//! Backups with the `dta` binary against a testnet: a running fiduciary backed up, its home
//! destroyed and restored, and a release that needs its share; archives checked, and bad ones
//! (wrong passphrase, a flipped byte, cut short) refused with a reason.

use std::path::Path;

use serde_json::{Value, json};

use crate::custody::{Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, identity, one_role_each, order};
use crate::process::dta_client;

const PASSPHRASE: &str = "backup passphrase of the test";

/// `dta backup ARGS --json` with the test's backup passphrase: its JSON, or its error.
fn backup(args: &[&str], passphrase: &str) -> Result<Value, String> {
    let mut command = dta_client(&[&["backup"], args, &["--json"]].concat());
    command.env("DTA_BACKUP_PASSPHRASE", passphrase);
    let output = command.output().unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_fiduciary_releases_its_share_and_bad_archives_are_refused() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "kept", "the vault combination").await;
    let fiduciary = FIDUCIARIES[0];
    for holder in FIDUCIARIES {
        api.wait_state(&net, holder, "kept", "fiduciary", "holding")
            .await;
    }
    let home = net.test_node(fiduciary).home().to_owned();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("fiduciary.dtabak");

    // Backed up while it runs: the node makes the copy of its database, which is gone after.
    let made = backup(
        &["create", "--home", text(&home), "--out", text(&archive)],
        PASSPHRASE,
    )
    .unwrap();
    assert_eq!(made["identity"], identity(&net, fiduciary), "{made}");
    assert_eq!(made["keystore"], json!({ "backend": "soft" }), "{made}");
    assert!(made["orders"].as_u64().unwrap() >= 1, "{made}");
    assert!(
        made["secrets"].as_u64().unwrap() >= 2,
        "the identity seed and the share: {made}"
    );
    let leftovers = std::fs::read_dir(home.join("checkpoints")).unwrap().count();
    assert_eq!(leftovers, 0, "the checkpoint is removed");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the archive is the owner's alone");
    // Writing over a file is refused.
    let again = backup(
        &["create", "--home", text(&home), "--out", text(&archive)],
        PASSPHRASE,
    );
    assert!(again.unwrap_err().contains("exists"));

    // Checked without restoring; a wrong passphrase, a flipped byte and a cut are refused.
    let checked = backup(&["verify", text(&archive)], PASSPHRASE).unwrap();
    assert_eq!(checked, made);
    let refused = backup(&["verify", text(&archive)], "another long passphrase").unwrap_err();
    assert!(
        refused.contains("does not open with this passphrase"),
        "{refused}"
    );
    let bytes = std::fs::read(&archive).unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let damaged = scratch.path().join("damaged.dtabak");
    std::fs::write(&damaged, &flipped).unwrap();
    let refused = backup(&["verify", text(&damaged)], PASSPHRASE).unwrap_err();
    assert!(refused.contains("checksum"), "{refused}");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let refused = backup(&["verify", text(&damaged)], PASSPHRASE).unwrap_err();
    assert!(refused.contains("checksum"), "{refused}");
    std::fs::write(&damaged, b"not a backup").unwrap();
    let refused = backup(&["verify", text(&damaged)], PASSPHRASE).unwrap_err();
    assert!(refused.contains("not a dta backup"), "{refused}");
    let refused = backup(&["verify", text(&archive)], "short").unwrap_err();
    assert!(refused.contains("at least 12"), "{refused}");

    // The fiduciary's home is lost. Restoring onto a home that exists is refused.
    net.test_node(fiduciary).stop().await;
    std::fs::remove_dir_all(&home).unwrap();
    let other = net.test_node(FIDUCIARIES[1]).home().to_owned();
    let refused = backup(
        &["restore", text(&archive), "--home", text(&other)],
        PASSPHRASE,
    )
    .unwrap_err();
    assert!(refused.contains("exists"), "{refused}");
    let restored = backup(
        &["restore", text(&archive), "--home", text(&home)],
        PASSPHRASE,
    )
    .unwrap();
    assert_eq!(restored["identity"], made["identity"]);
    net.test_node(fiduciary)
        .start()
        .await
        .expect("the restored node starts");
    let (_, node) = api.get(&net, fiduciary, "/v2/node").await;
    assert_eq!(node["identity"], identity(&net, fiduciary));

    // A release that needs the restored share: the other holder of two is down.
    net.test_node(FIDUCIARIES[1]).stop().await;
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/kept/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "kept", "beneficiary", "received")
        .await;
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/kept/secret").await;
    assert_eq!(secret["secret"], "the vault combination");
    let (_, held) = api.get(&net, fiduciary, "/v2/orders/kept").await;
    assert!(
        held.as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "released"),
        "the restored fiduciary served the release: {held}"
    );
    net.stop().await;
}
