//! Counts records entering a state (`dta_record_states_total`) from the node's record
//! changes: a change event goes out at every save, so a state is counted only when it differs
//! from the last one seen for that record. The last states are kept for the most recent
//! [`REMEMBERED`] records; a record forgotten and saved again in the same state is counted
//! twice, which only the rare record idle through thousands of others can be.
//!
//! What it does not do: read the store (a node that restarts counts from its next changes).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::context::CustodyEvent;
use crate::metrics::Metrics;
use crate::role::Role;
use crate::states::RecordState;

/// Records whose last state is remembered.
pub const REMEMBERED: usize = 4096;

type RecordKey = (String, Role, &'static str);

/// The last state seen per record, for the most recent records.
#[derive(Debug, Default)]
pub struct LastStates {
    states: HashMap<RecordKey, String>,
    order: VecDeque<RecordKey>,
}

impl LastStates {
    /// Whether `change` enters a new state, remembering it.
    pub fn enters(&mut self, change: &CustodyEvent) -> bool {
        let kind = kind(change.state);
        let key = (change.reference.clone(), change.role, kind);
        let state = change.state.to_string();
        match self.states.get_mut(&key) {
            Some(last) if *last == state => false,
            Some(last) => {
                *last = state;
                true
            }
            None => {
                if self.order.len() == REMEMBERED
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.states.remove(&oldest);
                }
                self.order.push_back(key.clone());
                self.states.insert(key, state);
                true
            }
        }
    }
}

fn kind(state: RecordState) -> &'static str {
    match state {
        RecordState::Order(_) => "order",
        RecordState::Mpin(_) => "mpin",
    }
}

/// Counts state entries from `events` into `metrics` until the sender goes away.
pub async fn count(mut events: broadcast::Receiver<CustodyEvent>, metrics: Arc<Metrics>) {
    let mut last = LastStates::default();
    loop {
        match events.recv().await {
            Ok(change) => {
                if last.enters(&change) {
                    metrics.record_states.bump(&[
                        kind(change.state),
                        change.role.name(),
                        &change.state.to_string(),
                    ]);
                }
            }
            // Changes missed under load are not counted; the ones after still are.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{MpinState, OrderState};

    fn change(reference: &str, role: Role, state: RecordState) -> CustodyEvent {
        CustodyEvent {
            reference: reference.into(),
            role,
            state,
        }
    }

    #[test]
    fn a_state_counts_once_however_often_the_record_is_saved_in_it() {
        let mut last = LastStates::default();
        let dealt = change("a", Role::Principal, OrderState::Dealt.into());
        assert!(last.enters(&dealt));
        assert!(!last.enters(&dealt));
        assert!(last.enters(&change("a", Role::Principal, OrderState::Certified.into())));
        // Another role, or an M-Pin record of the same reference, is another record.
        assert!(last.enters(&change("a", Role::Fiduciary, OrderState::Certified.into())));
        assert!(last.enters(&change("a", Role::Principal, MpinState::Issued.into())));
    }

    #[test]
    fn only_the_most_recent_records_are_remembered() {
        let mut last = LastStates::default();
        let first = change("0", Role::Fiduciary, OrderState::Holding.into());
        assert!(last.enters(&first));
        for n in 1..=REMEMBERED {
            last.enters(&change(
                &n.to_string(),
                Role::Fiduciary,
                OrderState::Holding.into(),
            ));
        }
        assert_eq!(last.states.len(), REMEMBERED);
        assert!(last.enters(&first), "forgotten, so counted again");
    }
}
