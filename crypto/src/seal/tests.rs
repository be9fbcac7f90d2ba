use std::path::PathBuf;

use super::reuse::{REMEMBERED_DECAPSULATIONS, SESSION_MAX_USES};
use super::*;

fn keys(n: usize) -> Vec<KemSecretKey> {
    (0..n).map(|_| KemSecretKey::random()).collect()
}

fn seal_to(keys: &[KemSecretKey], header: &[u8], body: &[u8]) -> Sealed {
    let publics: Vec<KemPublicKey> = keys.iter().map(KemSecretKey::public_key).collect();
    let refs: Vec<&KemPublicKey> = publics.iter().collect();
    seal(header, body, &refs, &Sessions::default()).unwrap()
}

#[test]
fn every_recipient_opens_the_same_body() {
    for n in [1, 3, 10] {
        let recipients = keys(n);
        let body = vec![0x5a; 1024];
        let sealed = seal_to(&recipients, b"header", &body);
        assert_eq!(sealed.encapsulations.len(), n);
        assert_eq!(sealed.ciphertext.len(), body.len() + TAG_LEN);
        for (key, encapsulation) in recipients.iter().zip(&sealed.encapsulations) {
            assert_eq!(encapsulation.kem_ciphertext.len(), KEM_CIPHERTEXT_LEN);
            assert_eq!(encapsulation.wrapped_key.len(), SALTED_WRAPPED_KEY_LEN);
            let opened = open(b"header", &sealed.ciphertext, encapsulation, key).unwrap();
            assert_eq!(opened.as_slice(), body.as_slice());
        }
    }
}

#[test]
fn an_outsider_cannot_open() {
    let recipients = keys(2);
    let outsider = KemSecretKey::random();
    let sealed = seal_to(&recipients, b"h", b"secret");
    for encapsulation in &sealed.encapsulations {
        assert_eq!(
            open(b"h", &sealed.ciphertext, encapsulation, &outsider),
            Err(OpenError::NotForThisKey)
        );
    }
    // A recipient cannot use another recipient's encapsulation either.
    assert_eq!(
        open(
            b"h",
            &sealed.ciphertext,
            &sealed.encapsulations[1],
            &recipients[0]
        ),
        Err(OpenError::NotForThisKey)
    );
}

#[test]
fn header_and_body_are_authenticated() {
    let recipients = keys(1);
    let sealed = seal_to(&recipients, b"header", b"body");
    let encapsulation = &sealed.encapsulations[0];
    assert_eq!(
        open(b"headeR", &sealed.ciphertext, encapsulation, &recipients[0]),
        Err(OpenError::NotForThisKey)
    );
    let mut body = sealed.ciphertext.clone();
    body[0] ^= 1;
    assert_eq!(
        open(b"header", &body, encapsulation, &recipients[0]),
        Err(OpenError::BodyAltered)
    );
    let mut wrapped = encapsulation.clone();
    wrapped.wrapped_key[3] ^= 1;
    assert_eq!(
        open(b"header", &sealed.ciphertext, &wrapped, &recipients[0]),
        Err(OpenError::NotForThisKey)
    );
    let mut short = encapsulation.clone();
    short.kem_ciphertext.pop();
    assert_eq!(
        open(b"header", &sealed.ciphertext, &short, &recipients[0]),
        Err(OpenError::MalformedEncapsulation)
    );
}

#[test]
fn recipient_counts_are_bounded() {
    let sessions = Sessions::default();
    assert_eq!(
        seal(b"", b"x", &[], &sessions),
        Err(SealError::NoRecipients)
    );
    let one = KemSecretKey::random().public_key();
    let many = vec![&one; MAX_RECIPIENTS + 1];
    assert_eq!(
        seal(b"", b"x", &many, &sessions),
        Err(SealError::TooManyRecipients(MAX_RECIPIENTS + 1))
    );
}

