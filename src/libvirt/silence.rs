//! A libvirtd that stops answering while the one thread waits in a call: noticed within
//! 15 s (after [`LIMIT`], 14 s, of silence), and the call ended by closing the
//! connection's socket under libvirt, so the call fails as if libvirtd had closed it and
//! the daemon reconnects.
//!
//! # Why libvirt's keepalive does not do it (libvirt 9.0.0, Debian 12)
//!
//! `virConnectSetKeepAlive(conn, 5, 2)` succeeds (returns 0) and starts a keepalive
//! whose timer lives in the *application's* event loop (`virKeepAliveStart`,
//! src/rpc/virkeepalive.c:277, `virEventAddTimeout(..., virKeepAliveTimer, ...)`).
//! That loop is ours, run by this one thread in `virEventRunDefaultImpl`, so the timer
//! cannot fire while the thread is inside a call. libvirt's design covers that case in
//! two ways, and neither works here:
//! - With the event loop in *another* thread, `virKeepAliveTimer` would send its ping
//!   with `virNetClientSendNonBlock`, which wakes the thread holding the call
//!   (`virNetClientIO`: "Force other thread to wakeup from poll",
//!   `g_main_loop_quit`), and on death `virNetClientKeepAliveDeadCB` ->
//!   `virNetClientCloseInternal` quits the caller's loop. This needs a second thread.
//! - The thread in the call is meant to run the keepalive itself:
//!   `virNetClientIOEventLoop` (src/rpc/virnetclient.c:1680-1682) computes
//!   `timeout = virKeepAliveTimeout(client->keepalive)` "so that we can send keepalive
//!   request in time", and after each wake-up calls `virKeepAliveTrigger` (1731), which
//!   sends the pings and marks the connection closed after `count` unanswered ones.
//!   But since the move from poll() to a private GMainLoop, `timeout` is never used:
//!   the loop only watches the socket (1696, `virEventGLibAddSocketWatch`) and sleeps
//!   in `g_main_loop_run(client->eventLoop)` (1723) with no timeout source; gdb during
//!   the hang shows `poll(fds, nfds=2, timeout=-1)` under `virConnectNumOfDomains`. A
//!   silent libvirtd never makes the socket ready, so `virKeepAliveTrigger` is never
//!   reached. (Even if it were used, `virKeepAliveTimeout` subtracts the monotonic
//!   `intervalStart` from `time(NULL)`, virkeepalive.c:323, and would return 0.) Before
//!   the GLib conversion the same loop did `poll(fds, 2, timeout)`.
//!
//! No keepalive parameter changes that, and nothing at the socket level reports the
//! hang: a stopped libvirtd's socket still accepts our requests and pings into its
//! buffers, and even `connect()` succeeds into its listen backlog; only answers stop.
//!
//! # What is done instead, single-threaded
//!
//! A POSIX timer raises SIGALRM while a call waits. A signal alone does not end the
//! call: GLib ignores `EINTR` from poll (gmain.c:4553-4555, `g_main_context_iterate`)
//! and `g_main_loop_run` loops while the loop is running. `virConnectClose` and every
//! other libvirt function are not async-signal-safe. What the handler may do is
//! `shutdown(2)` (async-signal-safe) on the connection's socket: the descriptor stays
//! valid and owned by libvirt, poll reports POLLIN|POLLHUP, and libvirt takes its own
//! end-of-file path (`virNetClientIOHandleInput` fails, `virNetClientMarkClose(EOF)`,
//! the close callback runs, the call returns -1 "End of file while reading data"),
//! exactly as if libvirtd had closed the connection. The daemon's reconnect loop then
//! re-opens it.
//!
//! "Silent" is counted the way libvirt's keepalive counts it: from the last time
//! anything arrived from libvirtd, not from the start of the call. Three things say
//! libvirtd was heard: a call returned; while idle in the event loop, the socket became
//! readable (a watch on it beside libvirt's own; libvirt's keepalive makes a healthy
//! libvirtd send something every 5 s); and, inside a long call, the process read bytes
//! (the `rchar` counter of `/proc/self/io`, sampled by the handler every second):
//! libvirtd's own keepalive pings a client it has not heard from for 5 s, and libvirt
//! answers inside the call, so a libvirtd that is slow (a pin waiting for a domain's
//! job lock) but alive keeps its connection. Only where the server sends no pings
//! (`keepalive_interval = -1` in libvirtd.conf) is a call that takes longer than 14 s
//! treated as silence.
//!
//! SIGINT/SIGTERM use the same way out ([`stop_waiting`]): a call still waiting half a
//! second after the stop was requested is ended at once, so the daemon stops within a
//! second even while libvirtd is silent.
//!
//! The socket is found as the one socket `virConnectOpen` created (descriptors are
//! compared before and after); during the open itself the handler shuts down the
//! sockets created since the open began. Everything here does nothing until
//! [`enable`] is called (the daemon does, and `tests/alloc_per_tick.rs`; `record` and
//! tests that open connections in several threads do not), and in steady state costs two clock reads and a few atomic
//! operations per call, no allocation, and about one signal every 5 s.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::time::Duration;

