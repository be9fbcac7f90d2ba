//! The PKCS#11 keystore: a token-resident AES-256 key-encryption key wraps every secret with
//! AES-GCM inside the token.
//!
//! The key-encryption key (KEK) is created on first use and found again by its label. It is a
//! token object, private, sensitive and not extractable, usable for encrypt and decrypt only:
//! its value never leaves the token, and it cannot be wrapped out by another key. The token is
//! chosen by label (slot ids change when tokens are added), the user PIN comes from the caller.
//!
//! PKCS#11 calls block. [`Pkcs11Keystore`] is synchronous and thread-safe: it keeps a bounded
//! pool of logged-in sessions (a session serves one thread at a time) and callers on an async
//! runtime run it on their blocking pool (the node's keystore actor does).
//!
//! Known token behaviour handled here: SoftHSM2 reports a GCM tag mismatch as
//! `CKR_GENERAL_ERROR` (mapped to [`KeystoreError::Integrity`] for a blob that decrypts under
//! the right key); `C_Initialize` may only run once per process, so contexts are shared per
//! module path and never finalized; SoftHSM2 rewrites a token's file in place at each login,
//! so another process reading that token's information at that moment gets
//! `CKR_GENERAL_ERROR`, and may keep getting it for as long as it runs (SoftHSM2 2.6 marks
//! the token invalid in that process for good). Finding a token by label therefore passes
//! over tokens it cannot read, and lists the tokens again a few times only when the label is
//! not among those it could. SoftHSM2 changes its slot table while listing slots without a
//! lock, so listings and token creation here take one process-wide lock; a key-encryption key
//! is looked for and created under another, so that keystores opened at once on a new token
//! make one (two processes doing so at once are not covered).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use dta_crypto::random_bytes;
use zeroize::Zeroizing;

use crate::{Keystore, KeystoreError};

/// Blob version byte of this backend (the software keystore's is 1).
const VERSION: u8 = 2;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const TAG_LEN: usize = 16;
/// The label of the key-encryption key unless configured otherwise.
pub const DEFAULT_KEK_LABEL: &str = "dta-kek";
/// Sessions kept open at most.
pub const DEFAULT_SESSIONS: usize = 4;

/// Where the token is and how to use it.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
    /// The key-encryption key's label.
    pub kek_label: String,
    /// Sessions kept open at most (at least 1).
    pub sessions: usize,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"<redacted>")
            .field("kek_label", &self.kek_label)
            .field("sessions", &self.sessions)
            .finish()
    }
}

impl Pkcs11Config {
    /// A configuration with the default KEK label and session count.
    pub fn new(
        module: impl Into<PathBuf>,
        token: impl Into<String>,
        pin: Zeroizing<String>,
    ) -> Self {
        Self {
            module: module.into(),
            token: token.into(),
            pin,
            kek_label: DEFAULT_KEK_LABEL.to_owned(),
            sessions: DEFAULT_SESSIONS,
        }
    }
}

/// Whether opening may create the key-encryption key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekPolicy {
    /// Create it if the token has none (a new keystore).
    CreateIfMissing,
    /// It must exist (an existing keystore: a new key would not open its secrets).
    MustExist,
}

/// A keystore whose key-encryption key lives in a PKCS#11 token.
pub struct Pkcs11Keystore {
    context: Pkcs11,
    slot: Slot,
    /// Kept for sessions opened later: a token logs the application out when its last
    /// session closes.
    pin: AuthPin,
    kek: ObjectHandle,
    token: String,
    kek_label: String,
    pool: SessionPool,
}

