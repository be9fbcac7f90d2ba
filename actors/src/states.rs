//! The states of the records the role actors keep: an order's, for each role, and an M-Pin
//! issuance's. Stored and shown as their lowercase names, exactly the strings the records
//! held before the states were typed, so no stored byte changes. Which step moves a record
//! from one state to the next is the steps' business (`crate::custody`, `crate::mpin`); the
//! change events that carry them ([`crate::context::CustodyEvent`]) sit above this module.

use serde::{Deserialize, Serialize};

/// Defines a state enum stored as its lowercase name, with `name()`, `Display` and `FromStr`.
macro_rules! named_states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every state, in the order the flow reaches them.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The state's name, as stored and shown.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(text: &str) -> Result<Self, UnknownState> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|state| state.name() == text)
                    .ok_or_else(|| UnknownState(text.to_owned()))
            }
        }
    };
}

/// A name that is no state of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

named_states! {
    /// Where an order stands for one role on this node.
    OrderState {
        /// Principal: the order request is out; a generated key waits for the key shares
        /// (or, generated without a dealer, for the fiduciaries' commitments).
        Ordered => "ordered",
        /// Principal: the round of a key generated without a dealer is out; its key shares
        /// are not all in.
        Generating => "generating",
        /// Principal: the commitment and the deals are out.
        Dealt => "dealt",
        /// Principal: the commitment of a generated key is out.
        Committed => "committed",
        /// Fiduciary: it generated its share of a key and sent the public half (or, without
        /// a dealer, takes part in the key generation).
        Generated => "generated",
        /// Fiduciary: it holds its share, checked against the commitment.
        Holding => "holding",
        /// Principal and fiduciary: the certificate is made, or received.
        Certified => "certified",
        /// Principal: a release is out and its receipt is not in.
        Releasing => "releasing",
        /// Principal: the receipt is in; fiduciary: its share went to the beneficiary.
        Released => "released",
        /// Beneficiary: shares are arriving.
        Collecting => "collecting",
        /// Beneficiary: the secret is rebuilt and kept, the receipt sent.
        Received => "received",
        /// Principal and fiduciary: the key generation ended in a complaint; the order
        /// holds no key.
        Aborted => "aborted",
        /// Principal: a refresh's request is out; not enough holders have dealt yet.
        Refreshing => "refreshing",
        /// Fiduciary: custody moved to a committee without this node; its share is deleted.
        Retired => "retired",
        /// Fiduciary: the order's policy expired and its share is deleted; principal: every
        /// fiduciary said so.
        Expired => "expired",
        /// Principal: the order is cancelled; not every holder has said it deleted its share.
        Cancelling => "cancelling",
        /// Fiduciary: the principal cancelled the order and its share is deleted; principal:
        /// every holder said so.
        Cancelled => "cancelled",
    }
}

named_states! {
    /// Where an M-Pin issuance stands.
    MpinState {
        /// The request is out; not every authority has answered.
        Requested => "requested",
        /// Every authority issued its share (requester), or this one did (authority).
        Issued => "issued",
        /// Every authority answered and at least one refused (requester), or this one
        /// refused (authority).
        Refused => "refused",
    }
}

named_states! {
    /// Which side of an M-Pin issuance a record is.
    MpinSide {
        /// The node that asked.
        Requester => "requester",
        /// A trust authority that was asked.
        Authority => "authority",
    }
}

/// The state a record changed to, as a change event carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// An order record's.
    Order(OrderState),
    /// An M-Pin issuance record's.
    Mpin(MpinState),
}

impl From<OrderState> for RecordState {
    fn from(state: OrderState) -> Self {
        Self::Order(state)
    }
}

impl From<MpinState> for RecordState {
    fn from(state: MpinState) -> Self {
        Self::Mpin(state)
    }
}

impl std::fmt::Display for RecordState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Order(state) => state.fmt(f),
            Self::Mpin(state) => state.fmt(f),
        }
    }
}

/// For tests of records stored before their states were typed.
#[cfg(test)]
pub(crate) mod stored {
    use dta_protocol::dagcbor::{self, Limits};

    /// Each line of `stored` (hex of a record as it was written) decodes to the matching
    /// record of `expected`, and encodes back to the same bytes.
    pub(crate) fn reads_and_writes_back<T>(stored: &str, expected: Vec<T>)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let lines: Vec<&str> = stored.lines().collect();
        assert_eq!(lines.len(), expected.len());
        for (hex_bytes, record) in lines.into_iter().zip(expected) {
            let bytes = hex::decode(hex_bytes).unwrap();
            let decoded: T = dagcbor::decode_lenient(&bytes, Limits::default()).unwrap();
            assert_eq!(decoded, record);
            assert_eq!(dagcbor::encode(&decoded).unwrap(), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_are_what_is_stored() {
        for state in OrderState::ALL {
            assert_eq!(state.name().parse::<OrderState>(), Ok(*state));
            assert_eq!(
                dta_protocol::dagcbor::encode(state).unwrap(),
                dta_protocol::dagcbor::encode(&state.name()).unwrap()
            );
        }
        for state in MpinState::ALL {
            assert_eq!(state.name().parse::<MpinState>(), Ok(*state));
        }
        assert_eq!(
            "pending".parse::<OrderState>(),
            Err(UnknownState("pending".into()))
        );
    }
}
