//! The web UI: static pages and scripts embedded in the binary (nothing from a CDN, nothing
//! from any other host). `GET /ui` is this node's page; the testnet view (dta-testnet) serves
//! the shared style and event reader from here too.
//!
//! The page holds no secret and the node sends it none: it asks for an API token (or takes
//! one from the URL's `#token=` fragment, which browsers do not send to servers), keeps it in
//! the tab's session storage and calls the read endpoints with it, as any client does; the
//! live part is `GET /v2/events`. Every answer here forbids framing and any script, style or
//! connection from elsewhere.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The style every page shares.
pub const STYLE: &str = include_str!("../../ui/ui.css");

/// The script that reads a server-sent event stream with a bearer token and keeps the token.
pub const LIVE_SCRIPT: &str = include_str!("../../ui/live.js");

const NODE_PAGE: &str = include_str!("../../ui/node.html");
const NODE_SCRIPT: &str = include_str!("../../ui/node.js");

/// What a page may load: its own scripts and style, and calls to its own origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A static answer with the UI's headers.
pub fn static_answer(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ui`.
pub async fn page() -> Response {
    static_answer("text/html; charset=utf-8", NODE_PAGE)
}

/// `GET /ui/{asset}`.
pub async fn asset(Path(asset): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = match asset.as_str() {
        "ui.css" => ("text/css; charset=utf-8", STYLE),
        "live.js" => ("text/javascript; charset=utf-8", LIVE_SCRIPT),
        "node.js" => ("text/javascript; charset=utf-8", NODE_SCRIPT),
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no UI asset {asset:?}"),
            ));
        }
    };
    Ok(static_answer(content_type, body))
}
