//! The commit journal: a ring on the data device that makes a group of transactions durable
//! with one device write and one flush.
//!
//! Without it, a durable commit costs a device flush plus a synced RocksDB write, whose log
//! grows a file on a host file system (a journal commit of its own per sync). With it, a group's
//! KV batch (metadata, freelist, statistics and deferred in-place data) goes into one
//! sector-aligned record written with O_DIRECT at the ring's head, the device is flushed once
//! (covering the group's new data too), and only then is the batch applied to RocksDB, whose
//! own log is off: RocksDB's memtables are made durable by flushing them (a checkpoint) when the
//! ring fills, after which the ring's space is reused.
//!
//! Invariants, each protected by the one lock every commit holds from its write to its KV apply:
//! - Records are written in sequence order and applied to the KV store in the same order, and a
//!   record is written only after the previous one was flushed. So a valid record proves every
//!   earlier record and all of their data durable, and at most the last valid record can lack
//!   data (its data writes were not covered by a completed flush): its data checks are
//!   verified at replay, and it is dropped if they fail (it was never acknowledged).
//! - Each record carries, in its own KV ops, the position of the next record
//!   (`JOURNAL_NEXT_KEY`), so the KV store's durable state (after any flush, ours or RocksDB's
//!   own) always names the first record it does not hold: replay starts there and never applies
//!   a record twice (freelist XOR merges are not idempotent).
//! - Ring space is reused only after a checkpoint made the KV store hold every record in it.
//!
//! - A record that does not fit before the ring's end goes to its start; the rest of the ring
//!   is skipped (no record marks it: replay looks for the next sequence at the start).
//! - Deferred writes of a record are applied in place only once a later record is durable (or a
//!   checkpoint holds the record): while it is the last, replay may have to verify its data,
//!   which an in-place write could change ([`Journal::seal`]).
//!
//! Replay ([`replay`]) applies the records after the durable position in order and stops at the
//! first that is not whole; a valid record further on (within the largest record's reach) means
//! the log is damaged behind an acknowledged commit, and mount is refused.
//!
//! A commit too large for one record (a transaction of many megabytes of omap) takes the old
//! road instead: a checkpoint, then a synced KV write ([`Journal::commit_outside`]).

use parking_lot::Mutex;

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::journal::{
    CommitPayload, DataCheck, JOURNAL_BLOCK, JOURNAL_HEADER_LENGTH, OpKind, OpRef, RecordHeader,
    decode_commit, decode_header, encode_commit, encode_record, payload_of,
};
use crate::format::keys::{JOURNAL_NEXT_KEY, JOURNAL_OUTSIDE_KEY, KeySpace};
use crate::format::records::{JournalPosition, JournalRegion};
use crate::format::records::{decode_counter, encode_counter};
use crate::kv::{Batch, BatchOp, Durability, Kv};

/// What a commit's caller does at two moments of [`Journal::commit`].
pub trait RecordHooks {
    /// Returns once the data the record's checks name is on the device (or fails): called after
    /// the record is written and before the flush, so the record's write overlaps the data's.
    fn data_written(&mut self) -> Result<()>;
    /// Record `sequence` is durable (before its batch reaches the KV store, which durability
    /// does not need): acknowledge what it carries.
    fn durable(&mut self, sequence: u64);
}

/// A record with no data of its own to wait for and no one to acknowledge.
pub struct NoHooks;

impl RecordHooks for NoHooks {
    fn data_written(&mut self) -> Result<()> {
        Ok(())
    }

    fn durable(&mut self, _sequence: u64) {}
}

