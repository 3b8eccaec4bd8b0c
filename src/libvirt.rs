//! Safe handles over libvirt: the only module that touches raw pointers.
//!
//! [`Connection`] owns a `virConnectPtr` and closes it on drop; [`Domain`] owns one
//! reference to a `virDomainPtr`, frees it on drop and borrows its connection, so the
//! compiler keeps every domain from outliving it. [`Error`] copies libvirt's last error
//! right after the failing call. [`LibvirtHost`] implements the scheduler's
//! [`Host`] seam over a connection with reused buffers, so a tick allocates nothing.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_int, c_uint, c_void};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::Once;
use std::time::Instant;

use crate::cpumap::{self, CpuMap};
use crate::ffi;
use crate::host::{
    DomainInfo, DomainKey, FailureKind, Host, HostError, PcpuId, PcpuTimes, VcpuId, VcpuSample,
};

/// A libvirt failure: the call that failed and libvirt's own code, domain and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    call: &'static str,
    code: i32,
    domain: i32,
    message: String,
}

impl Error {
    /// Copy libvirt's last error for this thread, then clear it.
    ///
    /// Must run right after the failing call: every public libvirt call starts by
    /// resetting the last error (freeing a handle on the error path would erase it).
    #[cold]
    fn last(call: &'static str) -> Error {
        // SAFETY: virGetLastError takes no arguments and returns null or a pointer to
        // this thread's error, valid until the next libvirt call on this thread.
        let err = unsafe { ffi::virGetLastError() };
        let mut out = Error {
            call,
            code: 0,
            domain: 0,
            message: format!("{call} failed and libvirt gave no reason"),
        };
        if let Some(e) = NonNull::new(err) {
            // SAFETY: non-null, points to libvirt's thread-local virError (see above);
            // we only read it before any other libvirt call.
            let e = unsafe { e.as_ref() };
            out.code = e.code;
            out.domain = e.domain;
            if !e.message.is_null() {
                // SAFETY: message is a NUL-terminated string owned by the error object.
                let msg = unsafe { CStr::from_ptr(e.message) };
                out.message = msg.to_string_lossy().into_owned();
            }
        }
        // SAFETY: no arguments; clears this thread's error so a stale message cannot
        // leak into a later failure.
        unsafe { ffi::virResetLastError() };
        out
    }

    /// An error found on our side of the call (bad argument), in the same shape.
    #[cold]
    fn local(call: &'static str, code: u32, message: String) -> Error {
        Error {
            call,
            code: code as i32,
            domain: 0,
            message,
        }
    }

