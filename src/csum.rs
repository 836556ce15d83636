//! Checksums of object data: crc32c per checksum chunk.
//!
//! A blob's checksums live in the metadata that references the blob (the extent map), never
//! beside the data, so a misdirected or lost write is caught as surely as a flipped bit.

/// crc32c of one chunk, with the conventional all-ones seed that `crc32c::crc32c` uses.
pub fn chunk_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// crc32c of every `chunk`-sized piece of `bytes` (whose length is a multiple of `chunk`).
pub fn chunk_crcs(bytes: &[u8], chunk: usize) -> Vec<u32> {
    assert!(
        chunk > 0 && bytes.len().is_multiple_of(chunk),
        "data must be whole chunks"
    );
    bytes.chunks_exact(chunk).map(chunk_crc).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 3720 (iSCSI) test vector: 32 bytes of zeros.
        assert_eq!(chunk_crc(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn one_crc_per_chunk() {
        let data = vec![7u8; 3 * 512];
        let crcs = chunk_crcs(&data, 512);
        assert_eq!(crcs.len(), 3);
        assert!(crcs.iter().all(|c| *c == chunk_crc(&data[..512])));
    }
}
