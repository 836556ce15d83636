//! The simulated device: memory with a "written" and a "durable" image, for crash and fault tests.
//!
//! Writes land in the written image when they complete (reads see them) and are logged as
//! unflushed; a flush makes the completed ones durable. They complete at submission by default,
//! or, in [`SimIo::Reordered`] mode, one at a time in a seeded random order when the caller
//! (a stepped store) asks ([`BlockDevice::complete_one`]), as io_uring completes out of order. [`SimDevice::crash`] returns the image a power cut would leave:
//! the durable image plus, per unflushed write and according to the [`CrashMode`], all of it,
//! none of it, or a torn subset of its sectors. Faults ([`SimFaults`]) make chosen reads, writes
//! or flushes fail with EIO. After a crash the device refuses all I/O, so the crashed store's
//! threads cannot touch the image a test goes on with.
//!
//! Images are sparse (4 KiB pages, unwritten pages read as zero), so a large simulated device
//! costs only what was written, and crashing thousands of times stays cheap.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{
    Access, BlockDevice, DeviceInfo, DeviceKind, IoDone, IoKind, IoOutcome, IoRequest, check_batch,
};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

const PAGE: usize = 4096;

/// A sparse byte image.
#[derive(Debug, Clone, Default)]
pub struct SimImage {
    pages: BTreeMap<u64, Arc<[u8; PAGE]>>,
}

impl SimImage {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let position = offset + done as u64;
            let within = (position % PAGE as u64) as usize;
            let take = (PAGE - within).min(buf.len() - done);
            let target = &mut buf[done..done + take];
            match self.pages.get(&(position / PAGE as u64)) {
                Some(page) => target.copy_from_slice(&page[within..within + take]),
                None => target.fill(0),
            }
            done += take;
        }
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let position = offset + done as u64;
            let within = (position % PAGE as u64) as usize;
            let take = (PAGE - within).min(data.len() - done);
            let page = self
                .pages
                .entry(position / PAGE as u64)
                .or_insert_with(|| Arc::new([0u8; PAGE]));
            Arc::make_mut(page)[within..within + take].copy_from_slice(&data[done..done + take]);
            done += take;
        }
    }

    /// Flips one bit (for corruption tests).
    pub fn flip_bit(&mut self, offset: u64, bit: u8) {
        let mut byte = [0u8];
        self.read(offset, &mut byte);
        byte[0] ^= 1 << (bit % 8);
        self.write(offset, &byte);
    }
}

/// What a simulated power cut does to writes that were not yet flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unflushed write is lost.
    DropUnflushed,
    /// Every unflushed write survives (the cache happened to drain).
    KeepUnflushed,
    /// Each unflushed write independently survives, is lost, or is torn (a random subset of its
    /// sectors survives), chosen by a generator seeded with this value.
    Random(u64),
}

/// A power cut after a chosen number of I/O events, shared by a simulated device and an
/// in-memory KV store so that crash tests can stop the world at any device write (each request
/// counts), device flush, or KV write. The event the cut falls on fails and is not applied, and so
/// does every later one; what the images hold then is what the cut left.
#[derive(Debug, Default)]
pub struct PowerCut {
    events: AtomicU64,
    /// 1-based event the power fails at; 0: never.
    cut_at: AtomicU64,
    /// A running hash of every event's description: two runs that did the same I/O in the
    /// same order have the same trace.
    trace: AtomicU64,
}

impl PowerCut {
    /// A switch that cuts the power at the `event`-th I/O event from now (1-based).
    pub fn at(event: u64) -> Arc<PowerCut> {
        Arc::new(PowerCut {
            events: AtomicU64::new(0),
            cut_at: AtomicU64::new(event),
            trace: AtomicU64::new(0),
        })
    }

    /// A switch that only counts.
    pub fn never() -> Arc<PowerCut> {
        Arc::new(PowerCut::default())
    }

    /// Counts one I/O event; false when the power is off (the event must fail).
    pub fn event(&self) -> bool {
        self.next_event() == PowerEvent::On
    }

    /// Counts one I/O event and says whether it happens with the power on, is the one the power
    /// fails during, or comes after.
    pub fn next_event(&self) -> PowerEvent {
        self.next_event_of(0)
    }

