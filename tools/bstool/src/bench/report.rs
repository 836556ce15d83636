//! Benchmark results: one row per workload and engine; printed as a table, as Markdown, or as
//! JSON with every figure.

use serde_json::{Value, json};

use super::fio::FioResult;
use super::metrics::Latency;
use super::workload::AgingRound;

/// Everything measured for one workload on one engine.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name.
    pub workload: &'static str,
    /// Engine name.
    pub engine: &'static str,
    /// Operations done.
    pub ops: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// User bytes moved.
    pub user_bytes: u64,
    /// True for workloads that write.
    pub writes: bool,
    /// Latency percentiles.
    pub latency: Latency,
    /// Process CPU (user + system) per operation, microseconds.
    pub cpu_us_per_op: f64,
    /// Object data written to the device.
    pub data_bytes: u64,
    /// Metadata written (KV log, tables, compactions).
    pub metadata_bytes: u64,
    /// Transactions per KV sync (bstore).
    pub transactions_per_sync: Option<f64>,
    /// Peak resident memory of the process so far, MiB.
    pub peak_rss_mib: f64,
    /// Free-space fragmentation score after the workload (bstore).
    pub free_score: Option<f64>,
    /// fio on the same device and pattern, right before.
    pub fio: Option<FioResult>,
    /// Aging rounds.
    pub rounds: Vec<AgingRound>,
    /// Why the workload did not run, if it did not.
    pub skipped: Option<String>,
    /// Change of the store's allocated bytes over the workload (bstore).
    pub allocated_bytes: Option<i64>,
    /// What the scrub beside the workload verified (`--scrub`, bstore).
    pub scrub: Option<ScrubTotals>,
}

/// What an online scrub verified while a workload ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubTotals {
    /// Device bytes read and verified.
    pub bytes_read: u64,
    /// Chunks that failed their checksum.
    pub bad_chunks: u64,
}

impl Row {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    /// MiB per second of user data.
    pub fn mib_per_sec(&self) -> f64 {
        self.user_bytes as f64 / (1 << 20) as f64 / self.seconds.max(1e-9)
    }

    /// Data bytes written per user byte (writes only).
    pub fn data_amplification(&self) -> Option<f64> {
        (self.writes && self.user_bytes > 0)
            .then(|| self.data_bytes as f64 / self.user_bytes as f64)
    }

    /// Metadata bytes written per user byte (writes only).
    pub fn metadata_amplification(&self) -> Option<f64> {
        (self.writes && self.user_bytes > 0)
            .then(|| self.metadata_bytes as f64 / self.user_bytes as f64)
    }

    /// bstore's figure over fio's: bandwidth for sequential patterns, IOPS for random ones.
    pub fn fio_ratio(&self) -> Option<f64> {
        let fio = self.fio?;
        if self.workload.starts_with("seq") {
            Some(self.user_bytes as f64 / self.seconds / fio.bytes_per_sec)
        } else {
            Some(self.ops_per_sec() / fio.iops)
        }
    }

    /// Every figure, as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "workload": self.workload,
            "engine": self.engine,
            "skipped": self.skipped,
            "ops": self.ops,
            "seconds": self.seconds,
            "ops_per_sec": self.ops_per_sec(),
            "mib_per_sec": self.mib_per_sec(),
            "latency_us": {
                "p50": self.latency.p50_us, "p99": self.latency.p99_us,
                "p99.9": self.latency.p999_us, "max": self.latency.max_us,
            },
            "cpu_us_per_op": self.cpu_us_per_op,
            "user_bytes": self.user_bytes,
            "data_bytes_written": self.data_bytes,
            "metadata_bytes_written": self.metadata_bytes,
            "data_write_amplification": self.data_amplification(),
            "metadata_write_amplification": self.metadata_amplification(),
            "transactions_per_group": self.transactions_per_sync,
            "peak_rss_mib": self.peak_rss_mib,
            "free_score": self.free_score,
            "fio": self.fio.map(|f| json!({"iops": f.iops, "bytes_per_sec": f.bytes_per_sec, "p50_us": f.p50_us})),
            "fio_ratio": self.fio_ratio(),
            "metadata_bytes_per_op": self.metadata_bytes as f64 / self.ops.max(1) as f64,
            "allocated_bytes_per_op": self.allocated_bytes.map(|b| b as f64 / self.ops.max(1) as f64),
            "scrub": self.scrub.map(|s| json!({"bytes_read": s.bytes_read, "bad_chunks": s.bad_chunks})),
            "aging_rounds": self.rounds.iter().map(|r| json!({
                "mib_per_sec": r.bytes_per_sec / (1 << 20) as f64,
                "free_score": r.free_score,
            })).collect::<Vec<_>>(),
        })
    }
}

const HEADER: [&str; 13] = [
    "workload",
    "engine",
    "ops/s",
    "MiB/s",
    "p50 us",
    "p99 us",
    "p99.9 us",
    "max us",
    "CPU us/op",
    "data WA",
    "meta WA",
    "txn/group",
    "vs fio",
];

fn cells(row: &Row) -> Vec<String> {
    if let Some(reason) = &row.skipped {
        let mut cells = vec![
            row.workload.to_string(),
            row.engine.to_string(),
            format!("skipped: {reason}"),
        ];
        cells.resize(HEADER.len(), String::new());
        return cells;
    }
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or("-".to_string(), |v| format!("{v:.digits$}"))
    };
    vec![
        row.workload.to_string(),
        row.engine.to_string(),
        format!("{:.0}", row.ops_per_sec()),
        format!("{:.1}", row.mib_per_sec()),
        format!("{:.0}", row.latency.p50_us),
        format!("{:.0}", row.latency.p99_us),
        format!("{:.0}", row.latency.p999_us),
        format!("{:.0}", row.latency.max_us),
        format!("{:.1}", row.cpu_us_per_op),
        optional(row.data_amplification(), 2),
        optional(row.metadata_amplification(), 2),
        optional(row.transactions_per_sync, 1),
        optional(row.fio_ratio(), 2),
    ]
}

/// A plain-text table with aligned columns.
pub fn text_table(rows: &[Row]) -> String {
    let all: Vec<Vec<String>> = std::iter::once(HEADER.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|column| all.iter().map(|r| r[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &all {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i < 2 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A Markdown table (for the README).
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADER.join(" | "),
        "---|".repeat(HEADER.len())
    );
    for row in rows {
        out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
    }
    out
}

/// Lines describing the aging rounds of every row that has them, and the cost of each clone.
pub fn aging_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows
        .iter()
        .filter(|r| r.workload == "clone" && r.skipped.is_none())
    {
        out.push_str(&format!(
            "clone {}: {:.0} clones/s, {:.0} metadata bytes and {:.0} allocated bytes per clone \
             (4 MiB object, 4 KiB overwritten)\n",
            row.engine,
            row.ops_per_sec(),
            row.metadata_bytes as f64 / row.ops.max(1) as f64,
            row.allocated_bytes.unwrap_or(0) as f64 / row.ops.max(1) as f64,
        ));
    }
    for row in rows.iter().filter(|r| !r.rounds.is_empty()) {
        for (round, r) in row.rounds.iter().enumerate() {
            out.push_str(&format!(
                "aging {} round {round}: refill {:.0} MiB/s, free-score {:.4}\n",
                row.engine,
                r.bytes_per_sec / (1 << 20) as f64,
                r.free_score
            ));
        }
    }
    out
}
