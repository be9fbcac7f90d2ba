//! Custody across separate nodes: 1 principal, 3 fiduciaries (t = 2), 1 beneficiary, driven
//! through the HTTP API.

use std::time::Duration;

use dta_actors::roles::Role;
use dta_node::client::Method;
use dta_testnet::bench;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const PRINCIPAL: usize = 0;
pub(crate) const FIDUCIARIES: [usize; 3] = [1, 2, 3];
pub(crate) const BENEFICIARY: usize = 4;

pub(crate) struct Api;

impl Api {
    pub(crate) fn new() -> Self {
        Self
    }

    pub(crate) async fn get(&self, net: &Testnet, node: usize, path: &str) -> (u16, Value) {
        let answer = net.node(node).client().call(Method::GET, path, None).await;
        let answer = answer.unwrap();
        (answer.status, answer.body)
    }

    pub(crate) async fn post(
        &self,
        net: &Testnet,
        node: usize,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let client = net.node(node).client();
        let answer = client.call(Method::POST, path, Some(&body)).await.unwrap();
        (answer.status, answer.body)
    }

    /// Waits until the order's record for `role` on `node` reaches `state`.
    pub(crate) async fn wait_state(
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

/// A testnet of `nodes` nodes playing one role each, as in a deployment: node 0 the
/// principal, the last node the beneficiary, the others fiduciaries. Nothing a role needs may
/// come from another role of the same node.
pub(crate) async fn one_role_each(nodes: usize) -> Testnet {
    Testnet::builder()
        .nodes(nodes)
        .one_role_each(move |i| match i {
            0 => Role::Principal,
            i if i + 1 == nodes => Role::Beneficiary,
            _ => Role::Fiduciary,
        })
        .build()
        .await
        .expect("testnet")
}

/// The CID of the certificate an audit report lists.
pub(crate) fn certificate_in(report: &Value) -> dta_protocol::Cid {
    report["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "certificate")
        .unwrap()["cid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) fn identity(net: &Testnet, node: usize) -> String {
    net.node(node).info().identity.clone()
}

/// A 2-of-3 `safeguardsecret` order of `secret` by the principal, for the beneficiary.
pub(crate) fn order_body(net: &Testnet, reference: &str, secret: &str) -> Value {
    json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(net, BENEFICIARY),
        "secret": secret,
    })
}

pub(crate) async fn order(api: &Api, net: &Testnet, reference: &str, secret: &str) {
    let body = order_body(net, reference, secret);
    let (status, created) = api.post(net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(net, PRINCIPAL, reference, "principal", "certified")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safeguarded_secret_is_certified_released_with_a_fiduciary_down_and_audited() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "alpha", "the launch codes").await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "alpha", "fiduciary", "holding")
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
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "this node does not play the principal role");

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
        api.wait_state(&net, fiduciary, "beta", "fiduciary", "holding")
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
        (with("secret", Value::Null), 400, "needs a secret"),
        (with("plugin", json!("milagro")), 400, "takes no secret"),
        (with("input", json!({ "coin": "0" })), 400, "takes no input"),
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

/// An identity with no node behind it, made known to the given nodes through the same path
/// the network feeds. The tests sign with its keys to play a misbehaving party.
pub(crate) async fn stranger(
    net: &Testnet,
    seed: u8,
    known_to: &[usize],
) -> dta_protocol::identity::LocalIdentity {
    let peer = libp2p::PeerId::random();
    let local = dta_protocol::identity::LocalIdentity::create(
        &dta_crypto::Secret::new([seed; 32]),
        "stranger",
        &peer.to_bytes(),
        1,
    )
    .unwrap();
    let document = dta_protocol::dagcbor::encode(local.identity().document()).unwrap();
    for node in known_to {
        let identities = dta_actors::registry::identities(&net.node(*node).info().peer_id)
            .expect("identities actor");
        identities
            .send_message(dta_actors::identities::IdentitiesMsg::Network(
                dta_actors::network::NetworkEvent::IdentityReceived {
                    peer,
                    document: document.clone(),
                },
            ))
            .unwrap();
        let mut directory = net.node(*node).directory();
        tokio::time::timeout(
            TIMEOUT,
            directory.wait_for(|d| d.identities.contains_key(&local.cid().to_string())),
        )
        .await
        .expect("stranger known")
        .unwrap();
    }
    local
}

pub(crate) fn envelope(
    from: &dta_protocol::identity::LocalIdentity,
    kind: dta_protocol::envelope::Kind,
    reference: &str,
    prev: dta_protocol::Cid,
    public: Option<Vec<u8>>,
    secret: Option<&[u8]>,
    recipients: &[&dta_protocol::identity::VerifiedIdentity],
) -> Vec<u8> {
    dta_protocol::envelope::SignedEnvelope::create(
        from,
        dta_protocol::envelope::Draft {
            kind,
            order: reference,
            prev: Some(prev),
            timestamp: 1,
            public,
            secret,
            recipients,
        },
    )
    .unwrap()
    .to_block()
    .unwrap()
    .into_bytes()
}

/// A first release request of `reference` signed by `signer`, linked to the certificate.
pub(crate) fn release_request(
    signer: &dta_protocol::identity::LocalIdentity,
    reference: &str,
    order: dta_protocol::Cid,
    certificate: dta_protocol::Cid,
    beneficiary: dta_protocol::Cid,
) -> Vec<u8> {
    let request = dta_protocol::order::ReleaseRequest {
        order,
        certificate,
        beneficiary,
        sequence: 1,
    };
    envelope(
        signer,
        dta_protocol::envelope::Kind::ReleaseRequest,
        reference,
        certificate,
        Some(dta_protocol::dagcbor::encode(&request).unwrap()),
        None,
        &[],
    )
}

/// Delivers a block to `to` from `from`'s network, and waits until `to`'s role actor has
/// handled it (a `Describe` call queues behind the delivered event).
pub(crate) async fn deliver_and_settle(
    net: &Testnet,
    from: usize,
    to: usize,
    role: &str,
    block: Vec<u8>,
) {
    let peer: libp2p::PeerId = net.node(to).info().peer_id.parse().unwrap();
    let answer = net
        .node(from)
        .network()
        .request(
            peer,
            dta_protocol::network::Request::Deliver {
                blocks: vec![block.into()],
            },
        )
        .await
        .expect("delivered");
    assert_eq!(answer, dta_protocol::network::Response::Accepted);
    let actor = dta_actors::registry::role(&net.node(to).info().peer_id, role.parse().unwrap())
        .expect("role actor");
    ractor::call_t!(actor, dta_actors::roles::RoleMsg::Describe, 5_000).unwrap();
}

pub(crate) fn record(body: &Value, role: &str) -> Value {
    body.as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == role)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_releases_are_refused() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    order(&api, &net, "delta", "private key").await;
    api.wait_state(&net, 1, "delta", "fiduciary", "holding")
        .await;
    let mallory = stranger(&net, 0x4d, &[1]).await;
    let (_, held) = api.get(&net, PRINCIPAL, "/v2/orders/delta").await;
    let held = record(&held, "principal");
    let order_cid: dta_protocol::Cid = held["order"].as_str().unwrap().parse().unwrap();
    let certificate: dta_protocol::Cid = held["certificate"].as_str().unwrap().parse().unwrap();