impl fmt::Debug for Pkcs11Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Keystore")
            .field("token", &self.token)
            .field("slot", &self.slot.id())
            .field("kek_label", &self.kek_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Keystore {
    /// Loads the module, finds the token, logs in and finds (or creates) the KEK.
    pub fn open(config: &Pkcs11Config, kek: KekPolicy) -> Result<Self, KeystoreError> {
        let context = context(&config.module)?;
        let slot = find_token(&context, &config.token)?;
        let pin = AuthPin::new(config.pin.as_str().into());
        let first = open_session(&context, slot, &pin, &config.token)?;
        let handle = match find_kek(&first, &config.kek_label)? {
            Some(handle) => handle,
            None if kek == KekPolicy::CreateIfMissing => {
                let _creation = KEK_CREATION.lock().unwrap_or_else(|e| e.into_inner());
                match find_kek(&first, &config.kek_label)? {
                    Some(handle) => handle,
                    None => create_kek(&first, &config.kek_label, &config.token)?,
                }
            }
            None => {
                return Err(KeystoreError::KeyNotFound {
                    label: config.kek_label.clone(),
                    token: config.token.clone(),
                });
            }
        };
        let pool = SessionPool::new(config.sessions.max(1), first);
        Ok(Self {
            context,
            slot,
            pin,
            kek: handle,
            token: config.token.clone(),
            kek_label: config.kek_label.clone(),
            pool,
        })
    }

    /// The key-encryption key's label.
    pub fn kek_label(&self) -> &str {
        &self.kek_label
    }

    /// Runs `f` on a pooled session (opening one if the pool has room, else waiting).
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let session = match self.pool.take() {
            Some(session) => session,
            // Room for one more: open it (logging in again only if the token forgot us).
            None => match open_session(&self.context, self.slot, &self.pin, &self.token) {
                Ok(session) => session,
                Err(e) => {
                    self.pool.forget();
                    return Err(e);
                }
            },
        };
        let result = f(&session);
        // A session the token no longer knows is dropped, not returned.
        match &result {
            Err(KeystoreError::Token {
                lost_session: true, ..
            }) => self.pool.forget(),
            _ => self.pool.give_back(session),
        }
        result
    }

    /// Reads the KEK's value or wraps it out with another key; both must fail. Test support for
    /// the claim that the KEK never leaves the token.
    pub fn try_extract_kek(&self) -> Result<Vec<u8>, KeystoreError> {
        self.with_session(|session| {
            let read = session.get_attributes(self.kek, &[AttributeType::Value]);
            if let Ok(attributes) = read {
                for attribute in attributes {
                    if let Attribute::Value(value) = attribute {
                        return Ok(value);
                    }
                }
            }
            // A throwaway wrapping key, session-only.
            let wrapping = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32.into()),
                        Attribute::Token(false),
                        Attribute::Wrap(true),
                    ],
                )
                .map_err(|e| token_error("making a wrapping key", &e))?;
            let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, self.kek);
            let _ = session.destroy_object(wrapping);
            wrapped.map_err(|e| token_error("wrapping the key-encryption key", &e))
        })
    }
}

impl Keystore for Pkcs11Keystore {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn token(&self) -> Option<&str> {
        Some(&self.token)
    }

    /// Blob layout: version byte, 12-byte IV, AES-GCM ciphertext with its 16-byte tag. The
    /// associated data is the version byte and the secret's name.
    fn wrap(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let mut iv = [0u8; IV_LEN];
        random_bytes(&mut iv);
        let aad = associated_data(name);
        let sealed = self.with_session(|session| {
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, &aad, TAG_BITS.into())
                .map_err(|e| token_error("preparing AES-GCM", &e))?;
            session
                .encrypt(&Mechanism::AesGcm(params), self.kek, secret)
                .map_err(|e| token_error("wrapping a secret", &e))
        })?;
        let mut blob = Vec::with_capacity(1 + IV_LEN + sealed.len());
        blob.push(VERSION);
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unwrap(&self, name: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        if blob.len() < 1 + IV_LEN + TAG_LEN || blob[0] != VERSION {
            return Err(KeystoreError::Malformed { name: name.into() });
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&blob[1..1 + IV_LEN]);
        let aad = associated_data(name);
        self.with_session(|session| {
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
                .map_err(|e| token_error("preparing AES-GCM", &e))?;
            match session.decrypt(&Mechanism::AesGcm(params), self.kek, &blob[1 + IV_LEN..]) {
                Ok(plain) => Ok(Zeroizing::new(plain)),
                // A tag that does not verify: SoftHSM2 says GENERAL_ERROR, the standard says
                // ENCRYPTED_DATA_INVALID.
                Err(CkError::Pkcs11(
                    RvError::GeneralError
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::FunctionFailed,
                    _,
                )) => Err(KeystoreError::Integrity { name: name.into() }),
                Err(e) => Err(token_error("unwrapping a secret", &e)),
            }
        })
    }
}

fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = vec![VERSION];
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Creates a token on the module's first free slot and sets its user PIN: what
/// `softhsm2-util --init-token --free` does, for tests and test networks that need a token per
/// node.
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), KeystoreError> {
    // Serialised with every listing: two callers must not pick the same free slot.
    let _slot_table = SLOT_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let context = context(module)?;
    let free = context
        .get_all_slots()
        .map_err(|e| token_error("listing slots", &e))?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| !info.token_initialized())
        })
        .ok_or_else(|| KeystoreError::Token {
            operation: format!("creating token {label:?}"),
            message: "the module has no free slot".into(),
            lost_session: false,
        })?;
    let so = AuthPin::new(so_pin.into());
    context
        .init_token(free, &so, label)
        .map_err(|e| token_error("initialising a token", &e))?;
    let session = context
        .open_rw_session(free)
        .map_err(|e| token_error("opening a session", &e))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(|e| token_error("logging in as security officer", &e))?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(|e| token_error("setting the user PIN", &e))?;
    session
        .logout()
        .map_err(|e| token_error("logging out", &e))?;
    Ok(())
}

/// Held by every call here that lists the slots or creates a token. SoftHSM2 (2.6) adds an
/// empty slot to its table at the first listing after a token is created, and takes no lock of
/// its own for it: two threads listing at once then abort the process (an assertion in its slot
/// manager) or find no free slot.
static SLOT_TABLE: Mutex<()> = Mutex::new(());

/// Held while a keystore looks for its key-encryption key and creates it if missing, so that
/// two keystores opened at once on a new token make one key, not one each (a token with two
/// keys of the label opens neither). Processes other than this one are not held back.
static KEK_CREATION: Mutex<()> = Mutex::new(());

