//! Backups of a node's home as one encrypted archive: made from the home's files and a
//! consistent copy of its database (a rocksdb checkpoint, taken by the running node or, for a
//! stopped one, here), checked without restoring, and restored into a new home.
//!
//! ```text
//! MAGIC                      "DTA-BACKUP-1\n"
//! kdf                        Argon2id memory (KiB), passes, lanes (u32 BE each), salt (16)
//! checksum                   SHA-256 of everything before it and the sealed archive
//! sealed                     the archive, sealed with ChaCha20-Poly1305 under a key derived
//!                            from the backup passphrase (the soft keystore's wrap)
//! ```
//!
//! The archive inside is its manifest (JSON: who the node is, which keystore it needs, what
//! it holds) followed by the files, each as its path, mode and bytes. Secrets in the
//! database stay wrapped by the node's keystore: restoring needs the keystore's passphrase (or
//! token) as well as the backup's. A PKCS#11 keystore's key never leaves its token; the
//! manifest names the module, token and key label the restored node needs.
//!
//! What it does not do: talk to a running node (the command asks it for a checkpoint) or
//! check the home's contents beyond what opening its database shows.

use std::path::{Path, PathBuf};

use dta_actors::store::{Column, Store, StoreError};
use dta_hsm::{KdfParams, Keystore, SoftKeystore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::private::{DIR_MODE, FILE_MODE, write_private_file};

/// Environment variable holding the backup passphrase.
pub const PASSPHRASE_ENV: &str = "DTA_BACKUP_PASSPHRASE";
/// Shortest backup passphrase taken: whoever holds the archive can guess offline.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// The archive format this code writes and reads.
pub const FORMAT: u32 = 1;
/// Where in a home a running node puts the checkpoints it makes for a backup.
pub const CHECKPOINTS: &str = "checkpoints";

const MAGIC: &[u8] = b"DTA-BACKUP-1\n";
/// The name the archive is sealed under (bound into the seal's associated data).
const SEAL_NAME: &str = "dta/backup/v1";
const KDF_LEN: usize = 12 + 16;
const CHECKSUM_LEN: usize = 32;
/// The largest home a backup takes: the archive is sealed in memory.
const MAX_ARCHIVE: u64 = 4 << 30;

/// Why a backup could not be made, checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file problem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No backup passphrase.
    #[error("no backup passphrase: set {PASSPHRASE_ENV} or pass --passphrase-file")]
    NoPassphrase,
    /// A backup passphrase too short.
    #[error(
        "the backup passphrase has {length} characters; a backup needs at least \
         {MIN_PASSPHRASE_CHARS}"
    )]
    ShortPassphrase {
        /// Its length in characters (never its content).
        length: usize,
    },
    /// Not a dta backup, or a format this code does not read.
    #[error("not a dta backup (format {FORMAT})")]
    NotABackup,
    /// The file was changed or cut short after it was written.
    #[error("the backup is damaged: its checksum does not match")]
    Checksum,
    /// The seal did not open.
    #[error("the backup does not open with this passphrase")]
    WrongPassphrase,
    /// The archive inside is malformed.
    #[error("the backup's archive is malformed: {0}")]
    Malformed(String),
    /// Restoring onto a home that exists.
    #[error("{0} exists; a backup is restored into a new home only")]
    Exists(String),
    /// The node of the home runs (it holds the database).
    #[error("the node runs")]
    Running,
    /// The home is too large to back up in one archive.
    #[error("the home holds {0} bytes; a backup takes at most {MAX_ARCHIVE}")]
    TooLarge(u64),
    /// The keystore or key derivation failed.
    #[error(transparent)]
    Keystore(#[from] dta_hsm::KeystoreError),
    /// The database copy did not open or read.
    #[error("the database in the backup: {0}")]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The keystore a restored node needs, as the home's `keystore.toml` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum KeystoreNeeds {
    /// The keystore's passphrase.
    Soft,
    /// This token's key.
    Pkcs11 {
        /// The PKCS#11 module.
        module: String,
        /// The token's label.
        token: String,
        /// The key's label.
        key_label: String,
    },
}

