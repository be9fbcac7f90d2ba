//! The role actors. Thin for now: they exist, are supervised and report what they are; the
//! custody flow gives them their work.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// The roles a node can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Owns secrets and asks for custody.
    Principal,
    /// Holds shares.
    Fiduciary,
    /// Receives released secrets.
    Beneficiary,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 3] = [Role::Principal, Role::Fiduciary, Role::Beneficiary];

    /// The role's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::Fiduciary => "fiduciary",
            Self::Beneficiary => "beneficiary",
        }
    }

    /// Parses a lowercase role name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Messages to a role actor.
#[derive(Debug)]
pub enum RoleMsg {
    /// Which role this actor plays.
    Describe(RpcReplyPort<Role>),
}

/// One role actor.
#[derive(Debug)]
pub struct RoleActor;

impl Actor for RoleActor {
    type Msg = RoleMsg;
    type State = Role;
    type Arguments = Role;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        role: Role,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(role)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        role: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RoleMsg::Describe(reply) => {
                let _ = reply.send(*role);
            }
        }
        Ok(())
    }
}
