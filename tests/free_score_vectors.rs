//! Goal: `free-score --variant pacific` reproduces, to the last printed digit, the fragmentation
//! ratings a real Ceph 16.2.15 OSD printed for its own free-dump output (tests/vectors/).

use bstore::ScoreVariant;
use bstore::alloc::{format_g17, fragmentation_score};

/// Strips the `block:` line ceph-bluestore-tool prints before the JSON.
fn json_after_label(text: &str) -> serde_json::Value {
    let json = text.split_once('\n').expect("label line then JSON").1;
    serde_json::from_str(json).expect("valid JSON")
}

fn hex(value: &serde_json::Value) -> u64 {
    let text = value.as_str().expect("hex string");
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex number")
}

/// The rating exactly as printed (the digits, not a re-parsed float).
fn printed_rating(text: &str) -> String {
    let (_, rest) = text
        .split_once("\"fragmentation_rating\": ")
        .expect("rating field");
    rest.lines().next().expect("rating line").trim().to_string()
}

fn check(dump_file: &str, score_file: &str) {
    let dump = json_after_label(&std::fs::read_to_string(dump_file).unwrap());
    let alloc_unit = dump["alloc_unit"].as_u64().unwrap();
    let lengths: Vec<u64> = dump["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|extent| hex(&extent["length"]))
        .collect();
    let expected = printed_rating(&std::fs::read_to_string(score_file).unwrap());
    let pacific = fragmentation_score(ScoreVariant::Pacific, alloc_unit, lengths.iter().copied());
    assert_eq!(format_g17(pacific), expected, "{dump_file}");
    let reef = fragmentation_score(ScoreVariant::Reef, alloc_unit, lengths.iter().copied());
    assert!(
        (0.0..=1.0).contains(&reef),
        "reef score {reef} out of range"
    );
    assert_ne!(reef, pacific, "the two forms differ on real data");
}

#[test]
fn fresh_osd_matches_ceph() {
    check(
        "tests/vectors/ceph-16.2.15-free-dump-fresh.json",
        "tests/vectors/ceph-16.2.15-free-score-fresh.json",
    );
}

#[test]
fn benchmarked_osd_matches_ceph() {
    check(
        "tests/vectors/ceph-16.2.15-free-dump-postbench.json",
        "tests/vectors/ceph-16.2.15-free-score-postbench.json",
    );
}
