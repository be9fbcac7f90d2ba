//! Waiting for custody steps: `dta order create|release --wait` and `?wait=SECONDS` answer
//! once the order is certified or the beneficiary holds the secret, and on timeout name the
//! fiduciaries that have not answered and since when; `dta order show` names them too.

use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::{Api, identity, one_role_each, record};
use crate::process::dta_output;

const PRINCIPAL: usize = 0;
const FIDUCIARIES: [usize; 3] = [1, 2, 3];
const BENEFICIARY: usize = 4;
const DOWN: usize = 3;

/// The identities of an order: fiduciaries, then the beneficiary (read while every node runs).
fn parties(net: &Testnet) -> Vec<String> {
    FIDUCIARIES
        .iter()
        .chain([&BENEFICIARY])
        .map(|i| identity(net, *i))
        .collect()
}

fn order_args(net: &Testnet, parties: &[String], reference: &str, wait: u64) -> Vec<String> {
    let mut args = vec!["order".into(), "create".into()];
    for fiduciary in &parties[..FIDUCIARIES.len()] {
        args.extend(["--fiduciary".into(), fiduciary.clone()]);
    }
    args.extend([
        "--threshold".into(),
        "2".into(),
        "--beneficiary".into(),
        parties[FIDUCIARIES.len()].clone(),
        "--secret".into(),
        "the vault code".into(),
        "--reference".into(),
        reference.into(),
        format!("--wait={wait}"),
        "--api".into(),
        net.node(PRINCIPAL).info().api.clone(),
        "--token-file".into(),
        net.node(PRINCIPAL).token_file().display().to_string(),
    ]);
    args
}

fn order_body(parties: &[String], reference: &str) -> Value {
    json!({
        "reference": reference,
        "fiduciaries": &parties[..FIDUCIARIES.len()],
        "threshold": 2,
        "beneficiary": parties[FIDUCIARIES.len()],
        "secret": "the vault code",
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_ends_when_the_step_is_done_or_names_who_has_not_answered() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let parties = parties(&net);
    let down = identity(&net, DOWN);
    let up = identity(&net, FIDUCIARIES[0]);
    net.test_node(DOWN).stop().await;

    // The CLI gives up after its wait and names the fiduciary that never signed.
    let started = now_ms();
    let output = dta_output(order_args(&net, &parties, "stalled", 3)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("order stalled is not certified after 3 s")
            && stderr.contains(&format!("custody signature from {down} since")),
        "{stderr}"
    );
    assert!(!stderr.contains(&up), "{stderr}");

    // `dta order show` names it as well, and the API says since when.
    let show = dta_output(vec![
        "order".into(),
        "show".into(),
        "stalled".into(),
        "--api".into(),
        net.node(PRINCIPAL).info().api.clone(),
        "--token-file".into(),
        net.node(PRINCIPAL).token_file().display().to_string(),
    ])
    .await;
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success());
    assert!(
        shown.contains(&format!("custody signature from {down} since")),
        "{shown}"
    );
    let (_, body) = api.get(&net, PRINCIPAL, "/v2/orders/stalled").await;
    let awaited = &record(&body, "principal")["waiting_for"];
    assert_eq!(awaited.as_array().unwrap().len(), 1, "{awaited}");
    assert_eq!(awaited[0]["identity"], down.as_str());
    let since = awaited[0]["since_ms"].as_u64().unwrap();
    assert!(since >= started - 1_000 && since <= now_ms(), "{since}");

    // Over HTTP: 202 and who is awaited once the wait runs out.
    let (status, answer) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders?wait=1",
            order_body(&parties, "stalled-http"),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["waited"], json!({"seconds": 1, "reached": false}));
    assert_eq!(answer["waiting_for"][0]["identity"], down.as_str());

    // A wait longer than allowed is refused before anything is made.
    let (status, answer) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders?wait=100000",
            order_body(&parties, "too-long"),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = api.get(&net, PRINCIPAL, "/v2/orders/too-long").await;
    assert_eq!(status, 404);

    // With every fiduciary up, the waits end as soon as the step is done.
    net.test_node(DOWN).start().await.unwrap();
    net.wait_for_full_knowledge(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let output = dta_output(order_args(&net, &parties, "prompt", 30)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "prompt");
    let (_, body) = api.get(&net, PRINCIPAL, "/v2/orders/prompt").await;
    assert_eq!(record(&body, "principal")["state"], "certified");

    let output = dta_output(vec![
        "order".into(),
        "release".into(),
        "prompt".into(),
        "--wait=30".into(),
        "--api".into(),
        net.node(PRINCIPAL).info().api.clone(),
        "--token-file".into(),
        net.node(PRINCIPAL).token_file().display().to_string(),
    ])
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // No polling here: the wait said the beneficiary holds it.
    let (status, secret) = api.get(&net, BENEFICIARY, "/v2/orders/prompt/secret").await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["secret"], "the vault code");

    let (status, answer) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders?wait=30",
            order_body(&parties, "prompt-http"),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["waited"]["reached"], true);
    assert_eq!(answer["state"], "certified");
    let (status, answer) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/prompt-http/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["waited"]["reached"], true);
    assert!(answer["receipts"]["1"].is_string(), "{answer}");
    net.stop().await;
}
