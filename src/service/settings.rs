//! The settings file's syntax (`--config FILE`; the service reads
//! `/etc/default/vcpu-scheduler`): `KEY=VALUE` lines, `#` comments, an optional
//! `export `, values optionally in double or single quotes, as a shell would source them.
//!
//! ```text
//! INTERVAL=2
//! CPUS=2-7
//! EXCLUDE_DOMAINS="db-* backup"
//! REPIN_CONFIGURED=no
//! ```
//!
//! This file knows the syntax only: which keys exist and what their values mean is the
//! command line's table (`cli.rs`), so a key and its option are written once. Values are
//! kept as text with their line number, so every error can say `FILE:LINE: reason`.

use std::fmt;
use std::path::Path;

use crate::files::{Shown, read_regular};

/// A settings file larger than this is not a settings file (`/dev/zero`, a log given
/// by mistake): refused before it is read into memory. 1 MiB is ~50,000 lines.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// One `KEY=VALUE` line: the key as written, the value unquoted, and the line number
/// (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A settings file that cannot be used: one line, `FILE:LINE: reason` where a line is
/// at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read and parse the settings file at `path`.
pub fn load(path: &Path) -> Result<Vec<Line>, SettingsError> {
    let shown = Shown(path).to_string();
    let bytes = read_regular(path, MAX_SETTINGS_BYTES)
        .map_err(|e| SettingsError(format!("cannot read settings file {shown}: {e}")))?;
    parse(&bytes, &shown)
}

/// Parse the bytes of a settings file; `file` names it in messages. Every line must be
/// UTF-8 (a file saved with a UTF-8 byte-order mark is read without it).
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<Line>, SettingsError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let at = |msg: String| SettingsError(format!("{file}:{n}: {msg}"));
        let raw = std::str::from_utf8(raw)
            .map_err(|e| at(format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1)))?;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err(at("a NUL byte in the line".into()));
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(format!("expected KEY=VALUE, got {line:?}")));
        };
        let value = unquote(value.trim()).map_err(at)?;
        out.push(Line {
            key: key.trim().to_owned(),
            value: value.to_owned(),
            line: n,
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<&str, String> {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            return rest
                .strip_suffix(q)
                .ok_or_else(|| format!("unterminated quote in {v:?}"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(lines: &[Line]) -> Vec<(&str, &str, usize)> {
        lines
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str(), l.line))
            .collect()
    }

    #[test]
    fn lines_become_keys_and_values() {
        let f = parse(
            b"# comment\nINTERVAL=2\nCPUS=\"2-7\"\nEXCLUDE_DOMAINS='db-* backup'\n\
             \n  export THRESHOLD = 3 \nPOLICY=\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            kv(&f),
            [
                ("INTERVAL", "2", 2),
                ("CPUS", "2-7", 3),
                ("EXCLUDE_DOMAINS", "db-* backup", 4),
                ("THRESHOLD", "3", 6),
                ("POLICY", "", 7),
            ]
        );
    }

    #[test]
    fn bad_lines_fail_with_file_and_line() {
        let e = parse(b"INTERVAL=1\njust words\n", "x").unwrap_err();
        assert_eq!(e.0, "x:2: expected KEY=VALUE, got \"just words\"");
        let e = parse(b"CPUS=\"1-3\n", "x").unwrap_err();
        assert!(e.0.starts_with("x:1: unterminated quote"), "{e}");
        let e = parse(b"INTERVAL=1\nDOMAINS=caf\xE9\n", "x").unwrap_err();
        assert_eq!(e.0, "x:2: not valid UTF-8 (byte 12)");
        let e = parse(b"A=\0\n", "x").unwrap_err();
        assert!(e.0.starts_with("x:1: a NUL"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let f = parse(b"\xEF\xBB\xBFINTERVAL=1\n", "x").unwrap();
        assert_eq!(kv(&f), [("INTERVAL", "1", 1)]);
    }
}
