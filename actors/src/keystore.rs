//! The keystore actor: the one place secrets are wrapped, stored and unwrapped.

use std::sync::Arc;

use dta_hsm::Keystore;
use dta_protocol::order::SecretBytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::store::{Column, Store};

/// What the keystore reports about itself (never any secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreStatus {
    /// Backend name.
    pub backend: &'static str,
    /// Number of stored secrets.
    pub secrets: usize,
}

/// Messages to the [`KeystoreActor`].
#[derive(Debug)]
pub enum KeystoreMsg {
    /// Wrap and store a secret durably.
    Put {
        /// Its name.
        name: String,
        /// The secret.
        secret: SecretBytes,
        /// Answered once stored.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Load and unwrap a secret.
    Get {
        /// Its name.
        name: String,
        /// The secret, if present.
        reply: RpcReplyPort<Result<Option<SecretBytes>, String>>,
    },
    /// Backend and count.
    Status(RpcReplyPort<Result<KeystoreStatus, String>>),
}

/// Start-up arguments.
#[derive(Clone, Debug)]
pub struct KeystoreArgs {
    /// The backend.
    pub keystore: Arc<dyn Keystore>,
    /// Where wrapped blobs live.
    pub store: Store,
}

/// The keystore actor. Wrapping may block (an HSM), so it runs on the blocking pool.
#[derive(Debug)]
pub struct KeystoreActor;

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
        let (keystore, store) = (state.keystore.clone(), state.store.clone());
        match message {
            KeystoreMsg::Put {
                name,
                secret,
                reply,
            } => {
                let result = tokio::task::spawn_blocking(move || {
                    let blob = keystore
                        .wrap(&name, secret.expose())
                        .map_err(|e| e.to_string())?;
                    store
                        .put_durable(Column::Keystore, name.as_bytes(), &blob)
                        .map_err(|e| e.to_string())
                })
                .await?;
                let _ = reply.send(result);
            }
            KeystoreMsg::Get { name, reply } => {
                let result = tokio::task::spawn_blocking(move || {
                    let Some(blob) = store
                        .get(Column::Keystore, name.as_bytes())
                        .map_err(|e| e.to_string())?
                    else {
                        return Ok(None);
                    };
                    let secret = keystore.unwrap(&name, &blob).map_err(|e| e.to_string())?;
                    Ok(Some(SecretBytes::new(secret.to_vec())))
                })
                .await?;
                let _ = reply.send(result);
            }
            KeystoreMsg::Status(reply) => {
                let secrets = store.scan(Column::Keystore).map(|all| all.len());
                let _ = reply.send(
                    secrets
                        .map(|secrets| KeystoreStatus {
                            backend: keystore.backend(),
                            secrets,
                        })
                        .map_err(|e| e.to_string()),
                );
            }
        }
        Ok(())
    }
}
