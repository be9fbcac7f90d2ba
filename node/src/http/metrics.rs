//! `GET /metrics`: the node's counters, gauges and histograms in Prometheus' text format
//! (names `dta_*`, counters `_total`, durations `_seconds`). Label values come from fixed
//! sets (roles, states, envelope kinds, route templates, status codes) and families are
//! capped (see `dta_actors::metrics::family`), so no caller can grow the page without bound.
//!
//! What it does not do: count (the actors and the API's middleware do) or serve anything else.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use dta_actors::metrics::{HistogramReading, Metrics};
use dta_actors::store::COLUMN_FAMILIES;

use super::ApiState;

/// A label value as the text format wants it.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name}=\"{}\"", escaped(value)))
        .collect::<Vec<_>>()
        .join(",")
}

fn write_counters(
    out: &mut String,
    name: &str,
    help: &str,
    names: &[&str],
    series: Vec<(Vec<String>, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (values, count) in series {
        let _ = writeln!(out, "{name}{{{}}} {count}", labels(names, &values));
    }
}

fn write_histograms(
    out: &mut String,
    name: &str,
    help: &str,
    names: &[&str],
    series: Vec<(Vec<String>, HistogramReading)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (values, reading) in series {
        let shown = labels(names, &values);
        for (bound, count) in &reading.buckets {
            let _ = writeln!(out, "{name}_bucket{{{shown},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{shown},le=\"+Inf\"}} {}",
            reading.count
        );
        let _ = writeln!(out, "{name}_sum{{{shown}}} {}", reading.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{shown}}} {}", reading.count);
    }
}

/// The labelled families: steps, refusals, records, signatures, Bitswap, HTTP, keystore.
fn write_families(out: &mut String, m: &Metrics) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    write_counters(
        out,
        "dta_custody_rejected_total",
        "Custody deliveries and steps refused, by reason.",
        &["reason"],
        m.custody_rejected.read(),
    );
    write_histograms(
        out,
        "dta_custody_step_seconds",
        "Time a role took over one delivered envelope, by role and envelope kind.",
        &["role", "kind"],
        m.custody_steps.read(),
    );
    write_counters(
        out,
        "dta_record_states_total",
        "Records entering a state, by kind (order, mpin), role and state: orders certified and released, keys generated without a dealer, committees refreshed, M-Pin shares issued or refused.",
        &["kind", "role", "state"],
        m.record_states.read(),
    );
    write_counters(
        out,
        "dta_threshold_signatures_total",
        "Signatures made with a key nobody holds, by scheme, as they land at the coordinating principal.",
        &["scheme"],
        m.threshold_signatures.read(),
    );
    let by_direction = |received: &std::sync::atomic::AtomicU64, sent| {
        vec![
            (vec!["in".to_owned()], load(received)),
            (vec!["out".to_owned()], load(sent)),
        ]
    };
    write_counters(
        out,
        "dta_bitswap_blocks_total",
        "Bitswap blocks fetched from peers (in) and served to them (out).",
        &["direction"],
        by_direction(&m.bitswap_blocks_received, &m.bitswap_blocks_sent),
    );
    write_counters(
        out,
        "dta_bitswap_bytes_total",
        "Bytes of those blocks.",
        &["direction"],
        by_direction(&m.bitswap_bytes_received, &m.bitswap_bytes_sent),
    );
    write_counters(
        out,
        "dta_http_requests_total",
        "HTTP API calls answered, by route template, method and status.",
        &["route", "method", "status"],
        m.http_requests.read(),
    );
    write_histograms(
        out,
        "dta_http_request_seconds",
        "Time the HTTP API took to answer (to the start of a streamed answer), by route template and method.",
        &["route", "method"],
        m.http_latency.read(),
    );
    write_histograms(
        out,
        "dta_keystore_operation_seconds",
        "Keystore operations and their time, by backend (soft, pkcs11) and operation.",
        &["backend", "operation"],
        m.keystore_operations.read(),
    );
}

