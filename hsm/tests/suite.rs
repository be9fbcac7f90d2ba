//! The keystore suite: every backend must pass the same checks.
//!
//! The software keystore runs in every `cargo test`. The PKCS#11 keystore needs a module and a
//! SoftHSM2 configuration: its tests are `#[ignore]`d unless run with `--ignored pkcs11`, which
//! `scripts/test` does with `DTA_PKCS11_MODULE` naming the module and `SOFTHSM2_CONF` a
//! configuration whose token directory it made. Each test creates tokens of its own.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dta_hsm::pkcs11::init_token;
use dta_hsm::{
    KdfParams, KekPolicy, Keystore, KeystoreError, Pkcs11Config, Pkcs11Keystore, SoftKeystore,
};
use zeroize::Zeroizing;

/// Taken by every test here: shared by most, whole by those whose helper process reads the
/// token directory while this one works in it. SoftHSM2 (2.6) aborts a process that lists
/// the slots while two tokens of the directory cannot be read (an assertion in its slot
/// manager): the helper's damaged token and one another process is logging in to (SoftHSM2
/// rewrites its file in place) or creating, at the same moment. Those two tests together
/// failed 2 times in 40.
static TOKEN_DIRECTORY: RwLock<()> = RwLock::new(());

/// A turn beside the other tests.
fn alongside_others() -> RwLockReadGuard<'static, ()> {
    TOKEN_DIRECTORY.read().unwrap_or_else(|e| e.into_inner())
}

/// The token directory to this test and its helper process alone.
fn alone() -> RwLockWriteGuard<'static, ()> {
    TOKEN_DIRECTORY.write().unwrap_or_else(|e| e.into_inner())
}

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "user-pin-5678";

/// The checks every backend passes. `other` is a keystore of the same backend with another key.
fn suite(keystore: &dyn Keystore, other: &dyn Keystore) {
    // Round trip, under the secret's own name only.
    let blob = keystore.wrap("identity-seed", b"the seed bytes").unwrap();
    assert_eq!(
        keystore.unwrap("identity-seed", &blob).unwrap().as_slice(),
        b"the seed bytes"
    );
    assert_eq!(
        keystore.unwrap("another-name", &blob),
        Err(KeystoreError::Integrity {
            name: "another-name".into()
        })
    );
    // Fresh randomness each time, and no plaintext in the blob.
    let again = keystore.wrap("identity-seed", b"the seed bytes").unwrap();
    assert_ne!(blob, again);
    assert!(!blob.windows(8).any(|w| w == b"the seed"));
    // Another key cannot open it.
    assert_eq!(
        other.unwrap("identity-seed", &blob),
        Err(KeystoreError::Integrity {
            name: "identity-seed".into()
        })
    );
    // Any flipped bit is caught: in the nonce, the ciphertext, the tag.
    for index in [1, blob.len() / 2, blob.len() - 1] {
        let mut altered = blob.clone();
        altered[index] ^= 0x01;
        assert_eq!(
            keystore.unwrap("identity-seed", &altered),
            Err(KeystoreError::Integrity {
                name: "identity-seed".into()
            }),
            "bit flipped at {index}"
        );
    }
    // Not this backend's format: malformed, not a token error.
    for bad in [vec![], vec![blob[0]; 5], {
        let mut wrong_version = blob.clone();
        wrong_version[0] ^= 0x40;
        wrong_version
    }] {
        assert_eq!(
            keystore.unwrap("identity-seed", &bad),
            Err(KeystoreError::Malformed {
                name: "identity-seed".into()
            })
        );
    }
    // Empty and large secrets.
    let empty = keystore.wrap("empty", b"").unwrap();
    assert!(keystore.unwrap("empty", &empty).unwrap().is_empty());
    let large: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let wrapped = keystore.wrap("large", &large).unwrap();
    assert_eq!(
        keystore.unwrap("large", &wrapped).unwrap().as_slice(),
        large
    );
    // Errors and Debug never show secrets.
    let error = keystore.unwrap("large", &blob).unwrap_err().to_string();
    assert!(!error.contains("seed bytes"), "{error}");
    let debug = format!("{keystore:?}");
    assert!(
        !debug.contains(USER_PIN) && !debug.contains("the seed"),
        "{debug}"
    );
}

