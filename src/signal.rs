//! SIGINT and SIGTERM end the loop cleanly: the handler only sets a flag, and the
//! daemon sleeps in short slices so it notices within a fraction of a second even
//! with a long INTERVAL. Then handles are closed and the exit code is 0.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe, cannot panic.
    STOP.store(true, Ordering::Relaxed);
}

/// Route SIGINT and SIGTERM to the stop flag.
pub fn install() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is a valid value (no flags, empty mask, no
        // handler) that we fill in before use.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: sa.sa_mask is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: sa is fully initialised; the handler is async-signal-safe and 'static;
        // we do not ask for the old action.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleep for `d` unless a stop is requested first. Returns `false` if interrupted.
pub fn sleep(d: Duration) -> bool {
    const SLICE: Duration = Duration::from_millis(50);
    let end = Instant::now() + d;
    loop {
        if stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(SLICE));
    }
}
