//! Log lines on stderr: one line per event worth an operator's attention, each prefixed
//! `vcpu-scheduler: `. When stderr is the journal (systemd sets `JOURNAL_STREAM` to
//! its device and inode), each line starts with its syslog priority instead, as
//! sd-daemon(3) describes (`<6>` info, `<4>` warning, `<3>` error), so the journal
//! records the level and shows no redundant program name.
//!
//! Written with `write!` on the locked stderr: a log line allocates nothing. The one
//! piece of global state is whether stderr is the journal, set once at start.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JOURNAL: AtomicBool = AtomicBool::new(false);

/// How much a line matters (syslog priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

/// Is `journal_stream` (the value of `JOURNAL_STREAM`, `DEVICE:INODE`) the file our
/// stderr is? Then log lines carry priorities. A stderr redirected elsewhere by the
/// service's own children keeps the plain prefix.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Decide once, at start, how lines are prefixed.
pub fn init_from_env() {
    let v = std::env::var("JOURNAL_STREAM").ok();
    JOURNAL.store(stderr_is_journal(v.as_deref()), Ordering::Relaxed);
}

/// Write one log line. Use the [`info!`](crate::info), [`warn!`](crate::warn) and
/// [`error!`](crate::error) macros rather than this.
pub fn line(level: Level, args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    // A log line that cannot be written has nowhere else to go.
    let _ = if JOURNAL.load(Ordering::Relaxed) {
        writeln!(err, "<{}>{args}", level as u8)
    } else {
        writeln!(err, "vcpu-scheduler: {args}")
    };
}

/// An event worth noting: a move, a domain taken in, a reconnect, a summary.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Info, format_args!($($t)*)) };
}

/// Something went wrong and the daemon goes on (a pin refused, a domain unreadable).
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Warning, format_args!($($t)*)) };
}

/// Something went wrong that stops the daemon, or that an operator must see.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Error, format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("")));
        assert!(!stderr_is_journal(Some("12")));
        assert!(!stderr_is_journal(Some("a:b")));
        // Whatever stderr is in the test harness, a made-up device is not it.
        assert!(!stderr_is_journal(Some("0:1")));
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        let ours = format!("{}:{}", m.dev(), m.ino());
        assert!(stderr_is_journal(Some(&ours)));
    }
}
