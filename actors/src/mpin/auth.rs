//! This node as an M-Pin authentication server: open challenges (bounded in number and
//! age; a dated one only for today), the check of a client's proof with the server secret the
//! authorities issued it, and its answers to peers that relay a client's steps. The client's
//! passes run where its token and PIN are, never here.

use dta_crypto::mpin::{self, G1Point, G2Point, MpinScalar};

use super::{MAX_IDENTITY_LEN, SERVER_SECRET};
use crate::context::RoleContext;
use crate::store::Column;

/// How long a challenge stays open, and how many may be open at once.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most open challenges.
pub const MAX_SESSIONS: usize = 4096;

/// Why an authentication step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed input (bad point, identity too long).
    #[error("{0}")]
    Invalid(String),
    /// No such open session.
    #[error("no such authentication session (or it expired)")]
    NoSession,
    /// Too many sessions open.
    #[error("too many authentications in progress")]
    Busy,
    /// This node was issued no server secret.
    #[error(
        "this node has no M-Pin server secret: ask trust authorities with POST /v2/mpin/server-secret"
    )]
    NoServerSecret,
    /// The proof does not verify: wrong PIN, token or identity.
    #[error("authentication failed")]
    Failed,
}

/// One open challenge.
#[derive(Debug)]
pub struct AuthSession {
    identity: String,
    date: Option<u32>,
    u: G1Point,
    y: MpinScalar,
    opened: std::time::Instant,
}

/// Today, as M-Pin dates time permits: days since 1970-01-01, UTC.
pub fn today() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as u32)
}

/// Open challenges of this node as an authentication server, shared by its HTTP API and its
/// answers to peers.
#[derive(Debug, Clone, Default)]
pub struct AuthSessions(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, AuthSession>>>,
);

impl AuthSessions {
    /// Opens a session for U: its id and the challenge y (48 bytes).
    pub fn challenge(
        &self,
        identity: String,
        u: &[u8],
        date: Option<u32>,
    ) -> Result<(String, Vec<u8>), AuthError> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return Err(AuthError::Invalid(format!(
                "an M-Pin identity is 1 to {MAX_IDENTITY_LEN} bytes"
            )));
        }
        if let Some(date) = date {
            let today = today();
            if date != today {
                return Err(AuthError::Invalid(format!(
                    "a time permit for day {date} is not valid today: this server's date is day \
                     {today} (days since 1970-01-01, UTC)"
                )));
            }
        }
        let u = G1Point::from_bytes(u).map_err(|e| AuthError::Invalid(format!("u: {e}")))?;
        let y = MpinScalar::random();
        let challenge = y.to_bytes().to_vec();
        let session = hex::encode(dta_crypto::Secret::<16>::random().expose());
        let mut sessions = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, s| s.opened.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            return Err(AuthError::Busy);
        }
        sessions.insert(
            session.clone(),
            AuthSession {
                identity,
                date,
                u,
                y,
                opened: std::time::Instant::now(),
            },
        );
        Ok((session, challenge))
    }

    /// Closes a session, for its check; it cannot be answered twice.
    pub fn take(&self, session: &str) -> Result<AuthSession, AuthError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session)
            .filter(|s| s.opened.elapsed() < SESSION_TTL)
            .ok_or(AuthError::NoSession)
    }
}

/// The server's check of V for a closed session; the authenticated identity. Costs a pairing
/// product: call it off the async workers.
pub fn check(session: &AuthSession, server_secret: &[u8], v: &[u8]) -> Result<String, AuthError> {
    let v = G1Point::from_bytes(v).map_err(|e| AuthError::Invalid(format!("v: {e}")))?;
    let server_secret =
        G2Point::from_bytes(server_secret).map_err(|_| AuthError::NoServerSecret)?;
    mpin::server_check(
        session.identity.as_bytes(),
        session.date,
        &session.y,
        &server_secret,
        &session.u,
        &v,
    )
    .map(|()| session.identity.clone())
    .map_err(|_| AuthError::Failed)
}

/// Answers a peer's authentication step (a [`crate::network::NetworkEvent::Answer`]) with this
/// node's sessions and server secret.
pub async fn serve(
    ctx: &RoleContext,
    sessions: &AuthSessions,
    request: dta_protocol::network::Request,
) -> dta_protocol::network::Response {
    use dta_protocol::network::{Request, Response};
    let rejected = |e: AuthError| Response::Rejected {
        reason: e.to_string(),
    };
    match request {
        Request::MpinChallenge { identity, u, date } => {
            match sessions.challenge(identity, &u, date) {
                Ok((session, y)) => Response::MpinChallenge { session, y },
                Err(e) => rejected(e),
            }
        }
        Request::MpinVerify { session, v } => {
            let session = match sessions.take(&session) {
                Ok(session) => session,
                Err(e) => return rejected(e),
            };
            let stored = ctx
                .store
                .get(Column::Keystore, SERVER_SECRET.as_bytes())
                .ok()
                .flatten()
                .is_some();
            if !stored {
                return rejected(AuthError::NoServerSecret);
            }
            let server_secret = match ctx.load_secret(SERVER_SECRET).await {
                Ok(secret) => secret,
                Err(e) => return rejected(AuthError::Invalid(e.to_string())),
            };
            let verdict =
                tokio::task::spawn_blocking(move || check(&session, server_secret.expose(), &v))
                    .await;
            match verdict {
                Ok(Ok(_)) => Response::MpinVerdict {
                    authenticated: true,
                    reason: None,
                },
                Ok(Err(AuthError::Failed)) => Response::MpinVerdict {
                    authenticated: false,
                    reason: Some(AuthError::Failed.to_string()),
                },
                Ok(Err(e)) => rejected(e),
                Err(e) => rejected(AuthError::Invalid(e.to_string())),
            }
        }
        _ => Response::Rejected {
            reason: "not an M-Pin authentication step".into(),
        },
    }
}