/// What a backup holds, readable once it is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The archive format.
    pub format: u32,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The dta version and commit that made it.
    pub made_by: String,
    /// The node's name.
    pub name: String,
    /// Its identity CID.
    pub identity: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// The keystore its secrets are wrapped by.
    pub keystore: KeystoreNeeds,
    /// Order records in the database.
    pub orders: usize,
    /// Wrapped secrets in the database.
    pub secrets: usize,
    /// Blocks in the database.
    pub blocks: usize,
    /// Files in the archive.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One file of the archive.
struct ArchiveFile {
    /// Its path in the home, `/`-separated.
    path: String,
    /// Its bytes.
    bytes: Zeroizing<Vec<u8>>,
}

/// Reads the backup passphrase from `file`, else [`PASSPHRASE_ENV`]; refuses a short one.
pub fn passphrase(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let read = match file {
        Some(file) => Zeroizing::new(std::fs::read(file).map_err(io(file))?),
        None => match std::env::var_os(PASSPHRASE_ENV) {
            Some(value) => Zeroizing::new(value.into_encoded_bytes()),
            None => return Err(BackupError::NoPassphrase),
        },
    };
    // A file's final newline is not part of the passphrase.
    let end = read
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    let passphrase = Zeroizing::new(read[..end].to_vec());
    let length = String::from_utf8_lossy(&passphrase).chars().count();
    if length < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::ShortPassphrase { length });
    }
    Ok(passphrase)
}

/// The files of `home` a backup holds, with the database taken from `checkpoint` (a
/// checkpoint of the home's database) instead of `home/db`. Leaves out what a running node
/// writes for the moment only: `node.json`, checkpoints, rocksdb's lock and info logs.
fn collect(home: &Path, checkpoint: &Path) -> Result<Vec<ArchiveFile>, BackupError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut add = |path: String, source: &Path| -> Result<(), BackupError> {
        let bytes = Zeroizing::new(std::fs::read(source).map_err(io(source))?);
        total += bytes.len() as u64;
        if total > MAX_ARCHIVE {
            return Err(BackupError::TooLarge(total));
        }
        files.push(ArchiveFile { path, bytes });
        Ok(())
    };
    for entry in std::fs::read_dir(home).map_err(io(home))? {
        let entry = entry.map_err(io(home))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_file() && name != "node.json" {
            add(name, &entry.path())?;
        }
    }
    for entry in std::fs::read_dir(checkpoint).map_err(io(checkpoint))? {
        let entry = entry.map_err(io(checkpoint))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map_err(io(&entry.path()))?.is_file()
            && name != "LOCK"
            && !name.starts_with("LOG")
        {
            add(format!("db/{name}"), &entry.path())?;
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// What the database at `db` holds, and who the node is.
fn describe(home: &Path, store: &Store) -> Result<Manifest, BackupError> {
    let config = crate::config::Config::load(home)
        .map_err(|e| BackupError::Malformed(format!("config.toml: {e}")))?;
    let key_path = home.join("node.key");
    let encoded = Zeroizing::new(std::fs::read(&key_path).map_err(io(&key_path))?);
    let peer_id = libp2p::identity::Keypair::from_protobuf_encoding(&encoded)
        .map_err(|e| BackupError::Malformed(format!("node.key: {e}")))?
        .public()
        .to_peer_id();
    let document = store
        .get(Column::Metadata, crate::home::OWN_IDENTITY)?
        .ok_or_else(|| BackupError::Malformed("the identity document is missing".into()))?;
    let identity = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &document);
    let keystore_path = home.join("keystore.toml");
    let keystore_text = std::fs::read_to_string(&keystore_path).map_err(io(&keystore_path))?;
    Ok(Manifest {
        format: FORMAT,
        created_ms: crate::tokens::now_ms(),
        made_by: format!("dta {}", crate::version::LONG),
        name: config.name,
        identity: identity.to_string(),
        peer_id: peer_id.to_string(),
        keystore: keystore_needs(&keystore_text)?,
        orders: count(store, Column::Orders)?,
        secrets: count(store, Column::Keystore)?,
        blocks: count(store, Column::Blocks)?,
        files: 0,
        bytes: 0,
    })
}

/// The keys of `column`, counted one at a time (a block column is not held whole).
fn count(store: &Store, column: Column) -> Result<usize, BackupError> {
    let mut keys = 0;
    store.visit(column, |_, _| keys += 1)?;
    Ok(keys)
}

/// The keystore `keystore.toml` describes.
fn keystore_needs(text: &str) -> Result<KeystoreNeeds, BackupError> {
    let malformed = |what: &str| BackupError::Malformed(format!("keystore.toml: {what}"));
    let table: toml::Table = text.parse().map_err(|_| malformed("not TOML"))?;
    let field = |name: &str| {
        table
            .get(name)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed(&format!("no {name}")))
    };
    match field("backend")?.as_str() {
        "soft" => Ok(KeystoreNeeds::Soft),
        "pkcs11" => Ok(KeystoreNeeds::Pkcs11 {
            module: field("module")?,
            token: field("token")?,
            key_label: field("kek_label")?,
        }),
        other => Err(malformed(&format!("unknown backend {other:?}"))),
    }
}

