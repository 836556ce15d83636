//! Printing structured results as JSON or text.

use clap::ValueEnum;
use serde_json::Value;

/// Output format of structured results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Pretty-printed JSON.
    Json,
    /// `key: value` lines.
    Text,
}

/// Prints `value` (a JSON object) in the chosen format.
pub fn print(format: Format, value: &Value) {
    match format {
        Format::Json => println!("{}", pretty(value)),
        Format::Text => print_text("", value),
    }
}

/// JSON with 4-space indentation, as Ceph's tools print it.
pub fn pretty(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values always serialise");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn print_text(prefix: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                print_text(&name, inner);
            }
        }
        Value::String(text) => println!("{prefix}: {text}"),
        other => println!("{prefix}: {other}"),
    }
}
