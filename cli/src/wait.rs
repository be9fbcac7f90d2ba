//! `--wait` of `dta order create` and `dta order release`: follows the principal's record
//! until the order is certified or the beneficiary's receipt is in, shows progress on a
//! terminal (standard error, one line rewritten in place), and fails on timeout naming who has
//! not answered and since when. It reads the record; it does not retry or cancel the step.

use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde_json::Value;

use crate::client::{ClientArgs, text};

/// How often the record is read.
const POLL: Duration = Duration::from_millis(250);

/// What a wait waits for.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The order certified by its fiduciaries.
    Certified,
    /// The beneficiary's receipt of release `sequence`.
    Receipt(u32),
    /// The shares of `epoch` certified (after a refresh).
    Epoch(u64),
    /// Every holder said it deleted its share (after a cancel).
    Cancelled,
}

impl Goal {
    fn reached(self, record: &Value) -> bool {
        match self {
            Self::Certified => !record["certificate"].is_null(),
            Self::Receipt(sequence) => !record["receipts"][sequence.to_string()].is_null(),
            Self::Epoch(epoch) => {
                record["epoch"].as_u64() >= Some(epoch) && !record["certificate"].is_null()
            }
            Self::Cancelled => record["state"] == "cancelled",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Certified => "certified",
            Self::Receipt(_) => "received by its beneficiary",
            Self::Epoch(_) => "certified with its new shares",
            Self::Cancelled => "cancelled by every holder",
        }
    }
}

/// Waits up to `seconds` for the principal's record of `started` (as the API answered it)
/// to reach `goal`, and returns it.
pub async fn until(
    client: &ClientArgs,
    started: Value,
    goal: Goal,
    seconds: u64,
) -> anyhow::Result<Value> {
    let reference = text(&started["reference"]);
    let path = format!(
        "/v2/orders/{reference}?principal={}",
        text(&started["principal"])
    );
    let progress = std::io::stderr().is_terminal() && !client.json;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut record = started;
    loop {
        if goal.reached(&record) {
            if progress {
                eprint!("\r\x1b[K");
            }
            return Ok(record);
        }
        if tokio::time::Instant::now() >= deadline {
            if progress {
                eprintln!();
            }
            bail!(
                "order {reference} is not {} after {seconds} s (state {}): {}",
                goal.describe(),
                text(&record["state"]),
                unanswered(&record, now_millis())
            );
        }
        if progress {
            eprint!(
                "\r\x1b[K{reference}: {}; waiting for {}",
                text(&record["state"]),
                unanswered(&record, now_millis())
            );
        }
        tokio::time::sleep(POLL).await;
        let records = client.get(&path).await?;
        if let Some(principal) = records
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["role"] == "principal")
        {
            record = principal.clone();
        }
    }
}

/// The release sequence a release answer made: the latest one.
pub fn latest_release(record: &Value) -> u32 {
    record["releases"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(sequence, _)| sequence.parse().ok())
        .max()
        .unwrap_or_default()
}

/// Who an order waits for and since when: `custody signature from CID since 12:00:01 UTC
/// (35 s), ...`, or `no one` (the next step is this node's own).
pub fn unanswered(record: &Value, now_ms: u64) -> String {
    let awaited: Vec<String> = record["waiting_for"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let since = w["since_ms"].as_u64().unwrap_or_default();
            format!(
                "{} from {} since {} ({} s)",
                text(&w["for"]),
                text(&w["identity"]),
                clock(since),
                now_ms.saturating_sub(since) / 1000
            )
        })
        .collect();
    if awaited.is_empty() {
        "no one".into()
    } else {
        awaited.join(", ")
    }
}

/// The UTC time of day of a Unix time in milliseconds, `HH:MM:SS UTC`.
pub fn clock(unix_ms: u64) -> String {
    let seconds = (unix_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_has_not_answered_is_named_with_the_time_of_the_request() {
        let record = serde_json::json!({
            "waiting_for": [
                {"identity": "bafyone", "for": "custody signature", "since_ms": 45_296_000u64},
            ]
        });
        assert_eq!(
            unanswered(&record, 45_331_500),
            "custody signature from bafyone since 12:34:56 UTC (35 s)"
        );
        assert_eq!(unanswered(&serde_json::json!({}), 0), "no one");
    }

    #[test]
    fn the_release_a_call_made_is_the_latest() {
        let record = serde_json::json!({"releases": {"1": "a", "2": "b", "10": "c"}});
        assert_eq!(latest_release(&record), 10);
        assert_eq!(latest_release(&serde_json::json!({})), 0);
    }
}
