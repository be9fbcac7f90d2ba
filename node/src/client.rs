//! A client of a node's HTTP API, the one the `dta` commands, the testnet harness, the
//! scenarios and the tests all use.
//!
//! [`ApiClient::call`] answers whatever the node said (status and JSON body), for callers that
//! check statuses themselves (scenarios, tests); [`ApiClient::get`], [`ApiClient::post`] and
//! the others turn an error answer into a [`ClientError`] that quotes the node's message, for
//! commands. A node inside another network namespace (a `--lan` testnet's node) is reached by
//! running `dta api` inside that namespace ([`Reach::Namespace`]); its address means something
//! else out here.
//!
//! What it does not do: choose which node to talk to (`node.json`, `--api`: the binary), retry,
//! or interpret answers beyond the `{"error", "code"}` shape every error answer has.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use zeroize::Zeroizing;

pub use reqwest::Method;

mod events;

pub use events::{EVENTS_PATH, EventStream, ServerEvent};

/// How requests get to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Straight to its address from this process.
    Direct,
    /// From inside the named network namespace, by `BINARY api ...` run there with
    /// `ip netns exec` (needs root). Raw-byte requests are not relayed this way.
    Namespace {
        /// The namespace's name (`ip netns`).
        name: String,
        /// The `dta` binary to run inside it.
        binary: PathBuf,
    },
}

/// What a node answered: the HTTP status and the JSON body (a JSON string holding the text
/// where the body was not JSON, `null` where it was empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status as `404 Not Found`.
    pub fn status_line(&self) -> String {
        reqwest::StatusCode::from_u16(self.status)
            .map_or_else(|_| self.status.to_string(), |s| s.to_string())
    }
}

/// Why a call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer not read.
    #[error("cannot reach {url}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// `dta api` inside the node's namespace could not be run or gave no answer.
    #[error("cannot reach {url} inside network namespace {namespace}: {reason}")]
    Namespace {
        /// The URL asked.
        url: String,
        /// The namespace.
        namespace: String,
        /// What went wrong, as the command said it.
        reason: String,
    },
    /// The node answered with an error status.
    #[error("{url}: {status}: {message}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The status, as `404 Not Found`.
        status: reqwest::StatusCode,
        /// The answer's `code` (`not_found`, `bad_request`, ...), empty if it had none.
        code: String,
        /// The answer's `error` message.
        message: String,
    },
    /// A success answer whose body was not JSON.
    #[error("{url} did not answer JSON")]
    NotJson {
        /// The URL asked.
        url: String,
    },
    /// HTTPS could not be set up (a bad fingerprint).
    #[error(transparent)]
    Tls(crate::tls::TlsError),
    /// An `https://` API without the fingerprint of its certificate.
    #[error(
        "{url} speaks HTTPS: give the fingerprint of its certificate (--api-fingerprint, as `dta init --api-tls` printed it; --home reads it from node.json)"
    )]
    NoFingerprint {
        /// The URL asked.
        url: String,
    },
    /// A raw-byte request to a node in a namespace, which [`Reach::Namespace`] cannot relay.
    #[error("{url}: raw bytes are not relayed into network namespace {namespace}")]
    NotRelayed {
        /// The URL asked.
        url: String,
        /// The namespace.
        namespace: String,
    },
    /// The node did not start answering within the client's time limit.
    #[error("{url}: no answer within {seconds} s")]
    NoAnswer {
        /// The URL asked.
        url: String,
        /// The limit.
        seconds: f64,
    },
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

/// The connection pool every client shares: one per process, so that a harness asking fifty
/// nodes does not open fifty pools.
fn shared_pool() -> reqwest::Client {
    static POOL: OnceLock<reqwest::Client> = OnceLock::new();
    POOL.get_or_init(reqwest::Client::new).clone()
}