    /// libvirt's error code (`virErrorNumber`).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The libvirt function that failed.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// libvirt's message, unchanged.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn is(&self, code: u32) -> bool {
        self.code == code as i32
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl HostError for Error {
    fn kind(&self) -> FailureKind {
        use ffi::virErrorNumber::*;
        if self.is(VIR_ERR_NO_DOMAIN)
            || self.is(VIR_ERR_INVALID_DOMAIN)
            || self.is(VIR_ERR_OPERATION_INVALID)
        {
            // The domain stopped between listing and use ("domain is not running").
            FailureKind::DomainGone
        } else if self.is(VIR_ERR_INVALID_CONN)
            || self.is(VIR_ERR_NO_CONNECT)
            || self.is(VIR_ERR_RPC)
            // Errors raised by the RPC layer itself ("Cannot recv data", "client
            // socket is closed") mean the daemon is gone, whatever their code.
            || self.domain == ffi::virErrorDomain::VIR_FROM_RPC as i32
        {
            FailureKind::ConnectionLost
        } else {
            FailureKind::Other
        }
    }
}

/// Return values libvirt uses to signal failure: -1 for ints, null for pointers. A
/// pointer that passed the check comes back as `NonNull`, so no later code re-checks.
trait Sentinel: Copy {
    type Ok;
    fn ok(self) -> Option<Self::Ok>;
}

impl Sentinel for c_int {
    type Ok = c_int;
    fn ok(self) -> Option<c_int> {
        (self != -1).then_some(self)
    }
}

impl<T> Sentinel for *mut T {
    type Ok = NonNull<T>;
    fn ok(self) -> Option<NonNull<T>> {
        NonNull::new(self)
    }
}

impl<T> Sentinel for *const T {
    type Ok = NonNull<T>;
    fn ok(self) -> Option<NonNull<T>> {
        NonNull::new(self.cast_mut())
    }
}

/// The one return-code check: failure becomes an [`Error`] read at once.
fn check<T: Sentinel>(ret: T, call: &'static str) -> Result<T::Ok, Error> {
    ret.ok().ok_or_else(|| Error::last(call))
}

/// A length or index crossing into C: never truncated with `as`.
fn to_c_int(n: usize, call: &'static str) -> Result<c_int, Error> {
    c_int::try_from(n).map_err(|_| {
        Error::local(
            call,
            ffi::virErrorNumber::VIR_ERR_INVALID_ARG,
            format!("{n} does not fit in a C int"),
        )
    })
}

/// libvirt's default error handler prints every error to stderr. We report errors
/// ourselves, on one line, so we install a handler that does nothing.
///
/// It must never panic: unwinding out of an `extern "C"` function aborts the process.
extern "C" fn ignore_error(_user: *mut c_void, _err: ffi::virErrorPtr) {}

fn quiet_libvirt_errors() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sets a process-wide callback; the function is 'static, does not
        // unwind, and the user data pointer is unused (null).
        unsafe { ffi::virSetErrorFunc(ptr::null_mut(), Some(ignore_error)) };
    });
}

/// Run `f` with file descriptor 2 pointed at /dev/null.
///
/// libxml2, which libvirt uses to parse XML, prints its parse and I/O warnings straight
/// to stderr, past `virSetErrorFunc` (a test-driver node file that cannot be read gives
/// three such lines). Opening a connection is where that happens; the same failure
/// reaches us through `virGetLastError`, so the copy on stderr is only noise. If the
/// redirection cannot be set up, `f` runs with stderr as it is.
fn with_stderr_silenced<T>(f: impl FnOnce() -> T) -> T {
    const STDERR: c_int = 2;
    // SAFETY: dup on a descriptor number; returns -1 on failure, which we check.
    let saved = unsafe { libc::dup(STDERR) };
    // SAFETY: the path is a valid NUL-terminated C string literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    let redirected = saved >= 0 && null >= 0 && {
        // SAFETY: both descriptors are open (checked above); dup2 only replaces fd 2.
        unsafe { libc::dup2(null, STDERR) >= 0 }
    };
    let out = f();
    if redirected {
        // SAFETY: saved is the open duplicate of the original stderr.
        unsafe { libc::dup2(saved, STDERR) };
    }
    for fd in [saved, null] {
        if fd >= 0 {
            // SAFETY: fd was opened above by us and is closed exactly once.
            unsafe { libc::close(fd) };
        }
    }
    out
}

/// An open connection to a hypervisor (`virConnectPtr`), closed on drop.
///
/// Not `Send`/`Sync` (it holds a raw pointer): libvirt's last error is per thread and the
/// scheduler is single-threaded, so nothing needs to share it.
pub struct Connection {
    ptr: NonNull<ffi::virConnect>,
}

impl Connection {
    /// Open a read-write connection to `uri` (`qemu:///system`, `test:///default`, ...).
    pub fn open(uri: &str) -> Result<Connection, Error> {
        Self::open_with(uri, false)
    }

    /// Open a read-only connection: enough to measure, not to pin.
    pub fn open_read_only(uri: &str) -> Result<Connection, Error> {
        Self::open_with(uri, true)
    }

