//! What each order record needs from the roles' periodic work (see [`crate::attention`]),
//! and the records that need one thing, read by key rather than by scanning every record.
//!
//! What it does not do: the periodic work itself (`super::resume`, `super::refresh`,
//! `super::ending`, `super::approval`, `super::crosscheck`), which still checks each record
//! it is given in full: the index only spares it the records that cannot concern it.

use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::order::OrderRequest;

use crate::attention::{Need, Needs};
use crate::role::Role;
use crate::states::OrderState;
use crate::store::Column;

use super::ending::holds_a_share;
use super::record::{OrderRecord, record_key};
use super::resume::{signing_open, waits_for_fiduciaries};
use crate::context::{CustodyError, RoleContext, internal};

/// What `record` needs, given what it needed `before` (whose expiry, once looked up, is
/// kept: an order's request never changes).
fn needs_of(ctx: &RoleContext, record: &OrderRecord, before: Option<Needs>) -> Needs {
    let mut needs = Needs::default();
    let mut need = |need: Need, when: bool| {
        if when {
            needs = needs.with(need);
        }
    };
    match record.role {
        Role::Principal => {
            need(
                Need::Resume,
                waits_for_fiduciaries(record.state) || signing_open(record),
            );
            need(Need::Releasing, record.state == OrderState::Releasing);
            need(
                Need::Refresh,
                record.refresh_every_ms.is_some() && record.certificate.is_some(),
            );
        }
        Role::Beneficiary => need(Need::Collecting, record.state == OrderState::Collecting),
        Role::Fiduciary => {
            need(Need::Held, !record.held.is_empty());
            need(
                Need::Uncertified,
                record.certificate.is_none() && record.commitment.is_some(),
            );
        }
    }
    if record.role != Role::Fiduciary || !holds_a_share(record.state) {
        return needs;
    }
    let expires = match before.and_then(Needs::expiry) {
        Some(expires) => expires,
        // An order request that cannot be read now is looked at again at the next save or
        // start, and its share swept meanwhile as if it expired (the sweep reads it again).
        None => ctx
            .stored_payload::<OrderRequest>(&record.order)
            .map_or(true, |order| order.policy.expires_at_ms.is_some()),
    };
    needs.expiry_known(expires)
}

impl RoleContext {
    /// Records what `record`, just saved under `role`, needs now.
    pub(crate) fn note_attention(&self, role: Role, record: &OrderRecord) {
        self.attention.update(
            record_key(role, &record.principal, &record.reference),
            |before| needs_of(self, record, before),
        );
    }

    /// Periodic work is done with `record` for `need` until its next save (a commitment shown
    /// to the other fiduciaries once).
    pub(crate) fn done_with(&self, record: &OrderRecord, need: Need) {
        self.attention.update(
            record_key(record.role, &record.principal, &record.reference),
            |before| before.unwrap_or_default().without(need),
        );
    }

    /// The records of this node that need `need`, in key order. The first call reads every
    /// record once to build the index.
    pub(crate) fn records_needing(&self, need: Need) -> Result<Vec<OrderRecord>, CustodyError> {
        let keys = self.attention.keys(need, || {
            let mut built = Vec::new();
            for (key, bytes) in self.store.scan(Column::Orders).map_err(internal)? {
                let record: OrderRecord =
                    dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal)?;
                built.push((key, needs_of(self, &record, None)));
            }
            Ok::<_, CustodyError>(built)
        })?;
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            // Gone since (never, today): nothing to look at.
            if let Some(bytes) = self.store.get(Column::Orders, &key).map_err(internal)? {
                records.push(dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal)?);
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use dta_protocol::envelope::{Kind, SignedEnvelope};

    use super::super::rig::{Party, generated_key_order, parties, run};
    use super::super::{create_order, resume};
    use crate::attention::Need;
    use crate::states::OrderState;

    fn references(party: &Party, need: Need) -> Vec<String> {
        party
            .ctx
            .records_needing(need)
            .unwrap()
            .into_iter()
            .map(|record| record.reference)
            .collect()
    }

    /// Periodic work is handed the records that need it and no others: the index built from
    /// the store and the one each save keeps agree, and an order leaves it once settled.
    #[tokio::test]
    async fn periodic_work_gets_the_records_that_need_it_and_no_others() {
        let parties = parties(&["principal", "fiduciary-1", "fiduciary-2", "fiduciary-3"]).await;
        // Certified before the index is built; its policy expires.
        let mut settled = generated_key_order(&parties, "settled");
        settled.policy.expires_at_ms = Some(u64::MAX / 2);
        let settled = create_order(&parties[0].ctx, settled).await.unwrap();
        run(&parties, settled.deliveries, &mut |_, _, b| Some(b)).await;

        // Made once the index is built, and its fiduciaries' signatures lost on the way.
        assert!(references(&parties[0], Need::Resume).is_empty());
        assert_eq!(references(&parties[1], Need::Expiry), ["settled"]);
        let waiting = create_order(&parties[0].ctx, generated_key_order(&parties, "waiting"))
            .await
            .unwrap();
        let lost = |kind: Kind| matches!(kind, Kind::CommitmentSignature | Kind::BatchSignature);
        run(&parties, waiting.deliveries, &mut |_, _, block| {
            (!lost(SignedEnvelope::decode(&block).unwrap().envelope.kind)).then_some(block)
        })
        .await;
        let record = parties[0].ctx.own_record("waiting").unwrap().unwrap();
        assert_eq!(record.state, OrderState::Committed);
        assert_eq!(references(&parties[0], Need::Resume), ["waiting"]);
        for fiduciary in &parties[1..] {
            // A fiduciary learns a certificate with a release or signature request only.
            assert_eq!(
                references(fiduciary, Need::Uncertified),
                ["settled", "waiting"]
            );
            assert_eq!(references(fiduciary, Need::Expiry), ["settled"]);
        }
        // Shown to the other fiduciaries once stalled, then left alone.
        let mut shown = std::collections::HashSet::new();
        let stalled = crate::context::now_millis() + 60_000;
        let ctx = &parties[1].ctx;
        let showing = super::super::crosscheck::show_stalled_at(ctx, &mut shown, stalled).unwrap();
        assert_eq!(showing.len(), 4, "two commitments to two other fiduciaries");
        assert!(references(&parties[1], Need::Uncertified).is_empty());

        // Resumed: certified, and no longer anyone's concern.
        let again = resume(&parties[0].ctx, std::time::Duration::ZERO).unwrap();
        assert!(!again.is_empty());
        run(&parties, again, &mut |_, _, b| Some(b)).await;
        let record = parties[0].ctx.own_record("waiting").unwrap().unwrap();
        assert_eq!(record.state, OrderState::Certified);
        assert!(references(&parties[0], Need::Resume).is_empty());
    }
}
