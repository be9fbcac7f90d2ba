//! Where a node's actors are registered, and how to find them: every actor's name is the
//! node's prefix (its peer id, so that several nodes share a process) and the child's name.
//! The supervisor names its children with [`name`]; the API, the test harness and the
//! benchmarks look them up here rather than spelling the names out. It starts nothing.

use ractor::ActorRef;

use crate::identities::IdentitiesMsg;
use crate::keystore::KeystoreMsg;
use crate::role::Role;
use crate::roles::RoleMsg;

/// The kinds of child a node's supervisor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Child {
    /// The rocksdb writer.
    Store,
    /// The keystore.
    Keystore,
    /// The identity directory.
    Identities,
    /// The network.
    Network,
    /// A role.
    Role(Role),
}

impl Child {
    /// The child's own name, unique within a node.
    pub fn name(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Keystore => "keystore",
            Self::Identities => "identities",
            Self::Network => "network",
            Self::Role(role) => role.name(),
        }
    }
}

/// The registered name of `child` of the node whose actors carry `prefix`.
pub fn name(prefix: &str, child: Child) -> String {
    format!("{prefix}/{}", child.name())
}

fn lookup<M: ractor::Message>(prefix: &str, child: Child) -> Option<ActorRef<M>> {
    ractor::registry::where_is(name(prefix, child)).map(Into::into)
}

/// The node's keystore actor, if it runs.
pub fn keystore(prefix: &str) -> Option<ActorRef<KeystoreMsg>> {
    lookup(prefix, Child::Keystore)
}

/// The node's identity directory actor, if it runs.
pub fn identities(prefix: &str) -> Option<ActorRef<IdentitiesMsg>> {
    lookup(prefix, Child::Identities)
}

/// The node's actor for `role`, if it plays it.
pub fn role(prefix: &str, role: Role) -> Option<ActorRef<RoleMsg>> {
    lookup(prefix, Child::Role(role))
}
