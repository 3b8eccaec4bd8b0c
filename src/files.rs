//! Files a user names: read only when they are regular files of a bounded size (a FIFO
//! would block the daemon, `/dev/zero` would fill its memory), written only whole
//! through a fresh temporary file renamed over them ([`ReplacedFile`]: the metrics file,
//! a recording), and paths shown so that a message about one stays on one line.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// A file written whole and replaced, never written in place: a reader sees the previous
/// contents or the new ones, never half of them, even after a crash.
///
/// The program often runs as root and writes into directories others may write too, so
/// the file is never written through a name someone else could have prepared: the text
/// goes to a temporary file created new (`O_CREAT | O_EXCL | O_NOFOLLOW`, so neither a
/// symlink nor an existing file there is ever opened), is synced, and is renamed over the
/// real name (a rename replaces a symlink, it does not follow it).
#[derive(Debug)]
pub struct ReplacedFile {
    path: PathBuf,
    /// `.NAME.RANDOM.tmp` in the same directory: a rename within one filesystem is
    /// atomic, readers that look for `*.prom` or `*.scn` never pick it up, and the random
    /// part is drawn anew whenever the name is found taken.
    tmp: PathBuf,
}

/// Longest file name most filesystems take (`NAME_MAX`), and the room the temporary
/// file's name needs beyond the file's own: `.` before it, `.` and 16 hex digits and
/// `.tmp` after it.
const NAME_MAX: usize = 255;
const TMP_EXTRA: usize = 1 + 1 + 16 + 4;
/// Longest path the kernel takes (`PATH_MAX`).
const PATH_MAX: usize = 4096;

impl ReplacedFile {
    /// Checks `path` before anything starts: its directory must exist, it must name a
    /// file whose temporary name fits the filesystem, and, where it exists, be a regular
    /// file that is neither the settings file (`config_file`) nor this program. A
    /// symbolic link is refused too: it would be replaced by a regular file, not written
    /// through. The error is one line, `invalid WHAT PATH: why`, for the usage message.
    pub fn new(path: &Path, what: &str, config_file: Option<&Path>) -> Result<Self, String> {
        let shown = Shown(path);
        let bad = |why: &str| format!("invalid {what} {shown}: {why}");
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(bad("not a file name"));
        };
        if name.len() + TMP_EXTRA > NAME_MAX {
            return Err(bad(&format!(
                "the file name is {} bytes, the most is {}",
                name.len(),
                NAME_MAX - TMP_EXTRA
            )));
        }
        if path.as_os_str().len() + TMP_EXTRA >= PATH_MAX {
            return Err(bad("the path is too long"));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(bad(&format!("directory {} does not exist", Shown(dir))));
        }
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err(bad("is a symbolic link: name the file itself"));
            }
            if meta.is_dir() {
                return Err(bad("is a directory"));
            }
            if !meta.is_file() {
                return Err(bad("is not a regular file (a device, a socket or a FIFO)"));
            }
            let same = |other: &Path| {
                fs::metadata(other).is_ok_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
            };
            if config_file.is_some_and(same) {
                return Err(bad("is the settings file"));
            }
            if std::env::current_exe().is_ok_and(|exe| same(&exe)) {
                return Err(bad("is this program"));
            }
        }
        Ok(ReplacedFile {
            path: path.to_path_buf(),
            tmp: tmp_name(dir, name),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary name the next [`ReplacedFile::replace`] writes first.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Replace the file with what `write` writes. A temporary name found taken (someone
    /// else's file or link) is left alone and another one drawn: rare, so that
    /// allocation is not a per-write one. On any other failure the temporary file is
    /// removed. Allocation-free otherwise: std passes short paths to the kernel through
    /// a stack buffer.
    pub fn replace(
        &mut self,
        mut write: impl FnMut(&mut fs::File) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut result = replace(&self.tmp, &self.path, &mut write);
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::AlreadyExists)
        {
            let dir = self.tmp.parent().unwrap_or(Path::new("."));
            let name = self
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x");
            self.tmp = tmp_name(dir, name);
            result = replace(&self.tmp, &self.path, &mut write);
        }
        if result
            .as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::AlreadyExists)
        {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

/// `DIR/.NAME.XXXXXXXXXXXXXXXX.tmp` with 64 random bits (std's `RandomState` is keyed
/// from the OS's random source), so another user cannot prepare it in advance.
fn tmp_name(dir: &Path, name: &str) -> PathBuf {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    dir.join(format!(".{name}.{:016x}.tmp", h.finish()))
}

/// Write to a new file at `tmp` (never an existing file, never through a link), sync
/// it, then rename it over `path`. The sync makes the rename publish complete contents
/// even after a crash (ext4 may otherwise commit the rename before the data); measured,
/// it is a small part of the write (see the README).
fn replace(
    tmp: &Path,
    path: &Path,
    write: &mut impl FnMut(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)?;
    write(&mut f)?;
    f.sync_data()?;
    drop(f);
    fs::rename(tmp, path)
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