/// Eight threads wrap and unwrap at once: the backend is shareable and keeps secrets apart.
fn concurrently(keystore: Arc<dyn Keystore>) {
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let keystore = keystore.clone();
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    let name = format!("share-{t}-{i}");
                    let secret = [t, i, 0xaa, 0x55];
                    let blob = keystore.wrap(&name, &secret).unwrap();
                    assert_eq!(keystore.unwrap(&name, &blob).unwrap().as_slice(), secret);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

fn soft(passphrase: &[u8]) -> SoftKeystore {
    let params = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
        salt: [3; 16],
    };
    SoftKeystore::derive(passphrase, &params).unwrap()
}

#[test]
fn the_software_keystore_passes_the_suite() {
    suite(&soft(b"correct horse"), &soft(b"battery staple"));
    concurrently(Arc::new(soft(b"correct horse")));
}

// ---- PKCS#11 (SoftHSM2) ----

fn module() -> PathBuf {
    std::env::var_os("DTA_PKCS11_MODULE")
        .expect("DTA_PKCS11_MODULE names the PKCS#11 module (scripts/test sets it)")
        .into()
}

/// A token of this test's own, initialised on the module's free slot. The label is made
/// unique so that a token directory reused across runs holds no stale token of that name.
fn fresh_token(name: &str) -> Pkcs11Config {
    let module = module();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let label = format!("{name}-{}-{nanos:x}", std::process::id());
    init_token(&module, &label, SO_PIN, USER_PIN).expect("a fresh token");
    Pkcs11Config::new(module, label, Zeroizing::new(USER_PIN.to_owned()))
}

#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_the_token_keystore_passes_the_suite() {
    let _turn = alongside_others();
    let config = fresh_token("suite");
    let keystore = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
    let mut other_config = config.clone();
    other_config.kek_label = "another-kek".into();
    let other = Pkcs11Keystore::open(&other_config, KekPolicy::CreateIfMissing).unwrap();
    suite(&keystore, &other);
    concurrently(Arc::new(keystore));
}

#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_the_kek_is_found_again_and_never_leaves_the_token() {
    let _turn = alongside_others();
    let config = fresh_token("kek");
    let blob = {
        let keystore = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
        // Neither its value nor a wrapped copy comes out.
        // Reading CKA_VALUE yields nothing (sensitive), so it comes to wrapping, which the
        // token refuses because the key is not extractable.
        let extracted = keystore.try_extract_kek();
        assert!(
            matches!(&extracted, Err(KeystoreError::Token { operation, message, .. })
                if operation == "wrapping the key-encryption key" && message.contains("EXTRACTABLE")),
            "{extracted:?}"
        );
        keystore.wrap("kept", b"across reopening").unwrap()
    };
    // Reopened, it must exist and open what it wrapped.
    let keystore = Pkcs11Keystore::open(&config, KekPolicy::MustExist).unwrap();
    assert_eq!(
        keystore.unwrap("kept", &blob).unwrap().as_slice(),
        b"across reopening"
    );
}

