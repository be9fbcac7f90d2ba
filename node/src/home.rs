//! A node's home directory: creating it (`dta init`) and opening it (`dta run`).
//!
//! ```text
//! HOME/config.toml     configuration (no secrets)
//! HOME/node.key        the libp2p Ed25519 key (protobuf encoding, mode 0600)
//! HOME/keystore.toml   the keystore backend: Argon2id parameters (soft) or module, token and
//!                      key label (pkcs11), and a blob that checks the key
//! HOME/db/             rocksdb: blocks, identities, orders, keystore (wrapped), metadata
//! HOME/node.json       written once the node is ready, removed on clean shutdown
//! ```
//!
//! A home is for its owner alone: the home and every directory in it are mode 0700, every
//! file 0600. `init` and `migrate` set these modes on what they write whatever the umask;
//! RocksDB creates its own files all the time a node runs, so the processes that run a node
//! restrict their umask first ([`restrict_umask`]). [`loose_modes`] lists what is open to
//! others in an existing home.
//!
//! Opening reads the node's own identity document; after rotations of its keys (see
//! `crate::rotation`) it checks every document from the first (kept in the identities column)
//! and unwraps the retired seeds, which open envelopes sealed to the old keys.

use crate::private::{DIR_MODE, FILE_MODE, write_private_file};
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dta_actors::store::{Column, Store, StoreError};
use dta_crypto::Secret;
use dta_hsm::{
    KdfParams, KekPolicy, Keystore, KeystoreError, Pkcs11Config, Pkcs11Keystore, SoftKeystore,
};
use dta_protocol::identity::{
    IdentityDocument, IdentityError, IdentityKeys, LocalIdentity, MAX_ROTATIONS,
};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, HOME_VERSION};

/// Environment variable holding the keystore passphrase.
pub const PASSPHRASE_ENV: &str = "DTA_PASSPHRASE";

/// Shortest passphrase a new soft keystore takes: the keystore file holds the salt and a check
/// blob, so whoever copies it can guess offline, at Argon2id's cost per guess.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Environment variable holding the PKCS#11 user PIN.
pub const PIN_ENV: &str = "DTA_PKCS11_PIN";
/// Keystore name of the identity seed.
pub const IDENTITY_SEED: &str = "identity-seed";
/// Metadata key of this node's own identity document.
pub const OWN_IDENTITY: &[u8] = b"own-identity";
/// Permission bits of the group and of others: none may be set in a home.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Why a home could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `init` on an existing home without `--force`.
    #[error("{0} already holds a dta node; pass --force to replace it (its identity is lost)")]
    Exists(String),
    /// A file problem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No passphrase available.
    #[error("no keystore passphrase: set {PASSPHRASE_ENV} or passphrase_file in config.toml")]
    NoPassphrase,
    /// A new keystore's passphrase is too short to resist guessing.
    #[error(
        "the passphrase has {length} characters; a keystore needs at least \
         {MIN_PASSPHRASE_CHARS} (--insecure-passphrase accepts it, for a throwaway home only)"
    )]
    ShortPassphrase {
        /// Its length in characters (never its content).
        length: usize,
    },
    /// No PIN available.
    #[error("no PKCS#11 PIN: set {PIN_ENV} or pkcs11_pin_file in config.toml")]
    NoPin,
    /// The node holding the home is running.
    #[error("{0}: the node is running (its database is locked); stop it first")]
    Running(String),
    /// The keystore refused.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database's layout.
    #[error("{path}: {source}")]
    Schema {
        /// The database.
        path: String,
        /// Why it cannot be read.
        source: dta_actors::schema::SchemaError,
    },
    /// The API's certificate could not be made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The home's API token could not be made.
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
    /// The identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A file of the home is damaged.
    #[error("{path} is damaged: {message}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `keystore.toml`: which backend holds the key, and a blob that checks it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum KeystoreFile {
    Soft {
        version: u32,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        salt: String,
        check: String,
    },
    Pkcs11 {
        version: u32,
        module: PathBuf,
        token: String,
        kek_label: String,
        check: String,
    },
}

/// The keystore a new home gets (or a home migrates to).
#[derive(Debug, Clone)]
pub enum KeystoreChoice {
    /// A passphrase-derived key (the default).
    Soft {
        /// Argon2id parameters.
        kdf: KdfParams,
        /// Accepts a passphrase shorter than [`MIN_PASSPHRASE_CHARS`].
        insecure_passphrase: bool,
    },
    /// A key in a PKCS#11 token; the PIN comes from `DTA_PKCS11_PIN` or the pin file.
    Pkcs11 {
        /// The module.
        module: PathBuf,
        /// The token's label.
        token: String,
        /// The key-encryption key's label.
        kek_label: String,
    },
}

