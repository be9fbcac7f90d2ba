//! Writes the seed corpora under `fuzz/corpus/`: valid encodings made by dta's own encoders
//! (an identity document, a sealed envelope and a bundle of two, BLS keys and signatures, a
//! Bitswap message, a CAR archive, wire messages), so that the fuzzer starts from inputs that
//! pass the first checks. Deterministic: the same bytes on every run.
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

fn main() {
    let me = dta_fuzz::identity();
    let document = dagcbor::encode(me.identity().document()).expect("the document encodes");
    write("identity", "fixed", &document);
    write("dagcbor", "identity", &document);
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
    let with = |which: u8, bytes: &[u8]| [&[which][..], bytes].concat();
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
}