#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_bad_settings_fail_with_clear_errors() {
    let _turn = alongside_others();
    let config = fresh_token("errors");
    // Wrong PIN: refused before anything is created.
    let mut wrong = config.clone();
    wrong.pin = Zeroizing::new("not-the-pin".to_owned());
    assert_eq!(
        Pkcs11Keystore::open(&wrong, KekPolicy::CreateIfMissing).unwrap_err(),
        KeystoreError::WrongPin {
            token: config.token.clone()
        }
    );
    // The KEK must exist for an existing keystore: a new one would open nothing.
    assert_eq!(
        Pkcs11Keystore::open(&config, KekPolicy::MustExist).unwrap_err(),
        KeystoreError::KeyNotFound {
            label: dta_hsm::pkcs11::DEFAULT_KEK_LABEL.into(),
            token: config.token.clone()
        }
    );
    // A token that is not there.
    let mut missing = config.clone();
    missing.token = "no-such-token".into();
    let error = Pkcs11Keystore::open(&missing, KekPolicy::CreateIfMissing).unwrap_err();
    assert!(
        matches!(&error, KeystoreError::TokenNotFound { token, available, .. }
            if token == "no-such-token" && available.contains(&config.token)),
        "{error:?}"
    );
    // A module that is not there.
    let mut no_module = config.clone();
    no_module.module = "/nonexistent/libpkcs11.so".into();
    assert!(matches!(
        Pkcs11Keystore::open(&no_module, KekPolicy::CreateIfMissing).unwrap_err(),
        KeystoreError::ModuleNotFound { .. }
    ));
    // The right PIN still works after all that.
    let keystore = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
    let blob = keystore.wrap("s", b"fine").unwrap();
    assert_eq!(keystore.unwrap("s", &blob).unwrap().as_slice(), b"fine");
}

#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_a_different_kek_fails_the_key_check() {
    let _turn = alongside_others();
    let config = fresh_token("check");
    let keystore = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
    let check = dta_hsm::check_blob(&keystore).unwrap();
    dta_hsm::verify_check(&keystore, &check).unwrap();
    let mut other = config.clone();
    other.kek_label = "replacement".into();
    let replaced = Pkcs11Keystore::open(&other, KekPolicy::CreateIfMissing).unwrap();
    assert_eq!(
        dta_hsm::verify_check(&replaced, &check),
        Err(KeystoreError::WrongKey { backend: "pkcs11" })
    );
    assert_eq!(keystore.token(), Some(config.token.as_str()));
}

/// The token the helper below logs in to, when a test runs it as a process of its own.
const LOGIN_TOKEN: &str = "DTA_TEST_LOGIN_TOKEN";

/// Opens a keystore on a token again and again for two seconds: each open logs in anew, and
/// SoftHSM2 rewrites the token's file on each login. A helper process for the test below (its
/// name leaves it out of `--ignored pkcs11`); run alone, it uses a token of its own.
#[test]
#[ignore = "a helper process of pkcs11_a_token_is_found_while_another_process_logs_in_to_its_own"]
fn helper_logs_in_again_and_again() {
    let config = match std::env::var(LOGIN_TOKEN) {
        Ok(label) => Pkcs11Config::new(module(), label, Zeroizing::new(USER_PIN.to_owned())),
        Err(_) => fresh_token("helper"),
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut opened = 0;
    while std::time::Instant::now() < until {
        Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing)
            .unwrap_or_else(|e| panic!("open {opened}: {e}"));
        opened += 1;
    }
    assert!(opened > 0);
}

#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_a_token_is_found_while_another_process_logs_in_to_its_own() {
    let _turn = alone();
    let busy = fresh_token("busy");
    let config = fresh_token("found");
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_logs_in_again_and_again"])
        .env(LOGIN_TOKEN, &busy.token)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Each open lists the tokens, and reads the busy one's file while the helper rewrites it.
    let mut opened = 0;
    while helper.try_wait().unwrap().is_none() {
        if let Err(e) = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing) {
            let _ = helper.kill();
            panic!("open {opened}, while another process logs in: {e}");
        }
        opened += 1;
    }
    assert!(helper.wait().unwrap().success(), "the helper failed");
    assert!(opened > 10, "only {opened} opens");
}