#[test]
fn one_encapsulation_seals_many_envelopes_each_under_a_wrapping_key_of_its_own() {
    let recipients = keys(2);
    let publics: Vec<KemPublicKey> = recipients.iter().map(KemSecretKey::public_key).collect();
    let sessions = Sessions::default();
    let first = seal(b"h1", b"one", &[&publics[0], &publics[1]], &sessions).unwrap();
    let second = seal(b"h2", b"two", &[&publics[0]], &sessions).unwrap();
    assert_eq!(sessions.len(), 2, "one session per recipient");
    let (a, b) = (&first.encapsulations[0], &second.encapsulations[0]);
    assert_eq!(
        a.kem_ciphertext, b.kem_ciphertext,
        "the encapsulation is used again"
    );
    assert_ne!(
        first.encapsulations[1].kem_ciphertext, a.kem_ciphertext,
        "each recipient has its own"
    );
    assert_ne!(
        a.wrapped_key[..SALT_LEN],
        b.wrapped_key[..SALT_LEN],
        "fresh salts"
    );
    assert_ne!(a.wrapped_key[SALT_LEN..], b.wrapped_key[SALT_LEN..]);
    let key = &recipients[0];
    assert_eq!(
        open(b"h1", &first.ciphertext, a, key).unwrap().as_slice(),
        b"one"
    );
    assert_eq!(key.decapsulations.len(), 1);
    assert_eq!(
        open(b"h2", &second.ciphertext, b, key).unwrap().as_slice(),
        b"two"
    );
    assert_eq!(key.decapsulations.len(), 1, "the second open used the memo");
    // The same secret under another envelope's salt wraps another key: swapping the salts of
    // the two envelopes opens neither.
    let mut swapped = b.clone();
    swapped.wrapped_key[..SALT_LEN].copy_from_slice(&a.wrapped_key[..SALT_LEN]);
    assert_eq!(
        open(b"h2", &second.ciphertext, &swapped, key),
        Err(OpenError::NotForThisKey)
    );
    // Another sender (another set of sessions) encapsulates afresh.
    let elsewhere = seal(b"h3", b"three", &[&publics[0]], &Sessions::default()).unwrap();
    assert_ne!(elsewhere.encapsulations[0].kem_ciphertext, a.kem_ciphertext);
}

#[test]
fn a_session_ends_after_its_uses_and_the_memo_after_its_size() {
    let recipient = KemSecretKey::random();
    let public = recipient.public_key();
    let sessions = Sessions::default();
    let ciphertext = |n: usize| {
        (0..n)
            .map(|_| {
                seal(b"h", b"x", &[&public], &sessions)
                    .unwrap()
                    .encapsulations[0]
                    .kem_ciphertext
                    .clone()
            })
            .collect::<Vec<_>>()
    };
    let sealed = ciphertext(SESSION_MAX_USES as usize + 1);
    assert!(
        sealed[..SESSION_MAX_USES as usize]
            .iter()
            .all(|ct| *ct == sealed[0])
    );
    assert_ne!(
        sealed[SESSION_MAX_USES as usize], sealed[0],
        "a fresh one after the last use"
    );

    // The memo keeps only the latest decapsulations, and only those that unwrapped a key.
    let opens = |sealed: &Sealed| {
        open(
            b"h",
            &sealed.ciphertext,
            &sealed.encapsulations[0],
            &recipient,
        )
        .is_ok()
    };
    let opened: Vec<Sealed> = (0..REMEMBERED_DECAPSULATIONS + 3)
        .map(|_| seal(b"h", b"x", &[&public], &Sessions::default()).unwrap())
        .collect();
    assert!(opened.iter().all(opens));
    assert_eq!(recipient.decapsulations.len(), REMEMBERED_DECAPSULATIONS);
    let stranger = KemSecretKey::random().public_key();
    let foreign = seal(b"h", b"x", &[&stranger], &sessions).unwrap();
    assert!(!opens(&foreign));
    let digest = fingerprint(&foreign.encapsulations[0].kem_ciphertext);
    assert!(recipient.decapsulations.get(&digest).is_none());
    // Forgotten or not, every envelope still opens.
    assert!(opened.iter().all(opens));
}

