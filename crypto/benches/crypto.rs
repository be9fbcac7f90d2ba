//! `cargo bench -p dta-crypto`: the figures the foundation issue asks for.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dta_crypto::bls::{self, PopVerifiedKey, SecretKey};
use dta_crypto::dkg;
use dta_crypto::ed25519;
use dta_crypto::seal::{self, KemPublicKey, KemSecretKey};
use dta_crypto::threshold::{self, SecretScalar};

fn signatures(c: &mut Criterion) {
    let key = SecretKey::random();
    let public = key.public_key();
    let message = [7u8; 32];
    let signature = key.sign(&message);
    let proof = key.prove_possession();
    c.bench_function("bls/sign", |b| b.iter(|| key.sign(black_box(&message))));
    c.bench_function("bls/verify", |b| {
        b.iter(|| public.verify(black_box(&message), &signature))
    });
    c.bench_function("bls/pop_verify", |b| {
        b.iter(|| public.verify_pop(black_box(&proof)))
    });
    // What an identity document costs: against `pop_verify` plus `verify`.
    c.bench_function("bls/pop_and_signature_verify", |b| {
        b.iter(|| public.verify_pop_and_signature(black_box(&proof), &message, &signature))
    });
    // Envelope signatures: what every step but the custody signature costs.
    let envelope_key = ed25519::SecretKey::from_seed(&dta_crypto::Secret::new([9; 32]));
    let envelope_public = envelope_key.public_key();
    let envelope_signature = envelope_key.sign(&message);
    c.bench_function("ed25519/sign", |b| {
        b.iter(|| envelope_key.sign(black_box(&message)))
    });
    c.bench_function("ed25519/verify", |b| {
        b.iter(|| envelope_public.verify(black_box(&message), &envelope_signature))
    });

    let mut group = c.benchmark_group("bls/fast_aggregate_verify");
    for n in [3usize, 10, 64] {
        let keys: Vec<SecretKey> = (0..n).map(|_| SecretKey::random()).collect();
        let verified: Vec<PopVerifiedKey> = keys
            .iter()
            .map(|k| k.public_key().verify_pop(&k.prove_possession()).unwrap())
            .collect();
        let sigs: Vec<bls::Signature> = keys.iter().map(|k| k.sign(&message)).collect();
        let aggregate = bls::aggregate_signatures(&sigs).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| bls::fast_aggregate_verify(&verified, black_box(&message), &aggregate))
        });
        // The same check split: what can be made before the signatures are in, and what is
        // left once they are.
        group.bench_with_input(BenchmarkId::new("prepare", n), &n, |b, _| {
            b.iter(|| bls::PreparedVerification::new(&verified, black_box(&message)))
        });
        let prepared = bls::PreparedVerification::new(&verified, &message).unwrap();
        group.bench_with_input(BenchmarkId::new("finish", n), &n, |b, _| {
            b.iter(|| prepared.verify(black_box(&aggregate)))
        });
    }
    group.finish();

    // Certificates of three fiduciaries on distinct commitments, checked together; the
    // throughput line gives the cost per certificate.
    let mut group = c.benchmark_group("bls/fast_aggregate_verify_batch");
    let certificates: Vec<(Vec<PopVerifiedKey>, Vec<u8>, bls::Signature)> = (0..32u8)
        .map(|i| {
            let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
            let message = vec![i; 46];
            let sigs: Vec<bls::Signature> = keys.iter().map(|k| k.sign(&message)).collect();
            let verified = keys
                .iter()
                .map(|k| k.public_key().verify_pop(&k.prove_possession()).unwrap())
                .collect();
            (verified, message, bls::aggregate_signatures(&sigs).unwrap())
        })
        .collect();
    for n in [1usize, 8, 32] {
        let batch: Vec<(&[PopVerifiedKey], &[u8], &bls::Signature)> = certificates[..n]
            .iter()
            .map(|(k, m, s)| (k.as_slice(), m.as_slice(), s))
            .collect();
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| bls::fast_aggregate_verify_batch(black_box(&batch)))
        });
    }
    group.finish();
}

