//! What an operator deploys beside a node, checked against a running one: the Prometheus
//! alerts (and any Grafana dashboard) under `deploy/` name only metrics a node serves, and a
//! node's `/metrics` passes Prometheus' own checker, `promtool` (tier 3). The systemd unit is
//! checked by `systemd-analyze` in `scripts/test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::custody::{Api, PRINCIPAL, one_role_each, order};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `dta_…` name in `text`.
fn dta_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dta_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The metric names a `/metrics` text declares, with the series names of its histograms and
/// summaries.
fn served(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = declared.split(' ');
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        let parts: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["_sum", "_count"],
            _ => &[],
        };
        names.extend(parts.iter().map(|part| format!("{name}{part}")));
    }
    names
}

/// The `/metrics` of a node of a testnet that certified an order.
async fn metrics_after_an_order() -> String {
    let net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "watched", "the launch codes").await;
    let text = net
        .node(PRINCIPAL)
        .client()
        .get_bytes("/metrics")
        .await
        .unwrap();
    net.stop().await;
    String::from_utf8(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_and_dashboards_name_only_metrics_a_node_serves() {
    let metrics = metrics_after_an_order().await;
    let served = served(&metrics);
    assert!(
        metrics.contains("dta_orders{role=\"principal\",state=\"certified\"} 1"),
        "{metrics}"
    );
    let mut files = vec![deploy().join("prometheus/alerts.yml")];
    if let Ok(dashboards) = std::fs::read_dir(deploy().join("grafana")) {
        files.extend(dashboards.map(|entry| entry.unwrap().path()));
    }
    let mut named = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in dta_names(&text) {
            named += 1;
            assert!(
                served.contains(&name),
                "{} names {name}, which no node serves",
                file.display()
            );
        }
    }
    assert!(named >= 10, "the deploy files name only {named} metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (Debian's prometheus): scripts/test runs it"]
async fn a_nodes_metrics_pass_promtool() {
    use std::io::Write;
    let metrics = metrics_after_an_order().await;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool: {said}\n{metrics}");
    assert!(said.trim().is_empty(), "promtool lints: {said}");
}