/// A checkpoint starts when this share of the ring (in quarters) would be in use, so records
/// not yet checkpointed (at most this plus one record) never fill the ring.
const CHECKPOINT_QUARTERS: u64 = 2;
/// The largest record is at most this share of the ring (in quarters)...
const RECORD_QUARTERS_MAX: u64 = 1;
// Since the last checkpoint at most half the ring plus one record is written, so the record
// just behind the KV store's durable position is never overwritten before the next checkpoint
// moves that position past it: mount's check that the device still holds that record
// (`RingReader::require_previous`) depends on it.
const _: () = assert!(CHECKPOINT_QUARTERS + RECORD_QUARTERS_MAX < 4);
/// ...and at most this many bytes (so that mount's search for records behind the end of the
/// log, which covers two of the largest records, stays short).
const RECORD_BYTES_MAX: u64 = 16 << 20;
/// Ring bytes read at once when looking for records behind the end of the log.
const SCAN_CHUNK: u64 = 1 << 20;
/// Encoding bytes an op adds to its key and value (kind, space, two lengths).
const OP_OVERHEAD: usize = 1 + 1 + 4 + 4;
/// Encoding bytes a data check takes.
const CHECK_BYTES: usize = 16;

/// The journal of a mounted store.
pub struct Journal {
    region: JournalRegion,
    store_uuid: [u8; 16],
    state: Mutex<State>,
    /// A copy of `state` as of the last commit or checkpoint, for [`Journal::status`]: a
    /// commit holds `state` while it acknowledges its group, whose callbacks may ask for it.
    published: Mutex<State>,
}

#[derive(Clone, Copy)]
struct State {
    /// Where the next record goes.
    next: JournalPosition,
    /// Ring bytes holding records the KV store may not hold durably yet.
    in_use: u64,
    /// The first record the last checkpoint did not cover: records before it are durable in
    /// the KV store.
    tail: JournalPosition,
    /// Checkpoints made.
    checkpoints: u64,
    /// Records written since mount, and their bytes.
    written: (u64, u64),
    /// Why the journal takes no more records: a commit outside the ring failed after its mark
    /// was applied, and a record behind the mark would make the next mount take the KV store
    /// for an older copy ([`Journal::commit_outside`]).
    fenced: Option<&'static str>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What the journal holds now, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStatus {
    /// The ring.
    pub region: JournalRegion,
    /// Where the next record goes.
    pub head: JournalPosition,
    /// The oldest record the KV store may not hold durably: replay after a crash starts here.
    pub tail: JournalPosition,
    /// Records from the tail to the head.
    pub pending_records: u64,
    /// Their ring bytes.
    pub pending_bytes: u64,
    /// Checkpoints made since mount.
    pub checkpoints: u64,
    /// Records written since mount.
    pub records_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
}

impl JournalSummary {
    /// The journal as mount (or fsck) found it: the records replay applied are pending.
    pub fn status(&self) -> JournalStatus {
        JournalStatus {
            region: self.region,
            head: self.replay.next,
            tail: self.tail,
            pending_records: self.replay.records,
            pending_bytes: self.replay.bytes,
            checkpoints: 0,
            records_written: 0,
            bytes_written: 0,
        }
    }
}

impl Journal {
    /// The journal of a store whose KV store holds every record before `next`.
    pub fn new(region: JournalRegion, store_uuid: [u8; 16], next: JournalPosition) -> Journal {
        let state = State {
            next,
            in_use: 0,
            tail: next,
            checkpoints: 0,
            written: (0, 0),
            fenced: None,
        };
        Journal {
            region,
            store_uuid,
            state: Mutex::new(state),
            published: Mutex::new(state),
        }
    }

    fn publish(&self, state: &State) {
        *self.published.lock() = *state;
    }

    /// The ring.
    pub fn region(&self) -> JournalRegion {
        self.region
    }

    /// Bytes of payload one record may carry: a commit whose [`payload_estimate`] is larger
    /// goes through [`Journal::commit_outside`].
    pub fn payload_bytes_max(&self) -> usize {
        let record = self.record_bytes_max() as usize;
        record - JOURNAL_HEADER_LENGTH - next_op_bytes()
    }

    fn record_bytes_max(&self) -> u64 {
        record_bytes_max(self.region)
    }

