//! Goal: `bstool bench` runs every workload on every engine (briefly, on a tiny store) and its
//! figures are sane: operations happened, at least the requested bytes reached the device,
//! percentiles are ordered, aging reports its rounds, fio comparisons produce ratios. Not speed.

use std::process::Command;

fn run_bench(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bstool"))
        .args([
            "bench",
            "--size",
            "512M",
            "--duration",
            "1",
            "--dataset",
            "32M",
            "--queue-depth",
            "4",
        ])
        .args(["--seed", "42", "--dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("workload"), "a table was printed: {stdout}");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn number(row: &serde_json::Value, field: &str) -> f64 {
    row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {row}"))
}

#[test]
fn every_workload_on_every_engine_reports_sane_figures() {
    let report = run_bench(&[
        "--engine", "bstore", "--engine", "rocksdb", "--engine", "files",
    ]);
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 36, "12 workloads x 3 engines");
    let osd = rows
        .iter()
        .find(|r| r["workload"] == "osd-bench" && r["engine"] == "bstore")
        .unwrap();
    assert_eq!(osd["ops"], 50_000, "Ceph's osd bench: 50,000 writes");
    assert!(
        number(osd, "transactions_per_group") > 1.0,
        "submitted without waiting, they commit in groups: {osd}"
    );
    for row in rows {
        let label = format!("{} on {}", row["workload"], row["engine"]);
        if let Some(reason) = row["skipped"].as_str() {
            let allowed = row["engine"] != "bstore"
                && ["aging", "omap", "clone", "osd-bench"]
                    .contains(&row["workload"].as_str().unwrap());
            assert!(allowed, "{label} skipped: {reason}");
            continue;
        }
        assert!(number(row, "ops") > 0.0, "{label}: no operations");
        assert!(number(row, "cpu_us_per_op") > 0.0, "{label}");
        let latency = &row["latency_us"];
        let p = |q: &str| latency[q].as_f64().unwrap();
        assert!(
            p("p50") <= p("p99") && p("p99") <= p("p99.9") && p("p99.9") <= p("max"),
            "{label}"
        );
        let writes = row["data_write_amplification"].as_f64().is_some();
        if writes && row["workload"] != "omap" {
            let user = number(row, "user_bytes");
            let written = number(row, "data_bytes_written") + number(row, "metadata_bytes_written");
            assert!(
                written >= user,
                "{label}: wrote {written} bytes for {user} requested"
            );
        }
        if row["engine"] == "bstore" {
            assert!(number(row, "peak_rss_mib") > 0.0);
            let score = number(row, "free_score");
            assert!((0.0..=1.0).contains(&score), "{label}: free score {score}");
        }
    }
    let clone = rows
        .iter()
        .find(|r| r["workload"] == "clone" && r["engine"] == "bstore")
        .unwrap();
    let allocated = number(clone, "allocated_bytes_per_op");
    assert!(
        (4096.0..1_000_000.0).contains(&allocated),
        "a clone allocates its overwrite, not a copy of the object: {allocated} bytes"
    );
    let aging = rows
        .iter()
        .find(|r| r["workload"] == "aging" && r["engine"] == "bstore")
        .unwrap();
    assert_eq!(
        aging["aging_rounds"].as_array().unwrap().len(),
        4,
        "fill plus three rounds"
    );
}

#[test]
fn fio_comparisons_give_ratios() {
    assert!(
        Command::new("fio").arg("--version").output().is_ok(),
        "fio is not installed: tools/setup-debian.sh installs it"
    );
    let report = run_bench(&[
        "--compare-fio",
        "--workload",
        "seq-write",
        "--workload",
        "rand-read",
    ]);
    for row in report["results"].as_array().unwrap() {
        let ratio = number(row, "fio_ratio");
        assert!(
            ratio > 0.0 && ratio.is_finite(),
            "{}: ratio {ratio}",
            row["workload"]
        );
        assert!(number(&row["fio"], "iops") > 0.0);
    }
}

#[test]
fn a_scrub_beside_the_workload_reports_what_it_verified() {
    let report = run_bench(&["--scrub", "--workload", "seq-write"]);
    let row = &report["results"].as_array().unwrap()[0];
    let scrub = &row["scrub"];
    assert!(
        number(scrub, "bytes_read") > 0.0,
        "the scrub read nothing: {row}"
    );
    assert_eq!(scrub["bad_chunks"], 0, "{row}");
    let plain = run_bench(&["--workload", "seq-write"]);
    assert!(
        plain["results"][0]["scrub"].is_null(),
        "no scrub, no figure"
    );
}
