//! Refreshing an order's shares across separate nodes: same key, new shares, the old ones
//! deleted, releases before and after, a fiduciary down during a refresh, a stale request.

use dta_actors::keystore::KeystoreMsg;
use dta_actors::store::Column;
use serde_json::json;

use crate::custody::{
    Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, custody_rejections, deliver_and_settle, identity,
    one_role_each, public_of, record,
};
use dta_testnet::harness::Testnet;

/// The share fiduciary `node` holds of `reference` in `epoch`, unwrapped by its keystore, if
/// it holds one.
async fn held(net: &Testnet, node: usize, reference: &str, epoch: u32) -> Option<Vec<u8>> {
    let principal: dta_protocol::Cid = identity(net, PRINCIPAL).parse().unwrap();
    let name = dta_actors::custody::held_share_name(&principal, reference, epoch);
    let blob = net
        .node(node)
        .store()
        .get(Column::Keystore, name.as_bytes())
        .unwrap()?;
    let keystore = dta_actors::registry::keystore(&net.node(node).info().peer_id).unwrap();
    let secret = ractor::call_t!(
        keystore,
        |reply| KeystoreMsg::Unwrap { name, blob, reply },
        5_000
    )
    .unwrap()
    .unwrap();
    Some(secret.expose().to_vec())
}