/// The archive of `home`, its database taken from `checkpoint`, sealed under `passphrase`.
pub fn create(
    home: &Path,
    checkpoint: &Path,
    passphrase: &[u8],
) -> Result<(Vec<u8>, Manifest), BackupError> {
    let mut manifest = {
        let store = Store::open(checkpoint)?;
        describe(home, &store)?
    };
    let files = collect(home, checkpoint)?;
    manifest.files = files.len();
    manifest.bytes = files.iter().map(|f| f.bytes.len() as u64).sum();
    let mut archive = Zeroizing::new(Vec::with_capacity(manifest.bytes as usize + 4096));
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| BackupError::Malformed(e.to_string()))?;
    archive.extend_from_slice(&(manifest_json.len() as u32).to_be_bytes());
    archive.extend_from_slice(&manifest_json);
    for file in &files {
        archive.extend_from_slice(&(file.path.len() as u16).to_be_bytes());
        archive.extend_from_slice(file.path.as_bytes());
        archive.extend_from_slice(&(file.bytes.len() as u64).to_be_bytes());
        archive.extend_from_slice(&file.bytes);
    }
    let params = KdfParams::recommended();
    let sealed = SoftKeystore::derive(passphrase, &params)?.wrap(SEAL_NAME, &archive)?;
    let mut out = Vec::with_capacity(MAGIC.len() + KDF_LEN + CHECKSUM_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    for value in [params.memory_kib, params.iterations, params.parallelism] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(&params.salt);
    let checksum = Sha256::new()
        .chain_update(&out)
        .chain_update(&sealed)
        .finalize();
    out.extend_from_slice(&checksum);
    out.extend_from_slice(&sealed);
    Ok((out, manifest))
}

/// Checks a backup's checksum and opens it: its manifest and files.
fn open(backup: &[u8], passphrase: &[u8]) -> Result<(Manifest, Vec<ArchiveFile>), BackupError> {
    let header = MAGIC.len() + KDF_LEN;
    if backup.len() < header + CHECKSUM_LEN || !backup.starts_with(MAGIC) {
        return Err(BackupError::NotABackup);
    }
    let (head, rest) = backup.split_at(header);
    let (checksum, sealed) = rest.split_at(CHECKSUM_LEN);
    let expected = Sha256::new()
        .chain_update(head)
        .chain_update(sealed)
        .finalize();
    if expected.as_slice() != checksum {
        return Err(BackupError::Checksum);
    }
    let kdf = &head[MAGIC.len()..];
    let word = |i: usize| u32::from_be_bytes([kdf[i], kdf[i + 1], kdf[i + 2], kdf[i + 3]]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&kdf[12..28]);
    let params = KdfParams {
        memory_kib: word(0),
        iterations: word(4),
        parallelism: word(8),
        salt,
    };
    let archive = SoftKeystore::derive(passphrase, &params)?
        .unwrap(SEAL_NAME, sealed)
        .map_err(|_| BackupError::WrongPassphrase)?;
    read_archive(&archive)
}

/// Reads an archive from the front, refusing to run past its end.
struct Reader<'a> {
    archive: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BackupError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.archive.len())
            .ok_or_else(|| BackupError::Malformed("cut short".into()))?;
        let slice = &self.archive[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn done(&self) -> bool {
        self.at == self.archive.len()
    }
}

