//! A node's live event stream (`GET /v2/events`) read event by event: straight from the node
//! as server-sent events, or, for a node inside a network namespace, as the JSON lines that
//! `dta api GET /v2/events` prints when run inside it.
//!
//! What it does not do: reconnect (a watcher decides when to try again) or interpret events.

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::{ApiClient, ClientError, Method, Reach, refused};

/// The path of a node's event stream.
pub const EVENTS_PATH: &str = "/v2/events";

/// Bytes an event may take before the stream is refused as malformed.
const MAX_EVENT: usize = 4 << 20;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEvent {
    /// Its name (`snapshot`, `peers`, `record`, `heartbeat`).
    pub name: String,
    /// Its data, as JSON.
    pub data: Value,
}

/// An open event stream.
pub struct EventStream {
    url: String,
    source: Source,
}

enum Source {
    Http {
        response: reqwest::Response,
        buffer: Vec<u8>,
    },
    Inside {
        lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        // Killed when the stream is dropped.
        _child: tokio::process::Child,
    },
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .finish()
    }
}

impl ApiClient {
    /// Opens the node's event stream. The client's time limit, if any, bounds opening it,
    /// not how long it stays open.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let url = self.url(EVENTS_PATH);
        let source = match &self.reach {
            Reach::Direct => {
                let unbounded = ApiClient {
                    timeout: None,
                    ..self.clone()
                };
                let sent = unbounded
                    .request(Method::GET, &url)?
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .send();
                let sent =
                    match self.timeout {
                        Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                            ClientError::NoAnswer {
                                url: url.clone(),
                                seconds: limit.as_secs_f64(),
                            }
                        }),
                        None => Ok(sent.await),
                    };
                let response = sent?.map_err(|source| ClientError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
                let status = response.status().as_u16();
                if !response.status().is_success() {
                    let body = response.bytes().await.unwrap_or_default();
                    return Err(refused(url, status, &super::json_or_text(&body)));
                }
                Source::Http {
                    response,
                    buffer: Vec::new(),
                }
            }
            Reach::Namespace { name, binary } => {
                let mut command = tokio::process::Command::new("ip");
                command
                    .args(["netns", "exec", name])
                    .arg(binary)
                    .args(["api", "GET", EVENTS_PATH, "--api", &self.base])
                    .env_remove("DTA_API")
                    .env_remove("DTA_HOME")
                    .env_remove("DTA_TOKEN")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                if let Some(token) = &self.token {
                    command.env("DTA_TOKEN", token.as_str());
                }
                if let Some(pinned) = &self.pinned {
                    command.args(["--api-fingerprint", pinned]);
                }
                let fail = |reason: String| ClientError::Namespace {
                    url: url.clone(),
                    namespace: name.clone(),
                    reason,
                };
                let mut child = command.spawn().map_err(|e| fail(e.to_string()))?;
                let stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| fail("no output".into()))?;
                Source::Inside {
                    lines: BufReader::new(stdout).lines(),
                    _child: child,
                }
            }
        };
        Ok(EventStream { url, source })
    }
}

impl EventStream {
    /// The next event; `None` when the node closed the stream (or went away).
    pub async fn next(&mut self) -> Option<Result<ServerEvent, ClientError>> {
        let malformed = |url: &str| ClientError::NotJson {
            url: url.to_owned(),
        };
        match &mut self.source {
            Source::Http { response, buffer } => loop {
                if let Some(end) = find(buffer, b"\n\n") {
                    let block: Vec<u8> = buffer.drain(..end + 2).collect();
                    match parse_block(&block) {
                        Some(Ok(event)) => return Some(Ok(event)),
                        Some(Err(())) => return Some(Err(malformed(&self.url))),
                        // A comment or keep-alive.
                        None => continue,
                    }
                }
                if buffer.len() > MAX_EVENT {
                    return Some(Err(malformed(&self.url)));
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => return None,
                }
            },
            Source::Inside { lines, .. } => loop {
                let line = match lines.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => return None,
                };
                if line.trim().is_empty() {
                    continue;
                }
                let parsed: Result<Value, _> = serde_json::from_str(&line);
                return Some(match parsed {
                    Ok(line) => match (line["event"].as_str(), line.get("data")) {
                        (Some(name), Some(data)) => Ok(ServerEvent {
                            name: name.to_owned(),
                            data: data.clone(),
                        }),
                        _ => Err(malformed(&self.url)),
                    },
                    Err(_) => Err(malformed(&self.url)),
                });
            },
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One event block: `None` for a block with no data (a comment), `Err` for data that is not
/// JSON.
fn parse_block(block: &[u8]) -> Option<Result<ServerEvent, ()>> {
    let text = std::str::from_utf8(block).ok()?;
    let mut name = String::from("message");
    let mut data = String::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(
        serde_json::from_str(&data)
            .map(|data| ServerEvent { name, data })
            .map_err(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_into_events_and_comments_are_skipped() {
        let event = parse_block(b"event: peers\ndata: {\"peers\":[]}\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(event.name, "peers");
        assert_eq!(event.data, serde_json::json!({"peers": []}));
        assert!(parse_block(b": keep-alive\n\n").is_none());
        assert!(
            parse_block(b"event: x\ndata: not json\n\n")
                .unwrap()
                .is_err()
        );
        let split = parse_block(b"data: [1,\ndata: 2]\n\n").unwrap().unwrap();
        assert_eq!(split.name, "message");
        assert_eq!(split.data, serde_json::json!([1, 2]));
    }
}
