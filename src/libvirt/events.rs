//! libvirt's event loop, run in the daemon's one thread: timers, a file descriptor to
//! watch, domain lifecycle events, keepalive and the connection-close callback.
//!
//! Every callback does one thing: it raises a flag in [`Flags`] (atomics in a static,
//! so no pointer handed to C can dangle and no callback can panic), and the daemon's
//! loop reads the flags after each [`run_once`]. All the work happens in that loop, in
//! plain Rust; libvirt's callbacks never touch the scheduler.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::error::{Error, check};
use super::ffi;
use super::handles::Connection;
use super::silence;

/// What happened since the flags were last read. Each `take_*` reads and clears one.
pub struct Flags {
    tick: AtomicBool,
    watchdog: AtomicBool,
    retry: AtomicBool,
    domains: AtomicBool,
    started_or_stopped: AtomicBool,
    config: AtomicBool,
    closed: AtomicBool,
    close_reason: AtomicI32,
    wake: AtomicBool,
}

/// The one set of flags of the process.
pub static FLAGS: Flags = Flags {
    tick: AtomicBool::new(false),
    watchdog: AtomicBool::new(false),
    retry: AtomicBool::new(false),
    domains: AtomicBool::new(false),
    started_or_stopped: AtomicBool::new(false),
    config: AtomicBool::new(false),
    closed: AtomicBool::new(false),
    close_reason: AtomicI32::new(-1),
    wake: AtomicBool::new(false),
};

impl Flags {
    /// The tick timer fired.
    pub fn take_tick(&self) -> bool {
        self.tick.swap(false, Ordering::Relaxed)
    }
    /// The watchdog timer fired.
    pub fn take_watchdog(&self) -> bool {
        self.watchdog.swap(false, Ordering::Relaxed)
    }
    /// The reconnect timer fired.
    pub fn take_retry(&self) -> bool {
        self.retry.swap(false, Ordering::Relaxed)
    }
    /// Some domain started, stopped, or changed state.
    pub fn take_domains(&self) -> bool {
        self.domains.swap(false, Ordering::Relaxed)
    }
    /// Some domain started or stopped: take it into management, or forget it, now,
    /// not at the next tick.
    pub fn take_started_or_stopped(&self) -> bool {
        self.started_or_stopped.swap(false, Ordering::Relaxed)
    }
    /// Some domain's persistent configuration was (re)defined.
    pub fn take_config(&self) -> bool {
        self.config.swap(false, Ordering::Relaxed)
    }
    /// The connection was closed (libvirtd gone, or keepalive timed out): the reason,
    /// as libvirt gives it (`virConnectCloseReason`).
    pub fn take_closed(&self) -> Option<i32> {
        self.closed
            .swap(false, Ordering::Relaxed)
            .then(|| self.close_reason.load(Ordering::Relaxed))
    }
    /// The watched file descriptor was readable (a signal arrived).
    pub fn take_wake(&self) -> bool {
        self.wake.swap(false, Ordering::Relaxed)
    }
    /// Forget everything pending (a new connection starts from a clean slate).
    pub fn clear(&self) {
        for f in [
            &self.tick,
            &self.watchdog,
            &self.retry,
            &self.domains,
            &self.started_or_stopped,
            &self.config,
            &self.closed,
            &self.wake,
        ] {
            f.store(false, Ordering::Relaxed);
        }
    }
}

/// Register libvirt's default event loop. Must come before the first connection is
/// opened, or the connection will not deliver events or keepalives; done once.
pub fn register_default_impl() -> Result<(), Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = check(
            // SAFETY: no arguments; registers libvirt's own implementation.
            unsafe { ffi::virEventRegisterDefaultImpl() },
            "virEventRegisterDefaultImpl",
        )
        .map(drop);
    });
    result
}

/// Wait for the next event (a timer, the watched descriptor, a message from libvirtd)
/// and run its callbacks. Blocks until something happens.
pub fn run_once() -> Result<(), Error> {
    // SAFETY: no arguments; the default implementation was registered first.
    check(
        unsafe { ffi::virEventRunDefaultImpl() },
        "virEventRunDefaultImpl",
    )
    .map(drop)
}

/// Which flag a timer raises (passed to C as the callback's opaque integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Tick = 1,
    Watchdog = 2,
    Retry = 3,
}