    fn open_with(uri: &str, read_only: bool) -> Result<Connection, Error> {
        quiet_libvirt_errors();
        let call = if read_only {
            "virConnectOpenReadOnly"
        } else {
            "virConnectOpen"
        };
        let c_uri = CString::new(uri).map_err(|_| {
            Error::local(
                call,
                ffi::virErrorNumber::VIR_ERR_INVALID_ARG,
                "URI contains a NUL byte".into(),
            )
        })?;
        let raw = with_stderr_silenced(|| {
            // SAFETY: c_uri is a valid NUL-terminated string that outlives the call
            // (kept in a local); libvirt copies what it needs.
            unsafe {
                if read_only {
                    ffi::virConnectOpenReadOnly(c_uri.as_ptr())
                } else {
                    ffi::virConnectOpen(c_uri.as_ptr())
                }
            }
        });
        Ok(Connection {
            ptr: check(raw, call)?,
        })
    }

    fn raw(&self) -> ffi::virConnectPtr {
        self.ptr.as_ptr()
    }

    /// Number of pCPUs the node reports (`virNodeGetInfo`).
    pub fn node_pcpus(&self) -> Result<usize, Error> {
        let mut info = ffi::virNodeInfo {
            model: [0; 32],
            memory: 0,
            cpus: 0,
            mhz: 0,
            nodes: 0,
            sockets: 0,
            cores: 0,
            threads: 0,
        };
        check(
            // SAFETY: the connection is open (owned since construction); info is a valid,
            // writable virNodeInfo on our stack.
            unsafe { ffi::virNodeGetInfo(self.raw(), &mut info) },
            "virNodeGetInfo",
        )?;
        Ok(info.cpus as usize)
    }

    /// Cumulative times of pCPU `cpu` (`virNodeGetCPUStats`), using `buf` as the
    /// parameter array (grown on the first call only). Busy is user + kernel; total adds
    /// idle and iowait.
    fn pcpu_times(&self, cpu: usize, buf: &mut Vec<NodeCpuStat>) -> Result<PcpuTimes, Error> {
        const CALL: &str = "virNodeGetCPUStats";
        let cpu = to_c_int(cpu, CALL)?;
        if buf.is_empty() {
            let mut n: c_int = 0;
            // SAFETY: open connection; a null params array with *nparams == 0 asks
            // libvirt how many parameters it would return, writing only n.
            let r = unsafe { ffi::virNodeGetCPUStats(self.raw(), cpu, ptr::null_mut(), &mut n, 0) };
            check(r, CALL)?;
            buf.resize(usize::try_from(n).unwrap_or(0), NodeCpuStat::default());
        }
        let mut n = to_c_int(buf.len(), CALL)?;
        // SAFETY: NodeCpuStat is repr(transparent) over virNodeCPUStats; buf holds n
        // writable entries and libvirt writes at most n, updating n to how many it did.
        let r =
            unsafe { ffi::virNodeGetCPUStats(self.raw(), cpu, buf.as_mut_ptr().cast(), &mut n, 0) };
        check(r, CALL)?;
        let mut t = PcpuTimes::default();
        for stat in &buf[..usize::try_from(n).unwrap_or(0).min(buf.len())] {
            let v = stat.0.value;
            match stat.name() {
                b"user" | b"kernel" => {
                    t.busy_ns += v;
                    t.total_ns += v;
                }
                b"idle" | b"iowait" => t.total_ns += v,
                _ => {}
            }
        }
        Ok(t)
    }

