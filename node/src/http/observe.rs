//! Every API call observed: it gets a request id, which its answer carries in
//! `X-Request-Id` and every log line it causes carries in a `request` span (with the method
//! and route), and it is counted by route template, method and status and timed, for
//! `/metrics`. A caller's own `X-Request-Id` is kept when it is a short token (letters,
//! digits, `-`, `_`, `.`; at most 64), so that one id can follow a call from a client's logs
//! into the node's; anything else is replaced.
//!
//! What it does not do: decide anything about the call (access and handlers do), or log
//! bodies, tokens or secrets.

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::ApiState;

/// The header a request id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a caller.
const MAX_ID: usize = 64;

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn fresh_id() -> String {
    let mut bytes = [0u8; 8];
    // A repeated id only makes two calls harder to tell apart in a log.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// The middleware (a route layer, so the route template is known).
pub async fn observe(
    State(state): State<ApiState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = matched
        .as_ref()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(fresh_id, str::to_owned);
    // The order a call is about, where its path names one, so that `dta testnet logs --order`
    // finds the call beside the order's steps.
    let order = order_in_path(&route, request.uri().path());
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let code = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| {
        // Reads that went well are routine; changes and failures are worth a line.
        if method == "GET" && code < 400 {
            tracing::debug!(
                status = code,
                elapsed_ms,
                order = order.as_deref(),
                "api call"
            );
        } else {
            tracing::info!(
                status = code,
                elapsed_ms,
                order = order.as_deref(),
                "api call"
            );
        }
    });
    let status = code.to_string();
    state
        .metrics
        .http_requests
        .bump(&[&route, &method, &status]);
    state
        .metrics
        .http_latency
        .observe(&[&route, &method], started.elapsed());
    response
}

/// The `{reference}` segment of `path` where the route template has one.
fn order_in_path(route: &str, path: &str) -> Option<String> {
    let at = route.split('/').position(|part| part == "{reference}")?;
    path.split('/').nth(at).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_a_caller() {
        assert!(acceptable("3f2a-order.7_b"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(MAX_ID + 1)));
        assert!(!acceptable("id with spaces"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable("quote\""));
        assert_eq!(fresh_id().len(), 16);
    }

    #[test]
    fn the_order_is_read_from_the_path_where_the_route_names_one() {
        assert_eq!(
            order_in_path(
                "/v2/orders/{reference}/release",
                "/v2/orders/vault-7/release"
            ),
            Some("vault-7".into())
        );
        assert_eq!(order_in_path("/v2/orders", "/v2/orders"), None);
        assert_eq!(order_in_path("/v2/blocks/{cid}", "/v2/blocks/bafy"), None);
    }
}
