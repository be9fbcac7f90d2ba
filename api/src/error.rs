//! Why a request body was refused.

/// What is wrong with a body. The message names fields and quotes what the client sent,
/// except secrets, which it never quotes or locates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not what the call takes (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// The body is well formed but asks for what can never be (HTTP 422).
    #[error("{0}")]
    Unprocessable(String),
}

/// An identity CID given as text, or a [`BodyError::Malformed`] quoting it.
pub fn cid(text: &str) -> Result<dta_protocol::Cid, BodyError> {
    dta_protocol::block::parse_cid(text).map_err(|e| BodyError::Malformed(format!("{text:?}: {e}")))
}