    // Mallory, a verified identity but not the principal, asks fiduciary 1 for a release.
    let block = release_request(&mallory, "delta", order_cid, certificate, mallory.cid());
    deliver_and_settle(&net, BENEFICIARY, 1, "fiduciary", block).await;
    let (_, after) = api.get(&net, 1, "/v2/orders/delta").await;
    assert_eq!(
        record(&after, "fiduciary")["releases"],
        json!({}),
        "nothing released"
    );
    assert_eq!(record(&after, "fiduciary")["state"], "holding");

    // The genuine release goes through...
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/delta/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "delta", "beneficiary", "received")
        .await;
    // ...and the same request, replayed on the wire, is not served again.
    let (_, held) = api.get(&net, 1, "/v2/orders/delta").await;
    let request_cid = record(&held, "fiduciary")["releases"]["1"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = net.node(PRINCIPAL).client();
    let bytes = client.get_bytes(&format!("/v2/blocks/{request_cid}")).await;
    let bytes = bytes.unwrap();
    let blocks_before = held.clone();
    deliver_and_settle(&net, PRINCIPAL, 1, "fiduciary", bytes).await;
    let (_, held) = api.get(&net, 1, "/v2/orders/delta").await;
    assert_eq!(held, blocks_before, "a replay changes nothing");
    let (_, received) = api.get(&net, BENEFICIARY, "/v2/orders/delta").await;
    assert_eq!(
        record(&received, "beneficiary")["receipts"]
            .as_object()
            .unwrap()
            .len(),
        1
    );

    // Nor does another certificate, signed by the principal itself, replace the one the
    // release relied on (the principal is stopped so that its keys can be read).
    let rejected_before = custody_rejections(&net, 1).await;
    let commitment: dta_protocol::Cid = record(&held, "fiduciary")["commitment"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, block) = forged_certificate(&mut net, "delta", commitment).await;
    deliver_and_settle(&net, BENEFICIARY, 1, "fiduciary", block).await;
    let (_, after) = api.get(&net, 1, "/v2/orders/delta").await;
    assert_eq!(
        after, held,
        "the released order keeps its certificate and state"
    );
    assert_eq!(record(&after, "fiduciary")["state"], "released");
    assert_eq!(
        custody_rejections(&net, 1).await,
        rejected_before + 1,
        "the other certificate is refused"
    );
    net.stop().await;
}