#[test]
fn keys_round_trip_and_bad_keys_are_refused() {
    let key = KemSecretKey::random();
    let again = KemSecretKey::from_seed(&key.to_seed());
    assert_eq!(again.public_key(), key.public_key());
    let bytes = key.public_key().to_bytes();
    assert_eq!(bytes.len(), KEM_PUBLIC_KEY_LEN);
    assert_eq!(KemPublicKey::from_bytes(&bytes).unwrap(), key.public_key());
    assert_eq!(
        KemPublicKey::from_bytes(&bytes[1..]),
        Err(KemKeyError {
            len: KEM_PUBLIC_KEY_LEN - 1
        })
    );
    assert!(format!("{key:?}").contains("redacted"));
}

/// Where cargo unpacked the x-wing crate; its package ships the draft's official vectors.
fn x_wing_vectors() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this platform's packages are downloaded, so metadata must be filtered to it to
    // work offline.
    let version = std::process::Command::new(&cargo)
        .arg("-vV")
        .output()
        .expect("cargo -vV runs");
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("cargo reports its host");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "x-wing")
        .expect("x-wing is a dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    PathBuf::from(manifest)
        .parent()
        .unwrap()
        .join("tests/test-vectors.json")
}

#[test]
fn x_wing_official_vectors() {
    let path = x_wing_vectors();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("X-Wing vectors missing at {}: {e}", path.display()));
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(!vectors.is_empty());
    for (i, vector) in vectors.iter().enumerate() {
        let field = |name: &str| hex::decode(vector[name].as_str().unwrap()).unwrap();
        let seed: [u8; 32] = field("seed")[..32].try_into().unwrap();
        let key = KemSecretKey::from_seed(&Secret::new(seed));
        assert_eq!(
            key.to_seed().expose().as_slice(),
            field("sk"),
            "vector {i} sk"
        );
        assert_eq!(key.public_key().to_bytes(), field("pk"), "vector {i} pk");

        // Encapsulation with the vector's randomness gives its ciphertext and shared secret.
        let eseed = x_wing::kem::common::array::Array::try_from(field("eseed").as_slice()).unwrap();
        let (ct, ss) = key.public_key().key.encapsulate_deterministic(&eseed);
        assert_eq!(ct.as_slice(), field("ct"), "vector {i} ct");
        assert_eq!(ss.as_slice(), field("ss"), "vector {i} ss");

        // Our open path decapsulates the vector's ciphertext to the vector's shared secret:
        // a key wrapped under that secret unwraps. (Wrapped under the secret itself, as
        // envelopes were before salts: that form still opens.)
        let shared = Secret::new(field("ss").try_into().unwrap());
        let content_key = Secret::<32>::random();
        let body = aead_seal(&content_key, b"h", b"payload").unwrap();
        let encapsulation = Encapsulation {
            kem_ciphertext: field("ct"),
            wrapped_key: aead_seal(&shared, b"h", content_key.expose()).unwrap(),
        };
        assert_eq!(
            open(b"h", &body, &encapsulation, &key).unwrap().as_slice(),
            b"payload"
        );
    }
}

#[test]
fn decapsulation_from_the_kept_expansion_matches_x_wing() {
    use x_wing::Decapsulate;
    for _ in 0..8 {
        let key = KemSecretKey::random();
        let (valid, shared) = key.public_key().key.encapsulate();
        let mut garbage = [0u8; KEM_CIPHERTEXT_LEN];
        crate::random_bytes(&mut garbage);
        for ciphertext in [valid.as_slice(), &garbage[..]] {
            let ours = key.decapsulate(ciphertext.try_into().unwrap());
            let theirs = key
                .seed
                .decapsulate(&x_wing::Ciphertext::try_from(ciphertext).unwrap());
            assert_eq!(ours.expose().as_slice(), theirs.as_slice());
        }
        assert_eq!(
            key.decapsulate(valid.as_slice().try_into().unwrap())
                .expose()
                .as_slice(),
            shared.as_slice()
        );
        // A key made again from its seed is the same key.
        let again = KemSecretKey::from_seed(&key.to_seed());
        assert_eq!(
            again
                .decapsulate(valid.as_slice().try_into().unwrap())
                .expose(),
            key.decapsulate(valid.as_slice().try_into().unwrap())
                .expose()
        );
    }
}