impl KeystoreChoice {
    /// A PKCS#11 choice with the default key label.
    pub fn pkcs11(module: PathBuf, token: String) -> Self {
        Self::Pkcs11 {
            module,
            token,
            kek_label: dta_hsm::pkcs11::DEFAULT_KEK_LABEL.to_owned(),
        }
    }

    /// Opens (creating the token key if needed) the keystore and describes it for
    /// `keystore.toml`. A passphrase or PIN file in `given` is read before the environment:
    /// the command named it for this keystore, and the nodes it starts read that file alone.
    fn create(
        &self,
        config: &Config,
        given: &SecretFiles,
    ) -> Result<(Arc<dyn Keystore>, KeystoreFile), HomeError> {
        match self {
            Self::Soft {
                kdf,
                insecure_passphrase,
            } => {
                let passphrase = match &given.passphrase_file {
                    Some(file) => passphrase_from_file(file)?,
                    None => passphrase(config.passphrase_file.as_deref())?,
                };
                let length = String::from_utf8_lossy(&passphrase).chars().count();
                if length < MIN_PASSPHRASE_CHARS && !insecure_passphrase {
                    return Err(HomeError::ShortPassphrase { length });
                }
                let keystore = SoftKeystore::derive(&passphrase, kdf)?;
                let file = KeystoreFile::Soft {
                    version: HOME_VERSION,
                    memory_kib: kdf.memory_kib,
                    iterations: kdf.iterations,
                    parallelism: kdf.parallelism,
                    salt: hex::encode(kdf.salt),
                    check: hex::encode(dta_hsm::check_blob(&keystore)?),
                };
                Ok((Arc::new(keystore), file))
            }
            Self::Pkcs11 {
                module,
                token,
                kek_label,
            } => {
                let pin = match &given.pin_file {
                    Some(file) => pin_from_file(file)?,
                    None => pin(config.pkcs11_pin_file.as_deref())?,
                };
                let keystore =
                    open_token(module, token, kek_label, pin, KekPolicy::CreateIfMissing)?;
                let file = KeystoreFile::Pkcs11 {
                    version: HOME_VERSION,
                    module: module.clone(),
                    token: token.clone(),
                    kek_label: kek_label.clone(),
                    check: hex::encode(dta_hsm::check_blob(&keystore)?),
                };
                Ok((Arc::new(keystore), file))
            }
        }
    }
}

/// What `init` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Identity CID.
    pub identity: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// The file holding the token with every scope that the `dta` commands use with
    /// `--home`.
    pub token_file: PathBuf,
}

/// Reads the passphrase from `DTA_PASSPHRASE` or the configured file.
pub fn passphrase(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, HomeError> {
    if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(value.into_encoded_bytes()));
    }
    let Some(file) = file else {
        return Err(HomeError::NoPassphrase);
    };
    passphrase_from_file(file)
}

/// Reads a passphrase file.
fn passphrase_from_file(file: &Path) -> Result<Zeroizing<Vec<u8>>, HomeError> {
    let text = Zeroizing::new(std::fs::read(file).map_err(io(file))?);
    // A trailing newline from `echo pass > file` is not part of the passphrase.
    let end = text
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    Ok(Zeroizing::new(text[..end].to_vec()))
}

/// Opens a PKCS#11 keystore.
fn open_token(
    module: &Path,
    token: &str,
    kek_label: &str,
    pin: Zeroizing<String>,
    policy: KekPolicy,
) -> Result<Pkcs11Keystore, HomeError> {
    let mut settings = Pkcs11Config::new(module, token, pin);
    settings.kek_label = kek_label.to_owned();
    Ok(Pkcs11Keystore::open(&settings, policy)?)
}

/// Reads the PKCS#11 PIN from `DTA_PKCS11_PIN` or the configured file.
pub fn pin(file: Option<&Path>) -> Result<Zeroizing<String>, HomeError> {
    if let Some(value) = std::env::var_os(PIN_ENV) {
        return value
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| HomeError::NoPin);
    }
    let Some(file) = file else {
        return Err(HomeError::NoPin);
    };
    pin_from_file(file)
}