/// The file of the token labelled `label` in SoftHSM2's token directory (`SOFTHSM2_CONF`).
fn token_file(label: &str) -> PathBuf {
    let conf = std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF (scripts/test sets it)");
    let conf = std::fs::read_to_string(conf).unwrap();
    let directory = conf
        .lines()
        .find_map(|line| line.strip_prefix("directories.tokendir"))
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .expect("a token directory in SOFTHSM2_CONF")
        .trim();
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("token.object"))
        .find(|file| {
            std::fs::read(file).is_ok_and(|bytes| {
                bytes
                    .windows(label.len())
                    .any(|window| window == label.as_bytes())
            })
        })
        .unwrap_or_else(|| panic!("no token file holds the label {label}"))
}

/// Another token that this process cannot read (its file cut short, as another process's
/// rewrite leaves it for a moment) does not hide the token asked for, and a label that is not
/// there is reported as such. Run as a process of its own: SoftHSM2 may go on failing the
/// damaged token in the process that read it cut short, for as long as it runs.
#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_a_token_is_found_while_another_token_cannot_be_read() {
    let _turn = alone();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_finds_a_token_beside_one_it_cannot_read",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The body of the test above, in a process of its own (its name leaves it out of `--ignored
/// pkcs11`).
#[test]
#[ignore = "a helper process of pkcs11_a_token_is_found_while_another_token_cannot_be_read"]
fn helper_finds_a_token_beside_one_it_cannot_read() {
    let damaged = fresh_token("damaged");
    let config = fresh_token("beside");
    let file = token_file(&damaged.token);
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..4]).unwrap();
    let while_cut = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).map(|_| ());
    let damaged_open = Pkcs11Keystore::open(&damaged, KekPolicy::CreateIfMissing).map(|_| ());
    std::fs::write(&file, &whole).unwrap();
    while_cut.unwrap();
    assert!(
        matches!(&damaged_open, Err(KeystoreError::TokenNotFound { token, unreadable, .. })
            if *token == damaged.token && *unreadable >= 1),
        "{damaged_open:?}"
    );
    let message = damaged_open.unwrap_err().to_string();
    assert!(message.contains("could not be read"), "{message}");
    // Whether or not the module reads it again, the other token still opens and works.
    let keystore = Pkcs11Keystore::open(&config, KekPolicy::MustExist).unwrap();
    let blob = keystore.wrap("s", b"found").unwrap();
    assert_eq!(keystore.unwrap("s", &blob).unwrap().as_slice(), b"found");
}

/// Threads open a keystore (each open lists the slots) right after each of a series of tokens
/// is created. SoftHSM2 adds a fresh empty slot at the first listing after a token is created,
/// without a lock of its own: two threads doing so at once abort the process, or find no free
/// slot, unless listings are serialised.
#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_threads_list_the_slots_while_tokens_are_created() {
    let _turn = alongside_others();
    const OPENERS: usize = 4;
    const ROUNDS: usize = 40;
    let config = fresh_token("listed");
    Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
    // Each round: a token is created, then every opener opens the keystore at once.
    let created = Arc::new(std::sync::Barrier::new(OPENERS + 1));
    let openers: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (config, created) = (config.clone(), created.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    created.wait();
                    Pkcs11Keystore::open(&config, KekPolicy::MustExist)
                        .unwrap_or_else(|e| panic!("round {round}: {e}"));
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        fresh_token(&format!("round{round}"));
        created.wait();
    }
    for opener in openers {
        opener.join().unwrap();
    }
}

/// Keystores opened at once on a new token make one key-encryption key between them, and each
/// opens what another wrapped.
#[test]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
fn pkcs11_keystores_opened_at_once_on_a_new_token_share_one_key() {
    let _turn = alongside_others();
    const OPENERS: usize = 4;
    let config = fresh_token("together");
    let start = Arc::new(std::sync::Barrier::new(OPENERS));
    let keystores: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (config, start) = (config.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|opener| opener.join().unwrap().unwrap())
        .collect();
    let blob = keystores[0].wrap("s", b"one key").unwrap();
    for keystore in &keystores {
        assert_eq!(keystore.unwrap("s", &blob).unwrap().as_slice(), b"one key");
    }
    Pkcs11Keystore::open(&config, KekPolicy::MustExist).unwrap();
}