/// Splits an opened archive into its manifest and files; refuses anything malformed.
fn read_archive(archive: &[u8]) -> Result<(Manifest, Vec<ArchiveFile>), BackupError> {
    let mut reader = Reader { archive, at: 0 };
    let mut take = |n: usize| reader.take(n);
    let length = u32::from_be_bytes(take(4)?.try_into().unwrap_or_default()) as usize;
    let manifest: Manifest = serde_json::from_slice(take(length)?)
        .map_err(|e| BackupError::Malformed(format!("manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::NotABackup);
    }
    let mut files = Vec::new();
    while !reader.done() {
        let mut take = |n: usize| reader.take(n);
        let length = u16::from_be_bytes(take(2)?.try_into().unwrap_or_default()) as usize;
        let path = std::str::from_utf8(take(length)?)
            .map_err(|_| BackupError::Malformed("a path is not UTF-8".into()))?
            .to_owned();
        // Only plain names in the home and in its db: nothing may land outside the new home.
        let parts: Vec<&str> = path.split('/').collect();
        let plain = |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains('\\');
        let inside = match parts.as_slice() {
            [name] => plain(name),
            ["db", name] => plain(name),
            _ => false,
        };
        if !inside {
            return Err(BackupError::Malformed(format!(
                "a file outside the home: {path:?}"
            )));
        }
        let size = u64::from_be_bytes(take(8)?.try_into().unwrap_or_default());
        let size =
            usize::try_from(size).map_err(|_| BackupError::Malformed("a file too large".into()))?;
        let bytes = Zeroizing::new(take(size)?.to_vec());
        files.push(ArchiveFile { path, bytes });
    }
    if files.len() != manifest.files {
        return Err(BackupError::Malformed(format!(
            "the manifest lists {} files, the archive holds {}",
            manifest.files,
            files.len()
        )));
    }
    Ok((manifest, files))
}

/// Writes `files` into the new directory `home` (0700, files 0600).
fn unpack(home: &Path, files: &[ArchiveFile]) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(DIR_MODE);
    builder.create(home).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(home.display().to_string()),
        _ => io(home)(e),
    })?;
    builder
        .create(home.join("db"))
        .map_err(io(&home.join("db")))?;
    for file in files {
        let path = home.join(&file.path);
        write_private_file(&path, &file.bytes).map_err(io(&path))?;
    }
    debug_assert_eq!(FILE_MODE, 0o600);
    Ok(())
}

/// Checks a backup without restoring it: its checksum, its seal, its archive, and that its
/// database opens and holds what the manifest says. Unpacks into a private scratch directory
/// that is removed afterwards.
pub fn verify(backup: &[u8], passphrase: &[u8]) -> Result<Manifest, BackupError> {
    let (manifest, files) = open(backup, passphrase)?;
    let scratch = tempfile::Builder::new()
        .prefix("dta-backup-verify")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    let home = scratch.path().join("home");
    unpack(&home, &files)?;
    check_database(&home, &manifest)?;
    Ok(manifest)
}

/// Whether the database under `home` opens and holds what `manifest` counts.
fn check_database(home: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let store = Store::open(&home.join("db"))?;
    let found = describe(home, &store)?;
    if (
        found.identity.as_str(),
        found.orders,
        found.secrets,
        found.blocks,
    ) != (
        manifest.identity.as_str(),
        manifest.orders,
        manifest.secrets,
        manifest.blocks,
    ) {
        return Err(BackupError::Malformed(
            "the database does not hold what the manifest says".into(),
        ));
    }
    Ok(())
}

/// Restores a backup into `home`, which must not exist: the same identity, orders, shares
/// and logs. Nothing is written when the backup does not open.
pub fn restore(backup: &[u8], passphrase: &[u8], home: &Path) -> Result<Manifest, BackupError> {
    if home.exists() {
        return Err(BackupError::Exists(home.display().to_string()));
    }
    let (manifest, files) = open(backup, passphrase)?;
    unpack(home, &files)?;
    if let Err(err) = check_database(home, &manifest) {
        // A restore that does not open leaves nothing behind.
        let _ = std::fs::remove_dir_all(home);
        return Err(err);
    }
    Ok(manifest)
}

