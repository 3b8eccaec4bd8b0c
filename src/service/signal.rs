//! SIGINT and SIGTERM end the daemon cleanly. The handler only sets a flag and writes a
//! byte to a pipe whose read end the event loop watches, so the loop wakes at once
//! whatever INTERVAL is; then handles are closed and the exit code is 0.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// The self-pipe: read end for the event loop, write end for the handler; -1 until set.
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store and write(2): both async-signal-safe, neither can panic.
    STOP.store(true, Ordering::Relaxed);
    let fd = WAKE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: fd is the write end of our non-blocking pipe; one byte from the stack.
        // A full pipe (EAGAIN) is fine: the loop is already woken.
        let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Create the wake-up pipe and route SIGINT and SIGTERM to the stop flag.
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

/// The descriptor to watch for readability: readable once a stop was requested.
pub fn wake_fd() -> Option<i32> {
    let fd = WAKE_READ.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Empty the wake-up pipe (the stop flag stays set).
pub fn drain() {
    let Some(fd) = wake_fd() else { return };
    let mut buf = [0u8; 64];
    // SAFETY: fd is our non-blocking read end; buf is 64 writable bytes on the stack.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
