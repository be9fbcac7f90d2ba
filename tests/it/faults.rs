//! A fault campaign on real processes: two principals place orders under the same references
//! with the same fiduciaries and beneficiary, try to release each to another identity (always
//! refused) and release it to its beneficiary, while a random node (principals and the
//! beneficiary included) is SIGKILLed and started again every few seconds; afterwards every
//! order must be certified, released once, received intact and audited from an uninvolved
//! node: nothing lost, nothing duplicated, nothing stuck, nothing misdirected.
//!
//! `DTA_FAULT_ORDERS` (default 24) sets the number of orders, `DTA_FAULT_SEED` the seed that
//! picks the victims (printed, so that a failing run can be repeated).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dta_node::client::Method;
use dta_testnet::process::{self, UpConfig};
use serde_json::{Value, json};

use crate::process::dta_bin;

/// Both use every reference.
const PRINCIPALS: [&str; 2] = ["node-0", "node-1"];
const FIDUCIARIES: [&str; 3] = ["node-2", "node-3", "node-4"];
const BENEFICIARY: &str = "node-5";
/// Plays the fiduciary role but is named in no order, and is never killed: it audits.
const AUDITOR: &str = "node-6";
/// The nodes the whole campaign kills.
const EVERY_PARTY: [&str; 6] = [
    "node-0",
    "node-1",
    "node-2",
    "node-3",
    "node-4",
    BENEFICIARY,
];
/// How long everything may take to settle once the kills stop.
const SETTLE: Duration = Duration::from_secs(120);

/// A small deterministic generator (xorshift64*), enough to pick victims.
struct Victims {
    state: u64,
    among: &'static [&'static str],
}

impl Victims {
    fn next(&mut self) -> &'static str {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let value = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        self.among[(value >> 33) as usize % self.among.len()]
    }
}

/// Node `name` as `testnet.json` records it now (its API may move when it restarts).
fn node_of(dir: &Path, name: &str) -> dta_testnet::process::TestnetNode {
    process::load(dir)
        .expect("testnet.json")
        .nodes
        .into_iter()
        .find(|n| n.name == name)
        .expect("the node")
}

fn identity_of(dir: &Path, name: &str) -> String {
    node_of(dir, name).identity
}

/// One call; a node that is down (or dies mid-call) answers `None`.
async fn call(
    dir: &Path,
    node: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let client = node_of(dir, node).client(&dta_bin());
    let client = client.with_timeout(Duration::from_secs(30));
    let answer = client.call(method, path, body.as_ref()).await.ok()?;
    Some((answer.status, answer.body))
}

async fn get(dir: &Path, node: &str, path: &str) -> Option<(u16, Value)> {
    call(dir, node, Method::GET, path, None).await
}

/// The secret of principal `p`'s order `i`: binary, so that "intact" means every byte.
fn secret_of(p: usize, i: usize) -> Vec<u8> {
    (0..48u8)
        .map(|b| b.wrapping_mul(31).wrapping_add(i as u8) ^ (p as u8 * 0x55))
        .collect()
}

