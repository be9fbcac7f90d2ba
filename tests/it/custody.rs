//! Custody across separate nodes: 1 principal, 3 fiduciaries (t = 2), 1 beneficiary, driven
//! through the HTTP API.

use std::time::Duration;

use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const PRINCIPAL: usize = 0;
const FIDUCIARIES: [usize; 3] = [1, 2, 3];
const BENEFICIARY: usize = 4;

struct Api {
    client: reqwest::Client,
}

impl Api {
    fn new() -> Self {
        Self {
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, net: &Testnet, node: usize, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", net.node(node).info().api);
        let response = self.client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, net: &Testnet, node: usize, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", net.node(node).info().api);
        let response = self.client.post(url).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the order's record for `role` on `node` reaches `state`.
    async fn wait_state(
        &self,
        net: &Testnet,
        node: usize,
        reference: &str,
        role: &str,
        state: &str,
    ) {
        let waited = tokio::time::timeout(TIMEOUT, async {
            loop {
                let (status, body) = self
                    .get(net, node, &format!("/v2/orders/{reference}"))
                    .await;
                if status == 200
                    && body
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["role"] == role && r["state"] == state)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{reference}: {role} on node {node} never reached {state}"
        );
    }
}

fn identity(net: &Testnet, node: usize) -> String {
    net.node(node).info().identity.clone()
}

async fn order(api: &Api, net: &Testnet, reference: &str, secret: &str) {
    let body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(net, BENEFICIARY),
        "secret": secret,
    });
    let (status, created) = api.post(net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(net, PRINCIPAL, reference, "principal", "certified")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safeguarded_secret_is_certified_released_with_a_fiduciary_down_and_audited() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    order(&api, &net, "alpha", "the launch codes").await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "alpha", "fiduciary", "certified")
            .await;
    }

    // A fiduciary goes away; two of three still release.
    net.test_node(2).stop().await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/alpha/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "alpha", "beneficiary", "received")
        .await;
    let (status, body) = api.get(&net, BENEFICIARY, "/v2/orders/alpha/secret").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"], "the launch codes");
    api.wait_state(&net, PRINCIPAL, "alpha", "principal", "released")
        .await;

    // The policy is one release: a second is refused, and nobody else may release.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/alpha/release", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api
        .post(&net, BENEFICIARY, "/v2/orders/alpha/release", json!({}))
        .await;
    assert_eq!(status, 404, "{body}");

    // The log audits on the principal and on the beneficiary.
    for node in [PRINCIPAL, BENEFICIARY] {
        let (status, report) = api.get(&net, node, "/v2/orders/alpha/audit").await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["passed"], true);
        assert_eq!(report["certified"], true);
        assert_eq!(report["receipts"], 1);
    }
    // Nothing of the secret is visible on a fiduciary.
    let (status, _) = api.get(&net, 1, "/v2/orders/alpha/secret").await;
    assert_eq!(status, 404);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_two_fiduciaries_down_fails_cleanly_and_can_be_retried() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    order(&api, &net, "beta", "seed words").await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "beta", "fiduciary", "certified")
            .await;
    }
    net.test_node(1).stop().await;
    net.test_node(2).stop().await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/beta/release", json!({}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("only 1 of 3 fiduciaries reachable; 2 needed"),
        "{body}"
    );
    let (status, _) = api.get(&net, BENEFICIARY, "/v2/orders/beta/secret").await;
    assert_eq!(status, 404, "one share reveals nothing");

    // A fiduciary comes back (restarted from its home): the same release goes through.
    net.test_node(1).start().await.expect("restart");
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (status, body) = api
                .post(&net, PRINCIPAL, "/v2/orders/beta/release", json!({}))
                .await;
            if status == 200 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the retried release never went through");
    api.wait_state(&net, BENEFICIARY, "beta", "beneficiary", "received")
        .await;
    let (_, body) = api.get(&net, BENEFICIARY, "/v2/orders/beta/secret").await;
    assert_eq!(body["secret"], "seed words");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_get_clear_errors_and_change_nothing() {
    let net = Testnet::builder().nodes(3).build().await.expect("testnet");
    let api = Api::new();
    let fiduciaries = vec![identity(&net, 1), identity(&net, 2)];
    let base = json!({
        "reference": "gamma",
        "fiduciaries": fiduciaries,
        "threshold": 2,
        "beneficiary": identity(&net, 2),
        "secret": "s",
    });
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("plugin", json!("nosuchplugin")), 400, "unknown plugin"),
        (with("threshold", json!(0)), 400, "threshold"),
        (with("threshold", json!(3)), 400, "threshold"),
        (with("fiduciaries", json!(["not-a-cid"])), 400, "not-a-cid"),
        (
            with(
                "beneficiary",
                json!("bafyreihpwa7h6picxhmvb6j6zcgxliqlbiukouvflfueh3lkj3tdfa3sp4"),
            ),
            400,
            "unknown or unverified identity",
        ),
        (with("secret", json!("")), 400, "secret"),
        (with("reference", json!("has space")), 400, "reference"),
        (with("colour", json!("blue")), 400, "unknown field"),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = api.post(&net, 0, "/v2/orders", body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let (status, listed) = api.get(&net, 0, "/v2/orders").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "no bad order left a trace"
    );

    // A reused reference is refused.
    let (status, _) = api.post(&net, 0, "/v2/orders", base.clone()).await;
    assert_eq!(status, 201);
    let (status, answer) = api.post(&net, 0, "/v2/orders", base).await;
    assert_eq!(status, 409, "{answer}");
    let (status, _) = api.get(&net, 0, "/v2/orders/nosuchorder").await;
    assert_eq!(status, 404);
    net.stop().await;
}