    /// Where the journal stands (as of the last commit or checkpoint that finished).
    pub fn status(&self) -> JournalStatus {
        let state = *self.published.lock();
        JournalStatus {
            region: self.region,
            head: state.next,
            tail: state.tail,
            pending_records: state.next.sequence - state.tail.sequence,
            pending_bytes: state.in_use,
            checkpoints: state.checkpoints,
            records_written: state.written.0,
            bytes_written: state.written.1,
        }
    }

    /// Makes `batch` durable: one record at the head, one device flush (which also covers the
    /// data the batch points at, named by `checks`), then the batch applied to the KV store.
    /// Returns the record's sequence. The batch must fit
    /// ([`Journal::payload_bytes_max`]). The data may still be in flight when this is called
    /// (`hooks` waits for it before the flush), and `hooks` hears when the record is durable.
    /// `flush` is false only for a deliberate bug a test switches on (acknowledging a record
    /// before it is durable).
    pub fn commit(
        &self,
        device: &dyn BlockDevice,
        kv: &dyn Kv,
        batch: Batch,
        checks: &[DataCheck],
        hooks: &mut dyn RecordHooks,
        flush: bool,
    ) -> Result<u64> {
        let mut state = self.state.lock();
        let sequence = self.commit_locked(&mut state, device, kv, batch, checks, hooks, flush)?;
        self.publish(&state);
        Ok(sequence)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_locked(
        &self,
        state: &mut State,
        device: &dyn BlockDevice,
        kv: &dyn Kv,
        mut batch: Batch,
        checks: &[DataCheck],
        hooks: &mut dyn RecordHooks,
        flush: bool,
    ) -> Result<u64> {
        if let Some(why) = state.fenced {
            return Err(Error::Poisoned(why.into()));
        }
        let payload_length = payload_estimate(&batch, checks.len()) + next_op_bytes();
        let record_length =
            ((JOURNAL_HEADER_LENGTH + payload_length) as u64).next_multiple_of(JOURNAL_BLOCK);
        if record_length > self.record_bytes_max() {
            return Err(Error::invalid(format!(
                "a commit of {record_length} journal bytes exceeds the journal's record limit \
                 of {}",
                self.record_bytes_max()
            )));
        }
        let skipped = if state.next.ring_offset + record_length > self.region.length {
            self.region.length - state.next.ring_offset
        } else {
            0
        };
        if state.in_use + skipped + record_length > self.region.length / 4 * CHECKPOINT_QUARTERS {
            checkpoint(kv, state)?;
        }
        let at = JournalPosition {
            sequence: state.next.sequence,
            ring_offset: if skipped > 0 {
                0
            } else {
                state.next.ring_offset
            },
            previous_ring_offset: state.next.previous_ring_offset,
        };
        let after = JournalPosition {
            sequence: at.sequence + 1,
            ring_offset: (at.ring_offset + record_length) % self.region.length,
            previous_ring_offset: Some(at.ring_offset),
        };
        batch.put(KeySpace::Super, JOURNAL_NEXT_KEY, after.encode());
        let payload = encode_payload(&batch, checks);
        debug_assert_eq!(payload.len(), payload_length);
        let record = encode_record(at.sequence, self.identity(), &payload);
        device.write_at(
            self.region.device_offset + at.ring_offset,
            AlignedBuf::copy_from(&record),
        )?;
        hooks.data_written()?;
        // Durability point: the record, and the group's data (whose writes have completed),
        // are on stable media. A crash before this flush leaves either no whole record, or a
        // whole one that nobody was told about: replay applies it if its data checks pass and
        // drops it if they fail; either is a state the store may recover to. Only the last
        // record can be like that: the next is written only after this flush.
        if flush {
            device.flush()?;
        }
        hooks.durable(at.sequence);
        kv.write(batch, Durability::Journaled)?;
        state.next = after;
        state.in_use += skipped + record_length;
        state.written.0 += 1;
        state.written.1 += record_length;
        Ok(at.sequence)
    }

    /// Makes a batch too large for a record durable the old way, in journal order: a
    /// checkpoint (every earlier record becomes durable in the KV store), then one synced KV
    /// write. The caller flushed the device for the batch's data. Returns the sequence the
    /// checkpoint sealed.
    ///
    /// The ring still learns of the commit: a record before it names it
    /// ([`JOURNAL_OUTSIDE_KEY`]), the synced write removes that name, and an empty record
    /// follows. A KV store restored from a copy older than the commit then replays the first
    /// record and the next, and [`replay`] refuses it rather than apply later records on top of
    /// a state that lacks the commit. Once the mark is applied, a failure fences the journal:
    /// a record behind a mark the synced write did not remove would read, at the next mount, as
    /// exactly that older copy.
    pub fn commit_outside(
        &self,
        device: &dyn BlockDevice,
        kv: &dyn Kv,
        batch: Batch,
    ) -> Result<u64> {
        let mut state = self.state.lock();
        let begun = state.next.sequence;
        let mut marker = Batch::new();
        marker.put(KeySpace::Super, JOURNAL_OUTSIDE_KEY, encode_counter(begun));
        let marked = self.commit_locked(&mut state, device, kv, marker, &[], &mut NoHooks, true);
        let result = marked.and_then(|sequence| {
            debug_assert_eq!(sequence, begun);
            let outcome = write_outside(kv, &mut state, batch);
            if outcome.is_err() {
                state.fenced = Some("a commit outside the journal failed after its mark");
            }
            outcome?;
            // The commit is durable whatever happens to the closing record; without it, a
            // KV store restored from before the commit replays its mark as the log's last
            // record and cannot tell it from a power cut. So a failure here fences the journal
            // rather than fail a durable commit.
            let closing = Batch::new();
            let closed =
                self.commit_locked(&mut state, device, kv, closing, &[], &mut NoHooks, true);
            if closed.is_err() {
                state.fenced = Some("the record closing a commit outside the journal failed");
            }
            Ok(begun)
        });
        self.publish(&state);
        result
    }

    /// Returns once record `sequence` can no longer be the last one replay finds: a later
    /// record is durable, or a checkpoint covers it. Writes an empty record when neither is
    /// true yet. Called before deferred writes of that record are applied in place.
    pub fn seal(&self, device: &dyn BlockDevice, kv: &dyn Kv, sequence: u64) -> Result<()> {
        {
            let state = self.state.lock();
            if state.next.sequence > sequence + 1 || state.tail.sequence > sequence {
                return Ok(());
            }
        }
        self.commit(device, kv, Batch::new(), &[], &mut NoHooks, true)
            .map(|_| ())
    }

    fn identity(&self) -> (&[u8; 16], u64) {
        (&self.store_uuid, self.region.salt)
    }

    /// Makes the KV store hold every record durably, so the ring's space can be reused (also
    /// what a clean close does).
    pub fn checkpoint(&self, kv: &dyn Kv) -> Result<()> {
        let mut state = self.state.lock();
        checkpoint(kv, &mut state)?;
        self.publish(&state);
        Ok(())
    }
}

/// The middle of [`Journal::commit_outside`]: the mark made durable, then the batch (which
/// removes it) in one synced write.
fn write_outside(kv: &dyn Kv, state: &mut State, mut batch: Batch) -> Result<()> {
    // The mark must be durable in the KV store before the synced write removes it: RocksDB's
    // log would otherwise bring the removal back without the mark, and replay would put the
    // mark back after it.
    checkpoint(kv, state)?;
    batch.delete(KeySpace::Super, JOURNAL_OUTSIDE_KEY);
    // Durability point: the batch is in the KV store's own log, behind everything the
    // checkpoint made durable; records after it are replayed on top of it.
    kv.write(batch, Durability::Sync)
}

fn checkpoint(kv: &dyn Kv, state: &mut State) -> Result<()> {
    // Durability point: after this flush the KV store holds every record applied so far, and
    // its durable `JOURNAL_NEXT_KEY` names the next; the ring before it is free.
    kv.flush()?;
    state.in_use = 0;
    state.tail = state.next;
    state.checkpoints += 1;
    Ok(())
}

/// The largest record a ring holds (a multiple of the block, at least one).
fn record_bytes_max(region: JournalRegion) -> u64 {
    (region.length / 4 * RECORD_QUARTERS_MAX)
        .min(RECORD_BYTES_MAX)
        .next_multiple_of(JOURNAL_BLOCK)
}

/// Payload bytes a record of `batch` with `checks` data checks takes, before the journal's
/// own position op: what the pipeline budgets a group by.
pub fn payload_estimate(batch: &Batch, checks: usize) -> usize {
    4 + checks * CHECK_BYTES + 4 + batch.payload_bytes() + batch.len() * OP_OVERHEAD
}

/// Bytes of the journal-next op every record carries.
fn next_op_bytes() -> usize {
    let after_a_record = JournalPosition {
        previous_ring_offset: Some(0),
        ..JournalPosition::default()
    };
    OP_OVERHEAD + JOURNAL_NEXT_KEY.len() + after_a_record.encode().len()
}

fn encode_payload(batch: &Batch, checks: &[DataCheck]) -> Vec<u8> {
    let ops = batch.ops().iter().map(|op| {
        let (kind, space, key, value): (_, _, &[u8], &[u8]) = match op {
            BatchOp::Put { space, key, value } => (OpKind::Put, space, key, value),
            BatchOp::Delete { space, key } => (OpKind::Delete, space, key, &[]),
            BatchOp::DeleteRange { space, start, end } => (OpKind::DeleteRange, space, start, end),
            BatchOp::Merge {
                space,
                key,
                operand,
            } => (OpKind::Merge, space, key, operand),
        };
        OpRef {
            kind,
            space: space.index() as u8,
            key,
            value,
        }
    });
    encode_commit(checks, ops)
}

/// A decoded payload as a KV batch.
fn to_batch(payload: CommitPayload) -> Result<Batch> {
    let mut batch = Batch::new();
    for op in payload.ops {
        let space = KeySpace::ALL
            .get(op.space as usize)
            .copied()
            .ok_or_else(|| Error::corruption(format!("journal op in key space {}", op.space)))?;
        match op.kind {
            OpKind::Put => batch.put(space, op.key, op.value),
            OpKind::Delete => batch.delete(space, op.key),
            OpKind::DeleteRange => batch.delete_range(space, op.key, op.value),
            OpKind::Merge => batch.merge(space, op.key, op.value),
        }
    }
    Ok(batch)
}

/// What mount found in the commit journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalSummary {
    /// The ring.
    pub region: JournalRegion,
    /// The first record the KV store did not hold durably (the tail).
    pub tail: JournalPosition,
    /// What replay applied (into an overlay, when read-only).
    pub replay: JournalReplay,
}