/// Principal `p` places order `i`, tries to release it to the auditor (refused: the order
/// names its beneficiary), and asks for its release, trying again while nodes are down, until
/// the principal has taken each (a call cut short by a kill may have taken effect: "exists"
/// and "all used" count as done).
async fn order_and_release(dir: &Path, p: usize, i: usize, fiduciaries: &[String]) {
    let (principal, reference) = (PRINCIPALS[p], format!("fault-{i}"));
    let body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": fiduciaries,
        "threshold": 2,
        "beneficiary": identity_of(dir, BENEFICIARY),
        "secret_hex": hex::encode(secret_of(p, i)),
    });
    let deadline = Instant::now() + SETTLE;
    loop {
        assert!(Instant::now() < deadline, "{reference} was never ordered");
        let answer = call(
            dir,
            principal,
            Method::POST,
            "/v2/orders",
            Some(body.clone()),
        )
        .await;
        match answer {
            Some((201, _)) => break,
            Some((409, error)) if error.to_string().contains("already exists") => break,
            Some((status, error)) if status < 500 && status != 409 => {
                panic!("{reference}: {status} {error}")
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let release = format!("/v2/orders/{reference}/release");
    let misdirected = json!({ "beneficiary": identity_of(dir, AUDITOR) });
    loop {
        assert!(
            Instant::now() < deadline,
            "{reference}: no answer to a misdirected release"
        );
        let answer = call(
            dir,
            principal,
            Method::POST,
            &release,
            Some(misdirected.clone()),
        )
        .await;
        match answer {
            Some((400, error)) if error.to_string().contains("is for beneficiary") => break,
            Some((status, answer)) if status < 500 && status != 409 => {
                panic!("{reference} released to another beneficiary: {status} {answer}")
            }
            // Down, or not certified yet.
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    loop {
        assert!(Instant::now() < deadline, "{reference} was never released");
        let answer = call(dir, principal, Method::POST, &release, Some(json!({}))).await;
        match answer {
            Some((200, _)) => return,
            Some((409, error)) if error.to_string().contains("all used") => return,
            // Not certified yet, a beneficiary or fiduciaries down: later.
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Kills the testnet's nodes when dropped, so that a failing campaign leaves no process
/// behind (they run in process groups of their own and outlive the test).
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Ok(testnet) = process::load(&self.0) else {
            return;
        };
        for node in testnet.nodes {
            let ours = std::fs::read(format!("/proc/{}/cmdline", node.pid)).is_ok_and(|line| {
                line.split(|b| *b == 0)
                    .any(|arg| arg == node.home.as_os_str().as_encoded_bytes())
            });
            if ours {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &node.pid.to_string()])
                    .status();
            }
        }
    }
}

/// How one order ended.
enum Settled {
    Released,
    Stuck,
    Lost(String),
}

/// Waits until principal `p`'s order `i` is released, then checks it: the beneficiary holds
/// its exact bytes, no fiduciary released it twice, one receipt, and the uninvolved node
/// audits its log.
async fn settle(dir: &Path, p: usize, i: usize, deadline: Instant) -> Settled {
    let (principal, reference) = (PRINCIPALS[p], format!("fault-{i}"));
    let path = format!("/v2/orders/{reference}");
    let whose = format!("principal={}", identity_of(dir, principal));
    let shown = loop {
        let shown = get(dir, principal, &path)
            .await
            .and_then(|(_, body)| record(&body, "principal").cloned());
        if let Some(shown) = shown.filter(|s| s["state"] == "released") {
            break shown;
        }
        if Instant::now() > deadline {
            return Settled::Stuck;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let secret = get(dir, BENEFICIARY, &format!("{path}/secret?{whose}")).await;
    match secret {
        Some((200, body)) if body["secret_hex"] == hex::encode(secret_of(p, i)) => {}
        other => return Settled::Lost(format!("{other:?}")),
    }
    for fiduciary in FIDUCIARIES {
        let held = get(dir, fiduciary, &format!("{path}?{whose}"))
            .await
            .and_then(|(_, body)| record(&body, "fiduciary").cloned());
        if let Some(held) = held {
            assert!(
                held["releases"].as_object().unwrap().len() <= 1,
                "{principal}/{reference} released twice by {fiduciary}: {held}"
            );
        }
    }
    let receipts = shown["receipts"].as_object().unwrap().len();
    assert_eq!(receipts, 1, "{principal}/{reference}: {shown}");
    // The principal's head, given: a head announcement gossiped while the auditor's mesh was
    // in flux may not have reached it (the README says so of announced heads).
    let head = shown["head"].as_str().unwrap();
    let audit = get(dir, AUDITOR, &format!("{path}/audit?head={head}")).await;
    match audit {
        Some((200, report)) if report["passed"] == true && report["receipts"] == 1 => {}
        other => panic!("{principal}/{reference} does not audit on {AUDITOR}: {other:?}"),
    }
    Settled::Released
}

fn record<'a>(records: &'a Value, role: &str) -> Option<&'a Value> {
    records.as_array()?.iter().find(|r| r["role"] == role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_nodes_killed_at_random_nothing_lost_duplicated_or_stuck() {
    campaign(&EVERY_PARTY, Duration::from_secs(2), 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beneficiary_killed_while_releases_stream_in_loses_none() {
    campaign(&[BENEFICIARY], Duration::from_millis(700), 24).await;
}

/// Runs `orders` orders and releases while one of `victims` is SIGKILLed and started again
/// every `kill_every`, then checks that every order settled as it must.
async fn campaign(victims: &'static [&'static str], kill_every: Duration, orders: usize) {
    let orders: usize = std::env::var("DTA_FAULT_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(orders);
    let seed: u64 = std::env::var("DTA_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed0f_fa17);
    println!("fault campaign: {orders} orders, seed {seed}, victims {victims:?}");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    process::up(
        UpConfig {
            dir: dir.clone(),
            nodes: 7,
            principals: 2,
            fiduciaries: 3,
            beneficiaries: 1,
            threshold: Some(2),
            binary: dta_bin(),
            pkcs11_module: None,
            lan: false,
            misbehave: Default::default(),
        },
        |_| {},
    )
    .await
    .expect("testnet up");
    let _kill_on_drop = KillOnDrop(dir.clone());
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|f| identity_of(&dir, f)).collect();

    // The campaign: kill a random node, start it again, wait, repeat, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let campaign = {
        let (dir, stop) = (dir.clone(), stop.clone());
        tokio::spawn(async move {
            let mut victims = Victims {
                state: seed.max(1),
                among: victims,
            };
            let mut kills = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(kill_every).await;
                let victim = victims.next();
                process::stop_node(&dir, victim, true)
                    .await
                    .expect("SIGKILL");
                process::restart_node(&dir, victim).await.expect("restart");
                kills += 1;
            }
            kills
        })
    };
    let started = Instant::now();
    for i in 0..orders {
        tokio::join!(
            order_and_release(&dir, 0, i, &fiduciaries),
            order_and_release(&dir, 1, i, &fiduciaries),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let kills = campaign.await.unwrap();
    println!(
        "{orders} orders and releases placed in {:?} while {kills} nodes were killed",
        started.elapsed()
    );
    assert!(
        kills >= 1,
        "no node was killed: the campaign tested nothing"
    );

    // Everything settles: each order released once, received intact, audited elsewhere.
    let deadline = Instant::now() + SETTLE;
    let (mut lost, mut stuck) = (Vec::new(), Vec::new());
    for i in 0..orders {
        for (p, principal) in PRINCIPALS.iter().enumerate() {
            let reference = format!("fault-{i}");
            match settle(&dir, p, i, deadline).await {
                Settled::Released => {}
                Settled::Stuck => stuck.push(format!("{principal}/{reference}")),
                Settled::Lost(why) => lost.push(format!("{principal}/{reference}: {why}")),
            }
        }
    }
    let _ = process::down(&dir, process::Logs::Purge).await;
    assert!(
        lost.is_empty() && stuck.is_empty(),
        "lost: {lost:?}; stuck: {stuck:?}"
    );
}
