//! Files a user names: read only when they are regular files of a bounded size (a FIFO
//! would block the daemon, `/dev/zero` would fill its memory), and paths shown so that
//! a message about one stays on one line.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
/// through the limit, so a file that grows while it is read cannot exhaust memory. The
/// error is the reason alone; the caller names the file.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!(
            "{} bytes, more than the {limit} allowed",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("more than the {limit} bytes allowed"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("vcs-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
        let e = read_regular(&fifo, 10).unwrap_err();
        assert_eq!(e, "not a regular file");
        let e = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(e, "not a regular file");
        let e = read_regular(&dir, 10).unwrap_err();
        assert!(
            e.contains("not a regular file") || e.contains("directory"),
            "{e}"
        );
        let big = dir.join("big");
        std::fs::write(&big, [b'#'; 11]).unwrap();
        let e = read_regular(&big, 10).unwrap_err();
        assert_eq!(e, "11 bytes, more than the 10 allowed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_with_control_characters_are_escaped() {
        assert_eq!(Shown(Path::new("/etc/x")).to_string(), "/etc/x");
        assert_eq!(Shown(Path::new("/tmp/a\nb")).to_string(), "\"/tmp/a\\nb\"");
    }
}
