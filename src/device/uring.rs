//! The default device: io_uring with O_DIRECT.
//!
//! Any thread may submit: it takes the submission lock, pushes as many requests as the queue
//! depth allows, and calls `io_uring_enter` itself, so a lone writer pays one system call per
//! batch. One reaper thread owns the completion queue: it waits for completions, re-issues the
//! rest of a short transfer, and when the last request of a batch completes it hands the batch
//! (with its buffers) to the batch's callback. The queue depth bounds the requests in flight, so
//! neither ring can overflow.
//!
//! Buffer lifetime: each in-flight request's buffer is owned by its batch, which stays alive
//! until the reaper has seen the request's completion; the kernel never sees freed memory.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use parking_lot::{Condvar, Mutex};

use super::open::{OpenedDevice, open_data_device};
use super::{Access, BlockDevice, DeviceInfo, IoDone, IoKind, IoOutcome, IoRequest, check_batch};
use crate::error::{Error, Result};

/// `user_data` of the no-op that wakes the reaper at shutdown.
const WAKE_USER_DATA: u64 = 0;

/// io_uring device.
pub struct UringDevice {
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
}

struct Shared {
    ring: IoUring,
    file: File,
    info: DeviceInfo,
    queue_depth: usize,
    /// Serialises pushes to the submission queue (the ring allows one producer).
    submit_lock: Mutex<()>,
    /// Rings for blocking batches, one per concurrent caller at most.
    private_rings: Mutex<Vec<IoUring>>,
    /// Requests in flight; at most `queue_depth`.
    in_flight: Mutex<usize>,
    slot_freed: Condvar,
    shutdown: AtomicBool,
}

/// A submitted batch, alive until its last request completes.
struct Batch {
    requests: Mutex<Option<Vec<IoRequest>>>,
    remaining: AtomicUsize,
    first_error: Mutex<Option<Error>>,
    done: Mutex<Option<IoDone>>,
}

/// One request in flight; its address is the SQE's `user_data`.
struct InFlight {
    batch: Arc<Batch>,
    kind: IoKind,
    device_offset: u64,
    buffer: *mut u8,
    length: usize,
    transferred: usize,
}

/// io_uring could not be set up on an opened device: the device, handed back for another
/// backend, and the kernel's answer.
pub struct RingSetupFailed {
    /// The opened device.
    pub opened: OpenedDevice,
    /// Why `io_uring_setup` failed (EPERM under a seccomp profile, ENOSYS on old kernels).
    pub error: io::Error,
}

impl UringDevice {
    /// Opens `path` (see [`open_data_device`]) and starts the reaper thread.
    pub fn open(path: &Path, queue_depth: u32, access: Access) -> Result<UringDevice> {
        let opened = open_data_device(path, access)?;
        let entries = ring_entries(queue_depth);
        UringDevice::from_opened(opened, queue_depth).map_err(|failed| {
            Error::io(
                format!("setting up io_uring with {entries} entries"),
                failed.error,
            )
        })
    }

