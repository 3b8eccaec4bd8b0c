//! systemd's notify protocol, spoken directly (sd_notify(3), no library): one datagram
//! per message to the socket named by `NOTIFY_SOCKET`, a path or, with a leading `@`,
//! an abstract socket. The daemon sends `READY=1` once connected, a one-line `STATUS=`
//! each tick, `WATCHDOG=1` at half the period systemd asks for (`WATCHDOG_USEC`), and
//! `STOPPING=1` on the way out.
//!
//! Outside systemd there is no `NOTIFY_SOCKET` and every call does nothing. A socket
//! that cannot be reached is reported once and then left alone: supervision is
//! systemd's business, balancing ours. Status lines are formatted into one reused
//! buffer, so a tick's notification allocates nothing once it has grown.

use std::fmt::{self, Write as _};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// How often systemd wants `WATCHDOG=1`, when it does.
    watchdog: Option<Duration>,
    buf: String,
    warned: bool,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` of this process.
    pub fn from_env() -> Notifier {
        let var = |k| std::env::var(k).ok();
        Notifier::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    /// `socket`: `NOTIFY_SOCKET`; `watchdog_usec`, `watchdog_pid`: as systemd sets them
    /// (a watchdog meant for another process is not ours to feed).
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Notifier {
        let mut n = Notifier {
            target: None,
            watchdog: None,
            buf: String::with_capacity(256),
            warned: false,
        };
        if let Some(s) = socket.filter(|s| !s.is_empty()) {
            match open(s) {
                Ok(t) => n.target = Some(t),
                Err(e) => n.warn(s, &e),
            }
        }
        let ours = watchdog_pid.is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        n.watchdog = watchdog_usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        n
    }

    /// How often to send `WATCHDOG=1`: half the period systemd asked for.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    pub fn ready(&mut self) {
        self.send(format_args!("READY=1"));
    }

    pub fn watchdog(&mut self) {
        if self.watchdog.is_some() {
            self.send(format_args!("WATCHDOG=1"));
        }
    }

    /// A reload (SIGHUP) began; [`Notifier::ready`] says it is done. systemd shows the
    /// unit as "reloading" in between.
    pub fn reloading(&mut self) {
        self.send(format_args!("RELOADING=1"));
    }

    pub fn stopping(&mut self) {
        self.send(format_args!("STOPPING=1"));
    }

    /// `STATUS=` with one line of text (newlines would end it early: replaced).
    pub fn status(&mut self, args: fmt::Arguments<'_>) {
        self.send(format_args!("STATUS={args}"));
    }

    fn send(&mut self, msg: fmt::Arguments<'_>) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        self.buf.clear();
        let _ = self.buf.write_fmt(msg);
        if self.buf.contains('\n') {
            self.buf = self.buf.replace('\n', " ");
        }
        match sock.send_to_addr(self.buf.as_bytes(), addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                let what = format!("{addr:?}");
                self.warn(&what, &e);
            }
        }
    }

    /// One line, the first time only: systemd may be gone, we go on.
    fn warn(&mut self, socket: &str, e: &dyn fmt::Display) {
        if !self.warned {
            self.warned = true;
            crate::warn!(
                "cannot notify systemd through NOTIFY_SOCKET {socket:?}: {e}; going on without it"
            );
        }
    }
}

fn open(s: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match s.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(s)?,
    };
    let sock = UnixDatagram::unbound()?;
    // Never block the loop on a busy reader: a datagram socket's queue holds only a
    // few messages (net.unix.max_dgram_qlen, 10 by default), and a daemon stuck in
    // sendto would miss SIGTERM. A message that does not fit is dropped; the next tick
    // sends a fresh one.
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("vcs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::new(path.to_str(), Some("2000000"), None);
        assert!(n.target.is_some());
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(1)));
        n.ready();
        n.status(format_args!("tick 3: sigma 1.0\nsecond line"));
        n.watchdog();
        n.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let k = rx.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1",
                "STATUS=tick 3: sigma 1.0 second line",
                "WATCHDOG=1",
                "STOPPING=1"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        let name = format!("vcs-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let mut n = Notifier::new(Some(&format!("@{name}")), None, None);
        n.ready();
        n.watchdog(); // no WATCHDOG_USEC: not sent
        n.stopping();
        let mut buf = [0u8; 64];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STOPPING=1");
    }

    #[test]
    fn no_socket_or_a_watchdog_for_another_pid_means_nothing_sent() {
        let n = Notifier::new(None, Some("1000"), None);
        assert!(n.target.is_none());
        let n = Notifier::new(Some("/nonexistent/sock"), Some("1000"), Some("1"));
        assert_eq!(
            n.watchdog_every(),
            None,
            "WATCHDOG_PID names another process"
        );
        let mut n = Notifier::new(Some("/nonexistent/dir/sock"), None, None);
        n.ready(); // an unreachable socket: one warning, no panic
        n.ready();
        assert!(n.warned);
    }
}
