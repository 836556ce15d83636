//! The life of a transaction: one enum, one transition function.
//!
//! ```text
//!   Queued --DataSubmitted--> DataInFlight --DataCompleted--> DataDone
//!   Queued --NoData---------------------------------------->  DataDone
//!   DataDone --GroupSelected--> Committing --KvSynced--> Committed
//!   DataInFlight --GroupSelected--> CommittingDataInFlight --DataCompleted--> Committing
//!   any state but Committed --Failed--> Failed
//! ```
//!
//! `Queued`: prepared, visible to readers, in its collection's order. `DataInFlight`: its new
//! data is being written. `DataDone`: eligible for a group commit once every earlier transaction
//! of its collections is committed or in the same group. `Committing`: part of the group whose
//! device flush and synced KV write are under way. `CommittingDataInFlight`: with the commit
//! journal, a group may be selected before its data writes complete, so that its record is
//! written while they are in flight; the group's flush waits for them (the flush must cover
//! the data). `Committed`: durable; callbacks run.
//! Threads only feed events; `next` is the single place a state changes, and an impossible
//! transition is a bug that panics.

/// Where a transaction is in the commit pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Prepared and queued; data not yet submitted.
    Queued,
    /// Data writes submitted to the device.
    DataInFlight,
    /// Data on the device (not yet flushed); waiting for its group.
    DataDone,
    /// In a group being flushed and committed.
    Committing,
    /// In a group whose journal record is being written while this transaction's data writes
    /// are still in flight.
    CommittingDataInFlight,
    /// Durable.
    Committed,
    /// Abandoned after a failure; the store is poisoned.
    Failed,
}

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent {
    /// Its data writes were handed to the device.
    DataSubmitted,
    /// It has no data writes.
    NoData,
    /// Its data writes completed successfully.
    DataCompleted,
    /// The KV-sync thread took it into a group.
    GroupSelected,
    /// The group's synced KV write returned.
    KvSynced,
    /// A data write, flush or KV sync failed.
    Failed,
}

impl TxnState {
    /// Taken into a group (its data done or not).
    pub fn in_group(self) -> bool {
        matches!(
            self,
            TxnState::Committing | TxnState::CommittingDataInFlight
        )
    }
}

/// The one transition function.
pub fn next(state: TxnState, event: TxnEvent) -> TxnState {
    use TxnEvent as E;
    use TxnState as S;
    match (state, event) {
        (S::Queued, E::DataSubmitted) => S::DataInFlight,
        (S::Queued, E::NoData) | (S::DataInFlight, E::DataCompleted) => S::DataDone,
        (S::DataDone, E::GroupSelected) | (S::CommittingDataInFlight, E::DataCompleted) => {
            S::Committing
        }
        (S::DataInFlight, E::GroupSelected) => S::CommittingDataInFlight,
        (S::Committing, E::KvSynced) => S::Committed,
        (S::Committed, E::Failed) => panic!("a committed transaction cannot fail"),
        (_, E::Failed) => S::Failed,
        (state, event) => panic!("transaction in state {state:?} cannot take event {event:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_paths() {
        let with_data = [TxnEvent::DataSubmitted, TxnEvent::DataCompleted]
            .into_iter()
            .chain([TxnEvent::GroupSelected, TxnEvent::KvSynced])
            .fold(TxnState::Queued, next);
        assert_eq!(with_data, TxnState::Committed);
        let selected_in_flight = [
            TxnEvent::DataSubmitted,
            TxnEvent::GroupSelected,
            TxnEvent::DataCompleted,
            TxnEvent::KvSynced,
        ]
        .into_iter()
        .fold(TxnState::Queued, next);
        assert_eq!(selected_in_flight, TxnState::Committed);
        let without = [
            TxnEvent::NoData,
            TxnEvent::GroupSelected,
            TxnEvent::KvSynced,
        ]
        .into_iter()
        .fold(TxnState::Queued, next);
        assert_eq!(without, TxnState::Committed);
    }

    #[test]
    fn failure_is_reachable_until_commit() {
        for state in [
            TxnState::Queued,
            TxnState::DataInFlight,
            TxnState::DataDone,
            TxnState::Committing,
            TxnState::CommittingDataInFlight,
        ] {
            assert_eq!(next(state, TxnEvent::Failed), TxnState::Failed);
        }
    }

    #[test]
    #[should_panic(expected = "cannot take event")]
    fn committing_before_data_is_done_is_a_bug() {
        next(TxnState::CommittingDataInFlight, TxnEvent::KvSynced);
    }
}