/// The journal of the store on `device` and `kv` as a mount would find it, replayed into
/// memory only (`None` for a store without one).
pub fn inspect(device: &dyn BlockDevice, kv: &dyn Kv) -> Result<Option<JournalStatus>> {
    let label = crate::device::label::read_label(device)?;
    let superblock = crate::kv::records::read_superblock(kv, &label)?;
    let Some(region) = superblock.journal else {
        return Ok(None);
    };
    let tail = durable_position(kv, region)?;
    let overlay = crate::kv::OverlayKv::over(kv);
    let replay = replay(device, &overlay, region, &label.store_uuid, tail, true)?;
    Ok(Some(
        JournalSummary {
            region,
            tail,
            replay,
        }
        .status(),
    ))
}

/// The first record the KV store does not hold durably, as its `JOURNAL_NEXT_KEY` says.
pub fn durable_position(kv: &dyn Kv, region: JournalRegion) -> Result<JournalPosition> {
    let position = match kv.get(KeySpace::Super, JOURNAL_NEXT_KEY)? {
        Some(value) => JournalPosition::decode(&value)?,
        None => return Err(Error::corruption("the journal position record is missing")),
    };
    if position.ring_offset >= region.length || !position.ring_offset.is_multiple_of(JOURNAL_BLOCK)
    {
        return Err(Error::corruption(format!(
            "the journal position {:#x} is not a record position in a ring of {:#x} bytes",
            position.ring_offset, region.length
        )));
    }
    Ok(position)
}

