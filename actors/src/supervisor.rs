//! The node supervisor: starts every child, restarts any that crashes, stops them in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dta_hsm::Keystore;
use dta_protocol::identity::LocalIdentity;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::RoleContext;
use crate::identities::{Directory, IdentitiesActor, IdentitiesArgs, IdentitiesMsg};
use crate::keystore::{KeystoreActor, KeystoreArgs, KeystoreMsg};
use crate::metrics::Metrics;
use crate::network::{NetworkActor, NetworkArgs, NetworkCommand, NetworkHandle};
use crate::registry::Child;
use crate::roles::{Role, RoleActor, RoleArgs, RoleMsg};
use crate::store::{Store, StoreActor, StoreMsg};

/// More restarts than this within [`RESTART_WINDOW`] means something is persistently broken:
/// the supervisor gives up and fails, which stops the node.
pub const MAX_RESTARTS: usize = 10;
/// The window for [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Everything the node's actors need.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// Makes actor names unique when several nodes share a process.
    pub prefix: String,
    /// The database.
    pub store: Store,
    /// The keystore backend.
    pub keystore: Arc<dyn Keystore>,
    /// This node's identity and keys.
    pub local: LocalIdentity,
    /// Network start-up arguments (the supervisor adds the subscribers).
    pub network: NetworkArgs,
    /// The handle that follows the network across restarts.
    pub network_handle: NetworkHandle,
    /// Roles to run.
    pub roles: Vec<Role>,
    /// Where the identity directory is published.
    pub directory: Arc<watch::Sender<Directory>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where the role actors announce record changes.
    pub custody_events: tokio::sync::broadcast::Sender<crate::context::CustodyEvent>,
    /// Identities this node issues M-Pin server-secret shares to.
    pub mpin_servers: Arc<Vec<dta_protocol::Cid>>,
    /// Open M-Pin challenges (shared with the HTTP API).
    pub mpin_sessions: crate::mpin::AuthSessions,
    /// How far clocks may disagree when a release policy's times are checked (ms).
    pub clock_tolerance_ms: u64,
    /// The role this node plays dishonestly (test builds only, see [`crate::byzantine`]).
    pub misbehaviour: Option<crate::byzantine::Misbehaviour>,
}

/// Messages to the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The current actor of one child kind.
    Child(Child, RpcReplyPort<Option<ActorCell>>),
    /// How many restarts happened so far.
    Restarts(RpcReplyPort<usize>),
}

/// The supervisor's state.
#[derive(Debug)]
pub struct SupervisorState {
    args: NodeArgs,
    children: HashMap<ActorId, Child>,
    store: Option<ActorRef<StoreMsg>>,
    keystore: Option<ActorRef<KeystoreMsg>>,
    identities: Option<ActorRef<IdentitiesMsg>>,
    network: Option<ActorRef<()>>,
    roles: HashMap<Role, ActorRef<RoleMsg>>,
    recent_restarts: Vec<Instant>,
    total_restarts: usize,
    /// Envelopes verified on this node, shared by the role actors.
    verified: crate::context::VerifiedCache,
}

/// The root of a node's actor tree.
#[derive(Debug)]
pub struct NodeSupervisor;

impl NodeSupervisor {
    async fn spawn(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let name = Some(crate::registry::name(&state.args.prefix, child));
        let supervisor = myself.get_cell();
        let cell = match child {
            Child::Store => {
                let (actor, _) =
                    Actor::spawn_linked(name, StoreActor, state.args.store.clone(), supervisor)
                        .await?;
                state.store = Some(actor.clone());
                actor.get_cell()
            }
            Child::Keystore => {
                let args = KeystoreArgs {
                    keystore: state.args.keystore.clone(),
                    store: state.args.store.clone(),
                    metrics: state.args.metrics.clone(),
                };
                let (actor, _) = Actor::spawn_linked(name, KeystoreActor, args, supervisor).await?;
                state.keystore = Some(actor.clone());
                actor.get_cell()
            }
            Child::Identities => {
                let store_actor = state.store.clone().ok_or("the store starts first")?;
                let args = IdentitiesArgs {
                    store: state.args.store.clone(),
                    store_actor,
                    local: Arc::new(state.args.local.clone()),
                    hosted: state.args.network.hosted.clone(),
                    operator: state.args.network.keypair.clone(),
                    network: state.args.network_handle.clone(),
                    directory: state.args.directory.clone(),
                    metrics: state.args.metrics.clone(),
                };
                let (actor, _) =
                    Actor::spawn_linked(name, IdentitiesActor, args, supervisor).await?;
                Self::subscribe(state, actor.get_derived()).await;
                state.identities = Some(actor.clone());
                actor.get_cell()
            }
            Child::Network => {
                let mut args = state.args.network.clone();
                if let Some(identities) = &state.identities {
                    args.subscribers.push(identities.get_derived());
                }
                args.subscribers
                    .extend(state.roles.values().map(|r| r.get_derived()));
                let (actor, _) = Actor::spawn_linked(name, NetworkActor, args, supervisor).await?;
                state.network = Some(actor.clone());
                actor.get_cell()
            }
            Child::Role(role) => {
                let args = RoleArgs {
                    role,
                    context: RoleContext {
                        local: state.args.local.clone(),
                        directory: state.args.directory.subscribe(),
                        store: state.args.store.clone(),
                        network: state.args.network_handle.clone(),
                        keystore: crate::registry::name(&state.args.prefix, Child::Keystore),
                        events: state.args.custody_events.clone(),
                        staged: Default::default(),
                        progress: Default::default(),
                        releases_open: Default::default(),
                        attention: Default::default(),
                        verified: state.verified.clone(),
                        hosted: state.args.network.hosted.clone(),
                        mpin_servers: state.args.mpin_servers.clone(),
                        certificate_checks: crate::certificates::CertificateChecks::start(),
                        custody_batches: Default::default(),
                        metrics: state.args.metrics.clone(),
                        clock_tolerance_ms: state.args.clock_tolerance_ms,
                        misbehaviour: state.args.misbehaviour,
                        nonces: Default::default(),
                        spare_commitments: Default::default(),
                    },
                    mpin_sessions: state.args.mpin_sessions.clone(),
                    delay_timers: Default::default(),
                    shown_commitments: Default::default(),
                };
                let (actor, _) = Actor::spawn_linked(name, RoleActor, args, supervisor).await?;
                Self::subscribe(state, actor.get_derived()).await;
                state.roles.insert(role, actor.clone());
                actor.get_cell()
            }
        };
        state.children.insert(cell.get_id(), child);
        Ok(())
    }

