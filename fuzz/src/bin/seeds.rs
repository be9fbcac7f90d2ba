//! Writes the seed corpora under `fuzz/corpus/`: valid encodings made by dta's own encoders
//! (an identity document, a sealed envelope and a bundle of two, BLS keys and signatures, a
//! Bitswap message, a CAR archive, wire messages), so that the fuzzer starts from inputs that
//! pass the first checks. Envelopes differ from run to run (timestamps, fresh encapsulation),
//! so a run rewrites those seeds; keep the committed ones unless a format changed.
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --bin seeds`, without the fuzzing
//! `RUSTFLAGS` (it is an ordinary program; instrumented, it would not link).

use std::path::Path;

use dta_protocol::bitswap::{Message, Want, WantType};
use dta_protocol::block::{DAG_CBOR, cid_of};
use dta_protocol::dagcbor;
use dta_protocol::envelope::{Draft, Kind, SignedEnvelope};
use dta_protocol::network::{Request, Response};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("a seed");
}

/// A target's input that picks its case `which` with the first byte.
fn with(which: u8, bytes: &[u8]) -> Vec<u8> {
    [&[which][..], bytes].concat()
}

fn main() {
    let me = dta_fuzz::identity();
    let document = dagcbor::encode(me.identity().document()).expect("the document encodes");
    write("identity", "fixed", &document);
    write("dagcbor", "identity", &document);
    let rotated = me
        .rotate(&dta_crypto::Secret::new([8; 32]), 1_700_000_000_000)
        .expect("a rotation");
    let rotated = dagcbor::encode(rotated.identity().document()).expect("the document encodes");
    write("identity", "rotated", &rotated);
    let revocation = dta_protocol::revocation::Revocation::by_identity(
        me.keys(),
        me.cid(),
        1_700_000_000_000,
        "a seed",
    )
    .expect("a revocation");
    write("identity", "revocation", revocation.bytes());
    let identity_cid = me.identity().cid();
    write("cid", "text", identity_cid.to_string().as_bytes());
    write("cid", "bytes", &identity_cid.to_bytes());

    let me_only = [me.identity()];
    let envelope = |prev, secret: Option<&[u8]>| {
        SignedEnvelope::create(
            me,
            Draft {
                kind: Kind::OrderRequest,
                order: "seed-1",
                prev,
                timestamp: 1,
                public: Some(dagcbor::encode(&vec![1u8, 2, 3]).expect("a payload")),
                secret,
                recipients: if secret.is_some() { &me_only } else { &[] },
            },
        )
        .expect("an envelope")
        .to_block()
        .expect("a block")
        .into_bytes()
    };
    let first = envelope(None, Some(b"a sealed body"));
    let second = envelope(Some(cid_of(DAG_CBOR, &first)), None);
    write("envelope", "sealed", &first);
    write("envelope", "public", &second);
    write("dagcbor", "envelope", &first);
    let mut bundle = first.clone();
    bundle.extend_from_slice(&[0xff, 0x00]);
    bundle.extend_from_slice(&second);
    write("bundle", "two", &bundle);

    let key = dta_crypto::bls::SecretKey::from_ikm(&[9; 32], b"").expect("a key");
    write("bls", "public-key", &with(0, &key.public_key().to_bytes()));
    write("bls", "signature", &with(1, &key.sign(b"seed").to_bytes()));
    write("bls", "proof", &with(2, &key.prove_possession().to_bytes()));
    write("bls", "commitments", &with(3, &key.public_key().to_bytes()));

    let block = b"a raw block".to_vec();
    let block_cid = cid_of(0x55, &block);
    let message = Message {
        wants: vec![Want {
            cid: identity_cid,
            priority: 1,
            cancel: false,
            want_type: WantType::Have,
            send_dont_have: true,
        }],
        full_wantlist: false,
        blocks: vec![(block_cid, block.clone())],
        presences: Vec::new(),
    };
    let frame = message.encode_frame();
    write("bitswap", "frame", &frame);
    // The body alone: the frame without its one-byte length.
    write("bitswap", "body", &frame[1..]);
    let car = dta_protocol::car::write(&[identity_cid], &[(identity_cid, document.clone())])
        .expect("an archive");
    write("car", "identity", &car);

    write(
        "network",
        "identity",
        &with(0, &dagcbor::encode(&Request::Identity).unwrap()),
    );
    let deliver = Request::Deliver {
        blocks: vec![serde_bytes::ByteBuf::from(first)],
    };
    write(
        "network",
        "deliver",
        &with(0, &dagcbor::encode(&deliver).unwrap()),
    );
    write(
        "network",
        "accepted",
        &with(1, &dagcbor::encode(&Response::Accepted).unwrap()),
    );

    http_bodies(&identity_cid.to_string());
    scenarios();
}

/// Bodies of each call the `http_bodies` target drives (its first byte picks the call).
fn http_bodies(identity: &str) {
    let order = format!(
        r#"{{"reference":"seed","fiduciaries":["{identity}","{identity}"],"threshold":2,"beneficiary":"{identity}","secret_hex":"00ff10Ab","policy":{{"groups":[{{"name":"legal","members":["{identity}"],"count":1}}],"rule":{{"group":"legal"}},"delay_ms":1000,"signing":{{"max_signatures":3,"message_prefixes_hex":["6474612f"]}}}}}}"#
    );
    write("http_bodies", "order", &with(0, order.as_bytes()));
    let text = r#"{"fiduciaries":[],"threshold":1,"secret":"the launch codes"}"#;
    write("http_bodies", "order-text", &with(0, text.as_bytes()));
    let base64 = r#"{"fiduciaries":[],"threshold":1,"secret_base64":"dGhlIGxhdW5jaA"}"#;
    write("http_bodies", "order-base64", &with(0, base64.as_bytes()));
    let policy = format!(
        r#"{{"groups":[{{"name":"a","members":["{identity}"],"count":1}},{{"name":"b","members":["{identity}"],"count":1}}],"rule":{{"at-least":{{"count":1,"of":[{{"group":"a"}},{{"group":"b"}}]}}}},"veto":{{"name":"v","members":["{identity}"],"count":1}},"not_before_ms":5,"approval_lifetime_ms":60000}}"#
    );
    write("http_bodies", "policy", &with(6, policy.as_bytes()));
    let reshare = format!(r#"{{"fiduciaries":["{identity}"],"threshold":1}}"#);
    write("http_bodies", "reshare", &with(2, reshare.as_bytes()));
    let release = format!(r#"{{"beneficiary":"{identity}"}}"#);
    write("http_bodies", "release", &with(2, release.as_bytes()));
    let vote = format!(r#"{{"request":"{identity}","veto":true,"identity":"{identity}"}}"#);
    write("http_bodies", "vote", &with(3, vote.as_bytes()));
    let issue = format!(
        r#"{{"identity":"alice@example.org","date":20000,"from":["{identity}"],"master":{{"reference":"m","principal":"{identity}","threshold":2}},"wait_ms":100}}"#
    );
    write("http_bodies", "mpin", &with(4, issue.as_bytes()));
}

/// The example scenarios of `testnet/scenarios`, for the `scenario` target.
fn scenarios() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/scenarios");
    let mut files = Vec::new();
    for dir in [examples.clone(), examples.join("byzantine")] {
        for entry in std::fs::read_dir(&dir).expect("the example scenarios") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    for path in files {
        let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
        write("scenario", &name, &std::fs::read(&path).expect("an example scenario"));
    }
}