    /// Sets up the ring on an opened device; on failure the device comes back unharmed.
    pub fn from_opened(
        opened: OpenedDevice,
        queue_depth: u32,
    ) -> std::result::Result<UringDevice, RingSetupFailed> {
        let entries = ring_entries(queue_depth);
        let ring = match IoUring::new(entries) {
            Ok(ring) => ring,
            Err(error) => return Err(RingSetupFailed { opened, error }),
        };
        let queue_depth = queue_depth.clamp(1, 4096) as usize;
        let shared = Arc::new(Shared {
            ring,
            file: opened.file,
            info: opened.info,
            queue_depth,
            submit_lock: Mutex::new(()),
            private_rings: Mutex::new(Vec::new()),
            in_flight: Mutex::new(0),
            slot_freed: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let reaper_shared = Arc::clone(&shared);
        let reaper = std::thread::Builder::new()
            .name("bstore-uring".into())
            .spawn(move || reaper_shared.reap_until_shutdown());
        match reaper {
            Ok(reaper) => Ok(UringDevice {
                shared,
                reaper: Some(reaper),
            }),
            Err(error) => {
                let shared = Arc::into_inner(shared).expect("the reaper never started");
                Err(RingSetupFailed {
                    opened: OpenedDevice {
                        file: shared.file,
                        info: shared.info,
                    },
                    error,
                })
            }
        }
    }
}

/// Ring entries for a queue depth: one extra for the shutdown no-op (the kernel rounds up to a
/// power of two).
fn ring_entries(queue_depth: u32) -> u32 {
    queue_depth.clamp(1, 4096) + 1
}

impl BlockDevice for UringDevice {
    fn info(&self) -> &DeviceInfo {
        &self.shared.info
    }

    fn submit(&self, mut requests: Vec<IoRequest>, done: IoDone) {
        if let Err(error) = check_batch(&self.shared.info, &requests) {
            return done(IoOutcome {
                requests,
                result: Err(error),
            });
        }
        if requests.is_empty() {
            return done(IoOutcome {
                requests,
                result: Ok(()),
            });
        }
        // Reads get a pointer from the request's own buffer; writes only ever have the kernel
        // read through theirs (a shared buffer is never written).
        let pending: Vec<(IoKind, u64, *mut u8, usize)> = requests
            .iter_mut()
            .map(|r| {
                let length = r.buf.len();
                let pointer = match r.buf.as_mut_slice() {
                    Some(bytes) => bytes.as_mut_ptr(),
                    None => r.buf.as_ptr().cast_mut(),
                };
                (r.kind, r.device_offset, pointer, length)
            })
            .collect();
        let batch = Arc::new(Batch {
            remaining: AtomicUsize::new(requests.len()),
            requests: Mutex::new(Some(requests)),
            first_error: Mutex::new(None),
            done: Mutex::new(Some(done)),
        });
        let mut ops = pending
            .into_iter()
            .map(|(kind, device_offset, buffer, length)| {
                Box::new(InFlight {
                    batch: Arc::clone(&batch),
                    kind,
                    device_offset,
                    buffer,
                    length,
                    transferred: 0,
                })
            });
        let mut left = batch.remaining.load(Ordering::Relaxed);
        while left > 0 {
            let granted = self.shared.acquire_slots(left);
            self.shared.push_and_submit(ops.by_ref().take(granted));
            left -= granted;
        }
    }

    /// Blocking batches run on a ring of the caller's own (borrowed from a pool), so the
    /// caller submits and reaps in one system call, with no hand-off to the reaper thread and
    /// no context switch: for a synchronous 4 KiB read that is most of the cost.
    fn run_blocking(&self, mut batch: Vec<IoRequest>) -> Result<Vec<IoRequest>> {
        check_batch(&self.shared.info, &batch)?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let mut ring = self.shared.private_ring(batch.len())?;
        let result = run_on_private_ring(&mut ring, self.shared.file.as_raw_fd(), &mut batch);
        self.shared.return_ring(ring);
        result.map(|()| batch)
    }

    fn flush(&self) -> Result<()> {
        self.shared.file.sync_data().map_err(|e| {
            Error::io(
                format!("fdatasync of {}", self.shared.info.path.display()),
                e,
            )
        })
    }
}

impl Drop for UringDevice {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.push_wake();
        if let Some(reaper) = self.reaper.take() {
            // A panicking reaper already reported itself; nothing more to do at drop.
            let _ = reaper.join();
        }
    }
}

/// Requests a private ring keeps in flight at once (a larger blocking batch refills it as they complete).
const PRIVATE_RING_ENTRIES: u32 = 64;

impl Shared {
    /// A ring for a blocking batch: from the pool, or new.
    fn private_ring(&self, _requests: usize) -> Result<IoUring> {
        if let Some(ring) = self.private_rings.lock().pop() {
            return Ok(ring);
        }
        IoUring::new(PRIVATE_RING_ENTRIES)
            .map_err(|e| Error::io("setting up a private io_uring", e))
    }

    fn return_ring(&self, ring: IoUring) {
        self.private_rings.lock().push(ring);
    }

    /// Waits until at least one slot is free and takes up to `wanted` of them.
    fn acquire_slots(&self, wanted: usize) -> usize {
        let mut in_flight = self.in_flight.lock();
        while *in_flight >= self.queue_depth {
            self.slot_freed.wait(&mut in_flight);
        }
        let granted = wanted.min(self.queue_depth - *in_flight);
        *in_flight += granted;
        granted
    }

    fn release_slot(&self) {
        let mut in_flight = self.in_flight.lock();
        *in_flight -= 1;
        self.slot_freed.notify_all();
    }

    fn push_and_submit(&self, ops: impl Iterator<Item = Box<InFlight>>) {
        let _guard = self.submit_lock.lock();
        {
            // SAFETY: `submit_lock` is held, so this is the only SubmissionQueue in existence.
            let mut sq = unsafe { self.ring.submission_shared() };
            for op in ops {
                let entry = op.entry(self.file.as_raw_fd());
                // SAFETY: the entry's buffer belongs to the op's batch, which the op keeps alive
                // until the reaper reclaims the op from this user_data after its completion.
                let pushed = unsafe { sq.push(&entry) };
                assert!(
                    pushed.is_ok(),
                    "queue depth keeps the submission queue from filling"
                );
                // The op now lives in the kernel's hands; the reaper turns it back into a Box.
                let _ = Box::into_raw(op);
            }
        }
        self.enter_submit();
    }

