//! A home written by the previous release opens with this one. The fixture
//! (`tests/fixtures/home-0.0.0.tar.gz`, passphrase `previous release home`, a throwaway test
//! home) is a node of dta 0.0.0 that made order `old-1` with itself as fiduciary and
//! beneficiary, released it and received the secret. A home of a newer layout is refused and
//! left as it was.

use std::path::Path;
use std::process::{Command, Stdio};

use dta_actors::schema;
use dta_actors::store::{Column, Store};

use crate::process::{
    RUN_ON_LOOPBACK, Running, dta_bin, home_client, run_to_end, wait_for_node_file,
};

const FIXTURE_PASSPHRASE: &str = "previous release home";
const FIXTURE_IDENTITY: &str = "bafyreihb7fe4sfxd6ouwncp2pjh5k4cujk5i36rk6pxy5kdwnahosm6f3q";

fn dta_on(home: &Path) -> Command {
    let mut command = Command::new(dta_bin());
    command
        .env("DTA_PASSPHRASE", FIXTURE_PASSPHRASE)
        .env("RUST_LOG", "warn")
        .env_remove("DTA_API")
        .env("DTA_HOME", home);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_of_the_previous_release_opens_with_its_orders_and_a_newer_one_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/home-0.0.0.tar.gz");
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(root.path())
        .status()
        .unwrap();
    assert!(unpacked.success());
    let home = root.path().join("home");
    {
        let store = Store::open(&home.join("db")).unwrap();
        assert_eq!(
            schema::version(&store).unwrap(),
            0,
            "written before versions"
        );
    }

    let running = Running(
        dta_on(&home)
            .args(RUN_ON_LOOPBACK)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let node_file = wait_for_node_file(&home).await;
    let client = home_client(&home, &node_file.api);
    let node = client.get("/v2/node").await.unwrap();
    assert_eq!(node["identity"], FIXTURE_IDENTITY);
    assert_eq!(node["schema"], schema::CURRENT);
    let orders = client.get("/v2/orders").await.unwrap();
    let mut states: Vec<(String, String)> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().into(),
                r["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("beneficiary".into(), "received".into()),
            ("fiduciary".into(), "released".into()),
            ("principal".into(), "released".into()),
        ]
    );
    let secret = client.get("/v2/orders/old-1/secret").await.unwrap();
    assert_eq!(secret["secret"], "the previous release's secret");
    let audit = client.get("/v2/orders/old-1/audit").await.unwrap();
    assert_eq!(audit["passed"], true, "{audit}");
    assert_eq!(audit["receipts"], 1, "{audit}");
    drop(running);

    // Stamped now; a layout from a newer dta is refused, and nothing is changed.
    let store = Store::open(&home.join("db")).unwrap();
    assert_eq!(schema::version(&store).unwrap(), schema::CURRENT);
    let newer = (schema::CURRENT + 1).to_be_bytes();
    store
        .put_durable(Column::Metadata, schema::KEY, &newer)
        .unwrap();
    drop(store);
    let (ok, stderr) = run_to_end(dta_on(&home).args(RUN_ON_LOOPBACK));
    assert!(!ok);
    assert!(
        stderr.contains(&format!("layout version {}", schema::CURRENT + 1)),
        "{stderr}"
    );
    let store = Store::open(&home.join("db")).unwrap();
    assert_eq!(schema::version(&store).unwrap(), schema::CURRENT + 1);
}
