//! The keystore actor: the one place secrets are wrapped and unwrapped. A PKCS#11 token
//! answers one call at a time and may block, so every call runs here, in order, and a token's
//! calls on the blocking pool (a soft keystore's, microseconds of AEAD, in place). Wrapped
//! blobs are stored by the caller, with the rest of its step.

use std::sync::Arc;

use dta_hsm::{Keystore, KeystoreError};
use dta_protocol::order::SecretBytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::store::{Column, Store};

/// What the keystore reports about itself (never any secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreStatus {
    /// Backend name.
    pub backend: &'static str,
    /// The token's label, for a PKCS#11 backend.
    pub token: Option<String>,
    /// Number of stored secrets.
    pub secrets: usize,
}

/// Messages to the [`KeystoreActor`].
#[derive(Debug)]
pub enum KeystoreMsg {
    /// Wrap a secret under its name.
    Wrap {
        /// Its name.
        name: String,
        /// The secret.
        secret: SecretBytes,
        /// The wrapped blob.
        reply: RpcReplyPort<Result<Vec<u8>, KeystoreError>>,
    },
    /// Unwrap a blob made under `name`.
    Unwrap {
        /// Its name.
        name: String,
        /// The wrapped blob.
        blob: Vec<u8>,
        /// The secret.
        reply: RpcReplyPort<Result<SecretBytes, KeystoreError>>,
    },
    /// Backend and count.
    Status(RpcReplyPort<Result<KeystoreStatus, crate::store::StoreError>>),
}

/// Start-up arguments.
#[derive(Clone, Debug)]
pub struct KeystoreArgs {
    /// The backend.
    pub keystore: Arc<dyn Keystore>,
    /// Where wrapped blobs live (for the count).
    pub store: Store,
    /// Where each operation's time is recorded.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The keystore actor.
#[derive(Debug)]
pub struct KeystoreActor;

/// Runs one keystore call: on the blocking pool if the backend may block, in place if it
/// answers from memory (two thread hand-offs cost more than the call).
async fn call<T: Send + 'static>(
    keystore: Arc<dyn Keystore>,
    operation: impl FnOnce(&dyn Keystore) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if keystore.may_block() {
        tokio::task::spawn_blocking(move || operation(keystore.as_ref())).await
    } else {
        Ok(operation(keystore.as_ref()))
    }
}

impl Actor for KeystoreActor {
    type Msg = KeystoreMsg;
    type State = KeystoreArgs;
    type Arguments = KeystoreArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: KeystoreArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let keystore = state.keystore.clone();
        match message {
            KeystoreMsg::Wrap {
                name,
                secret,
                reply,
            } => {
                let started = std::time::Instant::now();
                let backend = keystore.backend();
                let result = call(keystore, move |keystore| {
                    keystore.wrap(&name, secret.expose())
                })
                .await?;
                state
                    .metrics
                    .keystore_operations
                    .observe(&[backend, "wrap"], started.elapsed());
                let _ = reply.send(result);
            }
            KeystoreMsg::Unwrap { name, blob, reply } => {
                let started = std::time::Instant::now();
                let backend = keystore.backend();
                let result = call(keystore, move |keystore| {
                    keystore
                        .unwrap(&name, &blob)
                        .map(|secret| SecretBytes::new(secret.to_vec()))
                })
                .await?;
                state
                    .metrics
                    .keystore_operations
                    .observe(&[backend, "unwrap"], started.elapsed());
                let _ = reply.send(result);
            }
            KeystoreMsg::Status(reply) => {
                let secrets = state.store.scan(Column::Keystore).map(|all| all.len());
                let _ = reply.send(secrets.map(|secrets| KeystoreStatus {
                    backend: keystore.backend(),
                    token: keystore.token().map(str::to_owned),
                    secrets,
                }));
            }
        }
        Ok(())
    }
}
