//! Re-opening a lost connection to libvirtd, for the daemon and for `record`: waits of
//! 1, 2, 4 … 30 s in libvirt's event loop (SIGINT/SIGTERM and the watchdog still
//! served), for as long as it takes or until a deadline.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::duration::millis;
use super::notify::Notifier;
use super::signal;
use crate::libvirt::events::{self, FLAGS, Timer, TimerKind};
use crate::libvirt::{Connection, silence};

/// Reconnect waits: 1 s, doubled each attempt, at most 30 s; one log line per attempt
/// while the wait grows, then one every 5 minutes.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
const RECONNECT_LOG_EVERY: Duration = Duration::from_secs(300);

/// How a connection is opened: read-write for the daemon, read-only for `record`.
pub type Open = fn(&str) -> Result<Connection, crate::libvirt::Error>;

/// Re-open `uri` with `open` until it opens, waiting longer after each failure. `None`
/// when a stop was requested meanwhile, or `until` came first. Feeds the watchdog
/// while it waits.
pub fn reconnect(
    uri: &str,
    notify: &mut Notifier,
    open: Open,
    until: Option<Instant>,
) -> Option<Connection> {
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut last_logged: Option<Instant> = None;
    loop {
        let mut wait = backoff.next_wait();
        if let Some(end) = until {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            wait = wait.min(left);
        }
        notify.status(format_args!("waiting for {uri} (next attempt in {wait:?})"));
        if !wait_for(wait, notify) {
            return None;
        }
        match open(uri) {
            // The session's first line says it reconnected, and after how long.
            Ok(c) => return Some(c),
            // SIGINT/SIGTERM ended an open that was waiting on a silent libvirtd.
            Err(_) if signal::stop_requested() => return None,
            Err(e) => {
                // Every attempt while the wait grows, then one line every 5 minutes.
                let growing = wait < RECONNECT_MAX;
                if growing || last_logged.is_none_or(|t| t.elapsed() >= RECONNECT_LOG_EVERY) {
                    // An open the silence timer ended fails with an end of file that
                    // libvirtd never sent: say what happened instead.
                    let e = match silence::fired() {
                        Some(_) => format!("no answer within {} s", silence::LIMIT.as_secs()),
                        None => e.to_string(),
                    };
                    crate::warn!("cannot reconnect to {uri}: {e}; trying again");
                    last_logged = Some(Instant::now());
                }
            }
        }
    }
}

/// Run the event loop for `wait` (feeding the watchdog). `false` if a stop came first.
fn wait_for(wait: Duration, notify: &mut Notifier) -> bool {
    let Ok(_timer) = Timer::add(TimerKind::Retry, millis(wait)) else {
        std::thread::sleep(wait);
        return !signal::stop_requested();
    };
    FLAGS.take_retry();
    loop {
        if signal::stop_requested() {
            return false;
        }
        if events::run_once().is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if FLAGS.take_wake() {
            signal::drain();
        }
        if FLAGS.take_watchdog() {
            notify.watchdog();
        }
        if FLAGS.take_retry() {
            return !signal::stop_requested();
        }
    }
}
