//! The signals a daemon is sent, as flags the event loop reads:
//! - SIGINT and SIGTERM: stop cleanly (handles closed, `STOPPING=1`, exit 0);
//! - SIGHUP: read the settings again (`systemctl reload`);
//! - SIGUSR1 and SIGUSR2: log the summary line now.
//!
//! The handler only sets a flag and writes a byte to a pipe whose read end the event
//! loop watches, so the loop wakes at once whatever INTERVAL is. [`install`] runs first
//! thing in `main`, before the command line is read, so no signal in the first
//! milliseconds can end the process by its default action. Every other signal keeps
//! its default: SIGQUIT and SIGABRT dump core, SIGKILL and SIGSTOP cannot be caught,
//! SIGPIPE is ignored (Rust's runtime does that; a closed stdout is an error we handle).
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static SUMMARY: AtomicBool = AtomicBool::new(false);
/// The self-pipe: read end for the event loop, write end for the handler; -1 until set.
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics, write(2) and (in stop_waiting) timer_settime(2): async-signal-safe,
    // none can panic.
    match sig {
        libc::SIGHUP => RELOAD.store(true, Ordering::Relaxed),
        libc::SIGUSR1 | libc::SIGUSR2 => SUMMARY.store(true, Ordering::Relaxed),
        _ => {
            STOP.store(true, Ordering::Relaxed);
            // A libvirt call the thread may be blocked in would hold the stop up (GLib
            // retries the interrupted poll): have it ended if it does not return
            // within half a second.
            crate::libvirt::silence::stop_waiting();
        }
    }
    let fd = WAKE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: fd is the write end of our non-blocking pipe; one byte from the stack.
        // A full pipe (EAGAIN) is fine: the loop is already woken.
        let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// The signals [`install`] handles.
const HANDLED: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Create the wake-up pipe and route the handled signals (`HANDLED`: SIGINT, SIGTERM,
/// SIGHUP, SIGUSR1, SIGUSR2) to their flags.
pub fn install() -> io::Result<()> {
    if WAKE_READ.load(Ordering::Relaxed) < 0 {
        let mut fds = [-1; 2];
        // SAFETY: fds is a writable array of two ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WAKE_READ.store(fds[0], Ordering::Relaxed);
        WAKE_WRITE.store(fds[1], Ordering::Relaxed);
    }
    for sig in HANDLED {
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

/// SIGHUP came since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::Relaxed)
}

/// SIGUSR1 or SIGUSR2 came since the last call.
pub fn take_summary() -> bool {
    SUMMARY.swap(false, Ordering::Relaxed)
}

/// The descriptor to watch for readability: readable once a handled signal came.
pub fn wake_fd() -> Option<i32> {
    let fd = WAKE_READ.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Empty the wake-up pipe (the flags stay set until taken).
pub fn drain() {
    let Some(fd) = wake_fd() else { return };
    let mut buf = [0u8; 64];
    // SAFETY: fd is our non-blocking read end; buf is 64 writable bytes on the stack.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
