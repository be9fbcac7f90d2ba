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

/// A `/metrics` series' value (0 when the series is absent).
fn series(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_operators_alert_on_is_counted_as_it_happens() {
    let net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "counted", "the launch codes").await;
    let (status, released) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/counted/release?wait=30",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let metrics = |node: usize| {
        let client = net.node(node).client();
        async move { String::from_utf8(client.get_bytes("/metrics").await.unwrap()).unwrap() }
    };
    let principal = metrics(PRINCIPAL).await;
    let fiduciary = metrics(1).await;
    let beneficiary = metrics(4).await;
    // Each node of the five connected to the four others, dialing or dialed.
    for text in [&principal, &fiduciary, &beneficiary] {
        let connections = series(text, "dta_connections_total{direction=\"outbound\"}")
            + series(text, "dta_connections_total{direction=\"inbound\"}");
        assert!(connections >= 4.0, "{text}");
    }
    // Records entering their states, once each however often they were saved.
    assert_eq!(
        series(
            &principal,
            "dta_record_states_total{kind=\"order\",role=\"principal\",state=\"certified\"}"
        ),
        1.0,
        "{principal}"
    );
    assert_eq!(
        series(
            &fiduciary,
            "dta_record_states_total{kind=\"order\",role=\"fiduciary\",state=\"holding\"}"
        ),
        1.0,
        "{fiduciary}"
    );
    assert_eq!(
        series(
            &beneficiary,
            "dta_record_states_total{kind=\"order\",role=\"beneficiary\",state=\"received\"}"
        ),
        1.0,
        "{beneficiary}"
    );
    // Custody steps timed by role and envelope kind.
    assert!(
        series(
            &fiduciary,
            "dta_custody_step_seconds_count{role=\"fiduciary\",kind=\"order-request\"}"
        ) >= 1.0,
        "{fiduciary}"
    );
    assert!(
        series(
            &principal,
            "dta_custody_step_seconds_count{role=\"principal\",kind=\"commitment-signature\"}"
        ) >= 3.0,
        "{principal}"
    );
    assert!(
        series(
            &beneficiary,
            "dta_custody_step_seconds_count{role=\"beneficiary\",kind=\"share-release\"}"
        ) >= 2.0,
        "{beneficiary}"
    );
    // The keystore: a fiduciary wrapped its share and unwrapped it to release it.
    for operation in ["wrap", "unwrap"] {
        assert!(
            series(
                &fiduciary,
                &format!(
                    "dta_keystore_operation_seconds_count{{backend=\"soft\",operation=\"{operation}\"}}"
                )
            ) >= 1.0,
            "{operation}: {fiduciary}"
        );
    }
    // HTTP calls by route template, method and status, and their time.
    assert_eq!(
        series(
            &principal,
            "dta_http_requests_total{route=\"/v2/orders\",method=\"POST\",status=\"201\"}"
        ),
        1.0,
        "{principal}"
    );
    assert_eq!(
        series(
            &principal,
            "dta_http_requests_total{route=\"/v2/orders/{reference}/release\",method=\"POST\",status=\"200\"}"
        ),
        1.0,
        "{principal}"
    );
    assert!(
        series(
            &principal,
            "dta_http_request_seconds_count{route=\"/v2/orders\",method=\"POST\"}"
        ) >= 1.0
    );
    // A refusal is counted under its route too, before any handler ran.
    let anonymous = dta_node::client::ApiClient::new(&net.node(PRINCIPAL).info().api);
    let refused = anonymous
        .call(dta_node::client::Method::GET, "/v2/orders", None)
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let after = metrics(PRINCIPAL).await;
    assert_eq!(
        series(
            &after,
            "dta_http_requests_total{route=\"/v2/orders\",method=\"GET\",status=\"401\"}"
        ),
        1.0,
        "{after}"
    );
    for declared in [
        "# TYPE dta_bitswap_blocks_total counter",
        "# TYPE dta_bitswap_bytes_total counter",
        "# TYPE dta_delivery_retries_total counter",
        "# TYPE dta_threshold_signatures_total counter",
        "# TYPE dta_custody_rejected_total counter",
    ] {
        assert!(after.contains(declared), "{declared}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_a_caller_may_choose() {
    let net = one_role_each(3).await;
    let api = net.node(0).info().api.clone();
    let token = dta_node::tokens::read_token_file(&net.node(0).token_file())
        .unwrap()
        .unwrap();
    let http = crate::process::raw_http_with(token.as_str());
    let id_of = |answer: &reqwest::Response| {
        answer.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let chosen = http
        .get(format!("{api}/v2/node"))
        .header("x-request-id", "ops-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&chosen), "ops-check-1");
    let (first, second) = (
        http.get(format!("{api}/v2/node")).send().await.unwrap(),
        http.get(format!("{api}/v2/node")).send().await.unwrap(),
    );
    assert_eq!(id_of(&first).len(), 16);
    assert_ne!(id_of(&first), id_of(&second));
    // An id that could forge a log line is replaced, not echoed.
    let forged = http
        .get(format!("{api}/v2/node"))
        .header("x-request-id", "a\"b")
        .send()
        .await
        .unwrap();
    assert_ne!(id_of(&forged), "a\"b");
    // Refusals carry one too.
    let refused = reqwest::Client::new()
        .get(format!("{api}/v2/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(id_of(&refused).len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_log_lines_carry_its_request_id_and_its_order_in_the_merged_logs() {
    use crate::process::{dta_client, succeed_blocking};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traced");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let _down = crate::lan::Down(dir_arg.clone());
    let up = succeed_blocking(dta_client(&[
        "testnet", "up", "--dir", &dir_arg, "--nodes", "5", "--json",
    ]))
    .await;
    let testnet: serde_json::Value = serde_json::from_slice(&up).unwrap();
    let nodes = testnet["nodes"].as_array().unwrap();
    let identity = |i: usize| nodes[i]["identity"].clone();
    let body = serde_json::json!({
        "reference": "traced-1",
        "fiduciaries": [identity(1), identity(2), identity(3)],
        "threshold": 2,
        "beneficiary": identity(4),
        "secret": "the launch codes",
    });
    let home = Path::new(nodes[0]["home"].as_str().unwrap());
    let token = dta_node::tokens::read_token_file(&home.join(dta_node::tokens::HOME_TOKEN_FILE))
        .unwrap()
        .unwrap();
    let http = crate::process::raw_http_with(token.as_str());
    let api = nodes[0]["api"].as_str().unwrap();
    let created = http
        .post(format!("{api}/v2/orders?wait=30"))
        .header("x-request-id", "trace-order-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let released = http
        .post(format!("{api}/v2/orders/traced-1/release?wait=30"))
        .header("x-request-id", "trace-release-1")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    // The release call's line is among the order's lines, with its id and route.
    let lines = dta_testnet::process::logs::merged(&dir, Some("traced-1")).unwrap();
    let call = lines
        .iter()
        .find(|l| {
            l.line["span"]["id"] == "trace-release-1" && l.line["fields"]["message"] == "api call"
        })
        .unwrap_or_else(|| panic!("no line of the call in {lines:#?}"));
    assert_eq!(call.node, "node-0");
    assert_eq!(call.line["span"]["route"], "/v2/orders/{reference}/release");
    assert_eq!(call.line["fields"]["status"], 200);
    // The principal's own lines about the calls carry their ids too.
    for (id, message) in [
        ("trace-order-1", "order made"),
        ("trace-release-1", "release requested"),
    ] {
        assert!(
            lines.iter().any(|l| l.node == "node-0"
                && l.line["span"]["id"] == id
                && l.line["fields"]["message"] == message),
            "no line {message:?} with {id} in {lines:#?}"
        );
    }
    // The order's own steps on the other nodes are there too, in time order.
    assert!(lines.iter().any(|l| l.node == "node-4"), "{lines:#?}");
}
