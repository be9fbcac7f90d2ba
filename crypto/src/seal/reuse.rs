//! One X-Wing encapsulation for many envelopes to the same recipient, on both ends.
//!
//! An encapsulation costs the sender about 0.15 ms and the recipient as much again, and a busy
//! principal seals hundreds of shares a second to the same few fiduciaries. So:
//! - the sender keeps, per recipient key, the last encapsulation and its shared secret in
//!   [`Sessions`], and seals with them again for at most [`SESSION_MAX_AGE`] and
//!   [`SESSION_MAX_USES`] envelopes;
//! - the recipient keeps the last [`REMEMBERED_DECAPSULATIONS`] secrets it decapsulated, by the
//!   digest of their ciphertext, in the [`Decapsulations`] its key carries. Decapsulation is
//!   deterministic, so this memo changes no result.
//!
//! A shared secret used more than once is never a key itself: each envelope draws a fresh salt
//! and wraps its content key under HKDF-SHA256 of the secret and that salt (see `seal`).
//!
//! Neither side writes any of this anywhere; every secret is zeroized when it leaves. What a
//! leaked session secret exposes is the content keys of the envelopes sealed with it, to one
//! recipient, within one session's bounds: the reason the bounds are short.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::Secret;

/// How long a sender seals with one encapsulation to a recipient.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(1);
/// How many envelopes a sender seals with one encapsulation to a recipient.
pub const SESSION_MAX_USES: u32 = 1024;
/// How many recipients' sessions a sender keeps; past that, the oldest goes.
pub const MAX_SESSIONS: usize = 64;
/// How many decapsulated secrets a recipient remembers; past that, the oldest goes.
pub const REMEMBERED_DECAPSULATIONS: usize = 64;

/// SHA-256 of a KEM public key or ciphertext: what the memos are keyed by.
pub(crate) type Fingerprint = [u8; 32];

pub(crate) fn fingerprint(bytes: &[u8]) -> Fingerprint {
    Sha256::digest(bytes).into()
}

/// A sender's open encapsulations, one per recipient key. Shared by clones of whatever holds
/// it through an `Arc`; `Debug` shows only how many there are.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<Fingerprint, Session>>,
}

struct Session {
    kem_ciphertext: Vec<u8>,
    shared: Secret<32>,
    started: Instant,
    uses: u32,
}

impl Session {
    fn usable(&self, now: Instant) -> bool {
        self.uses < SESSION_MAX_USES && now.duration_since(self.started) < SESSION_MAX_AGE
    }
}

impl Sessions {
    /// The encapsulation to seal the next envelope to `recipient` with, and its shared secret:
    /// the open session's if it is still within its bounds, else a fresh one from
    /// `encapsulate`, which then becomes the open session.
    pub(crate) fn encapsulation(
        &self,
        recipient: Fingerprint,
        encapsulate: impl FnOnce() -> (Vec<u8>, Secret<32>),
    ) -> (Vec<u8>, Secret<32>) {
        let now = Instant::now();
        if let Some(session) = lock(&self.open).get_mut(&recipient)
            && session.usable(now)
        {
            session.uses += 1;
            return (session.kem_ciphertext.clone(), session.shared.clone());
        }
        // Encapsulated outside the lock: two threads that race here each seal with their
        // own, which is as safe as one.
        let (kem_ciphertext, shared) = encapsulate();
        let mut open = lock(&self.open);
        if open.len() >= MAX_SESSIONS && !open.contains_key(&recipient) {
            open.retain(|_, session| session.usable(now));
            if open.len() >= MAX_SESSIONS
                && let Some(oldest) = open
                    .iter()
                    .min_by_key(|(_, session)| session.started)
                    .map(|(key, _)| *key)
            {
                open.remove(&oldest);
            }
        }
        open.insert(
            recipient,
            Session {
                kem_ciphertext: kem_ciphertext.clone(),
                shared: shared.clone(),
                started: now,
                uses: 1,
            },
        );
        (kem_ciphertext, shared)
    }

    /// How many sessions are open (some may be past their bounds until replaced).
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({} open)", self.len())
    }
}

/// A recipient's memo of the secrets it decapsulated lately, by ciphertext digest.
#[derive(Default)]
pub(crate) struct Decapsulations {
    remembered: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    secrets: HashMap<Fingerprint, Secret<32>>,
    oldest_first: VecDeque<Fingerprint>,
}

impl Decapsulations {
    pub(crate) fn get(&self, ciphertext: &Fingerprint) -> Option<Secret<32>> {
        lock(&self.remembered).secrets.get(ciphertext).cloned()
    }

    /// Remembers a secret whose wrapped key authenticated under it, forgetting the oldest
    /// past [`REMEMBERED_DECAPSULATIONS`].
    pub(crate) fn remember(&self, ciphertext: Fingerprint, shared: &Secret<32>) {
        let mut remembered = lock(&self.remembered);
        if remembered
            .secrets
            .insert(ciphertext, shared.clone())
            .is_some()
        {
            return;
        }
        remembered.oldest_first.push_back(ciphertext);
        while remembered.oldest_first.len() > REMEMBERED_DECAPSULATIONS {
            if let Some(oldest) = remembered.oldest_first.pop_front() {
                remembered.secrets.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.remembered).secrets.len()
    }
}

/// The guarded value even if another thread panicked holding the lock: every update here is
/// a single insert or remove, so what a panic leaves is consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
