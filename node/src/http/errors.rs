//! The API's errors: every answer with a 4xx or 5xx status is JSON `{"error", "code"}`, where
//! `code` is a stable, machine-readable name of the kind of failure (see [`ErrorCode`]) and
//! `error` says what happened for a person.
//!
//! Handlers answer [`ApiError`]. What they do not produce (axum's own rejections of a
//! malformed JSON body or path, and 405 for a method a route does not take) passes
//! [`json_errors`], which rewrites it into the same shape. It does not decide status codes.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error: status and message.
#[derive(Debug)]
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode::of(self.0);
        (
            self.0,
            Json(json!({ "error": self.1, "code": code.as_str() })),
        )
            .into_response()
    }
}

impl From<dta_api::BodyError> for ApiError {
    fn from(err: dta_api::BodyError) -> Self {
        let status = match err {
            dta_api::BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
            dta_api::BodyError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError(status, err.to_string())
    }
}

/// The stable kinds of failure, one per status the API answers with. Scripts match on these
/// names, so they never change; a new kind gets a new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the request is malformed or asks for something impossible.
    BadRequest,
    /// 401: no token, or one that is unknown, revoked or expired.
    Unauthorized,
    /// 403: the caller may not do this here (for example a token without the scope).
    Forbidden,
    /// 404: no such endpoint or object.
    NotFound,
    /// 405: the endpoint does not take this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the state (for example a reference in use).
    Conflict,
    /// 413: the body is larger than the route takes.
    PayloadTooLarge,
    /// 415: the body is not of a type the route takes (for example not JSON).
    UnsupportedMediaType,
    /// 422: the body is well-formed but its fields are wrong.
    InvalidBody,
    /// 500: the node failed.
    Internal,
    /// 502: a peer the request needed failed or refused.
    PeerFailed,
    /// 503: a part of the node the request needs is not running (or not yet).
    Unavailable,
    /// 504: a peer or part of the node did not answer in time.
    Timeout,
    /// Any other status.
    Other,
}

impl ErrorCode {
    /// The code of an error status.
    pub fn of(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::InvalidBody,
            StatusCode::INTERNAL_SERVER_ERROR => Self::Internal,
            StatusCode::BAD_GATEWAY => Self::PeerFailed,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => Self::Timeout,
            _ => Self::Other,
        }
    }

    /// Every code, in the order of their statuses.
    pub const ALL: [ErrorCode; 14] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::InvalidBody,
        Self::Internal,
        Self::PeerFailed,
        Self::Unavailable,
        Self::Timeout,
        Self::Other,
    ];

    /// The name in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidBody => "invalid_body",
            Self::Internal => "internal",
            Self::PeerFailed => "peer_failed",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Other => "error",
        }
    }
}

/// Longest error text kept from a response that was not JSON (axum's rejections are one line).
const MAX_REWRITTEN_ERROR: usize = 4096;

/// Rewrites an error answer that is not JSON (axum's rejections, 405) into the API's shape,
/// keeping its status and its text as `error`.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_REWRITTEN_ERROR).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    ApiError(status, text).into_response()
}