    /// The URI libvirt actually connected to (after defaults and aliases).
    pub fn uri(&self) -> Result<String, Error> {
        let p = check(
            // SAFETY: open connection; the returned string is ours to free.
            unsafe { ffi::virConnectGetURI(self.raw()) },
            "virConnectGetURI",
        )?;
        // SAFETY: p is a non-null NUL-terminated string allocated by libvirt.
        let s = unsafe { CStr::from_ptr(p.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the caller must free this string (virConnectGetURI's contract); libvirt
        // allocates with glib, whose allocator is the C library's malloc since glib 2.46.
        // p is not used after.
        unsafe { libc::free(p.as_ptr().cast()) };
        Ok(s)
    }

    /// Fill `ids` with the ids of the running domains, reusing its capacity.
    ///
    /// `virConnectNumOfDomains` + `virConnectListDomains` write into a caller buffer, so
    /// a steady host costs no allocation (unlike `virConnectListAllDomains`). A domain
    /// that stops in between only shows up later as `VIR_ERR_NO_DOMAIN`, handled anyway.
    pub fn running_domain_ids(&self, ids: &mut Vec<c_int>) -> Result<(), Error> {
        let n = check(
            // SAFETY: open connection.
            unsafe { ffi::virConnectNumOfDomains(self.raw()) },
            "virConnectNumOfDomains",
        )?;
        let n = usize::try_from(n).unwrap_or(0);
        ids.clear();
        ids.resize(n, 0);
        if n == 0 {
            return Ok(());
        }
        let max = to_c_int(n, "virConnectListDomains")?;
        let got = check(
            // SAFETY: ids holds n writable c_ints and we pass n as the maximum.
            unsafe { ffi::virConnectListDomains(self.raw(), ids.as_mut_ptr(), max) },
            "virConnectListDomains",
        )?;
        ids.truncate(usize::try_from(got).unwrap_or(0));
        Ok(())
    }

    /// Look up a running domain by its id.
    pub fn domain_by_id(&self, id: c_int) -> Result<Domain<'_>, Error> {
        let raw = check(
            // SAFETY: open connection; any id is acceptable input.
            unsafe { ffi::virDomainLookupByID(self.raw(), id) },
            "virDomainLookupByID",
        )?;
        // SAFETY: libvirt returned a new reference that the caller must free.
        Ok(unsafe { Domain::from_raw(raw) })
    }

    /// Close explicitly and report. `Ok(n)` is the number of references still held
    /// elsewhere: 0 means every domain handle was freed too.
    pub fn close(self) -> Result<i32, Error> {
        let raw = self.raw();
        std::mem::forget(self);
        // SAFETY: we owned the only Connection for this pointer and forgot it, so Drop
        // will not close it a second time.
        check(unsafe { ffi::virConnectClose(raw) }, "virConnectClose")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: owned since construction and not closed yet (close() forgets self).
        // A failure here cannot be acted on; it is ignored rather than panicking.
        let _ = unsafe { ffi::virConnectClose(self.raw()) };
    }
}

/// A reference to one domain (`virDomainPtr`), freed on drop; borrows its connection.
pub struct Domain<'c> {
    ptr: NonNull<ffi::virDomain>,
    _conn: PhantomData<&'c Connection>,
}

impl<'c> Domain<'c> {
    /// Wrap a domain pointer.
    ///
    /// # Safety
    /// `raw` must carry one libvirt reference that the caller owns
    /// (as returned by the `virDomainLookup*` functions); the new `Domain` takes it over
    /// and releases it with `virDomainFree`. Do not wrap borrowed pointers.
    unsafe fn from_raw(raw: NonNull<ffi::virDomain>) -> Domain<'c> {
        Domain {
            ptr: raw,
            _conn: PhantomData,
        }
    }

    fn raw(&self) -> ffi::virDomainPtr {
        self.ptr.as_ptr()
    }

