//! The roles a node plays in custody: principal, fiduciary, beneficiary. Only the names and
//! their parsing; what each role does is in [`crate::roles`] and [`crate::custody`].

/// The roles a node can play. Stored and shown as their lowercase names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
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

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, UnknownRole> {
        Self::parse(name).ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

/// A name that is no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (principal, fiduciary or beneficiary)")]
pub struct UnknownRole(pub String);
