//! Non-overlapping byte segments by device offset, where a later insert wins.
//!
//! Deferred writes are kept as segments twice: in the overlay that serves reads of bytes not yet
//! applied to the device, and in each apply batch, where overlapping writes of many records
//! coalesce (the later record's bytes win) into a few contiguous device writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::device::AlignedBuf;

/// Bytes `[buf_offset, buf_offset + end - start)` of `buf`, to be found at `[start, end)`.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Device offset one past the last byte.
    pub end: u64,
    /// Which write put it here (a deferred record's sequence).
    pub tag: u64,
    /// The buffer holding the bytes.
    pub buf: Arc<AlignedBuf>,
    /// Where the segment's bytes start within `buf`.
    pub buf_offset: usize,
}

impl Segment {
    /// The segment's bytes, given its start.
    pub fn bytes(&self, start: u64) -> &[u8] {
        let length = (self.end - start) as usize;
        &self.buf[self.buf_offset..self.buf_offset + length]
    }
}

/// Segments keyed by start offset; they never overlap.
#[derive(Debug, Clone, Default)]
pub struct SegmentMap {
    segments: BTreeMap<u64, Segment>,
    bytes: u64,
}

impl SegmentMap {
    /// Places all of `buf` at `start`, replacing whatever covered those bytes.
    pub fn insert(&mut self, start: u64, buf: Arc<AlignedBuf>, tag: u64) {
        let end = start + buf.len() as u64;
        self.cut(start, end);
        self.bytes += end - start;
        self.segments.insert(
            start,
            Segment {
                end,
                tag,
                buf,
                buf_offset: 0,
            },
        );
    }

    /// Removes the bytes of `[start, end)` still carrying `tag` (a later tag stays).
    pub fn remove_tagged(&mut self, start: u64, end: u64, tag: u64) {
        let doomed: Vec<u64> = self
            .overlapping(start, end)
            .filter(|(_, segment)| segment.tag == tag)
            .map(|(s, _)| s)
            .collect();
        for segment_start in doomed {
            let segment = &self.segments[&segment_start];
            let (from, to) = (segment_start.max(start), segment.end.min(end));
            self.cut(from, to);
        }
    }

    /// Copies `[start, start + target.len())` into `target` if segments cover all of it.
    pub fn copy_out(&self, start: u64, target: &mut [u8]) -> bool {
        let end = start + target.len() as u64;
        let mut position = start;
        for (segment_start, segment) in self.overlapping(start, end) {
            if segment_start > position {
                return false;
            }
            let to = segment.end.min(end);
            let skip = (position - segment_start) as usize;
            let bytes = &segment.bytes(segment_start)[skip..skip + (to - position) as usize];
            target[(position - start) as usize..(to - start) as usize].copy_from_slice(bytes);
            position = to;
        }
        position == end
    }

    /// Whether any segment overlaps `[start, end)`.
    pub fn holds_any(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    /// Bytes covered.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True when nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Segments in offset order, as (start, segment).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        self.segments.iter().map(|(start, s)| (*start, s))
    }

    /// Maximal runs of adjacent segments, each at most `run_max` bytes (unless one segment is
    /// longer), as (start, end).
    pub fn runs(&self, run_max: u64) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (start, segment) in self.iter() {
            match runs.last_mut() {
                Some(run) if run.1 == start && segment.end - run.0 <= run_max => {
                    run.1 = segment.end;
                }
                _ => runs.push((start, segment.end)),
            }
        }
        runs
    }

    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        let before = self
            .segments
            .range(..start)
            .next_back()
            .filter(|(_, s)| s.end > start);
        before
            .into_iter()
            .chain(self.segments.range(start..end))
            .map(|(s, segment)| (*s, segment))
    }

    /// Removes every byte of `[start, end)`, trimming segments that stick out.
    fn cut(&mut self, start: u64, end: u64) {
        let touched: Vec<u64> = self.overlapping(start, end).map(|(s, _)| s).collect();
        for segment_start in touched {
            let segment = self.segments.remove(&segment_start).expect("listed above");
            self.bytes -= segment.end - segment_start;
            if segment_start < start {
                let head = Segment {
                    end: start,
                    ..segment.clone()
                };
                self.bytes += start - segment_start;
                self.segments.insert(segment_start, head);
            }
            if segment.end > end {
                let tail = Segment {
                    buf_offset: segment.buf_offset + (end - segment_start) as usize,
                    ..segment
                };
                self.bytes += tail.end - end;
                self.segments.insert(end, tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(byte: u8, length: usize) -> Arc<AlignedBuf> {
        Arc::new(AlignedBuf::copy_from(&vec![byte; length]))
    }

    #[test]
    fn a_later_insert_wins_and_splits_the_earlier_one() {
        let mut map = SegmentMap::default();
        map.insert(0, buf(1, 12288), 1);
        map.insert(4096, buf(2, 4096), 2);
        let mut out = vec![0u8; 12288];
        assert!(map.copy_out(0, &mut out));
        assert_eq!(&out[..4096], &[1; 4096][..]);
        assert_eq!(&out[4096..8192], &[2; 4096][..]);
        assert_eq!(&out[8192..], &[1; 4096][..]);
        assert_eq!(map.bytes(), 12288);
        assert_eq!(map.runs(1 << 20), vec![(0, 12288)]);
        assert_eq!(map.runs(8192), vec![(0, 8192), (8192, 12288)]);
    }

    #[test]
    fn removing_a_tag_keeps_later_bytes() {
        let mut map = SegmentMap::default();
        map.insert(0, buf(1, 8192), 1);
        map.insert(4096, buf(2, 4096), 2);
        map.remove_tagged(0, 8192, 1);
        assert!(!map.holds_any(0, 4096));
        let mut out = vec![0u8; 4096];
        assert!(map.copy_out(4096, &mut out));
        assert_eq!(out, vec![2; 4096]);
        assert!(
            !map.copy_out(0, &mut vec![0u8; 8192]),
            "a gap is not covered"
        );
        assert_eq!(map.bytes(), 4096);
    }
}