use super::ffi;

/// How long libvirtd may send nothing while we wait for it: 14 s. The promise is the
/// keepalive's, 15 s (a probe every 5 s given up after 2 unanswered ones, 5 s × (2 + 1)),
/// from the silence to the log line; 1 s is left for the timer's one-second sampling,
/// the call's return and the line itself. (With the limit at 15 s, a lab-host run read
/// 15.1 s from SIGSTOP to the journal's line when libvirtd had answered just before.)
pub const LIMIT: Duration = Duration::from_secs(14);
const LIMIT_MS: u64 = 14_000;
/// The first signal after a call starts comes this late (or at the limit if sooner):
/// calls take milliseconds, so a steady daemon sees one signal per 5 s at most.
const FIRST_MS: u64 = 5_000;
/// Inside a call that lasts, how often the handler samples what the process read.
const SAMPLE_MS: u64 = 1_000;
/// After a stop was requested, a call still waiting this long is ended the same way,
/// so the daemon stops within a second even while libvirtd says nothing.
const STOP_GRACE_MS: u64 = 500;
/// Descriptors below this are compared around an open (a daemon has a dozen).
const FD_BITS: usize = 1024;
/// The most sockets one connection is expected to create (one, for every transport).
const MAX_SOCKETS: usize = 4;
/// The most sockets open before an open that are remembered by identity.
const MAX_OLD: usize = 64;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The POSIX timer (`timer_t`), created once by [`enable`].
static TIMER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
/// Whether the timer is set to fire; cleared by the handler when it lets it lapse.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Calls waiting for libvirtd right now (guards nest within one function).
static DEPTH: AtomicU32 = AtomicU32::new(0);
/// CLOCK_MONOTONIC milliseconds when libvirtd was last heard from.
static HEARD_MS: AtomicU64 = AtomicU64::new(0);
/// Whether libvirt's keepalive runs on the connection, so that a healthy libvirtd is
/// heard from while we idle; without it, silence is counted from each call's start.
static KEEPALIVE: AtomicBool = AtomicBool::new(false);
/// The silence, in ms, at which the handler closed the socket; 0 while it has not.
static FIRED_MS: AtomicU64 = AtomicU64::new(0);
/// SIGINT/SIGTERM came ([`stop_waiting`]): calls get [`STOP_GRACE_MS`], not [`LIMIT`].
static STOPPING: AtomicBool = AtomicBool::new(false);
/// `/proc/self/io`, opened once; -1 when it cannot be read.
static PROC_IO: AtomicI32 = AtomicI32::new(-1);
/// The last sample of `rchar`, plus the bytes that reading it added; its time; valid?
static SAMPLE_RCHAR: AtomicU64 = AtomicU64::new(0);
static SAMPLE_MS_AT: AtomicU64 = AtomicU64::new(0);
static SAMPLE_OK: AtomicBool = AtomicBool::new(false);
/// A `virConnectOpen` is under way; `BEFORE` has the descriptors open when it began.
static OPENING: AtomicBool = AtomicBool::new(false);
static BEFORE: [AtomicU64; FD_BITS / 64] = [const { AtomicU64::new(0) }; FD_BITS / 64];
/// Device and inode of the sockets open when the open began (the first [`MAX_OLD`]):
/// a descriptor created since that refers to one of them is a duplicate (our stderr,
/// dup'ed while the open silences it, is the journal's socket under systemd), never a
/// connection to libvirtd, and is left alone.
static OLD_DEV: [AtomicU64; MAX_OLD] = [const { AtomicU64::new(0) }; MAX_OLD];
static OLD_INO: [AtomicU64; MAX_OLD] = [const { AtomicU64::new(0) }; MAX_OLD];
static OLD_N: AtomicUsize = AtomicUsize::new(0);
/// The current connection's sockets: descriptor (-1: none), device and inode (checked
/// before a shutdown, so a descriptor number reused for something else is left alone).
static SOCK_FD: [AtomicI32; MAX_SOCKETS] = [const { AtomicI32::new(-1) }; MAX_SOCKETS];
static SOCK_DEV: [AtomicU64; MAX_SOCKETS] = [const { AtomicU64::new(0) }; MAX_SOCKETS];
static SOCK_INO: [AtomicU64; MAX_SOCKETS] = [const { AtomicU64::new(0) }; MAX_SOCKETS];
/// Which open the slots above belong to, so an older connection's drop leaves them.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Install the SIGALRM handler and create the timer. Until this is called every guard
/// here does nothing. Call it from the thread that makes the libvirt calls, before the
/// first connection is opened; later calls (from any thread) only return the first
/// one's result.
pub fn enable() -> io::Result<()> {
    static ONCE: Once = Once::new();
    static ERRNO: AtomicI32 = AtomicI32::new(0);
    ONCE.call_once(|| {
        if let Err(e) = set_up() {
            ERRNO.store(e.raw_os_error().unwrap_or(libc::EINVAL), Ordering::Relaxed);
        }
    });
    match ERRNO.load(Ordering::Relaxed) {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn set_up() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value that we fill in before use.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_alarm as extern "C" fn(c_int) as libc::sighandler_t;
    // Restart interrupted system calls where the kernel can: the signal is for the one
    // blocked poll, whose EINTR GLib ignores anyway.
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa.sa_mask is a valid sigset_t owned by us.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: sa is fully initialised; the handler is 'static, async-signal-safe (see
    // on_alarm) and does not unwind; we do not ask for the old action.
    if unsafe { libc::sigaction(libc::SIGALRM, &sa, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sigevent is valid; we set the fields SIGEV_SIGNAL reads.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = libc::SIGALRM;
    let mut timer: libc::timer_t = ptr::null_mut();
    // SAFETY: sev is initialised and timer is a valid out-pointer for the new id.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
        return Err(io::Error::last_os_error());
    }
    TIMER.store(timer, Ordering::Relaxed);
    // SAFETY: a NUL-terminated literal path; the descriptor is ours for the process.
    let fd = unsafe { libc::open(c"/proc/self/io".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    PROC_IO.store(fd, Ordering::Relaxed);
    HEARD_MS.store(now_ms(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// How long libvirtd had been silent when the handler closed the connection, if it
/// did since the last connection was opened.
pub fn fired() -> Option<Duration> {
    match FIRED_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// A stop was requested (called from the SIGINT/SIGTERM handler): a call that is still
/// waiting for libvirtd half a second from now, or any call made after, is ended as a
/// silent one would be, without the "did not answer" report. Async-signal-safe.
pub fn stop_waiting() {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    STOPPING.store(true, Ordering::SeqCst);
    if DEPTH.load(Ordering::SeqCst) > 0 {
        ARMED.store(true, Ordering::SeqCst);
        arm(STOP_GRACE_MS);
    }
}

/// Held while a call waits for libvirtd (see [`waiting`]).
#[must_use = "the call is watched only while the guard lives"]
pub(super) struct Waiting {
    active: bool,
}

/// Mark the thread as waiting for libvirtd until the guard drops: take one right
/// before every libvirt call that is a round trip to libvirtd.
pub(super) fn waiting() -> Waiting {
    if !ENABLED.load(Ordering::Relaxed) {
        return Waiting { active: false };
    }
    let now = now_ms();
    if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 && !KEEPALIVE.load(Ordering::Relaxed) {
        // Nothing tells us libvirtd was heard while we idled: count from this call.
        HEARD_MS.fetch_max(now, Ordering::SeqCst);
    }
    if STOPPING.load(Ordering::SeqCst) {
        // On the way out (unsubscribing, closing): no call may hold the stop up.
        ARMED.store(true, Ordering::SeqCst);
        arm(STOP_GRACE_MS);
    } else if !ARMED.swap(true, Ordering::SeqCst) {
        let left = (HEARD_MS.load(Ordering::SeqCst) + LIMIT_MS).saturating_sub(now);
        arm(left.min(FIRST_MS));
    }
    Waiting { active: true }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.active {
            // The call returned: libvirtd answered (or the connection is gone, when
            // this no longer matters).
            HEARD_MS.fetch_max(now_ms(), Ordering::SeqCst);
            DEPTH.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether libvirt's keepalive runs on the current connection (`virConnectSetKeepAlive`
/// returned 0): then a healthy libvirtd is heard from while we idle.
pub(super) fn set_keepalive(running: bool) {
    KEEPALIVE.store(running, Ordering::Relaxed);
}

/// Around `virConnectOpen`: note the descriptors open before, watch the open like any
/// call, and afterwards find the socket it created.
pub(super) struct Opening {
    waiting: Option<Waiting>,
}

pub(super) fn opening() -> Opening {
    if !ENABLED.load(Ordering::Relaxed) {
        return Opening { waiting: None };
    }
    forget_sockets();
    let mut old = 0;
    for (i, word) in BEFORE.iter().enumerate() {
        let mut bits = 0u64;
        for b in 0..64 {
            let fd = (i * 64 + b) as c_int;
            if fd_open(fd) {
                bits |= 1 << b;
                if let Some((dev, ino)) = socket_identity(fd).filter(|_| old < MAX_OLD) {
                    OLD_DEV[old].store(dev, Ordering::Relaxed);
                    OLD_INO[old].store(ino, Ordering::Relaxed);
                    old += 1;
                }
            }
        }
        word.store(bits, Ordering::Relaxed);
    }
    OLD_N.store(old, Ordering::SeqCst);
    FIRED_MS.store(0, Ordering::Relaxed);
    KEEPALIVE.store(false, Ordering::Relaxed);
    HEARD_MS.fetch_max(now_ms(), Ordering::SeqCst);
    OPENING.store(true, Ordering::SeqCst);
    Opening {
        waiting: Some(waiting()),
    }
}

impl Opening {
    /// The open returned: record the sockets it created (none for in-process drivers
    /// such as `test://`) and watch them while the event loop idles. `opened` says
    /// whether it succeeded; a failed open leaves nothing to watch.
    pub(super) fn done(mut self, opened: bool) -> Link {
        drop(self.waiting.take());
        if !OPENING.swap(false, Ordering::SeqCst) {
            return Link::default();
        }
        let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
        let mut link = Link {
            generation,
            watches: [-1; MAX_SOCKETS],
        };
        if !opened {
            return link;
        }
        let mut n = 0;
        for fd in 0..FD_BITS as c_int {
            if n == MAX_SOCKETS {
                break;
            }
            if let Some((dev, ino)) = new_socket(fd) {
                SOCK_DEV[n].store(dev, Ordering::Relaxed);
                SOCK_INO[n].store(ino, Ordering::Relaxed);
                SOCK_FD[n].store(fd, Ordering::SeqCst);
                link.watches[n] = watch_readable(fd);
                n += 1;
            }
        }
        link
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        // Reached without done() only if the open panicked: stop treating new
        // descriptors as the open's.
        if self.waiting.is_some() {
            OPENING.store(false, Ordering::SeqCst);
        }
    }
}

/// One connection's hold on the sockets recorded at its open: the idle watches, removed
/// by [`Link::unwatch`] before the connection is closed, and the slots, cleared on drop
/// (after the close, so that a close that blocks can be ended too).
pub(super) struct Link {
    generation: u64,
    watches: [c_int; MAX_SOCKETS],
}

impl Default for Link {
    /// Nothing recorded, nothing watched.
    fn default() -> Link {
        Link {
            generation: 0,
            watches: [-1; MAX_SOCKETS],
        }
    }
}

impl Link {
    pub(super) fn unwatch(&mut self) {
        for w in &mut self.watches {
            if *w >= 0 {
                // SAFETY: a handle we added and have not removed; removed once.
                let _ = unsafe { ffi::virEventRemoveHandle(*w) };
                *w = -1;
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.unwatch();
        if self.generation != 0 && GENERATION.load(Ordering::SeqCst) == self.generation {
            forget_sockets();
        }
    }
}

fn forget_sockets() {
    for fd in &SOCK_FD {
        fd.store(-1, Ordering::SeqCst);
    }
}

/// Watch `fd` for readability in the event loop; -1 if that cannot be done.
fn watch_readable(fd: c_int) -> c_int {
    let readable = ffi::virEventHandleType::VIR_EVENT_HANDLE_READABLE as c_int;
    // SAFETY: fd is the connection's socket, open until the connection is closed, and
    // Link::unwatch removes the handle before that; the callback is 'static and does
    // not unwind; no opaque data, no free callback. libvirt's own handle on the same
    // descriptor is unaffected: ours only records the time, never reads.
    unsafe { ffi::virEventAddHandle(fd, readable, Some(on_readable), ptr::null_mut(), None) }
}

extern "C" fn on_readable(_watch: c_int, _fd: c_int, _events: c_int, _opaque: *mut c_void) {
    HEARD_MS.fetch_max(now_ms(), Ordering::SeqCst);
}

fn was_open(fd: c_int) -> bool {
    let fd = fd as usize;
    BEFORE[fd / 64].load(Ordering::Relaxed) & (1 << (fd % 64)) != 0
}

/// Device and inode of `fd` if it is a socket that did not exist when the open began:
/// a new descriptor, and not a duplicate of a socket open before. Async-signal-safe.
fn new_socket(fd: c_int) -> Option<(u64, u64)> {
    if was_open(fd) {
        return None;
    }
    let (dev, ino) = socket_identity(fd)?;
    let old = OLD_N.load(Ordering::SeqCst).min(MAX_OLD);
    let dup = (0..old).any(|i| {
        OLD_DEV[i].load(Ordering::Relaxed) == dev && OLD_INO[i].load(Ordering::Relaxed) == ino
    });
    (!dup).then_some((dev, ino))
}

fn fd_open(fd: c_int) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is acceptable.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Device and inode of `fd` if it is a socket. Async-signal-safe (fstat only).
fn socket_identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid out-buffer; fstat writes it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a writable stat on our stack; any descriptor number is acceptable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a writable timespec; CLOCK_MONOTONIC always exists on Linux.
    // clock_gettime is async-signal-safe, so the handler uses this too.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Set the one-shot timer `ms` from now (at least 1 ms). Async-signal-safe.
fn arm(ms: u64) {
    let ms = ms.max(1);
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        },
    };
    // SAFETY: the timer was created by enable() and is never deleted; spec is a valid
    // itimerspec; we do not ask for the old value. timer_settime is async-signal-safe.
    unsafe { libc::timer_settime(TIMER.load(Ordering::Relaxed), 0, &spec, ptr::null_mut()) };
}

/// The `rchar` line of `/proc/self/io` (bytes the process read, sockets included) and
/// the bytes this read itself returned. Async-signal-safe: lseek, read, no allocation.
fn read_rchar() -> Option<(u64, u64)> {
    let fd = PROC_IO.load(Ordering::Relaxed);
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 256];
    // SAFETY: fd is our descriptor of /proc/self/io; buf is 256 writable bytes.
    let n = unsafe {
        libc::lseek(fd, 0, libc::SEEK_SET);
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    };
    let n = usize::try_from(n).ok()?;
    let text = buf.get(..n)?.strip_prefix(b"rchar: ")?;
    let mut v: u64 = 0;
    for &c in text.iter().take_while(|c| c.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((v, n as u64))
}

/// SIGALRM. Only async-signal-safe calls (clock_gettime, lseek, read, fstat, shutdown,
/// timer_settime) and lock-free atomics; no allocation, no panic; errno preserved.
extern "C" fn on_alarm(_sig: c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    alarm_work();
    // SAFETY: as above; restore what the interrupted code may be about to read.
    unsafe { *libc::__errno_location() = errno };
}

fn alarm_work() {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    if DEPTH.load(Ordering::SeqCst) == 0 {
        // Idle: let the timer lapse; the next call sets it again.
        ARMED.store(false, Ordering::SeqCst);
        SAMPLE_OK.store(false, Ordering::Relaxed);
        return;
    }
    if STOPPING.load(Ordering::SeqCst) {
        // Stopping, and a call still waits: end it (the daemon exits, no report).
        shut_down_sockets();
        arm(SAMPLE_MS);
        return;
    }
    let now = now_ms();
    // Bytes read since the last sample mean something arrived (libvirtd's keepalive
    // ping in the middle of a long call): heard, at the latest at that sample.
    if let Some((rchar, own)) = read_rchar() {
        if SAMPLE_OK.load(Ordering::Relaxed) && rchar > SAMPLE_RCHAR.load(Ordering::Relaxed) {
            HEARD_MS.fetch_max(SAMPLE_MS_AT.load(Ordering::Relaxed), Ordering::SeqCst);
        }
        SAMPLE_RCHAR.store(rchar.saturating_add(own), Ordering::Relaxed);
        SAMPLE_MS_AT.store(now, Ordering::Relaxed);
        SAMPLE_OK.store(true, Ordering::Relaxed);
    }
    let silent = now.saturating_sub(HEARD_MS.load(Ordering::SeqCst));
    if silent >= LIMIT_MS {
        if shut_down_sockets() && FIRED_MS.load(Ordering::Relaxed) == 0 {
            FIRED_MS.store(silent, Ordering::Relaxed);
        }
        // The call should return now; if it does not (no socket found yet during an
        // open), try again in a second.
        arm(SAMPLE_MS);
        return;
    }
    arm((LIMIT_MS - silent).min(SAMPLE_MS));
}

/// shutdown(2) the current connection's sockets, or during an open every socket
/// created since it began. Whether any was shut down.
fn shut_down_sockets() -> bool {
    let mut any = false;
    for i in 0..MAX_SOCKETS {
        let fd = SOCK_FD[i].load(Ordering::SeqCst);
        if fd < 0 {
            continue;
        }
        let same = socket_identity(fd).is_some_and(|(dev, ino)| {
            dev == SOCK_DEV[i].load(Ordering::Relaxed) && ino == SOCK_INO[i].load(Ordering::Relaxed)
        });
        // SAFETY: fd is the connection's socket (same device and inode as recorded);
        // shutdown leaves the descriptor open and libvirt's, only ends the stream.
        if same && unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } == 0 {
            any = true;
        }
    }
    if OPENING.load(Ordering::SeqCst) {
        for fd in 0..FD_BITS as c_int {
            if new_socket(fd).is_some() {
                // SAFETY: a socket created since virConnectOpen began, in this thread,
                // so by libvirt for this open (not a duplicate of one we had before,
                // such as stderr); shutdown leaves the descriptor open.
                if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } == 0 {
                    any = true;
                }
            }
        }
    }
    any
}