    /// A running network must route to a new (or restarted) actor; a network started later
    /// gets its subscribers in its arguments instead.
    async fn subscribe(
        state: &SupervisorState,
        subscriber: ractor::DerivedActorRef<crate::network::NetworkEvent>,
    ) {
        if state.network.is_some() {
            let _ = state
                .args
                .network_handle
                .send(NetworkCommand::Subscribe(subscriber))
                .await;
        }
    }

    fn current(state: &SupervisorState, child: Child) -> Option<ActorCell> {
        match child {
            Child::Store => state.store.as_ref().map(|a| a.get_cell()),
            Child::Keystore => state.keystore.as_ref().map(|a| a.get_cell()),
            Child::Identities => state.identities.as_ref().map(|a| a.get_cell()),
            Child::Network => state.network.as_ref().map(|a| a.get_cell()),
            Child::Role(role) => state.roles.get(&role).map(|a| a.get_cell()),
        }
    }
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NodeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let roles = args.roles.clone();
        let mut state = SupervisorState {
            args,
            children: HashMap::new(),
            store: None,
            keystore: None,
            identities: None,
            network: None,
            roles: HashMap::new(),
            recent_restarts: Vec::new(),
            total_restarts: 0,
            verified: Default::default(),
        };
        // Order matters: the store before anything that writes, the identity directory
        // before the network that feeds it.
        for child in [
            Child::Store,
            Child::Keystore,
            Child::Identities,
            Child::Network,
        ] {
            Self::spawn(&myself, &mut state, child).await?;
        }
        for role in roles {
            Self::spawn(&myself, &mut state, Child::Role(role)).await?;
        }
        #[cfg(feature = "byzantine")]
        crate::byzantine::make_noise(state.args.misbehaviour, state.args.network_handle.clone());
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Child(child, reply) => {
                let _ = reply.send(Self::current(state, child));
            }
            SupervisorMsg::Restarts(reply) => {
                let _ = reply.send(state.total_restarts);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".to_owned()))
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        let now = Instant::now();
        state
            .recent_restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if state.recent_restarts.len() >= MAX_RESTARTS {
            return Err(format!(
                "{} restarts within {RESTART_WINDOW:?}; giving up after {} ended: {why}",
                MAX_RESTARTS,
                child.name()
            )
            .into());
        }
        state.recent_restarts.push(now);
        state.total_restarts += 1;
        warn!(child = child.name(), reason = %why, "child ended; restarting it");
        Self::spawn(&myself, state, child).await?;
        // The identity directory writes through the store actor it was started with.
        if child == Child::Store
            && let Some(identities) = &state.identities
        {
            identities.stop(Some("the store restarted".into()));
        }
        info!(child = child.name(), "child restarted");
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop in reverse order of dependence; the store flushes last.
        state.children.clear();
        for role in state.roles.values() {
            role.stop_and_wait(None, None).await?;
        }
        if let Some(network) = &state.network {
            network.stop_and_wait(None, None).await?;
        }
        if let Some(identities) = &state.identities {
            identities.stop_and_wait(None, None).await?;
        }
        if let Some(keystore) = &state.keystore {
            keystore.stop_and_wait(None, None).await?;
        }
        if let Some(store) = &state.store {
            store.stop_and_wait(None, None).await?;
        }
        Ok(())
    }
}