    /// [`PowerCut::next_event`] for an event described by `what` (say its offset and length),
    /// which goes into the trace.
    pub fn next_event_of(&self, what: u64) -> PowerEvent {
        let previous = self.trace.load(Ordering::SeqCst);
        let mut mix = SplitMix64::new(previous ^ what.rotate_left(17));
        self.trace.store(mix.next_u64(), Ordering::SeqCst);
        let number = self.events.fetch_add(1, Ordering::SeqCst) + 1;
        let cut_at = self.cut_at.load(Ordering::SeqCst);
        match cut_at {
            0 => PowerEvent::On,
            _ if number < cut_at => PowerEvent::On,
            _ if number == cut_at => PowerEvent::Cut,
            _ => PowerEvent::Off,
        }
    }

    /// Whether the cut has happened.
    pub fn is_off(&self) -> bool {
        let cut_at = self.cut_at.load(Ordering::SeqCst);
        cut_at != 0 && self.events.load(Ordering::SeqCst) >= cut_at
    }

    /// I/O events counted so far (including refused ones).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// The trace of the events so far (see [`PowerCut::next_event_of`]).
    pub fn trace(&self) -> u64 {
        self.trace.load(Ordering::SeqCst)
    }
}

/// Where an I/O event falls relative to a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Before the cut: the event happens.
    On,
    /// The event the power fails during: it fails, though what it wrote may have reached the
    /// media (a synced KV write whose sync never returned).
    Cut,
    /// After the cut: the event fails and changes nothing.
    Off,
}

/// How the simulated device completes what is submitted to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SimIo {
    /// Every request of a batch is performed at submission, in order (the default).
    #[default]
    Immediate,
    /// Submitted requests stay pending until [`BlockDevice::complete_one`] completes one,
    /// chosen at random (from this seed) among all pending, as io_uring completes out of order;
    /// a request reaches the written image only when it completes, and a flush makes durable
    /// only what completed before it. Blocking batches are performed at once, in a random order.
    Reordered {
        /// Seed of the completion order.
        seed: u64,
    },
}

/// What the last simulated power cut did to the writes that were not yet durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCrashCounts {
    /// Completed, unflushed writes that survived whole.
    pub kept: u64,
    /// Completed, unflushed writes lost whole.
    pub dropped: u64,
    /// Completed, unflushed writes of which only some sectors survived.
    pub torn: u64,
    /// Submitted writes that had not completed when the power failed (refused then, or still
    /// pending at the crash): lost.
    pub in_flight_lost: u64,
}

/// EIO injection: the n-th (1-based, counted since the device was made) operation fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// The n-th read fails.
    pub fail_read_number: Option<u64>,
    /// The n-th write fails (and is not applied).
    pub fail_write_number: Option<u64>,
    /// The n-th flush fails (and makes nothing durable).
    pub fail_flush_number: Option<u64>,
}

/// Operation counts, for tests and fault targeting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Reads performed (requests, not batches).
    pub reads: u64,
    /// Writes performed.
    pub writes: u64,
    /// Flushes performed.
    pub flushes: u64,
}

struct SimState {
    written: SimImage,
    durable: SimImage,
    unflushed: Vec<(u64, Vec<u8>)>,
    faults: SimFaults,
    counters: SimCounters,
    crashed: bool,
    power: Option<Arc<PowerCut>>,
    io: SimIo,
    /// The generator of completion orders (reordering mode).
    order: SplitMix64,
    /// Submitted batches not yet completed, by id.
    batches: BTreeMap<u64, PendingBatch>,
    /// Requests not yet completed: (batch id, index in the batch).
    pending: Vec<(u64, usize)>,
    next_batch: u64,
    /// Writes refused because the power was off.
    refused_writes: u64,
    /// The batch of the request completed last.
    last_completed: Option<u64>,
    last_crash: SimCrashCounts,
}

/// A submitted batch waiting for its requests to complete.
struct PendingBatch {
    requests: Vec<IoRequest>,
    remaining: usize,
    result: Result<()>,
    done: IoDone,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("unflushed", &self.unflushed.len())
            .field("pending", &self.pending.len())
            .field("crashed", &self.crashed)
            .finish_non_exhaustive()
    }
}

/// The simulated device.
#[derive(Debug)]
pub struct SimDevice {
    info: DeviceInfo,
    state: Mutex<SimState>,
}