extern "C" fn on_timer(_timer: c_int, opaque: *mut c_void) {
    // The opaque value is a TimerKind number, not a pointer: nothing is dereferenced.
    let flag = match opaque as usize {
        1 => &FLAGS.tick,
        2 => &FLAGS.watchdog,
        _ => &FLAGS.retry,
    };
    flag.store(true, Ordering::Relaxed);
}

/// A repeating timer in the event loop, removed on drop.
pub struct Timer {
    id: c_int,
}

impl Timer {
    /// Fire every `period_ms` milliseconds (at least 1), raising `kind`'s flag.
    pub fn add(kind: TimerKind, period_ms: u64) -> Result<Timer, Error> {
        let ms = clamp_ms(period_ms);
        let id = check(
            // SAFETY: on_timer is 'static and does not unwind; the opaque value is a plain
            // integer never dereferenced; no free callback.
            unsafe {
                ffi::virEventAddTimeout(
                    ms,
                    Some(on_timer),
                    ptr::without_provenance_mut(kind as usize),
                    None,
                )
            },
            "virEventAddTimeout",
        )?;
        Ok(Timer { id })
    }

    /// Restart the period from now: the next firing is `period_ms` away.
    pub fn reset(&self, period_ms: u64) {
        // SAFETY: id names a timer we added and have not removed.
        unsafe { ffi::virEventUpdateTimeout(self.id, clamp_ms(period_ms)) };
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: id names a timer we added; removed once. A failure cannot be acted on.
        let _ = unsafe { ffi::virEventRemoveTimeout(self.id) };
    }
}

/// libvirt takes timeouts as an int of milliseconds: longer ones fire at the cap and
/// the caller checks the time; 0 would fire on every loop iteration.
fn clamp_ms(ms: u64) -> c_int {
    c_int::try_from(ms).unwrap_or(c_int::MAX).max(1)
}

extern "C" fn on_readable(_watch: c_int, _fd: c_int, _events: c_int, _opaque: *mut c_void) {
    FLAGS.wake.store(true, Ordering::Relaxed);
}

/// A file descriptor watched for reading, removed on drop. The daemon watches the read
/// end of its signal pipe, so SIGTERM wakes the loop at once.
pub struct Watch {
    id: c_int,
}

impl Watch {
    pub fn readable(fd: c_int) -> Result<Watch, Error> {
        let readable = ffi::virEventHandleType::VIR_EVENT_HANDLE_READABLE as c_int;
        let id = check(
            // SAFETY: fd stays open as long as the process (the signal pipe); the
            // callback is 'static and does not unwind; no opaque data, no free callback.
            unsafe {
                ffi::virEventAddHandle(fd, readable, Some(on_readable), ptr::null_mut(), None)
            },
            "virEventAddHandle",
        )?;
        Ok(Watch { id })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: id names a handle we added; removed once.
        let _ = unsafe { ffi::virEventRemoveHandle(self.id) };
    }
}

/// `virConnectDomainEventLifecycleCallback`: raise the flags, nothing else.
extern "C" fn on_lifecycle(
    _conn: ffi::virConnectPtr,
    _dom: ffi::virDomainPtr,
    event: c_int,
    _detail: c_int,
    _opaque: *mut c_void,
) -> c_int {
    use ffi::virDomainEventType::*;
    FLAGS.domains.store(true, Ordering::Relaxed);
    let event = u32::try_from(event).unwrap_or(u32::MAX);
    if event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_STOPPED {
        FLAGS.started_or_stopped.store(true, Ordering::Relaxed);
    }
    if event == VIR_DOMAIN_EVENT_DEFINED || event == VIR_DOMAIN_EVENT_UNDEFINED {
        FLAGS.config.store(true, Ordering::Relaxed);
    }
    0
}

extern "C" fn on_close(_conn: ffi::virConnectPtr, reason: c_int, _opaque: *mut c_void) {
    FLAGS.close_reason.store(reason, Ordering::Relaxed);
    FLAGS.closed.store(true, Ordering::Relaxed);
}