/// What [`replay`] found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalReplay {
    /// Commit records applied to the KV store.
    pub records: u64,
    /// Their bytes in the ring.
    pub bytes: u64,
    /// Where the next record goes.
    pub next: JournalPosition,
    /// The log ended at a record whose header is whole but whose payload is not: a record the
    /// power cut while it was being written (never acknowledged).
    pub torn_tail: bool,
    /// The position of a last record dropped because its data never reached the media (it
    /// was never acknowledged). A read-write mount must invalidate it before writing records
    /// ([`invalidate`]): the next record may land elsewhere and leave it looking current.
    pub dropped: Option<JournalPosition>,
    /// Where the torn record is, when the log ended at one. A read-write mount invalidates it
    /// too: the next record takes its sequence, and when that one is too long for the rest of
    /// the ring it goes to the ring's start, where replay looks only if nothing of that
    /// sequence is at the end (a torn header there would hide it after the next crash).
    pub torn: Option<JournalPosition>,
    /// The log ends at the record that begins a commit too large for a record
    /// ([`Journal::commit_outside`]), and the KV store does not hold that commit: the power cut
    /// it (never acknowledged). A read-write mount removes the mark ([`settle`]).
    pub outside_cut: bool,
}

/// Applies every whole record from `start` on to `kv` (as journaled writes), in order. The log
/// ends at the first position that does not hold the next record whole; a last record whose
/// data checks fail is dropped (`verify_last` is false only for a deliberate bug a test
/// switches on). A valid record of a later sequence behind the end means the log is damaged
/// behind acknowledged commits: `Corruption` naming the position.
pub fn replay(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    region: JournalRegion,
    store_uuid: &[u8; 16],
    start: JournalPosition,
    verify_last: bool,
) -> Result<JournalReplay> {
    let reader = RingReader {
        device,
        region,
        store_uuid,
    };
    reader.require_previous(start)?;
    let mut at = start;
    let mut pending: Option<(Batch, Vec<DataCheck>, JournalPosition)> = None;
    let mut summary = JournalReplay::default();
    let mut covered = 0;
    loop {
        let (found_at, payload, length) = match reader.next_record(at)? {
            Lookup::Whole(found_at, payload, length) => (found_at, payload, length),
            Lookup::Torn(position) => {
                summary.torn_tail = true;
                summary.torn = Some(position);
                break;
            }
            Lookup::Absent => break,
        };
        if let Some((batch, _, _)) = pending.take() {
            kv.write(batch, Durability::Journaled)?;
            summary.records += 1;
        }
        // After the record before it (no record removes a mark, so one the KV store held is
        // still there, and one that record set is seen too).
        refuse_missing_outside_commit(kv, found_at.sequence)?;
        covered += length + (found_at.ring_offset + region.length - at.ring_offset) % region.length;
        if covered > region.length {
            return Err(Error::corruption(
                "the commit journal holds more than one ring of records after its checkpoint",
            ));
        }
        summary.bytes += length;
        let checks = payload.checks.clone();
        pending = Some((to_batch(payload)?, checks, found_at));
        at = JournalPosition {
            sequence: at.sequence + 1,
            ring_offset: (found_at.ring_offset + length) % region.length,
            previous_ring_offset: Some(found_at.ring_offset),
        };
    }
    if let Some((batch, checks, position)) = pending {
        if !verify_last || reader.data_is_whole(&checks)? {
            kv.write(batch, Durability::Journaled)?;
            summary.records += 1;
        } else {
            // The last record's data never reached the media: it was not acknowledged, and
            // the next record takes its place.
            summary.dropped = Some(position);
            at = position;
        }
    }
    reader.refuse_records_behind(at)?;
    summary.next = at;
    summary.outside_cut = outside_mark(kv)?.is_some();
    Ok(summary)
}