/// Stops the principal and reads its identity from its home, then signs as the principal a
/// certificate of the commitment that is well formed and names the right signers, but whose
/// aggregate is one signature of a key that is none of theirs: only the pairing check can
/// give it away. Returns the principal's identity and the certificate's block.
async fn forged_certificate(
    net: &mut Testnet,
    reference: &str,
    commitment: dta_protocol::Cid,
) -> (dta_protocol::identity::LocalIdentity, Vec<u8>) {
    net.test_node(PRINCIPAL).stop().await;
    let principal = dta_node::home::open(net.test_node(PRINCIPAL).home())
        .expect("the principal's home")
        .identity;
    let forged = dta_protocol::order::Certificate {
        commitment,
        signers: FIDUCIARIES
            .iter()
            .map(|i| identity(net, *i).parse().unwrap())
            .collect(),
        signature: serde_bytes::ByteBuf::from(
            dta_crypto::bls::SecretKey::random()
                .sign(&dta_protocol::order::custody_message(&commitment))
                .to_bytes()
                .to_vec(),
        ),
        batch: None,
    };
    let block = envelope(
        &principal,
        dta_protocol::envelope::Kind::Certificate,
        reference,
        commitment,
        Some(dta_protocol::dagcbor::encode(&forged).unwrap()),
        None,
        &[],
    );
    (principal, block)
}

/// A counter of a node's `/metrics`.
/// A counter of a node's `/metrics`: its one series, or the sum of its labelled series.
/// Hosts an identity named `name` on the beneficiary's node and waits until every fiduciary
/// and the principal know it; its CID.
pub(crate) async fn hosted_identity(api: &Api, net: &Testnet, name: &str) -> String {
    let (status, made) = api
        .post(net, BENEFICIARY, "/v2/identities", json!({ "name": name }))
        .await;
    assert_eq!(status, 201, "{made}");
    let cid = made["cid"].as_str().unwrap().to_owned();
    for node in FIDUCIARIES.into_iter().chain([PRINCIPAL]) {
        tokio::time::timeout(TIMEOUT, async {
            while api.get(net, node, &format!("/v2/identities/{cid}")).await.0 != 200 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {node} never learned {name}"));
    }
    cid
}

pub(crate) async fn counter(net: &Testnet, node: usize, name: &str) -> u64 {
    let text = net.node(node).client().get_bytes("/metrics").await.unwrap();
    let text = String::from_utf8(text).unwrap();
    let values: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.parse().ok()
        })
        .collect();
    assert!(
        text.contains(&format!("# TYPE {name} counter")),
        "no counter {name}"
    );
    values.iter().sum()
}

