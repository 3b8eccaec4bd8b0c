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
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

/// A path as it may be shown on one log line: as written, or quoted and escaped when it
/// holds a control character (a newline would split the line) or is not UTF-8.
pub struct Shown<'a>(pub &'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_str() {
            Some(s) if !s.chars().any(char::is_control) => f.write_str(s),
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// Read a regular file of at most `limit` bytes. Opened without blocking, so a FIFO
/// (which would wait for a writer) is refused like a device or a directory, and read
/// through a limit, so a file that grows while read cannot exhaust memory. `what`
/// names the file in messages ("settings file", "scenario").
pub fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let shown = Shown(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot read {what} {shown}: not a regular file"));
    }
    if meta.len() > limit {
        return Err(format!(
            "cannot read {what} {shown}: {} bytes, more than the {limit} allowed",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "cannot read {what} {shown}: more than the {limit} bytes allowed"
        ));
    }
    Ok(bytes)
}

/// Read and parse the settings file at `path`.
pub fn load(path: &Path) -> Result<Vec<Line>, SettingsError> {
    let bytes = read_regular(path, MAX_SETTINGS_BYTES, "settings file").map_err(SettingsError)?;
    parse(&bytes, &Shown(path).to_string())
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

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("vcs-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
        let e = read_regular(&fifo, 10, "settings file").unwrap_err();
        assert!(e.ends_with("not a regular file"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 10, "settings file").unwrap_err();
        assert!(e.ends_with("not a regular file"), "{e}");
        let e = read_regular(&dir, 10, "settings file").unwrap_err();
        assert!(
            e.contains("not a regular file") || e.contains("directory"),
            "{e}"
        );
        let big = dir.join("big");
        std::fs::write(&big, [b'#'; 11]).unwrap();
        let e = read_regular(&big, 10, "settings file").unwrap_err();
        assert!(e.ends_with("11 bytes, more than the 10 allowed"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_with_control_characters_are_escaped() {
        assert_eq!(Shown(Path::new("/etc/x")).to_string(), "/etc/x");
        assert_eq!(Shown(Path::new("/tmp/a\nb")).to_string(), "\"/tmp/a\\nb\"");
    }
}