    pub fn name(&self) -> Result<String, Error> {
        let p = check(
            // SAFETY: valid domain reference; the string belongs to the domain object.
            unsafe { ffi::virDomainGetName(self.raw()) },
            "virDomainGetName",
        )?;
        // SAFETY: non-null NUL-terminated string valid while the domain lives.
        Ok(unsafe { CStr::from_ptr(p.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    pub fn uuid(&self) -> Result<[u8; 16], Error> {
        let mut uuid = [0u8; ffi::VIR_UUID_BUFLEN as usize];
        check(
            // SAFETY: valid domain; uuid has VIR_UUID_BUFLEN writable bytes.
            unsafe { ffi::virDomainGetUUID(self.raw(), uuid.as_mut_ptr()) },
            "virDomainGetUUID",
        )?;
        Ok(uuid)
    }

    /// The id of this run of the domain (changes when it is restarted).
    pub fn id(&self) -> u32 {
        // SAFETY: valid domain; returns (unsigned)-1 for inactive domains, no error state.
        unsafe { ffi::virDomainGetID(self.raw()) }
    }

    /// Is the domain running (`virDomainIsActive`)? A domain that no longer exists is
    /// not running either.
    pub fn is_active(&self) -> bool {
        // SAFETY: valid domain reference; returns 1, 0 or -1 and touches nothing else.
        let r = unsafe { ffi::virDomainIsActive(self.raw()) };
        if r < 0 {
            // Clear the error this left behind so it cannot surface in a later report.
            // SAFETY: no arguments.
            unsafe { ffi::virResetLastError() };
        }
        r == 1
    }

    /// Number of vCPUs the domain has now (`virDomainGetInfo`).
    pub fn vcpu_count(&self) -> Result<usize, Error> {
        let mut info = ffi::virDomainInfo {
            state: 0,
            maxMem: 0,
            memory: 0,
            nrVirtCpu: 0,
            cpuTime: 0,
        };
        check(
            // SAFETY: valid domain; info is a writable virDomainInfo on our stack.
            unsafe { ffi::virDomainGetInfo(self.raw(), &mut info) },
            "virDomainGetInfo",
        )?;
        Ok(usize::from(info.nrVirtCpu))
    }

    /// `virDomainGetVcpus` into the caller's buffers: `info.len()` entries and
    /// `maps.len() == info.len() * maplen` bytes of affinity masks. Returns how many
    /// vCPUs were filled in.
    pub fn vcpus_into(
        &self,
        info: &mut [VcpuInfo],
        maps: &mut [u8],
        maplen: usize,
    ) -> Result<usize, Error> {
        const CALL: &str = "virDomainGetVcpus";
        if maps.len() != info.len() * maplen {
            return Err(Error::local(
                CALL,
                ffi::virErrorNumber::VIR_ERR_INVALID_ARG,
                format!(
                    "{} mask bytes for {} vcpus of {maplen} bytes",
                    maps.len(),
                    info.len()
                ),
            ));
        }
        let maxinfo = to_c_int(info.len(), CALL)?;
        let c_maplen = to_c_int(maplen, CALL)?;
        let n = check(
            // SAFETY: VcpuInfo is repr(transparent) over virVcpuInfo, so info is maxinfo
            // writable virVcpuInfo; maps holds maxinfo * maplen writable bytes (checked
            // above); the domain reference is valid.
            unsafe {
                ffi::virDomainGetVcpus(
                    self.raw(),
                    info.as_mut_ptr().cast(),
                    maxinfo,
                    maps.as_mut_ptr(),
                    c_maplen,
                )
            },
            CALL,
        )?;
        Ok(usize::try_from(n).unwrap_or(0).min(info.len()))
    }

    /// Pin `vcpu` to the CPUs in `map`, live (`virDomainPinVcpu`).
    pub fn pin_vcpu(&self, vcpu: VcpuId, map: &CpuMap) -> Result<(), Error> {
        let maplen = to_c_int(map.as_bytes().len(), "virDomainPinVcpu")?;
        check(
            // SAFETY: valid domain; the map is maplen readable bytes. libvirt declares the
            // parameter `unsigned char *` but only reads it (IN parameter), so casting away
            // const is sound.
            unsafe {
                ffi::virDomainPinVcpu(
                    self.raw(),
                    vcpu.0,
                    map.as_bytes().as_ptr().cast_mut(),
                    maplen,
                )
            },
            "virDomainPinVcpu",
        )?;
        Ok(())
    }

    /// Pin with explicit flags (`virDomainPinVcpuFlags`), e.g. `VIR_DOMAIN_AFFECT_LIVE`.
    /// libvirt's test driver rejects every flag with "unsupported flags".
    pub fn pin_vcpu_flags(&self, vcpu: VcpuId, map: &CpuMap, flags: c_uint) -> Result<(), Error> {
        let maplen = to_c_int(map.as_bytes().len(), "virDomainPinVcpuFlags")?;
        check(
            // SAFETY: as in pin_vcpu: valid domain, map is maplen bytes only read by libvirt.
            unsafe {
                ffi::virDomainPinVcpuFlags(
                    self.raw(),
                    vcpu.0,
                    map.as_bytes().as_ptr().cast_mut(),
                    maplen,
                    flags,
                )
            },
            "virDomainPinVcpuFlags",
        )?;
        Ok(())
    }

    /// Read back the pinning of every vCPU (`virDomainGetVcpuPinInfo`, live state),
    /// as masks for a host of `ncpus` pCPUs. Allocates: for checks and tests, not ticks.
    pub fn vcpu_pin_info(&self, ncpus: usize) -> Result<Vec<CpuMap>, Error> {
        const CALL: &str = "virDomainGetVcpuPinInfo";
        let nvcpus = self.vcpu_count()?;
        let maplen = cpumap::cpu_maplen(ncpus);
        let mut maps = vec![0u8; nvcpus * maplen];
        let c_n = to_c_int(nvcpus, CALL)?;
        let c_maplen = to_c_int(maplen, CALL)?;
        let flags = ffi::virDomainModificationImpact::VIR_DOMAIN_AFFECT_LIVE;
        let n = check(
            // SAFETY: valid domain; maps holds nvcpus * maplen writable bytes.
            unsafe {
                ffi::virDomainGetVcpuPinInfo(self.raw(), c_n, maps.as_mut_ptr(), c_maplen, flags)
            },
            CALL,
        )?;
        let n = usize::try_from(n).unwrap_or(0).min(nvcpus);
        Ok((0..n)
            .map(|v| {
                let mut m = CpuMap::new(ncpus);
                if let Some(bytes) = cpumap::get_cpumap(&maps, maplen, v) {
                    m.copy_from(bytes);
                }
                m
            })
            .collect())
    }
}

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference (from_raw's contract); released once.
        // Failure is ignored: Drop must not panic.
        let _ = unsafe { ffi::virDomainFree(self.raw()) };
    }
}

/// One `virVcpuInfo` record, as a caller-owned buffer element for [`Domain::vcpus_into`].
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct VcpuInfo(ffi::virVcpuInfo);

impl Default for VcpuInfo {
    fn default() -> Self {
        VcpuInfo(ffi::virVcpuInfo {
            number: 0,
            state: 0,
            cpuTime: 0,
            cpu: -1,
        })
    }
}

impl VcpuInfo {
    pub fn number(&self) -> u32 {
        self.0.number
    }
    /// Cumulative run time, nanoseconds.
    pub fn cpu_time_ns(&self) -> u64 {
        self.0.cpuTime
    }
    /// The pCPU the vCPU last ran on, if libvirt knows it.
    pub fn last_cpu(&self) -> Option<usize> {
        usize::try_from(self.0.cpu).ok()
    }
}

/// One `virNodeCPUStats` record (a field name and a cumulative value), as a
/// caller-owned buffer element for [`Connection::pcpu_times`].
#[repr(transparent)]
#[derive(Clone, Copy)]
struct NodeCpuStat(ffi::virNodeCPUStats);

impl Default for NodeCpuStat {
    fn default() -> Self {
        NodeCpuStat(ffi::virNodeCPUStats {
            field: [0; ffi::VIR_NODE_CPU_STATS_FIELD_LENGTH as usize],
            value: 0,
        })
    }
}

impl NodeCpuStat {
    /// The field name, up to its NUL (`user`, `kernel`, `idle`, `iowait`).
    fn name(&self) -> &[u8] {
        let f = &self.0.field;
        let len = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        // c_char is i8 or u8 by platform; the bytes are ASCII either way.
        // SAFETY: c_char and u8 have the same size and alignment, and `len` is within
        // the array, so the slice covers initialised bytes we borrow immutably.
        unsafe { std::slice::from_raw_parts(f.as_ptr().cast::<u8>(), len) }
    }
}

/// A domain the host is tracking, looked up once when it first appeared.
struct Tracked<'c> {
    dom: Domain<'c>,
    key: DomainKey,
    name: String,
    vcpus: usize,
}

/// The scheduler's view of a live hypervisor through one [`Connection`].
///
/// Owns every buffer a tick needs (ids, vCPU records, affinity masks, the pin mask) and
/// grows them only when the host grows: a new domain, more vCPUs.
pub struct LibvirtHost<'c> {
    conn: &'c Connection,
    pcpus: usize,
    maplen: usize,
    epoch: Instant,
    ids: Vec<c_int>,
    known_ids: Vec<c_int>,
    domains: Vec<Tracked<'c>>,
    info: Vec<VcpuInfo>,
    maps: Vec<u8>,
    pin_map: CpuMap,
    /// Set when a domain vanished mid-tick: the next refresh re-reads the table even if
    /// the id list looks the same.
    stale: bool,
    /// `virNodeGetCPUStats` parameter buffer, and whether the driver supports it.
    cpu_stats: Vec<NodeCpuStat>,
    cpu_stats_ok: bool,
    /// Whether `virDomainPinVcpuFlags(VIR_DOMAIN_AFFECT_LIVE)` is accepted; the test
    /// driver refuses any flag, so we fall back to `virDomainPinVcpu` once and remember.
    live_flag_ok: bool,
}

impl<'c> LibvirtHost<'c> {
    pub fn new(conn: &'c Connection) -> Result<Self, Error> {
        let pcpus = conn.node_pcpus()?;
        let maplen = cpumap::cpu_maplen(pcpus);
        Ok(LibvirtHost {
            conn,
            pcpus,
            maplen,
            epoch: Instant::now(),
            ids: Vec::with_capacity(64),
            known_ids: Vec::with_capacity(64),
            domains: Vec::with_capacity(64),
            info: Vec::new(),
            maps: Vec::new(),
            pin_map: CpuMap::new(pcpus),
            stale: true,
            cpu_stats: Vec::new(),
            cpu_stats_ok: true,
            live_flag_ok: true,
        })
    }