/// Reads a PIN file.
fn pin_from_file(file: &Path) -> Result<Zeroizing<String>, HomeError> {
    let text = Zeroizing::new(std::fs::read_to_string(file).map_err(io(file))?);
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Creates a home: config, node key, keystore, identity. The passphrase (soft) or PIN file
/// (pkcs11) named in `config` is recorded in `config.toml`.
pub fn init(
    home: &Path,
    name: &str,
    force: bool,
    secrets: SecretFiles,
    keystore: KeystoreChoice,
) -> Result<InitReport, HomeError> {
    let config_path = home.join("config.toml");
    if config_path.exists() || home.join("db").exists() {
        if !force {
            return Err(HomeError::Exists(home.display().to_string()));
        }
        for file in ["config.toml", "node.key", "keystore.toml", "node.json"] {
            let path = home.join(file);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let db = home.join("db");
        if db.exists() {
            std::fs::remove_dir_all(&db).map_err(io(&db))?;
        }
    }
    create_private_dir(home)?;
    let mut config = Config::new(name);
    let (keystore, keystore_file) = keystore.create(&config, &secrets)?;
    config.passphrase_file = secrets.passphrase_file;
    config.pkcs11_pin_file = secrets.pin_file;

    let keypair = Keypair::generate_ed25519();
    let key_path = home.join("node.key");
    let encoded =
        Zeroizing::new(
            keypair
                .to_protobuf_encoding()
                .map_err(|e| HomeError::Damaged {
                    path: key_path.display().to_string(),
                    message: e.to_string(),
                })?,
        );
    write_private(&key_path, &encoded)?;

    write_keystore_file(home, &keystore_file)?;

    let db = home.join("db");
    create_private_dir(&db)?;
    let store = Store::open(&db)?;
    let seed = Secret::<32>::random();
    store.put_durable(
        Column::Keystore,
        IDENTITY_SEED.as_bytes(),
        &keystore.wrap(IDENTITY_SEED, seed.expose())?,
    )?;
    let peer_id = keypair.public().to_peer_id();
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let local = LocalIdentity::create(&seed, name, &peer_id.to_bytes(), created_at)?;
    let document = dta_protocol::dagcbor::encode(local.identity().document())
        .map_err(|e| HomeError::Identity(e.into()))?;
    store.put_durable(Column::Metadata, OWN_IDENTITY, &document)?;
    store.put_durable(Column::Identities, &local.cid().to_bytes(), &document)?;
    crate::tokens::ensure_home_token(home, &crate::tokens::Tokens::open(store.clone())?)?;
    let token_file = home.join(crate::tokens::HOME_TOKEN_FILE);
    store.flush()?;
    // RocksDB made its files with the modes this process's umask leaves: closed, they are
    // made private. (Only the database: whatever else a reused directory holds is not
    // init's to change.)
    drop(store);
    restrict_tree(&db)?;
    // The config goes last: a home is only a home once everything else is in place.
    config.save(home).map_err(io(&config_path))?;
    Ok(InitReport {
        identity: local.cid().to_string(),
        peer_id: peer_id.to_string(),
        token_file,
    })
}

/// Gives the home's API a self-signed certificate for `hosts` (besides localhost and
/// 127.0.0.1) and names it in `config.toml`; its SHA-256 fingerprint, which clients pin.
pub fn enable_api_tls(home: &Path, hosts: &[String]) -> Result<String, HomeError> {
    let mut config = Config::load(home)?;
    let fingerprint = crate::tls::make_self_signed(home, hosts)?;
    config.api.tls_cert = Some(crate::tls::CERT_FILE.into());
    config.api.tls_key = Some(crate::tls::KEY_FILE.into());
    let path = home.join("config.toml");
    config.save(home).map_err(io(&path))?;
    Ok(fingerprint)
}

/// Where a new keystore's passphrase or PIN is read from: a file named here comes before the
/// environment (`DTA_PASSPHRASE`, `DTA_PKCS11_PIN`), which comes before the home's config.
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    /// The keystore passphrase (soft keystores).
    pub passphrase_file: Option<PathBuf>,
    /// The PKCS#11 user PIN (pkcs11 keystores).
    pub pin_file: Option<PathBuf>,
}

/// Writes `keystore.toml` atomically (a temporary file renamed over it).
fn write_keystore_file(home: &Path, file: &KeystoreFile) -> Result<(), HomeError> {
    let path = home.join("keystore.toml");
    let text = toml::to_string_pretty(file).map_err(|e| HomeError::Damaged {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let temporary = home.join("keystore.toml.new");
    write_private_file(&temporary, text.as_bytes()).map_err(io(&temporary))?;
    std::fs::File::open(&temporary)
        .and_then(|f| f.sync_all())
        .map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))
}

/// Opens the keystore `keystore.toml` describes and checks that its key is this home's.
pub fn open_keystore(home: &Path, config: &Config) -> Result<Arc<dyn Keystore>, HomeError> {
    let path = home.join("keystore.toml");
    let damaged = |message: String| HomeError::Damaged {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let file: KeystoreFile = toml::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    let (keystore, check): (Arc<dyn Keystore>, &str) = match &file {
        KeystoreFile::Soft {
            memory_kib,
            iterations,
            parallelism,
            salt,
            check,
            ..
        } => {
            let salt: [u8; 16] = hex::decode(salt)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| damaged("bad salt".into()))?;
            let passphrase = passphrase(config.passphrase_file.as_deref())?;
            let keystore = SoftKeystore::derive(
                &passphrase,
                &KdfParams {
                    memory_kib: *memory_kib,
                    iterations: *iterations,
                    parallelism: *parallelism,
                    salt,
                },
            )?;
            (Arc::new(keystore), check)
        }
        KeystoreFile::Pkcs11 {
            module,
            token,
            kek_label,
            check,
            ..
        } => {
            // The key must already be there: a new one would open none of the secrets.
            let pin = pin(config.pkcs11_pin_file.as_deref())?;
            let keystore = open_token(module, token, kek_label, pin, KekPolicy::MustExist)?;
            (Arc::new(keystore), check)
        }
    };
    let check = hex::decode(check).map_err(|e| damaged(e.to_string()))?;
    match dta_hsm::verify_check(keystore.as_ref(), &check) {
        // A software key that fails the check came from the wrong passphrase.
        Err(KeystoreError::WrongKey { backend: "soft" }) => Err(KeystoreError::WrongPassphrase)?,
        other => other?,
    }
    Ok(keystore)
}

/// An opened home: everything a node needs to start.
#[derive(Debug)]
pub struct OpenHome {
    /// The configuration.
    pub config: Config,
    /// The libp2p key.
    pub keypair: Keypair,
    /// The database.
    pub store: Store,
    /// The keystore.
    pub keystore: Arc<dyn Keystore>,
    /// This node's identity and keys.
    pub identity: LocalIdentity,
    /// The identities this node hosts (`POST /v1/identity`).
    pub hosted: Vec<LocalIdentity>,
}

/// Opens a home: reads the config and node key, unlocks the keystore, loads the identity.
pub fn open(home: &Path) -> Result<OpenHome, HomeError> {
    open_with(home, Config::load(home)?)
}

/// Opens a home with a configuration already read from it (and checked, with the command
/// line's overrides, before anything in the home was opened): reads the node key, unlocks the
/// keystore, opens the database, loads the identity.
pub fn open_with(home: &Path, config: Config) -> Result<OpenHome, HomeError> {
    let key_path = home.join("node.key");
    let encoded = Zeroizing::new(std::fs::read(&key_path).map_err(io(&key_path))?);
    let keypair = Keypair::from_protobuf_encoding(&encoded).map_err(|e| HomeError::Damaged {
        path: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let keystore = open_keystore(home, &config)?;
    let store = open_store(home)?;
    let migrated = dta_actors::schema::migrate(&store).map_err(|source| HomeError::Schema {
        path: home.join("db").display().to_string(),
        source,
    })?;
    if migrated.from != migrated.to {
        tracing::info!(
            from = migrated.from,
            to = migrated.to,
            "database layout brought up to date"
        );
    }
    let missing = |what: &str| HomeError::Damaged {
        path: home.join("db").display().to_string(),
        message: format!("{what} is missing"),
    };
    let blob = store
        .get(Column::Keystore, IDENTITY_SEED.as_bytes())?
        .ok_or_else(|| missing("the identity seed"))?;
    let seed_bytes = keystore.unwrap(IDENTITY_SEED, &blob)?;
    let seed = Secret::<32>::new(
        seed_bytes
            .as_slice()
            .try_into()
            .map_err(|_| missing("a 32-byte identity seed"))?,
    );
    let document = store
        .get(Column::Metadata, OWN_IDENTITY)?
        .ok_or_else(|| missing("the identity document"))?;
    let identity = identity_of_seed(&store, &*keystore, &seed, document, |message| {
        HomeError::Damaged {
            path: home.join("db").display().to_string(),
            message,
        }
    })?;
    if PeerId::from_bytes(identity.identity().peer_id()).ok() != Some(keypair.public().to_peer_id())
    {
        return Err(HomeError::Damaged {
            path: key_path.display().to_string(),
            message: "node key does not match the identity document".into(),
        });
    }
    let mut hosted = Vec::new();
    for (key, document) in store.scan(Column::Metadata)? {
        let Some(name) = std::str::from_utf8(&key)
            .ok()
            .filter(|k| k.starts_with(dta_actors::hosting::HOSTED_PREFIX))
        else {
            continue;
        };
        let blob = store
            .get(Column::Keystore, name.as_bytes())?
            .ok_or_else(|| missing(&format!("the seed of {name}")))?;
        let seed_bytes = keystore.unwrap(name, &blob)?;
        let seed = Secret::<32>::new(
            seed_bytes
                .as_slice()
                .try_into()
                .map_err(|_| missing(&format!("a 32-byte seed for {name}")))?,
        );
        let damaged = |message| HomeError::Damaged {
            path: home.join("db").display().to_string(),
            message,
        };
        hosted.push(identity_of_seed(
            &store, &*keystore, &seed, document, damaged,
        )?);
    }
    Ok(OpenHome {
        config,
        keypair,
        store,
        keystore,
        identity,
        hosted,
    })
}

/// Opens the home's database; a lock held by a running node is named as such.
fn open_store(home: &Path) -> Result<Store, HomeError> {
    let db = home.join("db");
    Store::open(&db).map_err(|e| match &e {
        StoreError::Db(inner) if inner.to_string().contains("lock") => {
            HomeError::Running(home.display().to_string())
        }
        _ => HomeError::Store(e),
    })
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The backend before.
    pub from: &'static str,
    /// The backend after.
    pub to: &'static str,
    /// Secrets moved (each verified under the new key before the old copy was replaced).
    pub secrets: usize,
}

/// Moves every secret of a stopped node's keystore to another backend.
///
/// Every secret is unwrapped with the old key, wrapped with the new one and checked to unwrap
/// to the same bytes, all before anything is written. The new `keystore.toml` is written
/// beside the old one (`keystore.toml.migrating`), then every blob is replaced in one synced
/// batch, the keystore column is compacted so the old blobs leave the files, and the new
/// `keystore.toml` takes the old one's place. Interrupted at any point, running it again
/// finishes the job: a blob the new key already opens is kept as it is.
pub fn migrate(
    home: &Path,
    to: KeystoreChoice,
    secrets: SecretFiles,
) -> Result<MigrateReport, HomeError> {
    let mut config = Config::load(home)?;
    let store = open_store(home)?;
    let old = open_keystore(home, &config)?;
    let (new, new_file) = to.create(&config, &secrets)?;
    if let Some(file) = secrets.passphrase_file {
        config.passphrase_file = Some(file);
    }
    if let Some(file) = secrets.pin_file {
        config.pkcs11_pin_file = Some(file);
    }
    let mut replaced = Vec::new();
    let entries = store.scan(Column::Keystore)?;
    for (key, blob) in &entries {
        let name = std::str::from_utf8(key).map_err(|_| HomeError::Damaged {
            path: home.join("db").display().to_string(),
            message: "a keystore entry has a name that is not UTF-8".into(),
        })?;
        let secret = match old.unwrap(name, blob) {
            Ok(secret) => secret,
            // Moved by an interrupted run: keep it if the new key opens it.
            Err(first) => match new.unwrap(name, blob) {
                Ok(_) => continue,
                Err(_) => return Err(first.into()),
            },
        };
        let wrapped = new.wrap(name, &secret)?;
        if new.unwrap(name, &wrapped)?.as_slice() != secret.as_slice() {
            return Err(HomeError::Keystore(KeystoreError::Integrity {
                name: name.to_owned(),
            }));
        }
        replaced.push((Column::Keystore, key.clone(), wrapped));
    }
    let migrating = home.join("keystore.toml.migrating");
    let text = toml::to_string_pretty(&new_file).map_err(|e| HomeError::Damaged {
        path: migrating.display().to_string(),
        message: e.to_string(),
    })?;
    write_private_file(&migrating, text.as_bytes()).map_err(io(&migrating))?;
    config.save(home).map_err(io(&home.join("config.toml")))?;
    store.write_durable(replaced)?;
    store.compact(Column::Keystore)?;
    std::fs::rename(&migrating, home.join("keystore.toml")).map_err(io(&migrating))?;
    // The compaction wrote new database files with the modes the umask leaves.
    drop(store);
    restrict_tree(&home.join("db"))?;
    Ok(MigrateReport {
        from: old.backend(),
        to: new.backend(),
        secrets: entries.len(),
    })
}

/// Creates a new file holding `bytes`, mode 0600, synced.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Creates `dir` (and its missing parents, with the usual modes) and makes it mode 0700,
/// whatever the umask and whatever mode it had.
fn create_private_dir(dir: &Path) -> Result<(), HomeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(io(dir))
}

/// Takes the group's and others' bits off everything under `root`, `root` included.
fn restrict_tree(root: &Path) -> Result<(), HomeError> {
    for (path, metadata) in walk(root)? {
        let mode = metadata.permissions().mode();
        if mode & OPEN_TO_OTHERS != 0 {
            let private = Permissions::from_mode(mode & 0o7777 & !OPEN_TO_OTHERS);
            std::fs::set_permissions(&path, private).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// A file or directory of a home that others than its owner may use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LooseMode {
    /// Where it is.
    pub path: PathBuf,
    /// Its permission bits, for example `0o644`.
    pub mode: u32,
}

/// Every file and directory of `home` (itself included) whose mode lets its group or others
/// in, sorted by path. `dta run` warns about each before it opens the home.
pub fn loose_modes(home: &Path) -> Result<Vec<LooseMode>, HomeError> {
    let mut loose: Vec<LooseMode> = walk(home)?
        .into_iter()
        .filter_map(|(path, metadata)| {
            let mode = metadata.permissions().mode() & 0o7777;
            (mode & OPEN_TO_OTHERS != 0).then_some(LooseMode { path, mode })
        })
        .collect();
    loose.sort();
    Ok(loose)
}

/// Every file and directory under `root`, `root` included, with its metadata. Symbolic links
/// are neither followed nor listed: their own mode means nothing, and what they point at is
/// not part of the home. What disappears during the walk (RocksDB deletes files of a running
/// node) is skipped.
fn walk(root: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>, HomeError> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        if metadata.file_type().is_symlink() {
            continue;
        }
        if metadata.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            for entry in entries {
                pending.push(entry.map_err(io(&path))?.path());
            }
        }
        found.push((path, metadata));
    }
    Ok(found)
}

#[cfg(test)]
#[path = "home_tests.rs"]
mod tests;

/// An identity of this node (its own, or one it hosts): its stored `document`, checked with
/// every document it succeeds
/// (kept in the identities column) against the keys of `seed`, with the retired seeds that
/// the keystore still has.
fn identity_of_seed(
    store: &Store,
    keystore: &dyn Keystore,
    seed: &Secret<32>,
    document: Vec<u8>,
    damaged: impl Fn(String) -> HomeError,
) -> Result<LocalIdentity, HomeError> {
    // Newest first, back to the first document.
    let mut chain = vec![document];
    loop {
        let newest = chain.last().map(Vec::as_slice).unwrap_or_default();
        let decoded: IdentityDocument =
            dta_protocol::dagcbor::decode(newest, dta_protocol::dagcbor::Limits::default())
                .map_err(|e| HomeError::Identity(e.into()))?;
        let Some(succession) = decoded.claims.succeeds else {
            break;
        };
        if chain.len() as u64 > MAX_ROTATIONS {
            return Err(damaged("the identity's documents go on too long".into()));
        }
        let previous = store
            .get(Column::Identities, &succession.previous.to_bytes())?
            .ok_or_else(|| {
                damaged(format!(
                    "the identity's document {} is missing",
                    succession.previous
                ))
            })?;
        chain.push(previous);
    }
    let mut retired = Vec::new();
    for previous in &chain[1..] {
        let name = dta_actors::hosting::retired_seed_name(&dta_protocol::block::cid_of(
            dta_protocol::block::DAG_CBOR,
            previous,
        ));
        if let Some(blob) = store.get(Column::Keystore, name.as_bytes())? {
            let bytes = keystore.unwrap(&name, &blob)?;
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| damaged(format!("{name} is not a 32-byte seed")))?;
            retired.push(IdentityKeys::from_seed(&Secret::new(seed)));
        }
    }
    chain.reverse();
    let documents: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    Ok(LocalIdentity::from_chain(seed, &documents, retired)?)
}