/// A checkpoint of the database of `home`, whose node is stopped: its path.
/// [`BackupError::Running`] when the node runs (its database is locked): ask it instead.
pub fn checkpoint_stopped(home: &Path) -> Result<PathBuf, BackupError> {
    let store = match Store::open(&home.join("db")) {
        Ok(store) => store,
        Err(StoreError::Db(err)) if err.to_string().contains("lock") => {
            return Err(BackupError::Running);
        }
        Err(err) => return Err(err.into()),
    };
    let path = checkpoint_path(home)?;
    store.checkpoint(&path)?;
    Ok(path)
}

/// A fresh directory for a checkpoint under `home`'s [`CHECKPOINTS`] (which is made, 0700,
/// if need be); the checkpoint itself must make the last component.
pub fn checkpoint_path(home: &Path) -> Result<PathBuf, BackupError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let parent = home.join(CHECKPOINTS);
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(DIR_MODE).recursive(true);
    builder.create(&parent).map_err(io(&parent))?;
    let mut random = [0u8; 8];
    dta_crypto::random_bytes(&mut random);
    Ok(parent.join(format!(
        "{}-{}",
        crate::tokens::now_ms(),
        hex::encode(random)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of `files` (path, bytes) behind a manifest that counts them.
    fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let manifest = Manifest {
            format: FORMAT,
            created_ms: 0,
            made_by: "test".into(),
            name: "n".into(),
            identity: "i".into(),
            peer_id: "p".into(),
            keystore: KeystoreNeeds::Soft,
            orders: 0,
            secrets: 0,
            blocks: 0,
            files: files.len(),
            bytes: 0,
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut out = (json.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&json);
        for (path, bytes) in files {
            out.extend_from_slice(&(path.len() as u16).to_be_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn an_archive_lands_inside_the_new_home_or_not_at_all() {
        let sound = archive_of(&[("config.toml", b"x"), ("db/CURRENT", b"y")]);
        assert_eq!(read_archive(&sound).unwrap().1.len(), 2);
        for path in [
            "../evil",
            "db/../../evil",
            "/etc/passwd",
            "db/sub/x",
            "",
            "a\\b",
        ] {
            let refused = read_archive(&archive_of(&[(path, b"x")])).err();
            assert!(
                matches!(refused, Some(BackupError::Malformed(_))),
                "{path:?} was taken"
            );
        }
        // Cut anywhere: refused, never a panic.
        for end in 0..sound.len() {
            assert!(read_archive(&sound[..end]).is_err(), "cut at {end}");
        }
        // A manifest that counts otherwise.
        let mut lying = archive_of(&[("config.toml", b"x"), ("node.key", b"k")]);
        let json_len = u32::from_be_bytes(lying[..4].try_into().unwrap()) as usize;
        let json = String::from_utf8(lying[4..4 + json_len].to_vec()).unwrap();
        let fewer = json.replace("\"files\":2", "\"files\":1");
        assert_ne!(json, fewer);
        lying.splice(4..4 + json_len, fewer.bytes());
        assert!(matches!(
            read_archive(&lying),
            Err(BackupError::Malformed(_))
        ));
    }

    #[test]
    fn a_pkcs11_keystore_is_named_with_its_token_and_key() {
        let text = "backend = \"pkcs11\"\nversion = 1\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
                    token = \"dta-node\"\nkek_label = \"dta-kek\"\ncheck = \"00\"\n";
        assert_eq!(
            keystore_needs(text).unwrap(),
            KeystoreNeeds::Pkcs11 {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                token: "dta-node".into(),
                key_label: "dta-kek".into(),
            }
        );
        assert_eq!(
            keystore_needs("backend = \"soft\"\n").unwrap(),
            KeystoreNeeds::Soft
        );
        assert!(keystore_needs("backend = \"floppy\"\n").is_err());
        assert!(keystore_needs("not toml [").is_err());
    }

    #[test]
    fn a_directory_without_a_node_is_not_backed_up() {
        let dir = tempfile::tempdir().unwrap();
        let (home, checkpoint) = (dir.path().join("home"), dir.path().join("checkpoint"));
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join("config.toml"), "x").unwrap();
        drop(Store::open(&checkpoint).unwrap());
        // No node here (no identity): the archive is not made, and says why.
        let refused = create(&home, &checkpoint, b"a long passphrase").unwrap_err();
        assert!(matches!(refused, BackupError::Malformed(_)), "{refused}");
    }
}