    /// The pCPU count, refused when the node reports none (nothing could be pinned).
    pub fn pcpus_checked(&self) -> Result<usize, String> {
        if self.pcpus == 0 {
            Err("the node reports 0 pcpus".into())
        } else {
            Ok(self.pcpus)
        }
    }

    pub fn connection(&self) -> &'c Connection {
        self.conn
    }

    fn track(&mut self, id: c_int) -> Result<(), Error> {
        let dom = self.conn.domain_by_id(id)?;
        let key = DomainKey {
            uuid: dom.uuid()?,
            id: dom.id(),
        };
        let name = dom.name()?;
        let vcpus = dom.vcpu_count()?;
        if vcpus > self.info.len() {
            self.info.resize(vcpus, VcpuInfo::default());
            self.maps.resize(vcpus * self.maplen, 0);
        }
        self.domains.push(Tracked {
            dom,
            key,
            name,
            vcpus,
        });
        Ok(())
    }
}

impl Host for LibvirtHost<'_> {
    type Error = Error;

    fn pcpus(&self) -> usize {
        self.pcpus
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn refresh(&mut self) -> Result<bool, Error> {
        self.conn.running_domain_ids(&mut self.ids)?;
        self.ids.sort_unstable();
        if !self.stale && self.ids == self.known_ids {
            return Ok(false);
        }
        self.stale = false;
        let ids = &self.ids;
        self.domains
            .retain(|d| ids.binary_search(&(d.key.id as c_int)).is_ok());
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            if self.domains.iter().any(|d| d.key.id as c_int == id) {
                continue;
            }
            match self.track(id) {
                Ok(()) => {}
                // Stopped between listing and lookup: it simply is not running.
                Err(e) if e.kind() == FailureKind::DomainGone => {}
                Err(e) => return Err(e),
            }
        }
        self.domains.sort_unstable_by_key(|d| d.key.id);
        self.known_ids.clear();
        self.known_ids.extend_from_slice(&self.ids);
        Ok(true)
    }

    fn domain_count(&self) -> usize {
        self.domains.len()
    }

    fn domain(&self, i: usize) -> DomainInfo<'_> {
        let d = &self.domains[i];
        DomainInfo {
            key: d.key,
            name: &d.name,
        }
    }

    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), Error> {
        let d = &self.domains[i];
        let n = d.vcpus;
        let maplen = self.maplen;
        let got = match d
            .dom
            .vcpus_into(&mut self.info[..n], &mut self.maps[..n * maplen], maplen)
        {
            Ok(got) => got,
            Err(e) => {
                // A domain destroyed while we read it fails with whatever the driver
                // met first ("No such process" reading its threads, say). If it is no
                // longer running, that is a stopped domain, not an error to report.
                let e = if e.kind() == FailureKind::Other && !d.dom.is_active() {
                    Error::local(
                        e.call,
                        ffi::virErrorNumber::VIR_ERR_NO_DOMAIN,
                        format!("domain stopped while being read: {}", e.message),
                    )
                } else {
                    e
                };
                if e.kind() == FailureKind::DomainGone {
                    self.stale = true;
                }
                return Err(e);
            }
        };
        let at_ns = self.now_ns();
        let d = &self.domains[i];
        for (k, info) in self.info[..got].iter().enumerate() {
            let mask = cpumap::get_cpumap(&self.maps, maplen, k).unwrap_or(&[]);
            out.push(VcpuSample {
                domain: d.key,
                vcpu: VcpuId(info.number()),
                cpu_time_ns: info.cpu_time_ns(),
                at_ns,
                pinned_to: cpumap::only_cpu(mask, self.pcpus).map(|c| PcpuId(c as u32)),
                last_ran_on: info
                    .last_cpu()
                    .filter(|&c| c < self.pcpus)
                    .map(|c| PcpuId(c as u32)),
            });
        }
        Ok(())
    }

    fn sample_pcpus(&mut self, out: &mut [PcpuTimes]) -> Result<bool, Error> {
        if !self.cpu_stats_ok {
            return Ok(false);
        }
        for (p, t) in out.iter_mut().enumerate().take(self.pcpus) {
            match self.conn.pcpu_times(p, &mut self.cpu_stats) {
                Ok(times) => *t = times,
                Err(e) if e.kind() == FailureKind::ConnectionLost => return Err(e),
                // The driver cannot tell (or not for this CPU): judge saturation from
                // the vCPU figures from now on, rather than fail the tick every time.
                Err(_) => {
                    self.cpu_stats_ok = false;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn pin(&mut self, domain: DomainKey, vcpu: VcpuId, pcpu: PcpuId) -> Result<(), Error> {
        const CALL: &str = "virDomainPinVcpu";
        let Some(d) = self.domains.iter().find(|d| d.key == domain) else {
            return Err(Error::local(
                CALL,
                ffi::virErrorNumber::VIR_ERR_NO_DOMAIN,
                "domain is no longer running".into(),
            ));
        };
        // The test driver accepts pins to CPUs that do not exist; never send one.
        if let Err(e) = self.pin_map.set_only(pcpu.index()) {
            return Err(Error::local(
                CALL,
                ffi::virErrorNumber::VIR_ERR_INVALID_ARG,
                e.to_string(),
            ));
        }
        if self.live_flag_ok {
            let live = ffi::virDomainModificationImpact::VIR_DOMAIN_AFFECT_LIVE;
            match d.dom.pin_vcpu_flags(vcpu, &self.pin_map, live) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.is(ffi::virErrorNumber::VIR_ERR_INVALID_ARG)
                        || e.is(ffi::virErrorNumber::VIR_ERR_NO_SUPPORT) =>
                {
                    self.live_flag_ok = false;
                }
                Err(e) => return Err(e),
            }
        }
        d.dom.pin_vcpu(vcpu, &self.pin_map)
    }
}