async fn refresh(api: &Api, net: &Testnet, reference: &str) -> serde_json::Value {
    let (status, body) = api
        .post(
            net,
            PRINCIPAL,
            &format!("/v2/orders/{reference}/refresh?wait=30"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["waited"]["reached"], true, "{body}");
    body
}

async fn release(api: &Api, net: &Testnet, reference: &str) {
    let (status, body) = api
        .post(
            net,
            PRINCIPAL,
            &format!("/v2/orders/{reference}/release?wait=30"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["waited"]["reached"], true, "{body}");
}

/// Waits until the principal holds `count` signed statements of deleted shares of
/// `reference`.
async fn deletions_reach(api: &Api, net: &Testnet, reference: &str, count: u64) {
    let path = format!("/v2/orders/{reference}");
    let reached = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let (_, shown) = api.get(net, PRINCIPAL, &path).await;
            let deleted = record(&shown, "principal")["shares_deleted"].as_u64();
            assert!(deleted <= Some(count), "{shown}");
            if deleted == Some(count) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{reference}: not {count} deletions said");
}

/// The principal's 2-of-3 `safeguardsecret` order `reference` of "the launch codes", with
/// `extra` fields in its body, certified.
async fn launch_codes(api: &Api, net: &Testnet, reference: &str, extra: serde_json::Value) {
    let mut body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(net, BENEFICIARY),
        "secret": "the launch codes",
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, created) = api.post(net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_secret_keeps_its_key_and_its_old_shares_are_gone() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    launch_codes(&api, &net, "vault", json!({ "max_releases": 3 })).await;
    release(&api, &net, "vault").await;
    let before: Vec<Vec<u8>> = {
        let mut shares = Vec::new();
        for node in FIDUCIARIES {
            shares.push(
                held(&net, node, "vault", 0)
                    .await
                    .expect("a share of epoch 0"),
            );
        }
        shares
    };

    let refreshed = refresh(&api, &net, "vault").await;
    assert_eq!(refreshed["epoch"], 1, "{refreshed}");
    assert_eq!(refreshed["state"], "certified", "{refreshed}");
    deletions_reach(&api, &net, "vault", 3).await;
    for (node, old) in FIDUCIARIES.into_iter().zip(&before) {
        assert_eq!(
            held(&net, node, "vault", 0).await,
            None,
            "old share deleted"
        );
        let new = held(&net, node, "vault", 1)
            .await
            .expect("a share of epoch 1");
        assert_ne!(&new, old);
    }
    // Released again with the new shares: the same secret, and the log audits.
    release(&api, &net, "vault").await;
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/vault/secret").await;
    assert_eq!(secret["secret"], "the launch codes", "{secret}");
    let (status, report) = api.get(&net, PRINCIPAL, "/v2/orders/vault/audit").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert!(report.to_string().contains("reshare-request"), "{report}");

    // A fiduciary down during a refresh: the other two deal, and the new shares are certified
    // once it is back and has its own.
    let third = identity(&net, FIDUCIARIES[2]);
    net.test_node(FIDUCIARIES[2]).stop().await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/vault/refresh", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, PRINCIPAL, "vault", "principal", "committed")
        .await;
    // The two that are up sign; the order waits for the third alone, and says so.
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/vault").await;
            let principal = record(&shown, "principal");
            assert_eq!(principal["epoch"], 2, "{shown}");
            let waiting: Vec<&str> = principal["waiting_for"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|w| w["identity"].as_str())
                .collect();
            if waiting == [third.as_str()] {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the refresh never waited for the stopped fiduciary alone"
    );
    net.test_node(FIDUCIARIES[2])
        .start()
        .await
        .expect("restarts");
    api.wait_state(&net, PRINCIPAL, "vault", "principal", "certified")
        .await;
    assert!(held(&net, FIDUCIARIES[2], "vault", 2).await.is_some());
    assert_eq!(held(&net, FIDUCIARIES[2], "vault", 1).await, None);

    // The first refresh's request, replayed to a fiduciary: stale, and nothing changes.
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/vault").await;
    let payload = |cid: &str| -> dta_protocol::order::Commitment {
        let cid: dta_protocol::Cid = cid.parse().unwrap();
        let bytes = net.node(PRINCIPAL).store().block(&cid).unwrap().unwrap();
        let signed = dta_protocol::envelope::SignedEnvelope::decode(&bytes).unwrap();
        dta_protocol::dagcbor::decode(
            signed.envelope.public.as_ref().unwrap(),
            dta_protocol::dagcbor::Limits::default(),
        )
        .unwrap()
    };
    let second = payload(record(&shown, "principal")["commitment"].as_str().unwrap());
    let first = payload(&second.reshared.unwrap().previous.to_string());
    let stale = first.reshared.unwrap().request;
    let stale = net.node(PRINCIPAL).store().block(&stale).unwrap().unwrap();
    let share_before = held(&net, FIDUCIARIES[0], "vault", 2).await;
    crate::custody::deliver_and_settle(&net, PRINCIPAL, FIDUCIARIES[0], "fiduciary", stale).await;
    assert_eq!(held(&net, FIDUCIARIES[0], "vault", 2).await, share_before);
    let (_, shown) = api.get(&net, FIDUCIARIES[0], "/v2/orders/vault").await;
    assert_eq!(record(&shown, "fiduciary")["epoch"], 2, "{shown}");
    release(&api, &net, "vault").await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_generated_key_is_the_same_key() {
    let net = one_role_each(5).await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let beneficiary = identity(&net, BENEFICIARY);
    let order = |threshold: u32, reference: &str| {
        json!({
            "reference": reference,
            "plugin": "milagro",
            "fiduciaries": fiduciaries,
            "threshold": threshold,
            "beneficiary": beneficiary,
        })
    };
    let (status, created) = api
        .post(&net, PRINCIPAL, "/v2/orders?wait=30", order(2, "key"))
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/key").await;
    let public_key = record(&shown, "principal")["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    refresh(&api, &net, "key").await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/key").await;
    assert_eq!(
        record(&shown, "principal")["public_key"],
        public_key.as_str(),
        "{shown}"
    );
    release(&api, &net, "key").await;
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/key/secret").await;
    assert_eq!(public_of(&secret["secret_hex"]), public_key);
    let (status, report) = api.get(&net, BENEFICIARY, "/v2/orders/key/audit").await;
    assert_eq!(status, 200, "{report}");

    // An n-of-n key added up from its shares cannot be refreshed yet, and says so; an order
    // that is not certified cannot either.
    let (status, _) = api
        .post(&net, PRINCIPAL, "/v2/orders?wait=30", order(3, "added"))
        .await;
    assert_eq!(status, 201);
    let (status, answer) = api
        .post(&net, PRINCIPAL, "/v2/orders/added/refresh", json!({}))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("n-of-n"),
        "{answer}"
    );
    let (status, _) = api
        .post(&net, PRINCIPAL, "/v2/orders/nothing/refresh", json!({}))
        .await;
    assert_eq!(status, 404);
    net.stop().await;
}

/// A testnet of a principal (node 0), seven fiduciaries (1-7) and a beneficiary (8).
async fn seven_fiduciaries() -> Testnet {
    one_role_each(9).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custody_moves_from_two_of_three_to_three_of_five_and_the_first_two_can_leave() {
    let mut net = seven_fiduciaries().await;
    let api = Api::new();
    let ids: Vec<String> = (0..9).map(|i| identity(&net, i)).collect();
    for (plugin, reference) in [("safeguardsecret", "moved"), ("milagro", "moved-key")] {
        let mut body = json!({
            "reference": reference,
            "plugin": plugin,
            "fiduciaries": [ids[1], ids[2], ids[3]],
            "threshold": 2,
            "beneficiary": ids[8],
            "max_releases": 2,
        });
        if plugin == "safeguardsecret" {
            body["secret"] = json!("moved but the same");
        }
        let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
        assert_eq!(status, 201, "{created}");
        // A release before the move: fiduciaries that join count it.
        release(&api, &net, reference).await;
        let (status, moved) = api
            .post(
                &net,
                PRINCIPAL,
                &format!("/v2/orders/{reference}/reshare?wait=30"),
                json!({ "fiduciaries": ids[3..8], "threshold": 3 }),
            )
            .await;
        assert_eq!(status, 200, "{moved}");
        assert_eq!(moved["waited"]["reached"], true, "{moved}");
        assert_eq!(moved["threshold"], 3, "{moved}");
        for node in [1, 2] {
            api.wait_state(&net, node, reference, "fiduciary", "retired")
                .await;
            assert_eq!(held(&net, node, reference, 0).await, None, "share deleted");
        }
        for node in 3..8 {
            api.wait_state(&net, node, reference, "fiduciary", "holding")
                .await;
            assert!(held(&net, node, reference, 1).await.is_some());
        }
        // Each of the old committee (the two that left and the one that stayed) said, signed,
        // that it deleted its old share.
        deletions_reach(&api, &net, reference, 3).await;
    }
    // The first two leave for good: the new committee releases (3 of 5, two of them down).
    net.test_node(1).stop().await;
    net.test_node(2).stop().await;
    net.test_node(4).stop().await;
    net.test_node(6).stop().await;
    for reference in ["moved", "moved-key"] {
        release(&api, &net, reference).await;
        let (status, report) = api
            .get(&net, 8, &format!("/v2/orders/{reference}/audit"))
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["passed"], true, "{report}");
    }
    let (_, secret) = api.get(&net, 8, "/v2/orders/moved/secret").await;
    assert_eq!(secret["secret"], "moved but the same", "{secret}");

    // A committee that cannot hold the order is refused before anything is published.
    for (body, needle) in [
        (
            json!({ "fiduciaries": [ids[3], ids[3]], "threshold": 1 }),
            "twice",
        ),
        (
            json!({ "fiduciaries": [ids[3], ids[5]], "threshold": 3 }),
            "threshold",
        ),
        (
            json!({ "fiduciaries": [ids[3], ids[5]], "threshold": 1 }),
            "at least 2",
        ),
    ] {
        let (status, answer) = api
            .post(&net, PRINCIPAL, "/v2/orders/moved-key/reshare", body)
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_refreshes_itself_on_its_schedule_and_still_releases() {
    let net = one_role_each(5).await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let order = |reference: &str, plugin: &str, threshold: u32, every: u64| {
        json!({
            "reference": reference,
            "plugin": plugin,
            "fiduciaries": fiduciaries,
            "threshold": threshold,
            "beneficiary": identity(&net, BENEFICIARY),
            "secret": (plugin == "safeguardsecret").then_some("the launch codes"),
            "refresh_every_ms": every,
        })
    };
    // A schedule an order could not keep is refused before anything is sent.
    for (body, why) in [
        (order("fast", "safeguardsecret", 2, 500), "at least 1000"),
        (order("added", "milagro", 3, 5_000), "n-of-n"),
        (order("master", "mpin-master", 2, 5_000), "never released"),
    ] {
        let (status, answer) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }

    launch_codes(&api, &net, "ticking", json!({ "refresh_every_ms": 1_000 })).await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/ticking").await;
    assert_eq!(record(&shown, "principal")["refresh_every_ms"], 1_000);
    // The principal refreshes it at its checks (every 5 s) while its certificate is older
    // than a second: two epochs within half a minute, nobody asking.
    let refreshed = tokio::time::timeout(std::time::Duration::from_secs(40), async {
        loop {
            let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/ticking").await;
            let principal = record(&shown, "principal");
            if principal["epoch"].as_u64() >= Some(2) && principal["state"] == "certified" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(refreshed.is_ok(), "no two refreshes within 40 s");
    release(&api, &net, "ticking").await;
    let (_, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/ticking/secret")
        .await;
    assert_eq!(secret["secret"], "the launch codes", "{secret}");
    let (status, report) = api.get(&net, PRINCIPAL, "/v2/orders/ticking/audit").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_asked_for_during_a_refresh_waits_for_the_new_shares() {
    let net = one_role_each(5).await;
    let api = Api::new();
    launch_codes(&api, &net, "mid-refresh", json!({})).await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/mid-refresh/refresh", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Shares of two epochs would not combine: the release is refused until the refresh is
    // certified, and says why.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/mid-refresh/release", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("being refreshed"), "{body}");
    api.wait_state(&net, PRINCIPAL, "mid-refresh", "principal", "certified")
        .await;
    release(&api, &net, "mid-refresh").await;
    let (_, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/mid-refresh/secret")
        .await;
    assert_eq!(secret["secret"], "the launch codes", "{secret}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fiduciary_down_while_custody_moves_off_it_deletes_its_share_once_back() {
    let mut net = one_role_each(6).await;
    let api = Api::new();
    let ids: Vec<String> = (0..6).map(|i| identity(&net, i)).collect();
    let (status, created) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders?wait=30",
            json!({
                "reference": "moving",
                "plugin": "safeguardsecret",
                "fiduciaries": [ids[1], ids[2], ids[3]],
                "threshold": 2,
                "beneficiary": ids[5],
                "secret": "left behind?",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Fiduciary 1 is down while the other two move custody to 2, 3 and 4.
    net.test_node(1).stop().await;
    let (status, moved) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/moving/reshare?wait=30",
            json!({ "fiduciaries": [ids[2], ids[3], ids[4]], "threshold": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["waited"]["reached"], true, "{moved}");
    deletions_reach(&api, &net, "moving", 2).await;
    // Back, it hears of the move (the principal sends every peer that connects the heads of
    // its orders, and the chain to the new commitment follows), retires, deletes its share
    // and says so.
    net.test_node(1)
        .start()
        .await
        .expect("fiduciary 1 restarts");
    api.wait_state(&net, 1, "moving", "fiduciary", "retired")
        .await;
    assert_eq!(held(&net, 1, "moving", 0).await, None, "share deleted");
    deletions_reach(&api, &net, "moving", 3).await;
    release(&api, &net, "moving").await;
    let (_, secret) = api.get(&net, 5, "/v2/orders/moving/secret").await;
    assert_eq!(secret["secret"], "left behind?", "{secret}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_signature_of_a_replaced_commitment_is_dropped_quietly() {
    use dta_protocol::envelope::{Kind, SignedEnvelope};
    let net = one_role_each(5).await;
    let api = Api::new();
    launch_codes(&api, &net, "late", json!({})).await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/late").await;
    let old: dta_protocol::Cid = record(&shown, "principal")["commitment"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    refresh(&api, &net, "late").await;
    // Fiduciary 1's signature of the commitment the refresh replaced, as it kept it, reaches
    // the principal late: not a refusal (nothing is wrong with it), and nothing changes.
    let mut late = None;
    net.node(FIDUCIARIES[0])
        .store()
        .visit(Column::Blocks, |_, bytes| {
            if let Ok(signed) = SignedEnvelope::decode(bytes)
                && signed.envelope.kind == Kind::CommitmentSignature
                && signed.envelope.prev == Some(old)
            {
                late = Some(bytes.to_vec());
            }
        })
        .unwrap();
    let late = late.expect("the old signature is kept");
    let before = custody_rejections(&net, PRINCIPAL).await;
    deliver_and_settle(&net, FIDUCIARIES[0], PRINCIPAL, "principal", late).await;
    assert_eq!(custody_rejections(&net, PRINCIPAL).await, before);
    let (_, after) = api.get(&net, PRINCIPAL, "/v2/orders/late").await;
    assert_eq!(record(&after, "principal")["epoch"], 1, "{after}");
    assert_eq!(record(&after, "principal")["state"], "certified", "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshare_request_from_anyone_but_the_principal_changes_nothing() {
    use dta_protocol::envelope::Kind;
    let net = one_role_each(5).await;
    let api = Api::new();
    launch_codes(&api, &net, "mine", json!({})).await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/mine").await;
    let cid_of = |field: &str| -> dta_protocol::Cid {
        record(&shown, "principal")[field]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (order, certificate) = (cid_of("order"), cid_of("certificate"));
    // Mallory, known to the fiduciary, asks it to deal its share to her alone.
    let mallory = crate::custody::stranger(&net, 7, &[FIDUCIARIES[0]]).await;
    let request = dta_protocol::reshare::ReshareRequest {
        order,
        certificate,
        fiduciaries: vec![mallory.cid()],
        threshold: 1,
        epoch: 1,
        releases: 0,
    };
    let block = crate::custody::envelope(
        &mallory,
        Kind::ReshareRequest,
        "mine",
        certificate,
        Some(dta_protocol::dagcbor::encode(&request).unwrap()),
        None,
        &[],
    );
    let share_before = held(&net, FIDUCIARIES[0], "mine", 0).await;
    assert!(share_before.is_some());
    let before = custody_rejections(&net, FIDUCIARIES[0]).await;
    deliver_and_settle(&net, BENEFICIARY, FIDUCIARIES[0], "fiduciary", block).await;
    assert_eq!(custody_rejections(&net, FIDUCIARIES[0]).await, before + 1);
    // Nothing dealt, nothing changed: same share, same epoch, no refresh under way.
    assert_eq!(held(&net, FIDUCIARIES[0], "mine", 0).await, share_before);
    let mut deals = 0;
    net.node(FIDUCIARIES[0])
        .store()
        .visit(Column::Blocks, |_, bytes| {
            if dta_protocol::envelope::SignedEnvelope::decode(bytes)
                .is_ok_and(|s| s.envelope.kind == Kind::ReshareDeal)
            {
                deals += 1;
            }
        })
        .unwrap();
    assert_eq!(deals, 0);
    let (_, shown) = api.get(&net, FIDUCIARIES[0], "/v2/orders/mine").await;
    assert_eq!(record(&shown, "fiduciary")["epoch"], 0, "{shown}");
    assert_eq!(record(&shown, "fiduciary")["state"], "holding", "{shown}");
    net.stop().await;
}
