//! Printing results: JSON for scripts, lines for people, and never a panic on a closed pipe.
//!
//! Every byte bstool prints on stdout goes through [`Out`]. When the reader goes away
//! (`bstool fsck | head -1`), the write fails with `EPIPE` (Rust ignores `SIGPIPE`); `Out` then
//! drops the rest quietly, and the command finishes with its own exit status, so a script still
//! learns what fsck found. Long listings check [`Out::is_closed`] to stop early.
//!
//! `--format text` prints one line per item: nested fields as `a.b: value`, an array of records
//! as one `name[i]: key=value ...` line per element, and byte counts with a binary-unit size
//! beside them (`8589934592 (8.0 GiB)`). Names and values that are not plain printable text
//! are escaped (`\xNN`, `\\`), so each item stays on its own line.

use std::io::{self, Write};

use clap::ValueEnum;
use serde_json::Value;

/// Output format of structured results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Pretty-printed JSON.
    Json,
    /// Lines for people: `key: value`, one item per line.
    Text,
}

/// Standard output that a closed pipe cannot crash.
pub struct Out {
    stdout: io::StdoutLock<'static>,
    closed: bool,
}

impl Out {
    /// Locks standard output for the command.
    pub fn new() -> Out {
        Out {
            stdout: io::stdout().lock(),
            closed: false,
        }
    }

    /// True once the reader has gone away: nothing more will be printed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes bytes verbatim. A closed pipe is not an error; any other failure is.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let result = self.stdout.write_all(bytes);
        self.settle(result)
    }

    /// Writes one line.
    pub fn line(&mut self, text: &str) -> Result<(), String> {
        self.bytes(text.as_bytes())?;
        self.bytes(b"\n")
    }

    /// Flushes what is buffered (a closed pipe is not an error).
    pub fn flush(&mut self) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let result = self.stdout.flush();
        self.settle(result)
    }

    /// Prints a JSON value in the chosen format.
    pub fn value(&mut self, format: Format, value: &Value) -> Result<(), String> {
        match format {
            Format::Json => self.line(&pretty(value)),
            Format::Text => {
                let mut lines = Vec::new();
                text_lines("", value, &mut lines);
                lines.iter().try_for_each(|line| self.line(line))
            }
        }
    }

    fn settle(&mut self, result: io::Result<()>) -> Result<(), String> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(format!("writing to standard output: {}", error_text(e))),
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        // Whatever is left after the command's own flush; a failure here has nowhere to go.
        let _ = self.flush();
    }
}

/// An error and each of its causes, joined by ": " (bstore's errors leave their cause to
/// `source()` rather than repeating it in their own message).
pub fn error_text<E: std::error::Error>(error: E) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// A line on standard error that never panics (stderr may be closed too).
pub fn warn(message: &str) {
    let _ = writeln!(io::stderr(), "bstool: {message}");
}

/// JSON with 4-space indentation, as Ceph's tools print it.
pub fn pretty(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    match serde::Serialize::serialize(value, &mut serializer) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => value.to_string(), // unreachable for a Value; no reason to panic over it
    }
}

/// Text lines of `value` under `prefix`.
fn text_lines(prefix: &str, value: &Value, lines: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                text_lines(&name, inner, lines);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                lines.push(format!("{prefix}[{index}]: {}", one_line(prefix, item)));
            }
        }
        scalar => lines.push(format!("{prefix}: {}", scalar_text(prefix, scalar))),
    }
}

/// One array element on one line: a record as `key=value` pairs, anything else as a scalar.
fn one_line(prefix: &str, item: &Value) -> String {
    match item {
        Value::Object(map) => map
            .iter()
            .map(|(key, inner)| match inner {
                Value::String(text) if text.contains(' ') || text.is_empty() => {
                    format!("{key}=\"{}\"", scalar_text(key, inner).replace('"', "\\\""))
                }
                other => format!("{key}={}", scalar_text(key, other)),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(_) => item.to_string(),
        scalar => scalar_text(prefix, scalar),
    }
}

fn scalar_text(key: &str, value: &Value) -> String {
    match value {
        // Escaped, so a value never breaks the line or reaches the terminal as a control code.
        Value::String(text) => escape(text.as_bytes()),
        Value::Number(number) => match number.as_u64() {
            Some(bytes) if is_size_field(key) && bytes >= 1024 => {
                format!("{bytes} ({})", human_bytes(bytes))
            }
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// Fields that count bytes, by the project's naming rule (units last).
fn is_size_field(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key);
    key.ends_with("bytes")
        || key.ends_with("_size")
        || matches!(key, "size" | "length" | "capacity" | "alloc_unit")
}

/// `bytes` in binary units with one decimal: `4.0 KiB`, `8.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Bytes as one line of text: printable UTF-8 as is; control bytes, backslashes and invalid
/// UTF-8 escaped as `\xNN` / `\\` (so names and values never break a line or a field).
pub fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        text.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => text.push(c),
            }
        }
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_puts_each_item_on_its_own_line_with_sizes_for_people() {
        let value = json!({
            "clean": false,
            "total_bytes": 8u64 << 30,
            "objects": 3,
            "errors": [
                {"check": "stats.mismatch", "detail": "statfs record says 2"},
                {"check": "space.leak", "detail": "unit 0x2000"},
            ],
        });
        let mut lines = Vec::new();
        text_lines("", &value, &mut lines);
        assert_eq!(
            lines,
            vec![
                "clean: false",
                "total_bytes: 8589934592 (8.0 GiB)",
                "objects: 3",
                "errors[0]: check=stats.mismatch detail=\"statfs record says 2\"",
                "errors[1]: check=space.leak detail=\"unit 0x2000\"",
            ]
        );
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
    }

    #[test]
    fn escaping_keeps_one_item_on_one_line() {
        assert_eq!(escape(b"plain name"), "plain name");
        assert_eq!(escape("ünïcode".as_bytes()), "ünïcode");
        assert_eq!(escape(b"tab\there\nnew"), "tab\\x09here\\x0anew");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(&[0xff, b'a', 0xc3]), "\\xffa\\xc3");
    }
}