/// The sequence of the record that began a commit outside the ring, while its synced write
/// has not removed the mark ([`Journal::commit_outside`]).
fn outside_mark(kv: &dyn Kv) -> Result<Option<u64>> {
    let Some(value) = kv.get(KeySpace::Super, JOURNAL_OUTSIDE_KEY)? else {
        return Ok(None);
    };
    decode_counter(&value)
        .map(Some)
        .map_err(|e| Error::corruption(format!("the journal's outside-commit mark: {e}")))
}

/// Replay is about to apply record `sequence` (or found it whole after the last applied one):
/// `Corruption` when a mark of an earlier record is still there. Records after a mark are
/// written only once the commit's synced write removed it, so the KV store lacks that write:
/// it is older than the device. Checked at every record, not only at the end, because a later
/// mark would overwrite an earlier one.
fn refuse_missing_outside_commit(kv: &dyn Kv, sequence: u64) -> Result<()> {
    let Some(begun) = outside_mark(kv)? else {
        return Ok(());
    };
    if sequence <= begun {
        return Ok(());
    }
    Err(Error::corruption(format!(
        "the KV store lacks the commit that journal record {begun} began outside the ring, while \
         the device holds records written after it: the KV store is older than the device (db/ \
         restored from an older copy?); refusing to apply later commits on top of a state that \
         lacks it: use the db/ copied together with this device"
    )))
}