fn shamir(c: &mut Criterion) {
    let secret = SecretScalar::random();
    let mut split = c.benchmark_group("shamir/split");
    for (t, n) in [(2, 3), (3, 5), (5, 7), (7, 10)] {
        split.bench_with_input(BenchmarkId::new(format!("t{t}"), n), &n, |b, &n| {
            b.iter(|| threshold::split(&secret, t, n))
        });
    }
    split.finish();
    let mut recover = c.benchmark_group("shamir/recover");
    for (t, n) in [(2, 3), (3, 5), (5, 7), (7, 10)] {
        let (shares, _) = threshold::split(&secret, t, n).unwrap();
        recover.bench_with_input(BenchmarkId::new(format!("t{t}"), n), &n, |b, _| {
            b.iter(|| threshold::recover(black_box(&shares), t))
        });
    }
    recover.finish();
    let mut verify = c.benchmark_group("shamir/verify_share");
    for (t, n) in [(2, 3), (3, 5), (5, 7), (7, 10)] {
        let (shares, commitments) = threshold::split(&secret, t, n).unwrap();
        let bytes = commitments.to_bytes();
        verify.bench_with_input(BenchmarkId::new(format!("t{t}"), n), &n, |b, _| {
            b.iter(|| {
                threshold::Commitments::from_bytes(black_box(&bytes))
                    .unwrap()
                    .verify_share(&shares[n - 1])
            })
        });
    }
    verify.finish();
}

