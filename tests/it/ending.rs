//! Orders that end. A cancel: every fiduciary deletes its share and says so in a signed
//! envelope, the principal counts them until the order is `cancelled`, nothing is released
//! afterwards, and under a policy the cancel waits for the approval a release would need. An
//! expiry (a release policy's `expires_at_ms`): before it releases go as usual, from it on the
//! fiduciaries delete their shares by themselves and the order is `expired`. The logs still
//! audit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use dta_testnet::harness::Testnet;

use crate::custody::{
    Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, hosted_identity, one_role_each, order, order_body,
    record,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_order_loses_its_shares_everywhere_and_releases_nothing() {
    let net = one_role_each(5).await;
    let api = Api::new();
    // Expiry before the first release is possible is refused outright.
    let mut refused = order_body(&net, "never", "a secret");
    refused["policy"] = json!({ "not_before_ms": now_ms() + 60_000, "expires_at_ms": now_ms() });
    let (status, body) = api.post(&net, PRINCIPAL, "/v2/orders", refused).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expires_at_ms"),
        "{body}"
    );

    let expires_at = now_ms() + 6_000;
    let mut body = order_body(&net, "ending", "a secret with an end");
    body["max_releases"] = json!(2);
    body["policy"] = json!({ "expires_at_ms": expires_at });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");
    let mut secrets_before = Vec::new();
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "ending", "fiduciary", "holding")
            .await;
        let (_, keystore) = api.get(&net, fiduciary, "/v2/keystore").await;
        secrets_before.push(keystore["secrets"].as_u64().unwrap());
    }
    // Before the expiry, a release goes.
    let (status, released) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/ending/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    api.wait_state(&net, BENEFICIARY, "ending", "beneficiary", "received")
        .await;

    // After it, every fiduciary deletes its share and the principal hears it from all three.
    let left = expires_at.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(left + 200)).await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "ending", "fiduciary", "expired")
            .await;
    }
    api.wait_state(&net, PRINCIPAL, "ending", "principal", "expired")
        .await;
    for (fiduciary, before) in FIDUCIARIES.iter().zip(secrets_before) {
        let (_, keystore) = api.get(&net, *fiduciary, "/v2/keystore").await;
        assert_eq!(
            keystore["secrets"].as_u64().unwrap(),
            before - 1,
            "fiduciary {fiduciary} still holds its share"
        );
    }
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/ending").await;
    let principal = record(&shown, "principal");
    assert_eq!(principal["shares_deleted"], 3, "{principal}");

    // Nothing more is released: the principal refuses, and so would each fiduciary.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/ending/release", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/ending/refresh", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");

    // The log, with the release before the expiry, still audits.
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/ending/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["receipts"], 1, "{audit}");
    net.stop().await;
}

/// Each fiduciary's number of kept secrets.
async fn secrets(api: &Api, net: &Testnet) -> Vec<u64> {
    let mut counts = Vec::new();
    for fiduciary in FIDUCIARIES {
        let (_, keystore) = api.get(net, fiduciary, "/v2/keystore").await;
        counts.push(keystore["secrets"].as_u64().unwrap());
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_loses_its_shares_and_under_a_policy_waits_for_its_approval() {
    let net = one_role_each(5).await;
    let api = Api::new();
    order(&api, &net, "dropped", "a secret nobody needs now").await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "dropped", "fiduciary", "holding")
            .await;
    }
    let before = secrets(&api, &net).await;
    let (status, cancelled) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/dropped/cancel?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["shares_deleted"], 3, "{cancelled}");
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "dropped", "fiduciary", "cancelled")
            .await;
    }
    let after = secrets(&api, &net).await;
    assert_eq!(
        after,
        before.iter().map(|n| n - 1).collect::<Vec<_>>(),
        "every share is gone"
    );
    // Nothing is released, and a second cancel is refused; the log audits.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/dropped/release", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/dropped/cancel", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/dropped/audit").await;
    assert_eq!(status, 200, "{audit}");

    // Under a policy, the cancel is held until the approver approves it.
    let approver = hosted_identity(&api, &net, "keeper").await;
    let mut body = order_body(&net, "guarded", "a guarded secret");
    body["policy"] = json!({
        "groups": [{ "name": "keepers", "members": [approver], "count": 1 }],
    });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");
    let before = secrets(&api, &net).await;
    let (status, held) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/guarded/cancel?wait=2",
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "held for its approval: {held}");
    assert_eq!(held["state"], "cancelling");
    let cancel = held["head"].as_str().unwrap().to_owned();
    assert_eq!(secrets(&api, &net).await, before, "no share deleted yet");
    let (status, voted) = api
        .post(
            &net,
            BENEFICIARY,
            "/v2/orders/guarded/approvals",
            json!({ "request": cancel, "identity": approver }),
        )
        .await;
    assert_eq!(status, 201, "{voted}");
    api.wait_state(&net, PRINCIPAL, "guarded", "principal", "cancelled")
        .await;
    assert_eq!(
        secrets(&api, &net).await,
        before.iter().map(|n| n - 1).collect::<Vec<_>>()
    );
    net.stop().await;
}
