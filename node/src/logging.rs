//! Log setup: readable lines by default, JSON on request; level from `RUST_LOG`, else the
//! caller's default. Readable lines are coloured only when stderr is a terminal (and
//! `NO_COLOR` is unset), so a log file or pipe gets no escape codes. Secrets never reach a log
//! line: every secret type prints as `<redacted>`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Kademlia warns "Failed to trigger bootstrap" every few minutes while its table is empty,
/// which is the normal state of a lone node: kept quiet unless `RUST_LOG` asks for Kademlia.
const QUIET_KADEMLIA: &str = "libp2p_kad::behaviour=error";

/// Installs the global subscriber. A second call (tests start many nodes) is a no-op.
pub fn init(format: LogFormat, default_filter: &str) {
    let from_env = std::env::var("RUST_LOG").ok();
    let mut filter = from_env
        .as_deref()
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    if !from_env.is_some_and(|text| text.contains("libp2p_kad"))
        && let Ok(quiet) = QUIET_KADEMLIA.parse()
    {
        filter = filter.add_directive(quiet);
    }
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
