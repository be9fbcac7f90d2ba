//! Fault campaigns on real processes (`dta_testnet::chaos`): two principals place orders under
//! the same references with the same fiduciaries and beneficiary, try to release each to
//! another identity (always refused) and release it to its beneficiary, while nodes are
//! SIGKILLed and started again, or cut off and healed, on a seeded schedule; afterwards every
//! order must be certified, released once, received intact, audited from an uninvolved node,
//! and audited to the same head everywhere: nothing lost, duplicated, stuck or misdirected.
//!
//! `DTA_FAULT_ORDERS` (default 24) sets the number of orders of the kill campaigns,
//! `DTA_FAULT_SEED` their seed, `DTA_CHAOS_SEED` and `DTA_CHAOS_SECONDS` the chaos run's (each
//! printed, so that a failing run can be repeated).

use std::time::Duration;

use dta_testnet::chaos::{self, BENEFICIARY, ChaosConfig, PARTIES};

use crate::process::{dta_bin, dta_client};

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `orders` orders per principal while one of `victims` is SIGKILLed and started again
/// every `kill_every` (no partitions), and checks every invariant.
async fn kill_campaign(victims: &[&str], kill_every: Duration, orders: u64) {
    let root = tempfile::tempdir().unwrap();
    let seed = from_env("DTA_FAULT_SEED", 0x005e_ed0f_fa17);
    let mut config = ChaosConfig::new(
        root.path().join("net"),
        dta_bin(),
        seed,
        // The orders end the run, long before this.
        Duration::from_secs(600),
    );
    config.fault_every = kill_every;
    config.victims = victims.iter().map(|v| (*v).to_owned()).collect();
    config.partitions = false;
    config.orders = Some(from_env("DTA_FAULT_ORDERS", orders) as usize);
    let report = chaos::run(config, |line| println!("{line}"))
        .await
        .expect("the campaign runs");
    assert!(report.kills >= 1, "no node was killed: {report}");
    assert!(
        report.violations.is_empty(),
        "{report}: {:?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_nodes_killed_at_random_nothing_lost_duplicated_or_stuck() {
    kill_campaign(&PARTIES, Duration::from_secs(2), 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beneficiary_killed_while_releases_stream_in_loses_none() {
    kill_campaign(&[BENEFICIARY], Duration::from_millis(700), 24).await;
}

/// `dta scenario run --chaos SEED --duration D`: kills and partitions on a seeded schedule,
/// the report as JSON, and no invariant violated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_chaos_run_with_kills_and_partitions_violates_no_invariant() {
    let seed = from_env("DTA_CHAOS_SEED", 20_261_205);
    let seconds = from_env("DTA_CHAOS_SECONDS", 20);
    println!("chaos seed {seed}, {seconds} s");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    let (seed_arg, seconds_arg) = (seed.to_string(), seconds.to_string());
    let mut command = dta_client(&[
        "scenario",
        "run",
        "--chaos",
        &seed_arg,
        "--duration",
        &seconds_arg,
        "--json",
        "--dir",
    ]);
    command.arg(&dir);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "seed {seed}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "seed {seed}: {report}");
    assert_eq!(report["seed"], seed);
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    assert!(report["orders"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["kills"].as_u64().unwrap() + report["partitions"].as_u64().unwrap() >= 3,
        "too few faults to test anything: {report}"
    );
    // The network is down; its logs stay.
    assert!(!dir.join("testnet.json").exists());
    assert!(dir.join("logs").join("node-6.log").exists());
}