fn sealing(c: &mut Criterion) {
    let body = vec![0x42u8; 1024];
    let mut group = c.benchmark_group("seal_open_1KiB");
    for n in [1usize, 3, 10] {
        let keys: Vec<KemSecretKey> = (0..n).map(|_| KemSecretKey::random()).collect();
        let publics: Vec<KemPublicKey> = keys.iter().map(KemSecretKey::public_key).collect();
        let refs: Vec<&KemPublicKey> = publics.iter().collect();
        // A fresh encapsulation per envelope (a lone envelope), and one kept for many (a
        // sender that seals to the same recipients again within a session's bounds).
        let in_session = seal::Sessions::default();
        for (name, sessions) in [("fresh", None), ("in_session", Some(&in_session))] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let fresh = seal::Sessions::default();
                    let sessions = sessions.unwrap_or(&fresh);
                    let sealed = seal::seal(b"header", black_box(&body), &refs, sessions).unwrap();
                    seal::open(
                        b"header",
                        &sealed.ciphertext,
                        &sealed.encapsulations[0],
                        &keys[0],
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn mpin(c: &mut Criterion) {
    use dta_crypto::mpin::{self, MpinScalar};
    let id = b"alice@example.org";
    let share = MpinScalar::random();
    c.bench_function("mpin/hash_id_to_g1", |b| {
        b.iter(|| mpin::identity_point(black_box(id)))
    });
    c.bench_function("mpin/client_secret_share", |b| {
        b.iter(|| mpin::client_secret(&share, black_box(id)))
    });
    c.bench_function("mpin/server_secret_share", |b| {
        b.iter(|| mpin::server_secret(black_box(&share)))
    });
    let server = mpin::server_secret(&share);
    let token = mpin::extract_pin(&mpin::client_secret(&share, id), id, 1234).unwrap();
    let y = MpinScalar::random();
    c.bench_function("mpin/client_both_passes", |b| {
        b.iter(|| {
            let first = mpin::client_first(&token, id, 1234, None, None).unwrap();
            mpin::client_second(first.state, &y).unwrap()
        })
    });
    let first = mpin::client_first(&token, id, 1234, None, None).unwrap();
    let u = first.u;
    let v = mpin::client_second(first.state, &y).unwrap();
    c.bench_function("mpin/server_check", |b| {
        b.iter(|| mpin::server_check(black_box(id), None, &y, &server, &u, &v).unwrap())
    });
}

/// One participant's three parts of a secp256k1 DKG among n (t = 2n/3 + 1). A run among n
/// nodes costs n times the three together in CPU, and on c cores at least that over c in time.
fn dkg(c: &mut Criterion) {
    use std::collections::BTreeMap;
    let mut group = c.benchmark_group("dkg");
    group.sample_size(10);
    for n in [3u16, 16, 64] {
        let t = 2 * n / 3 + 1;
        let (firsts, commitments) = dealt(n, t);
        let others = |me: u16| others_of(&commitments, me);
        let mut inbox = BTreeMap::new();
        let mut own_second = None;
        for (me, first) in (1u16..).zip(firsts) {
            let (second, shares) = dkg::share_out(first, &others(me)).unwrap();
            if let Some(share) = shares.get(&1) {
                inbox.insert(me, share.clone());
            }
            if me == 1 {
                own_second = Some(second);
            }
        }
        let own_second = own_second.unwrap();
        group.bench_with_input(BenchmarkId::new("deal", n), &n, |b, &n| {
            b.iter(|| dkg::deal::<dkg::Taproot>(1, n, t).unwrap())
        });
        let received = others(1);
        group.bench_with_input(BenchmarkId::new("share_out", n), &n, |b, &n| {
            b.iter_batched(
                || dkg::deal::<dkg::Taproot>(1, n, t).unwrap().0,
                |first| dkg::share_out(first, black_box(&received)).unwrap(),
                criterion::BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("finish", n), &n, |b, _| {
            b.iter(|| dkg::finish(&own_second, black_box(&received), &inbox).unwrap())
        });
    }
    group.finish();
}

/// Part 1 of a key generation among `n` for a `t`-of-`n` key: every participant's kept
/// round and commitment.
fn dealt(n: u16, t: u16) -> (Vec<dkg::Round1>, std::collections::BTreeMap<u16, Vec<u8>>) {
    let mut firsts = Vec::new();
    let mut commitments = std::collections::BTreeMap::new();
    for me in 1..=n {
        let (first, commitment) = dkg::deal::<dkg::Taproot>(me, n, t).unwrap();
        firsts.push(first);
        commitments.insert(me, commitment);
    }
    (firsts, commitments)
}

/// Every commitment but `me`'s.
fn others_of(
    commitments: &std::collections::BTreeMap<u16, Vec<u8>>,
    me: u16,
) -> std::collections::BTreeMap<u16, Vec<u8>> {
    commitments
        .iter()
        .filter(|(p, _)| **p != me)
        .map(|(p, b)| (*p, b.clone()))
        .collect()
}

/// Every participant's share of a `t`-of-`n` key generated without a dealer.
fn generated_key(n: u16, t: u16) -> Vec<dkg::KeyShare> {
    use std::collections::BTreeMap;
    let (firsts, commitments) = dealt(n, t);
    let others = |me: u16| others_of(&commitments, me);
    let mut seconds = Vec::new();
    let mut inboxes: BTreeMap<u16, dkg::Shares> = BTreeMap::new();
    for (me, first) in (1u16..).zip(firsts) {
        let (second, shares) = dkg::share_out(first, &others(me)).unwrap();
        for (to, share) in shares {
            inboxes.entry(to).or_default().insert(me, share);
        }
        seconds.push((me, second));
    }
    seconds
        .iter()
        .map(|(me, second)| dkg::finish(second, &others(*me), &inboxes[me]).unwrap().0)
        .collect()
}

/// FROST signing with a 3-of-5 key, one operation at a time: what each signer and the
/// coordinator spend per signature.
fn threshold_signing(c: &mut Criterion) {
    use dta_crypto::signing;
    use std::collections::BTreeMap;
    let shares = generated_key(5, 3);
    let public: Vec<Vec<u8>> = shares.iter().map(|s| s.public_share().unwrap()).collect();
    let group = signing::Group::new(3, &shares[0].group_key_bytes().unwrap(), &public).unwrap();
    let message = [0x5a; 32];
    let round1 = || {
        let mut nonces = Vec::new();
        let mut commitments = BTreeMap::new();
        for share in &shares[..3] {
            let (n, c) = signing::commit(share).unwrap();
            nonces.push(n);
            commitments.insert(share.participant(), c);
        }
        (
            nonces,
            signing::Package::new(&commitments, &message).unwrap(),
        )
    };
    let (nonces, package) = round1();
    let signature_shares: BTreeMap<u16, Vec<u8>> = shares[..3]
        .iter()
        .zip(nonces)
        .map(|(share, n)| {
            (
                share.participant(),
                signing::sign(&package, n, share).unwrap(),
            )
        })
        .collect();
    let signature = group.aggregate(&package, &signature_shares).unwrap();
    let x_only = group.x_only().unwrap();
    c.bench_function("frost/commit", |b| {
        b.iter(|| signing::commit(&shares[0]).unwrap())
    });
    c.bench_function("frost/package_3_signers", |b| {
        let commitments: BTreeMap<u16, Vec<u8>> = shares[..3]
            .iter()
            .map(|s| (s.participant(), signing::commit(s).unwrap().1))
            .collect();
        b.iter(|| signing::Package::new(black_box(&commitments), &message).unwrap())
    });
    c.bench_function("frost/sign_3_of_5", |b| {
        b.iter_batched(
            || {
                let (mut nonces, package) = round1();
                (nonces.remove(0), package)
            },
            |(nonces, package)| signing::sign(&package, nonces, &shares[0]).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    c.bench_function("frost/check_share_3_of_5", |b| {
        b.iter(|| {
            group
                .check_share(&package, 1, black_box(&signature_shares[&1]))
                .unwrap()
        })
    });
    c.bench_function("frost/aggregate_3_of_5_with_checks", |b| {
        b.iter(|| {
            group
                .aggregate(&package, black_box(&signature_shares))
                .unwrap()
        })
    });
    c.bench_function("bip340/verify", |b| {
        b.iter(|| {
            assert!(dta_crypto::secp256k1::verify_bip340(
                &x_only,
                &message,
                black_box(&signature)
            ))
        })
    });
}

/// Threshold BLS, 2-of-3 (a dealt secret): what each fiduciary and the coordinator spend on
/// one signature.
fn threshold_bls(c: &mut Criterion) {
    let secret = SecretScalar::random();
    let (shares, commitments) = threshold::split(&secret, 2, 3).unwrap();
    let group = threshold::signing::SigningGroup::dealt(commitments.clone());
    let message = b"benchmark message 1".to_vec();
    let partials: Vec<_> = shares[..2]
        .iter()
        .map(|s| threshold::partial_sign(s, &message).unwrap())
        .collect();
    c.bench_function("threshold-bls/partial_sign", |b| {
        b.iter(|| threshold::partial_sign(&shares[0], black_box(&message)))
    });
    c.bench_function("threshold-bls/group_from_commitments_2_of_3", |b| {
        b.iter(|| {
            threshold::signing::SigningGroup::dealt(
                threshold::Commitments::from_bytes(black_box(&commitments.to_bytes())).unwrap(),
            )
        })
    });
    c.bench_function("threshold-bls/combine_2_of_3_and_verify", |b| {
        b.iter(|| group.combine(black_box(&partials), &message).unwrap())
    });
    c.bench_function("threshold-bls/check_partial", |b| {
        b.iter(|| group.check_partial(black_box(&partials[0]), &message))
    });
}

criterion_group!(
    benches,
    threshold_bls,
    signatures,
    shamir,
    sealing,
    mpin,
    dkg,
    threshold_signing
);
criterion_main!(benches);
