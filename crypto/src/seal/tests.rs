use std::path::PathBuf;

use super::*;

fn keys(n: usize) -> Vec<KemSecretKey> {
    (0..n).map(|_| KemSecretKey::random()).collect()
}

fn seal_to(keys: &[KemSecretKey], header: &[u8], body: &[u8]) -> Sealed {
    let publics: Vec<KemPublicKey> = keys.iter().map(KemSecretKey::public_key).collect();
    let refs: Vec<&KemPublicKey> = publics.iter().collect();
    seal(header, body, &refs).unwrap()
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
            assert_eq!(encapsulation.wrapped_key.len(), WRAPPED_KEY_LEN);
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
    assert_eq!(seal(b"", b"x", &[]), Err(SealError::NoRecipients));
    let one = KemSecretKey::random().public_key();
    let many = vec![&one; MAX_RECIPIENTS + 1];
    assert_eq!(
        seal(b"", b"x", &many),
        Err(SealError::TooManyRecipients(MAX_RECIPIENTS + 1))
    );
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
        let (ct, ss) = key.public_key().0.encapsulate_deterministic(&eseed);
        assert_eq!(ct.as_slice(), field("ct"), "vector {i} ct");
        assert_eq!(ss.as_slice(), field("ss"), "vector {i} ss");

        // Our open path decapsulates the vector's ciphertext to the vector's shared secret:
        // a key wrapped under that secret unwraps.
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
        let (valid, shared) = key.public_key().0.encapsulate();
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
