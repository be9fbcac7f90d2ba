//! `dta audit --car FILE`: audits a whole order from a CAR archive, with no node and no home.
//!
//! The checks are `dta_protocol::archive`'s; this reads the file, prints what was checked,
//! and fails (non-zero exit) naming the block and the reason. It talks to no network.

use std::path::Path;

use anyhow::Context;
use dta_protocol::block::parse_cid;
use serde_json::json;

use crate::output::outln;

/// Audits the order in `car` from `head` (by default the archive's root); with `reference`,
/// the head must belong to that order.
pub fn offline(
    car: &Path,
    head: Option<&str>,
    reference: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(car).with_context(|| format!("cannot read {}", car.display()))?;
    let head = head
        .map(parse_cid)
        .transpose()
        .context("--head is not a CID")?;
    let archive = dta_protocol::car::read(&bytes)
        .with_context(|| format!("audit of {} failed: not a sound CAR archive", car.display()))?;
    let report = dta_protocol::archive::audit(&archive, head, reference)
        .with_context(|| format!("audit of {} failed", car.display()))?;
    let kind = |kind: &dta_protocol::envelope::Kind| {
        serde_json::to_value(kind).unwrap_or(serde_json::Value::Null)
    };
    if json {
        let listed = |envelopes: &[(dta_protocol::Cid, dta_protocol::envelope::Kind)]| {
            envelopes
                .iter()
                .map(|(cid, k)| json!({ "cid": cid.to_string(), "kind": kind(k) }))
                .collect::<Vec<_>>()
        };
        let out = json!({
            "reference": report.reference,
            "head": report.head.to_string(),
            "passed": true,
            "blocks": report.blocks,
            "identities": report.identities,
            "signatures": report.signatures(),
            "certified": report.chain.certified,
            "receipts": report.chain.receipts,
            "policies": report.chain.policies,
            "threshold_signatures": report.chain.threshold_signatures,
            "misconduct": report.chain.misconduct.iter().map(|m| json!({
                "culprit": m.culprit.to_string(),
                "offence": m.offence.name(),
                "evidence": m.evidence.to_string(),
            })).collect::<Vec<_>>(),
            "envelopes": listed(&report.chain.envelopes),
            "attached": listed(&report.attached),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "audit of {} from {}: passed",
        report.reference,
        car.display()
    );
    outln!(
        "  {} blocks: {} envelopes on the chain from {}, {} attached to it, {} identity documents",
        report.blocks,
        report.chain.envelopes.len(),
        report.head,
        report.attached.len(),
        report.identities
    );
    outln!(
        "  {} envelope signatures and {} identity documents (proof of possession, self-signature) verified",
        report.signatures(),
        report.identities
    );
    outln!(
        "  certificate {}; {} receipt(s)",
        if report.chain.certified {
            "verified"
        } else {
            "absent"
        },
        report.chain.receipts
    );
    if report.chain.policies > 0 {
        outln!(
            "  {} release(s) kept the order's release policy",
            report.chain.policies
        );
    }
    for misconduct in &report.chain.misconduct {
        outln!(
            "  misconduct: {} by {} (evidence {})",
            misconduct.offence,
            misconduct.culprit,
            misconduct.evidence
        );
    }
    for (cid, k) in report.chain.envelopes.iter().chain(&report.attached) {
        outln!("  {:<22} {cid}", kind(k).as_str().unwrap_or("?"));
    }
    Ok(())
}