/// A client of one node's API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    reach: Reach,
    timeout: Option<Duration>,
    token: Option<Arc<Zeroizing<String>>>,
    /// The API certificate's fingerprint, for HTTPS.
    pinned: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("reach", &self.reach)
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl ApiClient {
    /// A client of the API at `base` (`http://127.0.0.1:7070`), reached directly, with no
    /// time limit.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            reach: Reach::Direct,
            timeout: None,
            token: None,
            pinned: None,
            http: shared_pool(),
        }
    }

    /// The same client, giving up on each request after `limit`.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The same client, sending `token` as `Authorization: Bearer` on every call.
    pub fn with_token(mut self, token: Zeroizing<String>) -> Self {
        self.token = Some(Arc::new(token));
        self
    }

    /// The same client, speaking HTTPS to a server whose certificate has the SHA-256
    /// `fingerprint` (and to no other: there is no CA).
    pub fn with_pinned_certificate(mut self, fingerprint: &str) -> Result<Self, ClientError> {
        let pinned = crate::tls::parse_fingerprint(fingerprint).map_err(ClientError::Tls)?;
        let config = crate::tls::pinned_client_config(pinned).map_err(ClientError::Tls)?;
        self.http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| ClientError::Tls(crate::tls::TlsError::Config(e.to_string())))?;
        self.pinned = Some(fingerprint.to_owned());
        Ok(self)
    }

    /// The same client, reaching the node the way `reach` says.
    pub fn with_reach(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        // Without a pin, reqwest has no root to trust and the error would say only that.
        if url.starts_with("https://") && self.pinned.is_none() {
            return Err(ClientError::NoFingerprint {
                url: url.to_owned(),
            });
        }
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.as_str());
        }
        Ok(match self.timeout {
            Some(limit) => request.timeout(limit),
            None => request,
        })
    }

    /// Sends `body` (as JSON, if any) and returns whatever the node answered.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let url = self.url(path);
        if let Reach::Namespace { name, binary } = &self.reach {
            return self.call_inside(name, binary, &method, path, body).await;
        }
        let mut request = self.request(method, &url)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, bytes) = exchange(url, request).await?;
        Ok(Answer {
            status,
            body: json_or_text(&bytes),
        })
    }

    /// `call` through `dta api ... --json` run inside the namespace `name`.
    async fn call_inside(
        &self,
        name: &str,
        binary: &PathBuf,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let fail = |reason: String| ClientError::Namespace {
            url: self.url(path),
            namespace: name.to_owned(),
            reason,
        };
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", name])
            .arg(binary)
            .args(["api", method.as_str(), path, "--api", &self.base, "--json"])
            .env_remove("DTA_API")
            .env_remove("DTA_HOME")
            .env_remove("DTA_TOKEN")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // In the environment, not the arguments: other users can read a command line.
        if let Some(token) = &self.token {
            command.env("DTA_TOKEN", token.as_str());
        }
        if let Some(body) = body {
            command.args(["--data", &body.to_string()]);
        }
        if let Some(pinned) = &self.pinned {
            command.args(["--api-fingerprint", pinned]);
        }
        let run = command.output();
        let output = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .map_err(|_| fail(format!("no answer within {} s", limit.as_secs_f64())))?,
            None => run.await,
        }
        .map_err(|e| fail(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&output.stdout)
            .map_err(|_| fail(String::from_utf8_lossy(&output.stderr).trim().to_owned()))?;
        Ok(Answer {
            status: answer["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            body: answer["body"].clone(),
        })
    }

    /// The JSON body of a success answer; an error answer becomes [`ClientError::Refused`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let answer = self.call(method, path, body).await?;
        if !answer.is_success() {
            return Err(refused(url, answer.status, &answer.body));
        }
        if answer.body.is_null() {
            return Err(ClientError::NotJson { url });
        }
        Ok(answer.body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body. The body stays the caller's, so that it can wipe a
    /// secret in it once it is sent.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with no body.
    pub async fn put(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::PUT, path, None).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends raw bytes (a CAR archive) and reads the JSON answer.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let (status, body) = self.call_raw(method, path, Some(bytes)).await?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(refused(url, status, &body));
        }
        if body.is_null() {
            return Err(ClientError::NotJson { url });
        }
        Ok(body)
    }

    /// Reads raw bytes (a block, a CAR archive); an error answer's message becomes the error.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let (status, body) = self.call_raw(Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(refused(url, status, &answer));
        }
        Ok(body)
    }

    /// Sends `body` as raw bytes (if any) and returns the status and raw bytes of whatever
    /// the node answered.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.url(path);
        if let Reach::Namespace { name, .. } = &self.reach {
            return Err(ClientError::NotRelayed {
                url,
                namespace: name.clone(),
            });
        }
        let mut request = self.request(method, &url)?;
        if let Some(body) = body {
            request = request.body(body);
        }
        exchange(url, request).await
    }
}

/// Sends a request and reads the whole answer.
async fn exchange(
    url: String,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), ClientError> {
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(bytes) => Ok((status, bytes.to_vec())),
        Err(source) => Err(ClientError::Unreachable { url, source }),
    }
}

fn json_or_text(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The error for an error answer: its `error` and `code` fields, if it has them.
fn refused(url: String, status: u16, body: &Value) -> ClientError {
    ClientError::Refused {
        url,
        status: reqwest::StatusCode::from_u16(status)
            .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
        code: body["code"].as_str().unwrap_or_default().to_owned(),
        message: body["error"].as_str().unwrap_or("unknown error").to_owned(),
    }
}

/// `value` escaped for a query string: every byte but the unreserved ones and `/`.
pub fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `--json` line `dta api` prints, which [`Reach::Namespace`] reads back.
pub fn api_line(answer: &Answer) -> Value {
    json!({ "status": answer.status, "body": answer.body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_answer_quotes_the_nodes_message_and_code() {
        let app = axum::Router::new().route(
            "/v2/thing",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({ "error": "no thing", "code": "not_found" })),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ApiClient::new(&base);
        let err = client.get("/v2/thing").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{base}/v2/thing: 404 Not Found: no thing")
        );
        assert!(matches!(&err, ClientError::Refused { code, .. } if code == "not_found"));
        assert_eq!(err.status(), Some(404));
        let answer = client.call(Method::GET, "/v2/thing", None).await.unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.body["code"], "not_found");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_naming_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = ApiClient::new(&base).get("/v2/node").await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }));
        assert_eq!(err.to_string(), format!("cannot reach {base}/v2/node"));
    }

    #[tokio::test]
    async fn a_namespace_does_not_relay_raw_bytes() {
        let client = ApiClient::new("http://127.0.0.1:9").with_reach(Reach::Namespace {
            name: "dta-x".into(),
            binary: "dta".into(),
        });
        let err = client.get_bytes("/v2/blocks/x").await.unwrap_err();
        assert!(matches!(err, ClientError::NotRelayed { .. }));
    }
}