impl SimDevice {
    /// A zeroed device of `size_bytes` with `logical_block_size`-byte sectors.
    pub fn new(size_bytes: u64, logical_block_size: u32, rotational: bool) -> SimDevice {
        Self::from_image(
            SimImage::default(),
            size_bytes,
            logical_block_size,
            rotational,
        )
    }

    /// A device whose durable contents are `image` (for example what a crash left).
    pub fn from_image(
        image: SimImage,
        size_bytes: u64,
        logical_block_size: u32,
        rotational: bool,
    ) -> SimDevice {
        SimDevice {
            info: DeviceInfo {
                path: PathBuf::from("<simulated>"),
                kind: DeviceKind::Simulated,
                size_bytes,
                logical_block_size,
                rotational,
                access: Access::ReadWrite,
            },
            state: Mutex::new(SimState {
                written: image.clone(),
                durable: image,
                unflushed: Vec::new(),
                faults: SimFaults::default(),
                counters: SimCounters::default(),
                crashed: false,
                power: None,
                io: SimIo::Immediate,
                order: SplitMix64::new(0),
                batches: BTreeMap::new(),
                pending: Vec::new(),
                next_batch: 0,
                refused_writes: 0,
                last_completed: None,
                last_crash: SimCrashCounts::default(),
            }),
        }
    }

    /// Chooses how submitted requests complete.
    pub fn set_io(&self, io: SimIo) {
        let mut state = self.state.lock();
        state.io = io;
        if let SimIo::Reordered { seed } = io {
            state.order = SplitMix64::new(seed);
        }
    }

