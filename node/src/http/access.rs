//! Who may call what: the table of every endpoint with the access each of its methods needs,
//! and the middleware that enforces it before a handler runs.
//!
//! A method or route that the router matches but this table does not list needs the `admin`
//! scope, so a route added without a rule is closed to all but administrators (and a method
//! a route does not take still gets its 405 from the router, once the caller is known). Denials are 401 (no token, or
//! one that is unknown, revoked or expired; with `WWW-Authenticate: Bearer`) or 403 (a valid
//! token without the scope, named in the answer). Tokens are never logged.
//!
//! What it does not do: decide what a token holds (`crate::tokens`), or check anything about
//! a request beyond its token (handlers check their bodies).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use dta_actors::metrics::Metrics;

use super::{ApiError, ApiState};
use crate::tokens::{Denial, Scope};

/// What calling one method of an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: anyone who reaches the API.
    Open,
    /// A token with every one of these scopes.
    Token(&'static [Scope]),
    /// The original `/v1` API: open while the API listens on loopback only and
    /// `api.v1_token` is off (its clients send no token); otherwise a token with these scopes.
    Original(&'static [Scope]),
    /// `/metrics`: open with `api.metrics_open`, else a token with `read`.
    Metrics,
}

impl Access {
    /// How `GET /` shows it: `open`, `read`, `release+secret`, `v1:order`, `metrics`.
    pub fn describe(self) -> String {
        let scopes = |scopes: &[Scope]| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("+")
        };
        match self {
            Access::Open => "open".into(),
            Access::Token(needs) => scopes(needs),
            Access::Original(needs) => format!("v1:{}", scopes(needs)),
            Access::Metrics => "metrics".into(),
        }
    }
}

/// One endpoint: its path (as routed), what it is for, and each method with its access.
#[derive(Debug)]
pub struct Endpoint {
    /// The path, with `{name}` for a parameter.
    pub path: &'static str,
    /// What it is for.
    pub about: &'static str,
    /// Each method it takes and what that needs.
    pub methods: &'static [(&'static str, Access)],
}

const READ: Access = Access::Token(&[Scope::Read]);
const ADMIN: Access = Access::Token(&[Scope::Admin]);
const MPIN: Access = Access::Token(&[Scope::Mpin]);

const fn endpoint(
    path: &'static str,
    about: &'static str,
    methods: &'static [(&'static str, Access)],
) -> Endpoint {
    Endpoint {
        path,
        about,
        methods,
    }
}

