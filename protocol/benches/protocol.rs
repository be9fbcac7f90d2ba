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

criterion_group!(benches, envelopes, identities);
criterion_main!(benches);
