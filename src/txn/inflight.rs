//! Data of transactions not yet durable, readable from memory.
//!
//! A transaction is visible the moment it is submitted, but its new data reaches the device
//! later. Until its commit finishes, each new data buffer is kept here, shared with the device
//! write, so reads and read-modify-writes of that data are served from memory instead of waiting
//! for the commit (BlueStore keeps such "writing" buffers in its buffer cache for the same
//! reason). A buffer is dropped when its transaction finishes: by then the data is on the device.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::device::AlignedBuf;

/// In-flight data buffers by device offset.
#[derive(Debug, Default)]
pub struct InflightData {
    buffers: Mutex<BTreeMap<u64, Arc<AlignedBuf>>>,
}

impl InflightData {
    /// Registers a buffer about to be written at `device_offset`.
    pub fn insert(&self, device_offset: u64, buf: Arc<AlignedBuf>) {
        let previous = self.buffers.lock().insert(device_offset, buf);
        assert!(
            previous.is_none(),
            "two in-flight writes to {device_offset:#x}"
        );
    }

    /// Forgets buffers whose data is now durable (or whose transaction failed).
    pub fn remove(&self, device_offsets: &[u64]) {
        let mut buffers = self.buffers.lock();
        for offset in device_offsets {
            buffers.remove(offset);
        }
    }

    /// Fills `target` from an in-flight buffer covering `[device_offset, +target.len())`.
    pub fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool {
        let buffers = self.buffers.lock();
        let Some((start, buf)) = buffers.range(..=device_offset).next_back() else {
            return false;
        };
        let skip = (device_offset - start) as usize;
        match buf.get(skip..skip + target.len()) {
            Some(bytes) => {
                target.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Whether a buffer overlaps `[device_offset, +length)`.
    pub fn holds_any(&self, device_offset: u64, length: u64) -> bool {
        let buffers = self.buffers.lock();
        let end = device_offset + length;
        let before = buffers.range(..=device_offset).next_back();
        before.is_some_and(|(start, buf)| start + buf.len() as u64 > device_offset)
            || buffers.range(device_offset + 1..end).next().is_some()
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.buffers.lock().len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_ranges_are_served_and_others_are_not() {
        let inflight = InflightData::default();
        inflight.insert(8192, Arc::new(AlignedBuf::copy_from(&[7u8; 8192])));
        let mut target = [0u8; 100];
        assert!(inflight.copy_out(8192 + 4000, &mut target));
        assert_eq!(target, [7u8; 100]);
        assert!(
            !inflight.copy_out(8192 + 8150, &mut target),
            "runs past the buffer"
        );
        assert!(!inflight.copy_out(4096, &mut target), "before any buffer");
        inflight.remove(&[8192]);
        assert!(!inflight.copy_out(8192, &mut target));
    }
}
