//! Dishonest nodes: the example scenarios of `testnet/scenarios/byzantine` run with the test
//! build `dta-byzantine`, whose nodes started with `misbehave` play a role against the
//! protocol. Each scenario shows the honest nodes refuse it, the order finish where the
//! threshold allows, the culprit counted by offence, and the audit prove it; here the logs
//! are checked to name the culprit too. The honest `dta` refuses to misbehave (see
//! `process::a_usage_error_of_dta_run_leaves_the_home_untouched`) and to run these scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{dta_bin, run_to_end};

/// The test build: `DTA_BYZANTINE_BIN`, or `dta-byzantine` next to `dta`.
fn byzantine_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DTA_BYZANTINE_BIN") {
        return PathBuf::from(path);
    }
    let bin = dta_bin().with_file_name("dta-byzantine");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p dta-cli --features byzantine --bin \
         dta-byzantine`) or set DTA_BYZANTINE_BIN",
        bin.display()
    );
    bin
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/scenarios/byzantine")
}

/// The identity a node's log says it started with.
fn identity_in(log: &str) -> String {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "node ready")
        .and_then(|line| line["fields"]["identity"].as_str().map(str::to_owned))
        .expect("a node ready line with its identity")
}

/// Whether a node's log has a warning naming `culprit` for `offence`.
fn names(log: &str, culprit: &str, offence: &str) -> bool {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| {
            line["level"] == "WARN"
                && line["fields"]["culprit"] == culprit
                && line["fields"]["offence"] == offence
        })
}

/// Whether a node's log has a warning naming `culprit` for any offence.
fn names_for_anything(log: &str, culprit: &str) -> bool {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| line["fields"]["culprit"] == culprit && line["fields"]["offence"].is_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dishonest_nodes_are_refused_named_in_logs_and_metrics_and_proven_by_the_audit() {
    // (scenario, culprit, offence, nodes whose logs must name it)
    let cases = [
        ("wrong-share", "node-2", Some("wrong-share"), vec!["node-4"]),
        (
            "bad-deal",
            "node-0",
            Some("deal-off-commitment"),
            vec!["node-1"],
        ),
        (
            "split-commitment",
            "node-0",
            Some("equivocation"),
            vec!["node-1", "node-3"],
        ),
        ("equivocate", "node-2", Some("equivocation"), vec!["node-4"]),
        (
            "bad-dkg-share",
            "node-2",
            Some("bad-key-generation-share"),
            vec!["node-1", "node-0"],
        ),
        ("flood", "node-3", Some("flood"), vec!["node-0", "node-4"]),
        (
            "bad-sub-share",
            "node-2",
            Some("bad-sub-share"),
            vec!["node-1", "node-0"],
        ),
        (
            "sign-other-commitment",
            "node-2",
            Some("bad-custody-signature"),
            vec!["node-0"],
        ),
        (
            "malformed",
            "node-2",
            Some("malformed-message"),
            vec!["node-0", "node-4"],
        ),
        (
            "oversized",
            "node-2",
            Some("oversized-message"),
            vec!["node-0", "node-4"],
        ),
        ("replay", "node-2", None, vec!["node-0", "node-4"]),
    ];
    let mut examples_here: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    examples_here.sort();
    let mut run_here: Vec<&str> = cases.iter().map(|case| case.0).collect();
    run_here.sort();
    assert_eq!(examples_here, run_here, "every example scenario runs here");
    let binary = byzantine_bin();
    for (scenario, culprit, offence, observers) in cases {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("net");
        let file = examples().join(format!("{scenario}.toml"));
        let mut command = Command::new(&binary);
        command
            .env_remove("DTA_API")
            .env_remove("DTA_HOME")
            .args(["scenario", "run", file.to_str().unwrap(), "--json", "--dir"])
            .arg(&dir);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{scenario}: {}", String::from_utf8_lossy(&output.stderr)));
        let steps = report["steps"].as_array().unwrap();
        let failed: Vec<&serde_json::Value> =
            steps.iter().filter(|s| s["passed"] != true).collect();
        assert!(failed.is_empty(), "{scenario}: failed steps {failed:?}");
        let counted = |offence: &str| {
            steps.iter().any(|s| {
                s["step"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("counted {offence}"))
            })
        };
        assert!(
            offence.is_none_or(counted),
            "{scenario} checks no metric: {report}"
        );
        // The network is down; the logs stay.
        let log = |node: &str| {
            std::fs::read_to_string(dir.join("logs").join(format!("{node}.log")))
                .unwrap_or_else(|e| panic!("{scenario}: {node}'s log: {e}"))
        };
        let culprit_identity = identity_in(&log(culprit));
        for observer in observers {
            match offence {
                Some(offence) => assert!(
                    names(&log(observer), &culprit_identity, offence),
                    "{scenario}: {observer}'s log does not name {culprit} ({culprit_identity}) for {offence}"
                ),
                None => assert!(
                    !names_for_anything(&log(observer), &culprit_identity),
                    "{scenario}: {observer}'s log names {culprit} ({culprit_identity}) for an offence"
                ),
            }
        }
    }
}

#[test]
fn the_honest_build_refuses_scenarios_with_dishonest_nodes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    let file = examples().join("wrong-share.toml");
    let (ok, stderr) = run_to_end(
        Command::new(dta_bin())
            .args(["scenario", "run", file.to_str().unwrap(), "--dir"])
            .arg(&dir),
    );
    assert!(!ok);
    assert!(stderr.contains("dta-byzantine"), "{stderr}");
    assert!(!dir.exists(), "nothing was started");
    // The test build names what it can do when asked for something else.
    let scenario = root.path().join("dance.toml");
    std::fs::write(
        &scenario,
        "[network]\nnodes = 3\nmisbehave = { \"node-1\" = \"dance\" }\n\n[[steps]]\ndo = \"wait-until\"\nseconds = 0\n",
    )
    .unwrap();
    let (ok, stderr) = run_to_end(
        Command::new(byzantine_bin())
            .args(["scenario", "run", scenario.to_str().unwrap(), "--dir"])
            .arg(&dir),
    );
    assert!(!ok);
    assert!(
        stderr.contains("no misbehaviour \"dance\"") && stderr.contains("wrong-share"),
        "{stderr}"
    );
}