    fn push_wake(&self) {
        let _guard = self.submit_lock.lock();
        {
            // SAFETY: `submit_lock` is held, so this is the only SubmissionQueue in existence.
            let mut sq = unsafe { self.ring.submission_shared() };
            let nop = opcode::Nop::new().build().user_data(WAKE_USER_DATA);
            // SAFETY: a no-op references no memory.
            let pushed = unsafe { sq.push(&nop) };
            assert!(
                pushed.is_ok(),
                "one entry is reserved for the wake-up no-op"
            );
        }
        self.enter_submit();
    }

    /// Hands pushed entries to the kernel, retrying transient refusals: once pushed, an entry
    /// must be submitted, or its submitter would wait forever.
    fn enter_submit(&self) {
        loop {
            match self.ring.submit() {
                Ok(_) => return,
                Err(e) if is_transient(&e) => std::thread::sleep(Duration::from_micros(50)),
                Err(e) => panic!("io_uring_enter refused a submission: {e}"),
            }
        }
    }

    fn reap_until_shutdown(&self) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if is_transient(&e) => continue,
                Err(e) => panic!("io_uring_enter failed while waiting for completions: {e}"),
            }
            // SAFETY: only this thread ever borrows the completion queue.
            let completions: Vec<cqueue::Entry> =
                unsafe { self.ring.completion_shared() }.collect();
            for completion in completions {
                if completion.user_data() != WAKE_USER_DATA {
                    self.complete(completion);
                }
            }
            if self.shutdown.load(Ordering::SeqCst) && *self.in_flight.lock() == 0 {
                return;
            }
        }
    }

    fn complete(&self, completion: cqueue::Entry) {
        // SAFETY: every user_data other than WAKE_USER_DATA came from Box::into_raw in
        // push_and_submit, and each completion is delivered exactly once.
        let mut op = unsafe { Box::from_raw(completion.user_data() as *mut InFlight) };
        let result = completion.result();
        let outstanding = op.length - op.transferred;
        if result < 0 {
            op.fail(io::Error::from_raw_os_error(-result));
        } else if result == 0 && outstanding > 0 {
            op.fail(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "device returned 0 bytes",
            ));
        } else if (result as usize) < outstanding {
            op.transferred += result as usize;
            return self.push_and_submit(std::iter::once(op));
        }
        self.release_slot();
        op.batch.request_finished();
    }
}

impl InFlight {
    fn entry(&self, fd: i32) -> squeue::Entry {
        let fd = types::Fd(fd);
        // SAFETY: `transferred < length`, so the pointer stays inside the buffer.
        let buffer = unsafe { self.buffer.add(self.transferred) };
        let length = u32::try_from(self.length - self.transferred).expect("requests are < 4 GiB");
        let offset = self.device_offset + self.transferred as u64;
        let entry = match self.kind {
            IoKind::Read => opcode::Read::new(fd, buffer, length).offset(offset).build(),
            IoKind::Write => opcode::Write::new(fd, buffer, length)
                .offset(offset)
                .build(),
        };
        entry.user_data(self as *const InFlight as u64)
    }

    fn fail(&self, error: io::Error) {
        let context = format!(
            "{:?} of {:#x} bytes at device offset {:#x}",
            self.kind, self.length, self.device_offset
        );
        self.batch
            .first_error
            .lock()
            .get_or_insert(Error::io(context, error));
    }
}

impl Batch {
    fn request_finished(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let requests = self.requests.lock().take().unwrap_or_default();
        let result = match self.first_error.lock().take() {
            Some(error) => Err(error),
            None => Ok(()),
        };
        if let Some(done) = self.done.lock().take() {
            done(IoOutcome { requests, result });
        }
    }
}

