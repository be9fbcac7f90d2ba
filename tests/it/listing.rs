//! `GET /v2/orders` in pages and filtered, on a testnet: every record once, in order, however
//! the pages fall; filters by role, state and `stalled`; and bad queries refused.

use serde_json::{Value, json};

use crate::custody::{Api, FIDUCIARIES, PRINCIPAL, one_role_each, order};

/// The references of a list answer.
fn references(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_come_in_pages_and_filtered_by_role_state_and_stall() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let made: Vec<String> = (0..5).map(|i| format!("listed-{i}")).collect();
    for reference in &made {
        order(&api, &net, reference, "a secret").await;
    }

    // Pages of two, followed through the Link header: every order once, in order.
    let token = dta_node::tokens::read_token_file(&net.node(PRINCIPAL).token_file())
        .unwrap()
        .unwrap();
    let http = crate::process::raw_http_with(token.as_str());
    let base = net.node(PRINCIPAL).info().api.clone();
    let mut next = Some("/v2/orders?limit=2".to_owned());
    let mut pages = Vec::new();
    while let Some(path) = next.take() {
        let answer = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        next = answer.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        pages.push(references(&answer.json().await.unwrap()));
        assert!(pages.len() <= 4, "the pages never end: {pages:?}");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), made);
    // The cursor a client makes from a record is the one the header gives.
    let (_, first) = api.get(&net, PRINCIPAL, "/v2/orders?limit=1").await;
    let cursor = format!(
        "principal/{}/{}",
        first[0]["principal"].as_str().unwrap(),
        first[0]["reference"].as_str().unwrap()
    );
    let (_, rest) = api
        .get(&net, PRINCIPAL, &format!("/v2/orders?after={cursor}"))
        .await;
    assert_eq!(references(&rest), made[1..]);

    // By role and state, on a fiduciary that holds every order.
    let fiduciary = FIDUCIARIES[0];
    for reference in &made {
        api.wait_state(&net, fiduciary, reference, "fiduciary", "holding")
            .await;
    }
    for (query, expected) in [
        ("role=fiduciary", 5),
        ("role=principal", 0),
        ("state=holding", 5),
        ("role=fiduciary&state=released", 0),
    ] {
        let (status, listed) = api
            .get(&net, fiduciary, &format!("/v2/orders?{query}"))
            .await;
        assert_eq!(status, 200, "{query}: {listed}");
        assert_eq!(listed.as_array().unwrap().len(), expected, "{query}");
    }
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/listed-3/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, released) = api.get(&net, PRINCIPAL, "/v2/orders?state=released").await;
    assert_eq!(references(&released), ["listed-3"]);

    // Stalled: an order whose third fiduciary is down waits for its signature.
    let body = crate::custody::order_body(&net, "stuck", "a secret");
    net.test_node(FIDUCIARIES[2]).stop().await;
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    let (_, stalled) = api
        .get(&net, PRINCIPAL, "/v2/orders?state=stalled&stalled_after=0")
        .await;
    assert_eq!(references(&stalled), ["stuck"], "{stalled}");
    let (_, stalled) = api.get(&net, PRINCIPAL, "/v2/orders?state=stalled").await;
    assert_eq!(stalled, json!([]), "not yet a minute");
    let listed = crate::process::succeed_blocking(crate::process::dta_client(&[
        "order",
        "list",
        "--state",
        "stalled",
        "--stalled-after",
        "0",
        "--api",
        &base,
        "--token-file",
        net.node(PRINCIPAL).token_file().to_str().unwrap(),
    ]))
    .await;
    let listed = String::from_utf8(listed).unwrap();
    assert!(
        listed.contains("stuck") && !listed.contains("listed-"),
        "{listed}"
    );

    // Bad queries change nothing and say what is wrong.
    for query in [
        "limit=0",
        "limit=1001",
        "role=owner",
        "state=lost",
        "stalled_after=5",
        "after=principal",
        "after=principal/not-a-cid/x",
        "page=2",
    ] {
        let (status, body) = api
            .get(&net, PRINCIPAL, &format!("/v2/orders?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}"
        );
    }
    net.stop().await;
}