/// `dta_custody_rejected_total` of a node.
pub(crate) async fn custody_rejections(net: &Testnet, node: usize) -> u64 {
    counter(net, node, "dta_custody_rejected_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_relying_on_a_forged_certificate_is_refused() {
    use dta_protocol::envelope::Kind;
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    order(&api, &net, "theta", "launch codes").await;
    // A fiduciary gets the certificate with the first release that relies on it.
    api.wait_state(&net, 1, "theta", "fiduciary", "holding")
        .await;
    let (_, held) = api.get(&net, 1, "/v2/orders/theta").await;
    let held = record(&held, "fiduciary");
    let cid = |value: &Value| -> dta_protocol::Cid { value.as_str().unwrap().parse().unwrap() };
    let (principal, certificate_block) =
        forged_certificate(&mut net, "theta", cid(&held["commitment"])).await;
    let certificate =
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &certificate_block);
    let request = dta_protocol::order::ReleaseRequest {
        order: cid(&held["order"]),
        certificate,
        beneficiary: identity(&net, BENEFICIARY).parse().unwrap(),
        sequence: 1,
    };
    let request_block = envelope(
        &principal,
        Kind::ReleaseRequest,
        "theta",
        certificate,
        Some(dta_protocol::dagcbor::encode(&request).unwrap()),
        None,
        &[],
    );
    let rejected_before = custody_rejections(&net, 1).await;
    deliver_and_settle(&net, BENEFICIARY, 1, "fiduciary", certificate_block).await;
    deliver_and_settle(&net, BENEFICIARY, 1, "fiduciary", request_block).await;
    // The pairing check runs off the fiduciary's queue; its refusal is counted.
    let refused = tokio::time::timeout(TIMEOUT, async {
        while custody_rejections(&net, 1).await == rejected_before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the forged certificate was never refused");

    let (_, after) = api.get(&net, 1, "/v2/orders/theta").await;
    let after = record(&after, "fiduciary");
    assert_eq!(after["releases"], json!({}), "no share released");
    assert_eq!(after["state"], "certified");
    let (status, received) = api.get(&net, BENEFICIARY, "/v2/orders/theta").await;
    assert_eq!(status, 404, "the beneficiary got nothing: {received}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_share_is_caught_by_the_beneficiary() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    // Mallory is the third fiduciary; she signs the commitment like an honest one would.
    let mallory = stranger(&net, 0x6d, &[PRINCIPAL, 1, 2, BENEFICIARY]).await;
    let body = json!({
        "reference": "epsilon",
        "fiduciaries": [identity(&net, 1), identity(&net, 2), mallory.cid().to_string()],
        "threshold": 2,
        "beneficiary": identity(&net, BENEFICIARY),
        "secret": "vault combination",
    });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    let commitment: dta_protocol::Cid = created["commitment"].as_str().unwrap().parse().unwrap();

    // First Mallory signs something else. It is caught (checked on its own, since her node
    // did not deliver it): the honest signatures stay, and the order is not certified.
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (_, body) = api.get(&net, PRINCIPAL, "/v2/orders/epsilon").await;
            if record(&body, "principal")["signatures"] == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the honest fiduciaries never signed");
    let block = dta_protocol::envelope::SignedEnvelope::custody_signature(
        mallory.cid(),
        "epsilon",
        commitment,
        mallory
            .keys()
            .bls()
            .sign(b"something else")
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
    .to_block()
    .unwrap()
    .into_bytes();
    deliver_and_settle(&net, 1, PRINCIPAL, "principal", block).await;
    let (_, body) = api.get(&net, PRINCIPAL, "/v2/orders/epsilon").await;
    let principal = record(&body, "principal");
    assert_eq!(principal["state"], "dealt", "{body}");
    assert_eq!(principal["signatures"], 2, "{body}");

    // Then she signs the commitment like an honest fiduciary would.
    let block = envelope(
        &mallory,
        dta_protocol::envelope::Kind::CommitmentSignature,
        "epsilon",
        commitment,
        None,
        None,
        &[],
    );
    deliver_and_settle(&net, 1, PRINCIPAL, "principal", block).await;
    api.wait_state(&net, PRINCIPAL, "epsilon", "principal", "certified")
        .await;
    api.wait_state(&net, 1, "epsilon", "fiduciary", "holding")
        .await;

    // Fiduciary 2 is down and Mallory unreachable: the release fails, fiduciary 1's share
    // alone reaches the beneficiary.
    net.test_node(2).stop().await;
    let (status, _) = api
        .post(&net, PRINCIPAL, "/v2/orders/epsilon/release", json!({}))
        .await;
    assert_eq!(status, 503);
    api.wait_state(&net, BENEFICIARY, "epsilon", "beneficiary", "collecting")
        .await;

    // Mallory sends the beneficiary a share that is not on the committed polynomial.
    let (_, principal) = api.get(&net, PRINCIPAL, "/v2/orders/epsilon").await;
    let request: dta_protocol::Cid = record(&principal, "principal")["releases"]["1"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let bogus = dta_protocol::order::ShareRelease {
        release: request,
        index: 3,
        share: dta_protocol::order::SecretBytes::new(vec![7; 32]),
    };
    let beneficiary_identity = net.node(BENEFICIARY).directory().borrow().identities
        [&identity(&net, BENEFICIARY)]
        .document
        .clone();
    let beneficiary_identity =
        dta_protocol::identity::IdentityDocument::decode_verified(&beneficiary_identity).unwrap();
    let sealed = dta_protocol::dagcbor::encode(&bogus).unwrap();
    let block = envelope(
        &mallory,
        dta_protocol::envelope::Kind::ShareRelease,
        "epsilon",
        request,
        None,
        Some(&sealed),
        &[&beneficiary_identity],
    );
    deliver_and_settle(&net, 1, BENEFICIARY, "beneficiary", block).await;
    let (_, received) = api.get(&net, BENEFICIARY, "/v2/orders/epsilon").await;
    let received = record(&received, "beneficiary");
    assert_eq!(
        received["state"], "collecting",
        "the bogus share was not counted"
    );
    assert_eq!(received["shares"].as_object().unwrap().len(), 1);
    let (status, _) = api
        .get(&net, BENEFICIARY, "/v2/orders/epsilon/secret")
        .await;
    assert_eq!(status, 404);

    // Fiduciary 2 comes back; the retried release completes with two honest shares.
    net.test_node(2).start().await.expect("restart");
    let retried = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (_, _) = api
                .post(&net, PRINCIPAL, "/v2/orders/epsilon/release", json!({}))
                .await;
            let (status, body) = api
                .get(&net, BENEFICIARY, "/v2/orders/epsilon/secret")
                .await;
            if status == 200 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("released after the retry");
    assert_eq!(retried["secret"], "vault combination");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninvolved_node_audits_the_log_and_catches_a_tampered_block() {
    let net = Testnet::builder().nodes(6).build().await.expect("testnet");
    let api = Api::new();
    const OUTSIDER: usize = 5;
    order(&api, &net, "zeta", "recovery phrase").await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/zeta/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, PRINCIPAL, "zeta", "principal", "released")
        .await;
    let (_, principal) = api.get(&net, PRINCIPAL, "/v2/orders/zeta").await;
    let head = record(&principal, "principal")["head"]
        .as_str()
        .unwrap()
        .to_owned();

    // The outsider holds nothing of the order, fetches the chain from its peers and checks it.
    let path = format!("/v2/orders/zeta/audit?head={head}");
    let (status, report) = api.get(&net, OUTSIDER, &path).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["certified"], true);
    assert_eq!(report["receipts"], 1);
    assert_eq!(
        report["fetched"], 5,
        "order, commitment, certificate, release, receipt"
    );
    // The principal announces heads on gossipsub, so the reference alone is enough.
    let by_reference = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (status, report) = api.get(&net, OUTSIDER, "/v2/orders/zeta/audit").await;
            if status == 200 && report["head"] == head.as_str() {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the announced head reaches the outsider");
    assert_eq!(by_reference["passed"], true);
    let (status, _) = api
        .get(&net, OUTSIDER, "/v2/orders/nosuchorder/audit")
        .await;
    assert_eq!(status, 404);

    // Alter one stored block (the certificate) behind the node's back: the audit fails.
    let certificate = certificate_in(&report);
    let store = net.node(OUTSIDER).store();
    let key = certificate.to_bytes();
    let mut bytes = store
        .get(dta_actors::store::Column::Blocks, &key)
        .unwrap()
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    store
        .put_durable(dta_actors::store::Column::Blocks, &key, &bytes)
        .unwrap();
    let (status, report) = api.get(&net, OUTSIDER, &path).await;
    assert_eq!(status, 422, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("invalid"),
        "{report}"
    );
    // A malformed head is a 400.
    let (status, _) = api
        .get(&net, OUTSIDER, "/v2/orders/zeta/audit?head=nope")
        .await;
    assert_eq!(status, 400);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custody_benchmark_runs_every_phase() {
    // A dealt secret, and a key generated without a dealer (2-of-3).
    for plugin in [
        dta_actors::custody::SAFEGUARD_SECRET,
        dta_actors::plugin::MILAGRO,
    ] {
        let report = bench::custody::run(bench::custody::CustodyBench {
            plugin: plugin.into(),
            orders: 3,
            fiduciaries: 3,
            threshold: 2,
            policy: None,
        })
        .await
        .expect("benchmark runs");
        assert_eq!(report.plugin, plugin);
        assert!(
            report.certified_p50_ms > 0.0 && report.certified_p50_ms <= report.certified_p99_ms
        );
        assert!(report.certified_per_second > 0.0 && report.cycles_per_second > 0.0);
        // The cryptography is counted: each of the three fiduciaries signs the commitments it
        // holds and checks the envelopes it gets. (Other tests of this process count
        // too, so only lower bounds hold.)
        let calls = |operation: &str| {
            report
                .crypto_per_certified_order
                .iter()
                .find(|cost| cost.operation == operation)
                .map_or(0.0, |cost| cost.calls_per_order)
        };
        // Orders made at once are certified in batches: each fiduciary signs once per batch.
        assert!(calls("bls.sign") >= 1.0, "{report}");
        assert!(calls("ed25519.sign") >= 3.0, "{report}");
        assert!(calls("ed25519.verify") >= 3.0, "{report}");
        assert!(report.crypto_ms_per_certified_order > 0.0, "{report}");
    }
}

/// Orders made at once go to their fiduciaries as one batch: one signature of each fiduciary
/// certifies them all, and each order still audits and releases on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_made_at_once_are_certified_by_one_signature_each_and_audit_one_by_one() {
    use dta_actors::roles::RoleMsg;
    let net = one_role_each(5).await;
    let api = Api::new();
    let principal =
        dta_actors::registry::role(&net.node(PRINCIPAL).info().peer_id, Role::Principal)
            .expect("principal actor");
    let references: Vec<String> = (0..6).map(|i| format!("together-{i}")).collect();
    let fiduciaries: Vec<dta_protocol::Cid> = FIDUCIARIES
        .iter()
        .map(|i| identity(&net, *i).parse().unwrap())
        .collect();
    let beneficiary: dta_protocol::Cid = identity(&net, BENEFICIARY).parse().unwrap();
    // All queued on the principal's role before the first is made.
    let made: Vec<_> = references
        .iter()
        .map(|reference| {
            let order = dta_actors::custody::NewOrder {
                reference: Some(reference.clone()),
                plugin: dta_actors::custody::SAFEGUARD_SECRET.into(),
                fiduciaries: fiduciaries.clone(),
                threshold: 2,
                beneficiary: Some(beneficiary),
                policy: Default::default(),
                input: Default::default(),
                secret: Some(dta_protocol::order::SecretBytes::new(
                    format!("secret of {reference}").into_bytes(),
                )),
                refresh_every_ms: None,
            };
            let principal = principal.clone();
            tokio::spawn(async move {
                ractor::call_t!(
                    principal,
                    |reply| RoleMsg::CreateOrder {
                        order: Box::new(order),
                        reply
                    },
                    dta_actors::roles::CALL_TIMEOUT_MS
                )
            })
        })
        .collect();
    for made in made {
        made.await.unwrap().unwrap().expect("order made");
    }
    let mut in_batch = Vec::new();
    for reference in &references {
        api.wait_state(&net, PRINCIPAL, reference, "principal", "certified")
            .await;
        let (status, report) = api
            .get(&net, PRINCIPAL, &format!("/v2/orders/{reference}/audit"))
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["passed"], true, "{report}");
        assert_eq!(report["certified"], true, "{report}");
        let cid = certificate_in(&report);
        let block = net
            .node(PRINCIPAL)
            .store()
            .get(dta_actors::store::Column::Blocks, &cid.to_bytes())
            .unwrap()
            .unwrap();
        let envelope = dta_protocol::envelope::SignedEnvelope::decode(&block).unwrap();
        let certificate: dta_protocol::order::Certificate = dta_protocol::dagcbor::decode(
            envelope.envelope.public.as_deref().unwrap(),
            dta_protocol::dagcbor::Limits::default(),
        )
        .unwrap();
        if let Some(inclusion) = certificate.batch {
            in_batch.push((reference.clone(), inclusion.leaves, certificate.signature));
        }
    }
    // The first may have gone alone; those queued behind it went together, under one
    // aggregate signature.
    assert!(in_batch.len() >= 2, "{in_batch:?}");
    assert!(
        in_batch
            .iter()
            .all(|(_, leaves, signature)| *leaves as usize == in_batch.len()
                && *signature == in_batch[0].2),
        "{in_batch:?}"
    );

    // An order of the batch releases: its fiduciaries check the batch's certificate.
    let released = &in_batch[0].0;
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            &format!("/v2/orders/{released}/release"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, released, "beneficiary", "received")
        .await;
    let (status, body) = api
        .get(&net, BENEFICIARY, &format!("/v2/orders/{released}/secret"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"], format!("secret of {released}"));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_made_while_a_fiduciary_is_down_completes_when_it_returns() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    let body = json!({
        "reference": "eta",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(&net, BENEFICIARY),
        "secret": "patience",
    });
    net.test_node(3).stop().await;
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, 1, "eta", "fiduciary", "holding").await;
    let (_, principal) = api.get(&net, PRINCIPAL, "/v2/orders/eta").await;
    assert_eq!(
        record(&principal, "principal")["state"],
        "dealt",
        "not certified without node 3"
    );

    // The principal restarts too; then the fiduciary comes back. The principal sends the
    // missing deal again by itself and the order is certified.
    net.test_node(PRINCIPAL).stop().await;
    net.test_node(PRINCIPAL)
        .start()
        .await
        .expect("principal restarts");
    net.test_node(3).start().await.expect("fiduciary restarts");
    api.wait_state(&net, PRINCIPAL, "eta", "principal", "certified")
        .await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/eta/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "eta", "beneficiary", "received")
        .await;
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/eta/secret").await;
    assert_eq!(secret["secret"], "patience");
    net.stop().await;
}

/// The public key of a hex secp256k1 private key (compressed).
pub(crate) fn public_of(secret_hex: &Value) -> String {
    let bytes: [u8; 32] = hex::decode(secret_hex.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = dta_crypto::secp256k1::SecretKey::from_bytes(&bytes).unwrap();
    hex::encode(key.public_key().to_compressed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_key_generated_by_three_fiduciaries_reaches_only_its_beneficiary() {
    let net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let base = json!({
        "reference": "wallet",
        "plugin": "bitcoinwallet",
        "fiduciaries": fiduciaries,
        "threshold": 3,
        "beneficiary": identity(&net, BENEFICIARY),
        "input": { "coin": "1" },
    });
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    for (body, needle) in [
        (with("threshold", json!(1)), "at least 2"),
        (with("input", json!({ "coin": "7" })), "unsupported coin"),
        (with("input", json!({})), "needs input coin"),
        (with("secret", json!("x")), "takes no secret"),
    ] {
        let (status, answer) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", base).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, PRINCIPAL, "wallet", "principal", "certified")
        .await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/wallet").await;
    let principal = record(&shown, "principal");
    let public_key = principal["public_key"].as_str().unwrap().to_owned();
    let address = principal["output"]["address"].as_str().unwrap().to_owned();
    assert!(
        address.starts_with('m') || address.starts_with('n'),
        "{shown}"
    );
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "wallet", "fiduciary", "holding")
            .await;
        let (_, held) = api.get(&net, fiduciary, "/v2/orders/wallet").await;
        assert_eq!(
            record(&held, "fiduciary")["public_key"],
            public_key.as_str()
        );
    }

    // The key includes the beneficiary's own share: releasing it elsewhere is refused.
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/wallet/release",
            json!({ "beneficiary": identity(&net, 1) }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/wallet/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "wallet", "beneficiary", "received")
        .await;
    let (status, secret) = api.get(&net, BENEFICIARY, "/v2/orders/wallet/secret").await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(
        public_of(&secret["secret_hex"]),
        public_key,
        "key·G is the commitment"
    );
    let (status, report) = api.get(&net, BENEFICIARY, "/v2/orders/wallet/audit").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["receipts"], 1, "{report}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_milagro_key_needs_every_fiduciary_and_goes_to_the_beneficiary_named_at_release() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    let body = json!({
        "reference": "mpin-key",
        "plugin": "milagro",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect::<Vec<_>>(),
        "threshold": 3,
    });
    // A fiduciary is down when the order is made: the others generate their shares, and the
    // order waits for it, then completes when it returns.
    net.test_node(3).stop().await;
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, 1, "mpin-key", "fiduciary", "generated")
        .await;
    let (_, principal) = api.get(&net, PRINCIPAL, "/v2/orders/mpin-key").await;
    assert_eq!(record(&principal, "principal")["state"], "ordered");
    net.test_node(3).start().await.expect("fiduciary restarts");
    api.wait_state(&net, PRINCIPAL, "mpin-key", "principal", "certified")
        .await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "mpin-key", "fiduciary", "holding")
            .await;
    }
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/mpin-key").await;
    let public_key = record(&shown, "principal")["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let release = json!({ "beneficiary": identity(&net, BENEFICIARY) });

    // n-of-n: with one fiduciary down the release fails and reveals nothing.
    net.test_node(2).stop().await;
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/mpin-key/release",
            release.clone(),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = api
        .get(&net, BENEFICIARY, "/v2/orders/mpin-key/secret")
        .await;
    assert_eq!(status, 404);

    net.test_node(2).start().await.expect("fiduciary restarts");
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (status, _) = api
                .post(
                    &net,
                    PRINCIPAL,
                    "/v2/orders/mpin-key/release",
                    release.clone(),
                )
                .await;
            if status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the retried release never went through");
    api.wait_state(&net, BENEFICIARY, "mpin-key", "beneficiary", "received")
        .await;
    let (_, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/mpin-key/secret")
        .await;
    assert_eq!(public_of(&secret["secret_hex"]), public_key);
    assert!(secret["secret"].is_null() || secret["secret"].is_string());
    net.stop().await;
}