/// Makes what a read-write replay did durable: the replayed records (so the ring behind them
/// is free and no later mount applies them twice), then the removal of a cut outside commit's
/// mark (after the records, or the next replay could apply the mark again).
pub fn settle(kv: &dyn Kv, replay: &JournalReplay) -> Result<()> {
    if replay.records > 0 {
        // Durability point: the replayed records are durable in the KV store, so the ring
        // behind them is free and deferred replay may write in place.
        kv.flush()?;
    }
    if replay.outside_cut {
        let mut clear = Batch::new();
        clear.delete(KeySpace::Super, JOURNAL_OUTSIDE_KEY);
        kv.write(clear, Durability::Sync)?;
    }
    Ok(())
}

/// Overwrites the header of a record replay dropped, so that it can never be taken for the
/// record of its sequence again, and flushes.
pub fn invalidate(
    device: &dyn BlockDevice,
    region: JournalRegion,
    dropped: JournalPosition,
) -> Result<()> {
    let zeros = AlignedBuf::zeroed(JOURNAL_BLOCK as usize);
    device.write_at(region.device_offset + dropped.ring_offset, zeros)?;
    device.flush()
}

/// Reads records from the ring.
struct RingReader<'a> {
    device: &'a dyn BlockDevice,
    region: JournalRegion,
    store_uuid: &'a [u8; 16],
}

/// What the ring holds where a record is expected.
enum Lookup {
    /// The record, whole: where it is, its payload, its ring bytes.
    Whole(JournalPosition, CommitPayload, u64),
    /// Its header (where it is), but not its whole payload.
    Torn(JournalPosition),
    /// No record of that sequence.
    Absent,
}

