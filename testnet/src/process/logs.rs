//! A testnet's logs side by side: every node's JSON log lines merged in time order, each named
//! by its node; optionally only the lines about one order (those whose fields say
//! `"order": REF`), so that an order can be followed across every node it touched.
//!
//! What it does not do: read lines that are not JSON (a testnet's nodes log JSON; anything
//! else, such as a panic's text, is kept under its node with no time), or follow logs as
//! they grow.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::{TestnetError, kept_log, load, logs_dir};

/// One line of a node's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// The node that wrote it.
    pub node: String,
    /// The line as the node wrote it (a JSON object, or `{"text": ...}` for a line that is
    /// none).
    pub line: Value,
}

impl LogLine {
    /// When it was written (RFC 3339, UTC), if it says.
    pub fn timestamp(&self) -> Option<&str> {
        self.line["timestamp"].as_str()
    }

    /// Whether it is about order `reference`.
    pub fn is_about(&self, reference: &str) -> bool {
        self.line["fields"]["order"].as_str() == Some(reference)
    }
}

impl std::fmt::Display for LogLine {
    /// `node-1 2026-12-05T13:01:45.107214Z INFO message key=value ...`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(fields) = self.line["fields"].as_object() else {
            return write!(
                f,
                "{} {}",
                self.node,
                self.line["text"].as_str().unwrap_or("")
            );
        };
        write!(
            f,
            "{} {} {:>5} {}",
            self.node,
            self.timestamp().unwrap_or("-"),
            self.line["level"].as_str().unwrap_or("-"),
            fields["message"].as_str().unwrap_or("")
        )?;
        for (key, value) in fields.iter().filter(|(key, _)| *key != "message") {
            match value {
                Value::String(text) => write!(f, " {key}={text}")?,
                other => write!(f, " {key}={other}")?,
            }
        }
        Ok(())
    }
}

/// The log files of a testnet by node name: in each home while it is up, else where `down`
/// kept them.
fn node_logs(dir: &Path) -> Result<Vec<(String, PathBuf)>, TestnetError> {
    match load(dir) {
        Ok(testnet) => Ok(testnet
            .nodes
            .into_iter()
            .map(|node| (node.name, node.home.join("log")))
            .collect()),
        Err(TestnetError::NoTestnet(_)) => {
            let kept = logs_dir(dir);
            let entries = std::fs::read_dir(&kept)
                .map_err(|_| TestnetError::NoTestnet(dir.display().to_string()))?;
            let mut logs: Vec<(String, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry
                        .file_name()
                        .to_string_lossy()
                        .strip_suffix(".log")?
                        .to_owned();
                    Some((name.clone(), kept_log(dir, &name)))
                })
                .collect();
            logs.sort();
            Ok(logs)
        }
        Err(err) => Err(err),
    }
}

/// A timestamp as a key that sorts in time order whatever number of fractional digits it has.
fn sort_key(timestamp: Option<&str>) -> (String, u64) {
    let Some(timestamp) = timestamp else {
        return (String::new(), 0);
    };
    let trimmed = timestamp.trim_end_matches('Z');
    let (seconds, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let nanos = format!("{fraction:0<9}")
        .get(..9)
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    (seconds.to_owned(), nanos)
}

/// How a node's log ends, for an error that says a node did not start: its last `count` lines,
/// one per line and indented, or a word that it is empty or missing.
pub(super) fn ending(node: &str, path: &Path, count: usize) -> String {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) => return "it wrote no log".to_owned(),
    };
    let raw: Vec<&str> = text.lines().filter(|raw| !raw.trim().is_empty()).collect();
    if raw.is_empty() {
        return "its log is empty".to_owned();
    }
    let mut ending = String::from("its log ends with:");
    for raw in &raw[raw.len().saturating_sub(count)..] {
        let line = LogLine {
            node: node.to_owned(),
            line: parse(raw),
        };
        ending.push_str(&format!("\n  {line}"));
    }
    ending
}

/// A line as a JSON object, or `{"text": ...}` for one that is none.
fn parse(raw: &str) -> Value {
    serde_json::from_str::<Value>(raw)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({ "text": raw }))
}

/// Every node's log lines in time order (lines of one node keep their order; lines without a
/// time come first), only those about order `reference` when one is given.
pub fn merged(dir: &Path, reference: Option<&str>) -> Result<Vec<LogLine>, TestnetError> {
    let mut lines = Vec::new();
    for (node, path) in node_logs(dir)? {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // A node that never started has no log yet.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(TestnetError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        for raw in text.lines().filter(|raw| !raw.trim().is_empty()) {
            let line = LogLine {
                node: node.clone(),
                line: parse(raw),
            };
            if reference.is_none_or(|reference| line.is_about(reference)) {
                lines.push(line);
            }
        }
    }
    lines.sort_by_cached_key(|line| sort_key(line.timestamp()));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_kept_by_down_merge_in_time_order_and_filter_by_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(logs_dir(dir.path())).unwrap();
        let line = |time: &str, order: &str, message: &str| {
            serde_json::json!({
                "timestamp": time,
                "level": "INFO",
                "fields": { "message": message, "order": order },
            })
            .to_string()
        };
        std::fs::write(
            kept_log(dir.path(), "node-0"),
            [
                line("2026-12-05T13:00:01.5Z", "alpha", "order made"),
                line("2026-12-05T13:00:03.000001Z", "beta", "order made"),
            ]
            .join("\n"),
        )
        .unwrap();
        std::fs::write(
            kept_log(dir.path(), "node-1"),
            [
                line("2026-12-05T13:00:01.400000Z", "alpha", "share kept"),
                line("2026-12-05T13:00:02.25Z", "alpha", "signed"),
                "thread panicked".to_owned(),
            ]
            .join("\n"),
        )
        .unwrap();
        let all = merged(dir.path(), None).unwrap();
        let order: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "node-1 thread panicked",
                "node-1 2026-12-05T13:00:01.400000Z  INFO share kept order=alpha",
                "node-0 2026-12-05T13:00:01.5Z  INFO order made order=alpha",
                "node-1 2026-12-05T13:00:02.25Z  INFO signed order=alpha",
                "node-0 2026-12-05T13:00:03.000001Z  INFO order made order=beta",
            ]
        );
        let alpha = merged(dir.path(), Some("alpha")).unwrap();
        assert_eq!(alpha.len(), 3);
        assert!(alpha.iter().all(|line| line.is_about("alpha")));
        assert!(merged(dir.path(), Some("gamma")).unwrap().is_empty());
    }

    #[test]
    fn the_ending_of_a_log_shows_its_last_lines_or_says_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert_eq!(ending("node-1", &path, 2), "it wrote no log");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(ending("node-1", &path, 2), "its log is empty");
        let lines = [
            r#"{"timestamp":"2026-12-07T01:00:00Z","level":"INFO","fields":{"message":"first"}}"#,
            r#"{"timestamp":"2026-12-07T01:00:01Z","level":"WARN","fields":{"message":"opening","token":"t"}}"#,
            "error: the token is gone",
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        assert_eq!(
            ending("node-1", &path, 2),
            "its log ends with:\n  node-1 2026-12-07T01:00:01Z  WARN opening token=t\n  \
             node-1 error: the token is gone"
        );
    }

    #[test]
    fn a_directory_without_a_testnet_or_logs_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            merged(dir.path(), None),
            Err(TestnetError::NoTestnet(_))
        ));
    }
}
