//! The roles a node plays in custody: principal, fiduciary, beneficiary. Only the names and
//! their parsing; what each role does is in [`crate::roles`] and [`crate::custody`].

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