/// What libvirt says about why a connection closed.
pub fn close_reason(reason: i32) -> &'static str {
    use ffi::virConnectCloseReason::*;
    match u32::try_from(reason).unwrap_or(u32::MAX) {
        VIR_CONNECT_CLOSE_REASON_ERROR => "misc I/O error",
        VIR_CONNECT_CLOSE_REASON_EOF => "end of file from libvirtd",
        VIR_CONNECT_CLOSE_REASON_KEEPALIVE => "keepalive timed out",
        VIR_CONNECT_CLOSE_REASON_CLIENT => "closed by the program",
        _ => "unknown reason",
    }
}

/// Lifecycle events and the close callback on one connection, undone on drop (before
/// the connection is closed: the borrow makes sure of it).
pub struct Subscriptions<'c> {
    conn: &'c Connection,
    lifecycle: Option<c_int>,
    close: bool,
}

impl Connection {
    /// Ask libvirtd to send a keepalive every `interval_s` seconds and to give the
    /// connection up after `count` unanswered ones: a daemon that dies or hangs is then
    /// noticed within `interval_s × (count + 1)` seconds. `Ok(false)` when the driver
    /// has no keepalive (local, in-process drivers such as `test://`).
    pub fn set_keepalive(&self, interval_s: i32, count: u32) -> Result<bool, Error> {
        // Local to the client (virKeepAliveStart adds a timer to our event loop): no
        // round trip. The pings it sends while we idle keep a healthy libvirtd heard.
        let r = check(
            // SAFETY: open connection; plain integers.
            unsafe { ffi::virConnectSetKeepAlive(self.raw(), interval_s, count) },
            "virConnectSetKeepAlive",
        );
        silence::set_keepalive(matches!(r, Ok(0)));
        Ok(r? == 0)
    }

    /// Subscribe to domain lifecycle events and to the connection closing. Either may
    /// be unsupported by a driver; what was registered is undone on drop.
    pub fn subscribe(&self) -> Subscriptions<'_> {
        let lifecycle_id = ffi::virDomainEventID::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int;
        type Lifecycle = unsafe extern "C" fn(
            ffi::virConnectPtr,
            ffi::virDomainPtr,
            c_int,
            c_int,
            *mut c_void,
        ) -> c_int;
        type Generic = unsafe extern "C" fn(ffi::virConnectPtr, ffi::virDomainPtr, *mut c_void);
        // SAFETY: libvirt's VIR_DOMAIN_EVENT_CALLBACK cast: for the LIFECYCLE event id,
        // libvirt calls the callback with the lifecycle signature, which on_lifecycle has.
        let generic: Generic = unsafe { std::mem::transmute::<Lifecycle, Generic>(on_lifecycle) };
        let waiting = silence::waiting(); // a round trip to libvirtd
        let id = check(
            // SAFETY: open connection; a null domain means every domain; the callback is
            // 'static and does not unwind; no opaque data, no free callback.
            unsafe {
                ffi::virConnectDomainEventRegisterAny(
                    self.raw(),
                    ptr::null_mut(),
                    lifecycle_id,
                    Some(generic),
                    ptr::null_mut(),
                    None,
                )
            },
            "virConnectDomainEventRegisterAny",
        );
        drop(waiting);
        let close = check(
            // SAFETY: open connection; the callback is 'static and does not unwind.
            unsafe {
                ffi::virConnectRegisterCloseCallback(
                    self.raw(),
                    Some(on_close),
                    ptr::null_mut(),
                    None,
                )
            },
            "virConnectRegisterCloseCallback",
        );
        Subscriptions {
            conn: self,
            lifecycle: id.ok(),
            close: close.is_ok(),
        }
    }
}

impl Subscriptions<'_> {
    /// Whether lifecycle events will come (else domains are found at the next tick).
    pub fn lifecycle(&self) -> bool {
        self.lifecycle.is_some()
    }
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.lifecycle {
            let _waiting = silence::waiting(); // the last deregistration is a round trip
            // SAFETY: the connection is still open (borrowed); id is our registration.
            let _ = unsafe { ffi::virConnectDomainEventDeregisterAny(self.conn.raw(), id) };
        }
        if self.close {
            // SAFETY: as above; the same callback we registered.
            let _ =
                unsafe { ffi::virConnectUnregisterCloseCallback(self.conn.raw(), Some(on_close)) };
        }
        // Errors from a connection already gone are expected here; clear them.
        // SAFETY: no arguments.
        unsafe { ffi::virResetLastError() };
    }
}
