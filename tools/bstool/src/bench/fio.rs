//! fio, the reference for what the device can do, run on the same device with the same pattern.
//!
//! fio writes into a free region of the store's own data device (or file): space the store does
//! not use, so the store is unharmed, and the device, its caches and its file system are the
//! ones bstore just used. Each job runs right before the matching bstore workload, so the two
//! figures share the machine's state of the moment.

use crate::output::error_text;
use std::path::PathBuf;
use std::process::Command;

/// One fio job.
#[derive(Debug, Clone)]
pub struct FioJob {
    /// fio's `rw`: `write`, `read`, `randwrite`, `randread`.
    pub pattern: &'static str,
    /// Block size in bytes.
    pub block_size: u64,
    /// I/Os in flight.
    pub queue_depth: usize,
    /// Seconds to run.
    pub runtime_secs: u64,
    /// Device or file.
    pub filename: PathBuf,
    /// Start of the region fio may use.
    pub offset: u64,
    /// Bytes of the region.
    pub size: u64,
    /// fdatasync after every write (with blocking pwrite, as a durable QD1 writer does);
    /// otherwise io_uring, no sync.
    pub sync_each_write: bool,
}

/// What fio measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FioResult {
    /// Operations per second.
    pub iops: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
    /// Median latency of one operation (with `sync_each_write`: the write's completion plus
    /// its fdatasync), microseconds.
    pub p50_us: Option<f64>,
}

/// True when fio is installed.
pub fn available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a job and parses its JSON output.
pub fn run(job: &FioJob) -> Result<FioResult, String> {
    let output = Command::new("fio")
        .arg("--output-format=json")
        .arg("--name=bstool-compare")
        .arg(format!("--filename={}", job.filename.display()))
        .arg(format!("--offset={}", job.offset))
        .arg(format!("--size={}", job.size))
        .arg(format!("--rw={}", job.pattern))
        .arg(format!("--bs={}", job.block_size))
        .arg(format!("--iodepth={}", job.queue_depth))
        .arg(if job.sync_each_write {
            "--ioengine=psync"
        } else {
            "--ioengine=io_uring"
        })
        .args(job.sync_each_write.then_some("--fdatasync=1"))
        .args(["--direct=1", "--time_based", "--group_reporting"])
        .arg(format!("--runtime={}", job.runtime_secs))
        .output()
        .map_err(|e| format!("running fio: {}", error_text(e)))?;
    if !output.status.success() {
        return Err(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse(&output.stdout, job.pattern)
}

fn parse(json: &[u8], pattern: &str) -> Result<FioResult, String> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| format!("fio output is not JSON: {}", error_text(e)))?;
    let direction = if pattern.contains("write") {
        "write"
    } else {
        "read"
    };
    let stats = &value["jobs"][0][direction];
    let number = |field: &str| {
        stats[field]
            .as_f64()
            .ok_or_else(|| format!("fio output lacks {direction}.{field}"))
    };
    let median =
        |stats: &serde_json::Value, field: &str| stats[field]["percentile"]["50.000000"].as_f64();
    let completion = median(stats, "clat_ns");
    let sync = median(&value["jobs"][0]["sync"], "lat_ns").unwrap_or(0.0);
    Ok(FioResult {
        iops: number("iops")?,
        bytes_per_sec: number("bw_bytes")?,
        p50_us: completion.map(|ns| (ns + sync) / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iops_and_bandwidth_of_the_right_direction() {
        let json = br#"{"jobs":[{"read":{"iops":100.5,"bw_bytes":411648},"write":{"iops":7,"bw_bytes":1}}]}"#;
        let result = parse(json, "randread").unwrap();
        assert_eq!(
            result,
            FioResult {
                iops: 100.5,
                bytes_per_sec: 411648.0,
                p50_us: None,
            }
        );
        assert_eq!(parse(json, "write").unwrap().iops, 7.0);
        assert!(parse(b"{}", "write").is_err());
    }

    #[test]
    fn a_synced_writes_median_adds_its_sync() {
        let json = br#"{"jobs":[{"write":{"iops":500,"bw_bytes":2048000,
            "clat_ns":{"percentile":{"50.000000":100000}}},
            "sync":{"lat_ns":{"percentile":{"50.000000":900000}}}}]}"#;
        assert_eq!(parse(json, "randwrite").unwrap().p50_us, Some(1000.0));
    }
}