/// The module's process-wide context: loaded and initialised once, never finalized.
fn context(module: &Path) -> Result<Pkcs11, KeystoreError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut contexts = contexts.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    if !module.exists() {
        return Err(KeystoreError::ModuleNotFound {
            module: module.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let context = Pkcs11::new(module).map_err(|e| KeystoreError::ModuleNotFound {
        module: module.display().to_string(),
        reason: e.to_string(),
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(token_error("initialising the module", &e)),
    }
    contexts.insert(module.to_owned(), context.clone());
    Ok(context)
}

/// How often the tokens are listed while some cannot be read and none of the others has the
/// label, and the pause after the first listing (it grows by as much each time).
///
/// SoftHSM2 rewrites a token's file in place when a process logs in to the token; another
/// process that reads that token's information meanwhile gets `CKR_GENERAL_ERROR`. The token
/// asked for may be the one being rewritten, and a moment later reads whole. Two nodes on one
/// module that start together meet this.
const LISTING_ATTEMPTS: u32 = 8;
const LISTING_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

fn find_token(context: &Pkcs11, label: &str) -> Result<Slot, KeystoreError> {
    let mut attempt = 1;
    loop {
        match list_tokens(context, label).map_err(|(operation, e)| token_error(operation, &e))? {
            Listing::Found(slot) => return Ok(slot),
            Listing::NotFound { unreadable, .. }
                if unreadable > 0 && attempt < LISTING_ATTEMPTS =>
            {
                std::thread::sleep(LISTING_PAUSE * attempt);
                attempt += 1;
            }
            Listing::NotFound {
                available,
                unreadable,
            } => {
                return Err(KeystoreError::TokenNotFound {
                    token: label.to_owned(),
                    available,
                    unreadable,
                });
            }
        }
    }
}

/// What one listing of the tokens found.
enum Listing {
    /// The slot of the token asked for.
    Found(Slot),
    /// The labels of the tokens read, none the one asked for, and how many could not be read.
    NotFound {
        available: Vec<String>,
        unreadable: usize,
    },
}

/// Looks for the token labelled `label`; on failure, what was being done and the module's error.
///
/// A token whose information fails with `CKR_GENERAL_ERROR` is passed over and counted: it is
/// another process's token being rewritten (or one this process can no longer read), and must
/// not hide the token asked for.
fn list_tokens(context: &Pkcs11, label: &str) -> Result<Listing, (&'static str, CkError)> {
    let _slot_table = SLOT_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let mut available = Vec::new();
    let mut unreadable = 0;
    for slot in context
        .get_slots_with_token()
        .map_err(|e| ("listing slots", e))?
    {
        let info = match context.get_token_info(slot) {
            Ok(info) => info,
            Err(CkError::Pkcs11(RvError::GeneralError, _)) => {
                unreadable += 1;
                continue;
            }
            Err(e) => return Err(("reading token information", e)),
        };
        if !info.token_initialized() {
            continue;
        }
        let found = info.label().trim_end();
        if found == label {
            return Ok(Listing::Found(slot));
        }
        available.push(found.to_owned());
    }
    Ok(Listing::NotFound {
        available,
        unreadable,
    })
}

fn open_session(
    context: &Pkcs11,
    slot: Slot,
    pin: &AuthPin,
    token: &str,
) -> Result<Session, KeystoreError> {
    let session = context
        .open_rw_session(slot)
        .map_err(|e| token_error("opening a session", &e))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(KeystoreError::WrongPin {
                token: token.to_owned(),
            })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeystoreError::PinLocked {
            token: token.to_owned(),
        }),
        Err(e) => Err(token_error("logging in", &e)),
    }
}

fn kek_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

fn find_kek(session: &Session, label: &str) -> Result<Option<ObjectHandle>, KeystoreError> {
    let found = session
        .find_objects(&kek_template(label))
        .map_err(|e| token_error("looking for the key-encryption key", &e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(KeystoreError::Ambiguous {
            label: label.to_owned(),
            count: found.len(),
        }),
    }
}

fn create_kek(session: &Session, label: &str, token: &str) -> Result<ObjectHandle, KeystoreError> {
    let mut template = kek_template(label);
    template.extend([
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Modifiable(false),
    ]);
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| match e {
            CkError::Pkcs11(RvError::DeviceMemory | RvError::HostMemory, _) => {
                KeystoreError::TokenFull {
                    token: token.to_owned(),
                }
            }
            e => token_error("creating the key-encryption key", &e),
        })
}

/// A token error, with the operation it interrupted. PKCS#11 errors carry no secret data.
fn token_error(operation: &str, error: &CkError) -> KeystoreError {
    let lost_session = matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::DeviceRemoved,
            _
        )
    );
    KeystoreError::Token {
        operation: operation.to_owned(),
        message: error.to_string(),
        lost_session,
    }
}

/// Logged-in sessions, at most `capacity` open at once.
struct SessionPool {
    idle: Mutex<PoolState>,
    returned: Condvar,
    capacity: usize,
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

impl SessionPool {
    fn new(capacity: usize, first: Session) -> Self {
        Self {
            idle: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            returned: Condvar::new(),
            capacity,
        }
    }

    /// An idle session, or `None` when the caller may open a new one (counted as open);
    /// waits while every session is busy.
    fn take(&self) -> Option<Session> {
        let mut state = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(session) = state.idle.pop() {
                return Some(session);
            }
            if state.open < self.capacity {
                state.open += 1;
                return None;
            }
            state = self.returned.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, session: Session) {
        let mut state = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        state.idle.push(session);
        self.returned.notify_one();
    }

    /// A session was lost: room for a new one.
    fn forget(&self) {
        let mut state = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        state.open = state.open.saturating_sub(1);
        self.returned.notify_one();
    }
}