/// Every endpoint the router serves.
pub const ENDPOINTS: &[Endpoint] = &[
    endpoint("/", "this index", &[("GET", Access::Open)]),
    endpoint("/v2/health", "readiness", &[("GET", Access::Open)]),
    endpoint(
        "/v2/openapi.json",
        "this API as an OpenAPI 3.1 document",
        &[("GET", Access::Open)],
    ),
    endpoint(
        "/v2/events",
        "this node live: server-sent events (snapshot, peers, record, heartbeat)",
        &[("GET", READ)],
    ),
    endpoint(
        "/ui",
        "the web UI (static; it asks for a token and calls the API with it)",
        &[("GET", Access::Open)],
    ),
    endpoint(
        "/ui/{asset}",
        "the web UI's scripts and style",
        &[("GET", Access::Open)],
    ),
    endpoint(
        "/v2/node",
        "this node: identity, peer id, addresses, roles",
        &[("GET", READ)],
    ),
    endpoint("/v2/peers", "connected peers", &[("GET", READ)]),
    endpoint("/v2/peers/blocked", "blocked peers", &[("GET", READ)]),
    endpoint(
        "/v2/peers/blocked/{peer}",
        "block or unblock a peer",
        &[("PUT", ADMIN), ("DELETE", ADMIN)],
    ),
    endpoint(
        "/v2/network/probe",
        "probe the DHT: a lookup of a random key, timed and counted",
        &[("POST", ADMIN)],
    ),
    endpoint(
        "/v2/network/heads/{cid}",
        "when this node first saw a head announced (published or gossiped)",
        &[("GET", READ)],
    ),
    endpoint(
        "/v2/backup/checkpoint",
        "a consistent copy of the database in the node's home, for dta backup create",
        &[("POST", ADMIN)],
    ),
    endpoint(
        "/v2/keystore",
        "keystore backend and number of secrets",
        &[("GET", ADMIN)],
    ),
    endpoint(
        "/v2/tokens",
        "API tokens; make one (shown once)",
        &[("GET", ADMIN), ("POST", ADMIN)],
    ),
    endpoint("/v2/tokens/{id}", "revoke a token", &[("DELETE", ADMIN)]),
    endpoint(
        "/v2/identities",
        "known identities; host a new one",
        &[("GET", READ), ("POST", ADMIN)],
    ),
    endpoint("/v2/identities/{cid}", "one identity", &[("GET", READ)]),
    endpoint(
        "/v2/identities/{cid}/rotate",
        "new keys for an identity this node hosts",
        &[("POST", ADMIN)],
    ),
    endpoint(
        "/v2/identities/{cid}/revoke",
        "revoke an identity this node holds or whose node it operates",
        &[("POST", ADMIN)],
    ),
    endpoint(
        "/v2/orders",
        "custody orders; create one (?wait=SECONDS: until certified)",
        &[("GET", READ), ("POST", Access::Token(&[Scope::Order]))],
    ),
    endpoint("/v2/orders/{reference}", "one order", &[("GET", READ)]),
    endpoint(
        "/v2/orders/{reference}/release",
        "release to the beneficiary (?wait=SECONDS: until received)",
        &[("POST", Access::Token(&[Scope::Release]))],
    ),
    endpoint(
        "/v2/orders/{reference}/sign",
        "the fiduciaries sign a message with the order's key, never rebuilt (?wait=SECONDS: until signed)",
        &[("POST", Access::Token(&[Scope::Release]))],
    ),
    endpoint(
        "/v2/orders/{reference}/refresh",
        "deal the shares anew: same key, new shares (?wait=SECONDS: until certified again)",
        &[("POST", Access::Token(&[Scope::Order]))],
    ),
    endpoint(
        "/v2/orders/{reference}/cancel",
        "end the order: every holder deletes its share (authorized like a release under its \
         policy; ?wait=SECONDS: until all said so)",
        &[("POST", Access::Token(&[Scope::Order]))],
    ),
    endpoint(
        "/v2/orders/{reference}/abandon",
        "give up a generated key whose fiduciaries did not all answer, naming them",
        &[("POST", Access::Token(&[Scope::Order]))],
    ),
    endpoint(
        "/v2/orders/{reference}/reshare",
        "move custody to another committee and threshold, same key (?wait=SECONDS)",
        &[("POST", Access::Token(&[Scope::Order]))],
    ),
    endpoint(
        "/v2/orders/{reference}/approvals",
        "approve or veto a release request under the order's policy",
        &[("POST", Access::Token(&[Scope::Approve]))],
    ),
    endpoint(
        "/v2/orders/{reference}/secret",
        "the secret this node received",
        &[("GET", Access::Token(&[Scope::Secret]))],
    ),
    endpoint(
        "/v2/orders/{reference}/audit",
        "re-verify the order's log",
        &[("GET", READ)],
    ),
    endpoint(
        "/v2/orders/{reference}/log",
        "the order's log as a chain: kinds, signers, links",
        &[("GET", READ)],
    ),
    endpoint(
        "/v2/orders/{reference}/car",
        "the order's log as a CAR archive",
        &[("GET", READ)],
    ),
    endpoint("/v2/blocks", "store a block", &[("PUT", ADMIN)]),
    endpoint(
        "/v2/blocks/import",
        "import a CAR archive",
        &[("POST", ADMIN)],
    ),
    endpoint("/v2/blocks/{cid}", "one block", &[("GET", READ)]),
    endpoint("/v2/mpin", "M-Pin issuances", &[("GET", MPIN)]),
    endpoint(
        "/v2/mpin/client-secret",
        "a share of a client secret",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v2/mpin/server-secret",
        "a share of the server secret",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v2/mpin/permit",
        "a share of a time permit",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v2/mpin/token",
        "a token from client secret and PIN",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v2/mpin/auth/challenge",
        "start an M-Pin authentication",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v2/mpin/auth/verify",
        "finish an M-Pin authentication",
        &[("POST", MPIN)],
    ),
    endpoint(
        "/v1/status",
        "the original D-TA's API",
        &[("GET", Access::Open)],
    ),
    endpoint(
        "/v1/order",
        "original: orders",
        &[
            ("GET", Access::Original(&[Scope::Read])),
            ("POST", Access::Original(&[Scope::Order])),
        ],
    ),
    endpoint(
        "/v1/order/secret",
        "original: release and read a secret",
        &[("POST", Access::Original(&[Scope::Release, Scope::Secret]))],
    ),
    endpoint(
        "/v1/order/{reference}",
        "original: one order",
        &[("GET", Access::Original(&[Scope::Read]))],
    ),
    endpoint(
        "/v1/identity",
        "original: identities",
        &[
            ("GET", Access::Original(&[Scope::Read])),
            ("POST", Access::Original(&[Scope::Admin])),
        ],
    ),
    endpoint(
        "/v1/identity/{cid}",
        "original: one identity",
        &[("GET", Access::Original(&[Scope::Read]))],
    ),
    endpoint(
        "/metrics",
        "Prometheus metrics",
        &[("GET", Access::Metrics)],
    ),
];