    /// Submitted requests not yet completed.
    pub fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Batches submitted so far in reordering mode (the next batch's id).
    pub fn batches_submitted(&self) -> u64 {
        self.state.lock().next_batch
    }

    /// The id of the batch whose request completed last (reordering mode).
    pub fn last_completed_batch(&self) -> Option<u64> {
        self.state.lock().last_completed
    }

    /// What the last [`SimDevice::crash`] did to the writes not yet durable.
    pub fn last_crash(&self) -> SimCrashCounts {
        self.state.lock().last_crash
    }

    /// Arms EIO injection.
    pub fn set_faults(&self, faults: SimFaults) {
        self.state.lock().faults = faults;
    }

    /// Counts writes and flushes on `power`; once it is off they fail with EIO.
    pub fn set_power(&self, power: Arc<PowerCut>) {
        self.state.lock().power = Some(power);
    }

    /// Operations performed so far.
    pub fn counters(&self) -> SimCounters {
        self.state.lock().counters
    }

    /// Writes not yet flushed.
    pub fn unflushed_count(&self) -> usize {
        self.state.lock().unflushed.len()
    }

    /// Simulates a power cut: returns the surviving image and refuses all later I/O. Requests
    /// still pending never complete (their batches' callbacks are dropped).
    pub fn crash(&self, mode: CrashMode) -> SimImage {
        let (image, abandoned) = {
            let mut state = self.state.lock();
            state.crashed = true;
            let (image, mut counts) = self.survivor_of(&state, mode);
            counts.in_flight_lost = state.pending.len() as u64 + state.refused_writes;
            state.last_crash = counts;
            state.pending.clear();
            (image, std::mem::take(&mut state.batches))
        };
        // Outside the lock: a callback may hold the last reference to what uses this device.
        drop(abandoned);
        image
    }

    /// The image a power cut now would leave, without cutting the power.
    pub fn survivor(&self, mode: CrashMode) -> SimImage {
        let state = self.state.lock();
        self.survivor_of(&state, mode).0
    }

    fn survivor_of(&self, state: &SimState, mode: CrashMode) -> (SimImage, SimCrashCounts) {
        let mut image = state.durable.clone();
        let mut counts = SimCrashCounts::default();
        let mut rng = match mode {
            CrashMode::Random(seed) => Some(SplitMix64::new(seed)),
            _ => None,
        };
        let sector = self.info.logical_block_size as usize;
        for (offset, data) in &state.unflushed {
            let fate = match (&mut rng, mode) {
                (_, CrashMode::DropUnflushed) => Fate::Dropped,
                (_, CrashMode::KeepUnflushed) => {
                    image.write(*offset, data);
                    Fate::Kept
                }
                (Some(rng), _) => apply_randomly(&mut image, rng, *offset, data, sector),
                (None, CrashMode::Random(_)) => unreachable!("rng exists in random mode"),
            };
            match fate {
                Fate::Kept => counts.kept += 1,
                Fate::Dropped => counts.dropped += 1,
                Fate::Torn => counts.torn += 1,
            }
        }
        (image, counts)
    }

    /// The current durable image (what a crash in `DropUnflushed` mode would leave).
    pub fn durable_image(&self) -> SimImage {
        self.state.lock().durable.clone()
    }

    /// Flips a bit in both images, as if the medium rotted.
    pub fn corrupt_bit(&self, offset: u64, bit: u8) {
        let mut state = self.state.lock();
        state.written.flip_bit(offset, bit);
        state.durable.flip_bit(offset, bit);
    }

    fn perform(&self, state: &mut SimState, request: &mut IoRequest) -> Result<()> {
        if state.crashed {
            return Err(eio("device lost power", request));
        }
        match request.kind {
            IoKind::Read => {
                state.counters.reads += 1;
                if state.faults.fail_read_number == Some(state.counters.reads) {
                    return Err(eio("injected read error", request));
                }
                let offset = request.device_offset;
                let Some(target) = request.buf.as_mut_slice() else {
                    return Err(eio("shared read buffer", request));
                };
                state.written.read(offset, target);
            }
            IoKind::Write => {
                let what = request.device_offset ^ ((request.buf.len() as u64) << 40);
                let on = |power: &Arc<PowerCut>| power.next_event_of(what) == PowerEvent::On;
                if state.power.as_ref().is_some_and(|power| !on(power)) {
                    state.refused_writes += 1;
                    return Err(eio("power cut", request));
                }
                state.counters.writes += 1;
                if state.faults.fail_write_number == Some(state.counters.writes) {
                    return Err(eio("injected write error", request));
                }
                state.written.write(request.device_offset, &request.buf);
                state
                    .unflushed
                    .push((request.device_offset, request.buf.to_vec()));
            }
        }
        Ok(())
    }
}

/// What a power cut did to one unflushed write.
enum Fate {
    Kept,
    Dropped,
    Torn,
}

fn apply_randomly(
    image: &mut SimImage,
    rng: &mut SplitMix64,
    offset: u64,
    data: &[u8],
    sector: usize,
) -> Fate {
    match rng.below(3) {
        0 => Fate::Dropped,
        1 => {
            image.write(offset, data);
            Fate::Kept
        }
        _ => {
            let sectors = data.len().div_ceil(sector.max(1));
            let mut survived = 0;
            for (index, piece) in data.chunks(sector).enumerate() {
                if rng.chance(1, 2) {
                    image.write(offset + (index * sector) as u64, piece);
                    survived += 1;
                }
            }
            match survived {
                0 => Fate::Dropped,
                n if n == sectors => Fate::Kept,
                _ => Fate::Torn,
            }
        }
    }
}

fn eio(what: &str, request: &IoRequest) -> Error {
    Error::io(
        format!(
            "{:?} of {:#x} bytes at device offset {:#x} ({what})",
            request.kind,
            request.buf.len(),
            request.device_offset
        ),
        io::Error::from_raw_os_error(libc::EIO),
    )
}

impl BlockDevice for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, mut batch: Vec<IoRequest>, done: IoDone) {
        if let Err(error) = check_batch(&self.info, &batch) {
            return done(IoOutcome {
                requests: batch,
                result: Err(error),
            });
        }
        let mut state = self.state.lock();
        if state.io == SimIo::Immediate || batch.is_empty() {
            let result = batch
                .iter_mut()
                .try_for_each(|request| self.perform(&mut state, request));
            drop(state);
            return done(IoOutcome {
                requests: batch,
                result,
            });
        }
        let id = state.next_batch;
        state.next_batch += 1;
        state
            .pending
            .extend((0..batch.len()).map(|index| (id, index)));
        let remaining = batch.len();
        state.batches.insert(
            id,
            PendingBatch {
                requests: batch,
                remaining,
                result: Ok(()),
                done,
            },
        );
    }

    fn run_blocking(&self, mut batch: Vec<IoRequest>) -> Result<Vec<IoRequest>> {
        check_batch(&self.info, &batch)?;
        let mut state = self.state.lock();
        let mut order: Vec<usize> = (0..batch.len()).collect();
        if state.io != SimIo::Immediate {
            // The requests of one batch complete in any order.
            for i in (1..order.len()).rev() {
                let j = state.order.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
            .into_iter()
            .try_for_each(|index| self.perform(&mut state, &mut batch[index]))?;
        Ok(batch)
    }

    fn complete_one(&self) -> bool {
        let finished = {
            let mut state = self.state.lock();
            if state.pending.is_empty() {
                return false;
            }
            let count = state.pending.len() as u64;
            let pick = state.order.below(count) as usize;
            let (id, index) = state.pending.swap_remove(pick);
            state.last_completed = Some(id);
            let mut batch = state
                .batches
                .remove(&id)
                .expect("pending requests have batches");
            let result = self.perform(&mut state, &mut batch.requests[index]);
            if batch.result.is_ok() {
                batch.result = result;
            }
            batch.remaining -= 1;
            if batch.remaining > 0 {
                state.batches.insert(id, batch);
                None
            } else {
                Some(batch)
            }
        };
        // The batch's callback runs without the device's lock, as a real completion would.
        if let Some(batch) = finished {
            (batch.done)(IoOutcome {
                requests: batch.requests,
                result: batch.result,
            });
        }
        true
    }

    fn flush(&self) -> Result<()> {
        let mut state = self.state.lock();
        if state.crashed {
            return Err(Error::io("flush", io::Error::from_raw_os_error(libc::EIO)));
        }
        const FLUSH: u64 = 0xf1;
        if state
            .power
            .as_ref()
            .is_some_and(|power| power.next_event_of(FLUSH) != PowerEvent::On)
        {
            return Err(Error::io(
                "flush (power cut)",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        state.counters.flushes += 1;
        if state.faults.fail_flush_number == Some(state.counters.flushes) {
            // Like a real failed fsync, nothing is known durable; the writes stay unflushed.
            return Err(Error::io(
                "flush (injected error)",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let unflushed = std::mem::take(&mut state.unflushed);
        for (offset, data) in &unflushed {
            state.durable.write(*offset, data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AlignedBuf;

    fn write(device: &dyn BlockDevice, offset: u64, fill: u8, length: usize) {
        device
            .write_at(offset, AlignedBuf::copy_from(&vec![fill; length]))
            .unwrap();
    }

    #[test]
    fn reads_see_writes_before_flush_but_crash_drops_them() {
        let device = SimDevice::new(1 << 20, 512, false);
        write(&device, 0, 1, 4096);
        device.flush().unwrap();
        write(&device, 0, 2, 4096);
        assert_eq!(device.read_at_sim(0), 2, "reads see unflushed writes");
        let image = device.crash(CrashMode::DropUnflushed);
        let after = SimDevice::from_image(image, 1 << 20, 512, false);
        assert_eq!(after.read_at_sim(0), 1, "only the flushed write survives");
    }

    #[test]
    fn a_crashed_device_refuses_io() {
        let device = SimDevice::new(1 << 20, 512, false);
        let _ = device.crash(CrashMode::KeepUnflushed);
        let dyn_device: &dyn BlockDevice = &device;
        assert!(dyn_device.read_at(0, 512).is_err());
        assert!(device.flush().is_err());
    }

    #[test]
    fn torn_writes_keep_whole_sectors_only() {
        for seed in 0..20 {
            let device = SimDevice::new(1 << 20, 512, false);
            write(&device, 0, 0xaa, 8192);
            let image = device.crash(CrashMode::Random(seed));
            let mut bytes = vec![0u8; 8192];
            image.read(0, &mut bytes);
            for sector in bytes.chunks(512) {
                let uniform = sector.iter().all(|b| *b == sector[0]);
                assert!(
                    uniform && (sector[0] == 0 || sector[0] == 0xaa),
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn injected_faults_fail_the_chosen_operation() {
        let device = SimDevice::new(1 << 20, 512, false);
        device.set_faults(SimFaults {
            fail_write_number: Some(2),
            fail_flush_number: Some(1),
            ..SimFaults::default()
        });
        let dyn_device: &dyn BlockDevice = &device;
        dyn_device.write_at(0, AlignedBuf::zeroed(512)).unwrap();
        assert!(dyn_device.write_at(0, AlignedBuf::zeroed(512)).is_err());
        assert!(device.flush().is_err());
        device.flush().unwrap();
    }

    impl SimDevice {
        fn read_at_sim(&self, offset: u64) -> u8 {
            let dyn_device: &dyn BlockDevice = self;
            dyn_device.read_at(offset, 512).unwrap()[0]
        }
    }
}