/// Orders by role and state, and the principal's orders that wait for a party (what `dta
/// order show` calls awaited), with how long the oldest has waited. Read from the records at
/// each scrape: a scan of every record, which is what a node with many orders pays for it.
fn write_order_gauges(out: &mut String, state: &ApiState) {
    let records = dta_actors::custody::stored_records(&state.store).unwrap_or_default();
    let mut by_state: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for record in &records {
        *by_state
            .entry((record.role.name(), record.state.name()))
            .or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP dta_orders Orders this node keeps a record of, by its role in them and their state.\n# TYPE dta_orders gauge"
    );
    for ((role, order_state), count) in by_state {
        let _ = writeln!(
            out,
            "dta_orders{{role=\"{role}\",state=\"{order_state}\"}} {count}"
        );
    }
    let waiting_since: Vec<u64> = records
        .iter()
        .filter_map(|record| {
            dta_actors::custody::awaited(&state.store, record)
                .iter()
                .map(|awaited| awaited.since)
                .min()
        })
        .collect();
    let now_ms = crate::tokens::now_ms();
    let oldest = waiting_since
        .iter()
        .min()
        .map_or(0.0, |since| now_ms.saturating_sub(*since) as f64 / 1e3);
    let _ = writeln!(
        out,
        "# HELP dta_orders_waiting Orders of this node's, as principal, that wait for a fiduciary or the beneficiary to answer.\n# TYPE dta_orders_waiting gauge\ndta_orders_waiting {}",
        waiting_since.len()
    );
    let _ = writeln!(
        out,
        "# HELP dta_orders_waiting_oldest_seconds How long the order that has waited longest has waited (0 when none waits).\n# TYPE dta_orders_waiting_oldest_seconds gauge\ndta_orders_waiting_oldest_seconds {oldest}"
    );
}

pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let m = &state.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = String::new();
    let snapshot = state.network.snapshot();
    let _ = writeln!(
        out,
        "# HELP dta_peers Connected peers.\n# TYPE dta_peers gauge"
    );
    let _ = writeln!(out, "dta_peers {}", snapshot.connected.len());
    let _ = writeln!(
        out,
        "# HELP dta_identities Known identities.\n# TYPE dta_identities gauge"
    );
    let _ = writeln!(
        out,
        "dta_identities {}",
        state.directory.borrow().identities.len()
    );
    let _ = writeln!(
        out,
        "# HELP dta_revoked_identities Identities this node holds a verified revocation of.\n# TYPE dta_revoked_identities gauge\ndta_revoked_identities {}",
        state.directory.borrow().revoked.len()
    );
    let _ = writeln!(
        out,
        "# HELP dta_messages_total Messages by protocol and direction.\n# TYPE dta_messages_total counter"
    );
    for (protocol, direction, value) in [
        ("rpc", "sent", load(&m.rpc_requests_sent)),
        ("rpc", "received", load(&m.rpc_requests_received)),
        ("gossipsub", "sent", load(&m.gossip_published)),
        ("gossipsub", "received", load(&m.gossip_received)),
        ("identify", "received", load(&m.identify_received)),
    ] {
        let _ = writeln!(
            out,
            "dta_messages_total{{protocol=\"{protocol}\",direction=\"{direction}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP dta_dht_lookups_total Kademlia lookups for what this node needed and did not know: an identity's providers or a peer's addresses (counted as they start), or the peers closest to the node itself (bootstrap, counted as they end, those that asked any peer).\n# TYPE dta_dht_lookups_total counter"
    );
    for (kind, value) in [
        ("identity", load(&m.identity_lookups)),
        ("peer", load(&m.peer_lookups)),
        ("bootstrap", load(&m.bootstraps)),
    ] {
        let _ = writeln!(out, "dta_dht_lookups_total{{kind=\"{kind}\"}} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP dta_connections_total Connections established, each a noise handshake: dialed by this node (outbound) or by a peer (inbound).\n# TYPE dta_connections_total counter"
    );
    for (direction, value) in [
        ("outbound", load(&m.connections_dialed)),
        ("inbound", load(&m.connections_accepted)),
    ] {
        let _ = writeln!(
            out,
            "dta_connections_total{{direction=\"{direction}\"}} {value}"
        );
    }
    let one_label = |pairs: [(&str, u64); 2]| {
        pairs
            .into_iter()
            .map(|(value, count)| (vec![value.to_owned()], count))
            .collect::<Vec<_>>()
    };
    write_counters(
        &mut out,
        "dta_api_denied_total",
        "HTTP API calls refused, by reason (no valid token, or a token without the scope).",
        &["reason"],
        one_label([
            ("unauthenticated", load(&m.api_denied_unauthenticated)),
            ("scope", load(&m.api_denied_scope)),
        ]),
    );
    write_counters(
        &mut out,
        "dta_rpc_failures_total",
        "Failed requests.",
        &["direction"],
        one_label([
            ("inbound", load(&m.rpc_inbound_failures)),
            ("outbound", load(&m.rpc_outbound_failures)),
        ]),
    );
    write_counters(
        &mut out,
        "dta_identity_documents_total",
        "Received identity documents by outcome.",
        &["outcome"],
        one_label([
            ("accepted", load(&m.identities_accepted)),
            ("rejected", load(&m.identities_rejected)),
        ]),
    );
    for (name, help, value) in [
        (
            "dta_peers_refused_total",
            "Peers disconnected because they speak another major version of the dta protocol.",
            &m.peers_refused_version,
        ),
        (
            "dta_delivery_retries_total",
            "Custody deliveries sent again after a failed attempt.",
            &m.delivery_retries,
        ),
        (
            "dta_deliveries_abandoned_total",
            "Custody deliveries given up after every attempt.",
            &m.deliveries_abandoned,
        ),
        (
            "dta_certificate_checks_total",
            "Custody certificates whose aggregate signature a step had checked (a pairing check each, batched where several wait).",
            &m.certificate_checks,
        ),
        (
            "dta_releases_held_total",
            "Release requests a fiduciary held for their order's release policy.",
            &m.releases_held,
        ),
        (
            "dta_releases_refused_total",
            "Release requests a fiduciary refused under their order's release policy (too early, vetoed, none left).",
            &m.releases_refused_by_policy,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            load(value)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dta_policy_step_seconds Time spent on release policies: checking and recording a vote, evaluating a held release.\n# TYPE dta_policy_step_seconds summary"
    );
    for step in dta_actors::metrics::PolicyStep::ALL {
        let (count, spent) = m.policy_time(step);
        let label = step.label();
        let _ = writeln!(
            out,
            "dta_policy_step_seconds_sum{{step=\"{label}\"}} {}\ndta_policy_step_seconds_count{{step=\"{label}\"}} {count}",
            spent.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "# HELP dta_misconduct_total Offences against the protocol this node saw, by offence and culprit (an identity CID; empty for a peer of unknown identity and past the culprits kept apart).\n# TYPE dta_misconduct_total counter"
    );
    for (offence, culprit, count) in m.misconduct() {
        let culprit = culprit.map(|c| c.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "dta_misconduct_total{{offence=\"{offence}\",culprit=\"{culprit}\"}} {count}"
        );
    }
    write_order_gauges(&mut out, &state);
    write_families(&mut out, m);
    let (buckets, count, sum) = m.latency();
    let _ = writeln!(
        out,
        "# HELP dta_request_latency_seconds Round trip of requests.\n# TYPE dta_request_latency_seconds histogram"
    );
    for (bound, value) in buckets {
        let _ = writeln!(
            out,
            "dta_request_latency_seconds_bucket{{le=\"{bound}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "dta_request_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "dta_request_latency_seconds_sum {sum}");
    let _ = writeln!(out, "dta_request_latency_seconds_count {count}");
    let _ = writeln!(
        out,
        "# HELP dta_store_keys Estimated keys per column family.\n# TYPE dta_store_keys gauge"
    );
    for column in COLUMN_FAMILIES {
        let _ = writeln!(
            out,
            "dta_store_keys{{column=\"{}\"}} {}",
            column.name(),
            state.store.estimated_keys(column)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