/// What `method` on the routed `path` needs; `None` if the table does not list it.
pub fn required(method: &Method, path: &str) -> Option<Access> {
    // HEAD is answered by the GET handler, so it needs what GET needs.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ENDPOINTS
        .iter()
        .find(|e| e.path == path)?
        .methods
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, access)| *access)
}

/// What this node leaves open, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Openness {
    /// `/v1` without a token (loopback only, and `api.v1_token` off).
    pub original: bool,
    /// `/metrics` without a token.
    pub metrics: bool,
}

/// Lets a request through only with what its route needs.
pub(super) async fn require_access(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let access = path
        .as_deref()
        .and_then(|path| required(request.method(), path));
    let needs: &[Scope] = match access {
        None => &[Scope::Admin],
        Some(Access::Open) => return next.run(request).await,
        Some(Access::Metrics) if state.openness.metrics => return next.run(request).await,
        Some(Access::Original(_)) if state.openness.original => return next.run(request).await,
        Some(Access::Metrics) => &[Scope::Read],
        Some(Access::Token(needs) | Access::Original(needs)) => needs,
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    let checked = match presented {
        None => Err(Denial::Missing),
        Some(token) => state.tokens.check(token, needs),
    };
    match checked {
        Ok(_) => next.run(request).await,
        Err(denial) if denial.is_unauthenticated() => {
            Metrics::bump(&state.metrics.api_denied_unauthenticated);
            let mut response =
                ApiError(StatusCode::UNAUTHORIZED, denial.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Err(denial) => {
            Metrics::bump(&state.metrics.api_denied_scope);
            ApiError(StatusCode::FORBIDDEN, denial.to_string()).into_response()
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_method_has_one_rule_and_unknown_ones_have_none() {
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in ENDPOINTS {
            assert!(!endpoint.methods.is_empty(), "{}", endpoint.path);
            for (method, _) in endpoint.methods {
                assert!(
                    seen.insert((endpoint.path, *method)),
                    "{method} {} listed twice",
                    endpoint.path
                );
            }
        }
        assert_eq!(
            required(&Method::GET, "/v2/orders"),
            Some(Access::Token(&[Scope::Read]))
        );
        assert_eq!(
            required(&Method::HEAD, "/v2/orders/{reference}/secret"),
            Some(Access::Token(&[Scope::Secret]))
        );
        assert_eq!(required(&Method::DELETE, "/v2/orders"), None);
        assert_eq!(required(&Method::GET, "/v2/nothing"), None);
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        assert_eq!(bearer("Bearer dta_x"), Some("dta_x"));
        assert_eq!(bearer("bearer  dta_x "), Some("dta_x"));
        assert_eq!(bearer("Basic dta_x"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("dta_x"), None);
    }
}
