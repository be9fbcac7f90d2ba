//! `cargo bench -p dta-protocol`: whole envelopes (encode, sign, seal, verify, open) and the
//! strict codec.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dta_crypto::Secret;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Draft, Kind, SignedEnvelope};
use dta_protocol::identity::{IdentityDocument, LocalIdentity, VerifiedIdentity};

fn node(seed: u8) -> LocalIdentity {
    LocalIdentity::create(&Secret::new([seed; 32]), "bench", &[seed], 0).unwrap()
}

fn envelopes(c: &mut Criterion) {
    let sender = node(1);
    let body = vec![0x42u8; 1024];
    let mut group = c.benchmark_group("envelope_create_verify_open_1KiB");
    for n in [1u8, 3, 10] {
        let recipients: Vec<LocalIdentity> = (0..n).map(|i| node(10 + i)).collect();
        let identities: Vec<&VerifiedIdentity> =
            recipients.iter().map(LocalIdentity::identity).collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let signed = SignedEnvelope::create(
                    &sender,
                    Draft {
                        kind: Kind::ShareDeal,
                        order: "bench",
                        prev: None,
                        timestamp: 0,
                        public: None,
                        secret: Some(black_box(&body)),
                        recipients: &identities,
                    },
                )
                .unwrap();
                let bytes = signed.to_block().unwrap().into_bytes();
                let verified = SignedEnvelope::decode(&bytes)
                    .unwrap()
                    .verify(sender.identity())
                    .unwrap();
                verified.open(&recipients[0]).unwrap()
            })
        });
    }
    group.finish();
}

fn identities(c: &mut Criterion) {
    let me = node(1);
    let bytes = dagcbor::encode(me.identity().document()).unwrap();
    c.bench_function("identity/decode_verify", |b| {
        b.iter(|| IdentityDocument::decode_verified(black_box(&bytes)).unwrap())
    });
    c.bench_function("dagcbor/validate_identity", |b| {
        b.iter(|| dagcbor::validate(black_box(&bytes), Limits::default()).unwrap())
    });
}

/// What a fiduciary spends on a release's approvals: five approval envelopes decoded and
/// their signatures verified (as on arrival), their payloads decoded, and the policy evaluated.
fn policy(c: &mut Criterion) {
    use dta_protocol::policy::{
        Approval, ApproverGroup, DEFAULT_CLOCK_TOLERANCE_MS, ReleasePolicy, Signed, Situation,
    };
    let approvers: Vec<LocalIdentity> = (0..5).map(|i| node(40 + i)).collect();
    let order = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, b"order");
    let request = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, b"request");
    let policy = ReleasePolicy {
        groups: vec![
            ApproverGroup {
                name: "legal".into(),
                members: approvers[..2].iter().map(LocalIdentity::cid).collect(),
                count: 2,
            },
            ApproverGroup {
                name: "ops".into(),
                members: approvers[2..].iter().map(LocalIdentity::cid).collect(),
                count: 3,
            },
        ],
        delay_ms: Some(1_000),
        ..ReleasePolicy::default()
    };
    let payload = dagcbor::encode(&Approval { order, request }).unwrap();
    let blocks: Vec<Vec<u8>> = approvers
        .iter()
        .map(|approver| {
            SignedEnvelope::create(
                approver,
                Draft {
                    kind: Kind::Approval,
                    order: "bench",
                    prev: Some(request),
                    timestamp: 1_000,
                    public: Some(payload.clone()),
                    secret: None,
                    recipients: &[],
                },
            )
            .unwrap()
            .to_block()
            .unwrap()
            .into_bytes()
        })
        .collect();
    c.bench_function("policy/check_5_approvals", |b| {
        b.iter(|| {
            let approvals: Vec<Signed> = blocks
                .iter()
                .zip(&approvers)
                .map(|(bytes, approver)| {
                    let verified = SignedEnvelope::decode(black_box(bytes))
                        .unwrap()
                        .verify(approver.identity())
                        .unwrap();
                    let approval: Approval = verified.public_payload().unwrap().unwrap();
                    Signed {
                        signer: verified.envelope().sender,
                        approval,
                        prev: verified.envelope().prev,
                        signed_ms: verified.envelope().timestamp,
                    }
                })
                .collect();
            policy.evaluate(&Situation {
                order,
                request,
                request_seen_ms: 0,
                now_ms: 2_000,
                tolerance_ms: DEFAULT_CLOCK_TOLERANCE_MS,
                released: 0,
                approvals: &approvals,
                vetoes: &[],
            })
        })
    });
}

criterion_group!(benches, envelopes, identities, policy);
criterion_main!(benches);
