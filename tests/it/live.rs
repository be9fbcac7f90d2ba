//! What the web UI reads: a node's live event stream (`GET /v2/events`), an order's log as a
//! chain (`GET /v2/orders/{ref}/log`), and the UI's own static answers. The browser tests
//! (`ui`) drive the pages themselves.

use std::time::Duration;

use dta_node::client::ServerEvent;
use serde_json::{Value, json};

use crate::custody::{Api, identity, one_role_each, order};

const SECRET: &str = "the combination is 31-7-12";

/// Reads events until one satisfies `wanted`; every event read, in order.
async fn events_until(
    stream: &mut dta_node::client::EventStream,
    wanted: impl Fn(&ServerEvent) -> bool,
) -> Vec<ServerEvent> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = stream.next().await {
            let event = event.expect("a well-formed event");
            let done = wanted(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the wanted event never came; seen: {seen:?}"
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_event_stream_starts_with_a_snapshot_and_follows_its_orders() {
    let net = one_role_each(5).await;
    let api = Api::new();
    let mut stream = net.node(0).client().events().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.name, "snapshot");
    assert_eq!(first.data["identity"], identity(&net, 0));
    assert_eq!(first.data["roles"], json!(["principal"]));
    assert_eq!(
        first.data["peers"].as_array().unwrap().len(),
        4,
        "{}",
        first.data
    );
    assert_eq!(first.data["records"], json!([]));

    order(&api, &net, "live-1", SECRET).await;
    let seen = events_until(&mut stream, |e| {
        e.name == "record" && e.data["reference"] == "live-1" && e.data["state"] == "certified"
    })
    .await;
    let states: Vec<&Value> = seen
        .iter()
        .filter(|e| e.name == "record")
        .map(|e| &e.data["state"])
        .collect();
    assert!(states.len() >= 2, "every step is an event: {states:?}");
    assert!(
        seen.iter()
            .all(|e| e.name != "record" || e.data["role"] == "principal")
    );
    // A heartbeat every second, and nothing secret in any event.
    let more = events_until(&mut stream, |e| e.name == "heartbeat").await;
    for event in seen.iter().chain(&more) {
        assert!(!event.data.to_string().contains(SECRET), "{event:?}");
    }
    // A new watcher starts from a snapshot holding the order.
    let mut again = net.node(1).client().events().await.unwrap();
    let snapshot = again.next().await.unwrap().unwrap();
    assert_eq!(snapshot.name, "snapshot");
    let records = snapshot.data["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["reference"], "live-1");
    assert_eq!(records[0]["role"], "fiduciary");
    assert_eq!(records[0]["principal"], identity(&net, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_log_is_drawn_as_a_chain_oldest_first_with_what_hangs_off_it() {
    let net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "chain-1", SECRET).await;
    let (status, log) = api.get(&net, 0, "/v2/orders/chain-1/log").await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["reference"], "chain-1");
    let envelopes = log["envelopes"].as_array().unwrap();
    let chain: Vec<&Value> = envelopes.iter().filter(|e| e["on_chain"] == true).collect();
    let kinds: Vec<&str> = chain.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"order-request"), "{kinds:?}");
    assert!(kinds.contains(&"certificate"), "{kinds:?}");
    assert_eq!(chain.last().unwrap()["cid"], log["head"]);
    // Each envelope on the chain links back to the one before it.
    assert!(chain[0]["prev"].is_null());
    for pair in chain.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["cid"], "{pair:?}");
    }
    // The fiduciaries' custody signatures hang off the commitment, each signed by its own.
    let commitment = chain.iter().find(|e| e["kind"] == "commitment").unwrap();
    let signatures: Vec<&Value> = envelopes
        .iter()
        .filter(|e| e["kind"] == "commitment-signature")
        .collect();
    assert_eq!(signatures.len(), 3, "{envelopes:?}");
    let mut signers: Vec<&str> = signatures
        .iter()
        .map(|s| {
            assert_eq!(s["on_chain"], false);
            assert_eq!(s["prev"], commitment["cid"]);
            s["signer_name"].as_str().unwrap()
        })
        .collect();
    signers.sort();
    assert_eq!(signers, ["node-1", "node-2", "node-3"]);
    assert!(!log.to_string().contains(SECRET));

    let (status, body) = api.get(&net, 0, "/v2/orders/no-such/log").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .get(&net, 0, "/v2/orders/chain-1/log?principal=not-a-cid")
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_static_open_and_loads_nothing_from_elsewhere_while_events_need_a_token() {
    let net = one_role_each(3).await;
    let base = net.node(0).info().api.clone();
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/ui", "text/html"),
        ("/ui/node.js", "text/javascript"),
        ("/ui/live.js", "text/javascript"),
        ("/ui/ui.css", "text/css"),
    ] {
        let answer = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let headers = answer.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        // Nothing is loaded from another host (SVG's namespace is a name, never fetched).
        let text = answer
            .text()
            .await
            .unwrap()
            .replace("'http://www.w3.org/2000/svg'", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
    }
    let missing = http
        .get(format!("{base}/ui/other.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let events = http.get(format!("{base}/v2/events")).send().await.unwrap();
    assert_eq!(events.status(), 401);
    // With a token the stream opens as server-sent events.
    let token = dta_node::tokens::read_token_file(&net.node(0).token_file())
        .unwrap()
        .unwrap();
    let events = http
        .get(format!("{base}/v2/events"))
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
}