/// Runs a batch on a ring only this thread uses: keep up to the ring's size of requests in
/// flight, and each time some complete, submit more and wait again in one call, until every
/// request transferred all its bytes. (Rounds that waited for all of their requests before the
/// next let the queue drain at the end of each round: a deep fsck read 15-25 % slower than fio.)
/// Every pushed entry is reaped before returning, even after an error, so no buffer is freed
/// while the kernel holds it.
fn run_on_private_ring(ring: &mut IoUring, fd: i32, batch: &mut [IoRequest]) -> Result<()> {
    let mut progress: Vec<usize> = vec![0; batch.len()];
    let mut pending: std::collections::VecDeque<usize> = (0..batch.len()).collect();
    let mut in_flight = 0usize;
    let mut first_error: Option<Error> = None;
    loop {
        if first_error.is_none() {
            let mut sq = ring.submission();
            while in_flight < PRIVATE_RING_ENTRIES as usize {
                let Some(index) = pending.pop_front() else {
                    break;
                };
                let entry =
                    private_entry(&mut batch[index], progress[index], fd).user_data(index as u64);
                // SAFETY: the buffer belongs to `batch`, which outlives this function; every
                // entry pushed here is reaped below before the function returns.
                let pushed = unsafe { sq.push(&entry) };
                assert!(pushed.is_ok(), "never more in flight than the ring's size");
                in_flight += 1;
            }
        }
        if in_flight == 0 {
            break;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if is_transient(&e) => continue,
            Err(e) => panic!("io_uring_enter failed with requests in flight: {e}"),
        }
        for completion in ring.completion() {
            in_flight -= 1;
            let index = completion.user_data() as usize;
            match transferred(&batch[index], progress[index], completion.result()) {
                Ok(bytes) => {
                    progress[index] += bytes;
                    if progress[index] < batch[index].buf.len() {
                        pending.push_back(index);
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Bytes a completion moved, or the error it reports (0 bytes with bytes outstanding is EOF).
fn transferred(request: &IoRequest, done: usize, result: i32) -> Result<usize> {
    if result > 0 {
        return Ok(result as usize);
    }
    let error = if result < 0 {
        io::Error::from_raw_os_error(-result)
    } else if done < request.buf.len() {
        io::Error::new(io::ErrorKind::UnexpectedEof, "device returned 0 bytes")
    } else {
        return Ok(0);
    };
    let context = format!(
        "{:?} of {:#x} bytes at device offset {:#x}",
        request.kind,
        request.buf.len(),
        request.device_offset
    );
    Err(Error::io(context, error))
}

/// The entry transferring the rest of `request` after `done` bytes.
fn private_entry(request: &mut IoRequest, done: usize, fd: i32) -> squeue::Entry {
    let length = u32::try_from(request.buf.len() - done).expect("requests are < 4 GiB");
    let offset = request.device_offset + done as u64;
    let fd = types::Fd(fd);
    match (request.kind, request.buf.as_mut_slice()) {
        (IoKind::Read, Some(bytes)) => {
            // SAFETY: `done < len`, so the pointer stays inside the buffer.
            let pointer = unsafe { bytes.as_mut_ptr().add(done) };
            opcode::Read::new(fd, pointer, length)
                .offset(offset)
                .build()
        }
        (IoKind::Read, None) => unreachable!("check_batch refuses reads into shared buffers"),
        (IoKind::Write, _) => {
            // SAFETY: as above; the kernel only reads through a write's pointer.
            let pointer = unsafe { request.buf.as_ptr().add(done) };
            opcode::Write::new(fd, pointer, length)
                .offset(offset)
                .build()
        }
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AlignedBuf;

    fn scratch_device(size: u64) -> (tempfile::TempDir, UringDevice) {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("block");
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let device = UringDevice::open(&path, 4, Access::ReadWrite).unwrap();
        (dir, device)
    }

    #[test]
    fn batches_larger_than_the_queue_depth_complete_in_order() {
        let (_dir, device) = scratch_device(1 << 20);
        let device: &dyn BlockDevice = &device;
        let writes = (0..32u8)
            .map(|i| IoRequest::write(u64::from(i) * 4096, AlignedBuf::copy_from(&[i; 4096])))
            .collect();
        device.run(writes).unwrap();
        device.flush().unwrap();
        let reads = (0..32u64)
            .map(|i| IoRequest::read(i * 4096, 4096))
            .collect();
        for (i, request) in device.run(reads).unwrap().iter().enumerate() {
            assert!(
                request.buf.iter().all(|b| usize::from(*b) == i),
                "block {i}"
            );
        }
    }

    #[test]
    fn a_request_past_the_end_fails_without_io() {
        let (_dir, device) = scratch_device(1 << 20);
        let device: &dyn BlockDevice = &device;
        let err = device.read_at(1 << 20, 4096).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let err = device.read_at(100, 4096).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "unaligned: {err}");
    }

    #[test]
    fn many_threads_share_one_ring() {
        let (_dir, device) = scratch_device(4 << 20);
        let device: Arc<dyn BlockDevice> = Arc::new(device);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let device = Arc::clone(&device);
                std::thread::spawn(move || {
                    for round in 0..50u64 {
                        let offset = (t * 64 + round % 64) * 4096;
                        let fill = (t * 50 + round) as u8;
                        device
                            .write_at(offset, AlignedBuf::copy_from(&[fill; 4096]))
                            .unwrap();
                        let back = device.read_at(offset, 4096).unwrap();
                        assert!(back.iter().all(|b| *b == fill));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