impl RingReader<'_> {
    /// The record of `at.sequence`, at `at` or (when it did not fit before the ring's end) at
    /// the ring's start.
    fn next_record(&self, at: JournalPosition) -> Result<Lookup> {
        let here = self.record_at(at)?;
        if at.ring_offset == 0 || !matches!(here, Lookup::Absent) {
            return Ok(here);
        }
        let start = JournalPosition {
            ring_offset: 0,
            ..at
        };
        Ok(match self.record_at(start)? {
            // Only a record too long for the rest of the ring goes to its start.
            Lookup::Whole(_, _, length) if at.ring_offset + length <= self.region.length => {
                Lookup::Absent
            }
            other => other,
        })
    }

    /// The record before `start` (which the KV store holds, since it holds `start`) must still
    /// be on the device: ring space is reused only behind a checkpoint, and the next checkpoint
    /// would have moved the KV store's position past it. A device without it is older than the
    /// KV store, and mounting it would serve stale bytes under current metadata.
    fn require_previous(&self, start: JournalPosition) -> Result<()> {
        let Some(previous) = start.previous_ring_offset else {
            return Ok(());
        };
        let sequence = start.sequence.saturating_sub(1);
        let at = JournalPosition {
            sequence,
            ring_offset: previous,
            previous_ring_offset: None,
        };
        if previous < self.region.length
            && let Lookup::Whole(..) = self.record_at(at)?
        {
            return Ok(());
        }
        Err(Error::corruption(format!(
            "the data device does not hold journal record {sequence} (ring offset {previous:#x}), \
             which the KV store holds: the device is older than the KV store (a block file or \
             device restored from an older copy, or another device behind the link?); refusing \
             to serve stale data under current metadata"
        )))
    }

    /// The record of `at.sequence` exactly at `at.ring_offset`.
    fn record_at(&self, at: JournalPosition) -> Result<Lookup> {
        let Some(header) = self.header_at(at.ring_offset)? else {
            return Ok(Lookup::Absent);
        };
        let length = u64::from(header.padded_length);
        if header.sequence != at.sequence || at.ring_offset + length > self.region.length {
            return Ok(Lookup::Absent);
        }
        let bytes = self
            .device
            .read_at(self.region.device_offset + at.ring_offset, length as usize)?;
        let Ok(payload) = payload_of(&header, &bytes) else {
            return Ok(Lookup::Torn(at));
        };
        let payload = decode_commit(payload, KeySpace::ALL.len() as u8).map_err(|e| {
            Error::corruption(format!(
                "journal record {} passes its checksums but does not decode: {e}",
                at.sequence
            ))
        })?;
        Ok(Lookup::Whole(at, payload, length))
    }

    /// The header at `ring_offset` when one of this store's decodes there.
    fn header_at(&self, ring_offset: u64) -> Result<Option<RecordHeader>> {
        let block = self.device.read_at(
            self.region.device_offset + ring_offset,
            JOURNAL_BLOCK as usize,
        )?;
        Ok(self.header_in(&block))
    }

    fn header_in(&self, block: &[u8]) -> Option<RecordHeader> {
        decode_header(block, self.region.salt)
            .ok()
            .filter(|header| header.store_uuid == *self.store_uuid)
    }

    /// True when every checked data range holds the bytes the record says.
    fn data_is_whole(&self, checks: &[DataCheck]) -> Result<bool> {
        for check in checks {
            let bytes = self
                .device
                .read_at(check.device_offset, check.length as usize)?;
            if crc32c::crc32c(&bytes) != check.crc {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The log ended at `end`: no record of a later sequence may follow within reach of the
    /// largest record and a skipped ring end (a record lost in the middle of the log). Stale
    /// records of earlier laps carry earlier sequences, and a torn or dropped record at the end
    /// carries the end's own: both are ignored.
    fn refuse_records_behind(&self, end: JournalPosition) -> Result<()> {
        let reach = (record_bytes_max(self.region) * 2 + JOURNAL_BLOCK).min(self.region.length);
        let mut scanned = 0;
        while scanned < reach {
            let offset = (end.ring_offset + scanned) % self.region.length;
            let length = SCAN_CHUNK
                .min(reach - scanned)
                .min(self.region.length - offset);
            let chunk = self
                .device
                .read_at(self.region.device_offset + offset, length as usize)?;
            for (index, block) in chunk.chunks(JOURNAL_BLOCK as usize).enumerate() {
                let ring_offset = offset + index as u64 * JOURNAL_BLOCK;
                if let Some(header) = self.header_in(block)
                    && header.sequence > end.sequence
                {
                    return Err(Error::corruption(format!(
                        "the commit journal is damaged: record {} at ring offset {:#x} does not \
                         read whole, but record {} at {ring_offset:#x} does; commits that were \
                         acknowledged as durable would be lost, so the store does not mount",
                        end.sequence, end.ring_offset, header.sequence
                    )));
                }
            }
            scanned += length;
        }
        Ok(())
    }
}
