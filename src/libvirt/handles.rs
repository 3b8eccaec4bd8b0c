//! The owned connection: [`Connection`] (`virConnectPtr`), closed on drop; the
//! round-trip counter every call to the hypervisor goes through; the node records its
//! calls fill in place. Domains are in `domain.rs`.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr::{self, NonNull};

use super::error::{Error, check, quiet_libvirt_errors, to_c_int};
use super::ffi;
use super::silence;
use crate::cpumap;
use crate::host::PcpuTimes;

thread_local! {
    /// Calls to the hypervisor made on this thread; see [`rpc_calls`]. Per thread, not
    /// per process: handles are `!Send`, so a connection's calls all come from one
    /// thread, and tests running side by side in one process cannot disturb each
    /// other's counts. A const-initialised `Cell` needs no allocation and no destructor.
    static RPC_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Calls to the hypervisor made so far on this thread, for reporting calls per tick.
///
/// Counted: every call that, over a remote connection such as `qemu:///system`, is a
/// round trip to libvirtd (`virConnectNumOfDomains`, `virConnectListDomains`,
/// `virDomainLookupByID`, `virDomainGetInfo`, `virDomainGetVcpus`,
/// `virDomainPinVcpu(Flags)`, `virDomainGetVcpuPinInfo`, `virNodeGetInfo`,
/// `virNodeGetCPUStats`, `virDomainIsActive`, `virDomainIsPersistent`,
/// `virDomainGetMaxVcpus`, `virDomainGetNumaParameters`, `virConnectGetURI`,
/// `virConnectGetCapabilities`, `virConnectGetAllDomainStats`), once per call made, whether it succeeds or not.
/// Not counted: accessors that read libvirt's local copy of an object
/// (`virDomainGetName`, `virDomainGetUUID`, `virDomainGetID`), the error functions, frees,
/// and opening or closing a connection (not part of a tick). Round trips are what a tick
/// costs the daemon, so this is the number the README reports.
pub fn rpc_calls() -> u64 {
    RPC_CALLS.with(Cell::get)
}

/// Count one round trip to the hypervisor; called right before each such FFI call.
/// The guard it returns marks the thread as waiting for libvirtd until it drops (see
/// `silence.rs`: a libvirtd silent for 14 s meanwhile gets the connection closed).
pub(super) fn count_rpc() -> silence::Waiting {
    RPC_CALLS.with(|c| c.set(c.get().wrapping_add(1)));
    silence::waiting()
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
    /// The socket to libvirtd, for noticing a silent one (`silence.rs`).
    link: silence::Link,
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
        // A libvirtd that accepts the connection and then says nothing (stopped, hung)
        // would keep the open waiting forever: it is watched like any call.
        // Taken inside the stderr redirection, so that the duplicate of stderr it keeps
        // (under systemd, the journal's socket) counts among the descriptors open
        // before: only the sockets libvirt creates may be shut down.
        let (raw, link) = with_stderr_silenced(|| {
            let opening = silence::opening();
            // SAFETY: c_uri is a valid NUL-terminated string that outlives the call
            // (kept in a local); libvirt copies what it needs.
            let raw = unsafe {
                if read_only {
                    ffi::virConnectOpenReadOnly(c_uri.as_ptr())
                } else {
                    ffi::virConnectOpen(c_uri.as_ptr())
                }
            };
            (raw, opening.done(!raw.is_null()))
        });
        Ok(Connection {
            ptr: check(raw, call)?,
            link,
        })
    }

    /// The raw pointer, for the FFI calls of sibling modules (`stats.rs`); it stays
    /// owned by this `Connection` and must not be closed or outlive it.
    pub(super) fn raw(&self) -> ffi::virConnectPtr {
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
        let _waiting = count_rpc();
        check(
            // SAFETY: the connection is open (owned since construction); info is a valid,
            // writable virNodeInfo on our stack.
            unsafe { ffi::virNodeGetInfo(self.raw(), &mut info) },
            "virNodeGetInfo",
        )?;
        // The count sizes every mask and table: 0 could pin nothing, and a figure past
        // what this program addresses must not size its buffers.
        match usize::try_from(info.cpus) {
            Ok(n @ 1..=cpumap::MAX_CPUS) => Ok(n),
            _ => Err(Error::local(
                "virNodeGetInfo",
                ffi::virErrorNumber::VIR_ERR_INTERNAL_ERROR,
                format!(
                    "the node reports {} pcpus; this program handles 1 to {}",
                    info.cpus,
                    cpumap::MAX_CPUS
                ),
            )),
        }
    }

    /// Cumulative times of pCPU `cpu` (`virNodeGetCPUStats`), using `buf` as the
    /// parameter array (grown on the first call only). Busy is user + kernel; total adds
    /// idle and iowait.
    pub(super) fn pcpu_times(
        &self,
        cpu: usize,
        buf: &mut Vec<NodeCpuStat>,
    ) -> Result<PcpuTimes, Error> {
        const CALL: &str = "virNodeGetCPUStats";
        let cpu = to_c_int(cpu, CALL)?;
        if buf.is_empty() {
            let mut n: c_int = 0;
            let _waiting = count_rpc();
            // SAFETY: open connection; a null params array with *nparams == 0 asks
            // libvirt how many parameters it would return, writing only n.
            let r = unsafe { ffi::virNodeGetCPUStats(self.raw(), cpu, ptr::null_mut(), &mut n, 0) };
            check(r, CALL)?;
            buf.resize(usize::try_from(n).unwrap_or(0), NodeCpuStat::default());
        }
        let mut n = to_c_int(buf.len(), CALL)?;
        let _waiting = count_rpc();
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

    /// The host's capabilities document (`virConnectGetCapabilities`): its
    /// `<topology>` gives the NUMA nodes and SMT siblings. Read once per connection.
    pub fn capabilities(&self) -> Result<String, Error> {
        let _waiting = count_rpc();
        let p = check(
            // SAFETY: open connection; the returned string is ours to free.
            unsafe { ffi::virConnectGetCapabilities(self.raw()) },
            "virConnectGetCapabilities",
        )?;
        Ok(take_string(p))
    }

    /// The URI libvirt actually connected to (after defaults and aliases).
    pub fn uri(&self) -> Result<String, Error> {
        let _waiting = count_rpc();
        let p = check(
            // SAFETY: open connection; the returned string is ours to free.
            unsafe { ffi::virConnectGetURI(self.raw()) },
            "virConnectGetURI",
        )?;
        Ok(take_string(p))
    }

    /// Fill `ids` with the ids of the running domains, reusing its capacity.
    ///
    /// `virConnectNumOfDomains` + `virConnectListDomains` write into a caller buffer, so
    /// a steady host costs no allocation (unlike `virConnectListAllDomains`). A domain
    /// that stops in between only shows up later as `VIR_ERR_NO_DOMAIN`, handled anyway.
    pub fn running_domain_ids(&self, ids: &mut Vec<c_int>) -> Result<(), Error> {
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
        let got = check(
            // SAFETY: ids holds n writable c_ints and we pass n as the maximum.
            unsafe { ffi::virConnectListDomains(self.raw(), ids.as_mut_ptr(), max) },
            "virConnectListDomains",
        )?;
        ids.truncate(usize::try_from(got).unwrap_or(0));
        Ok(())
    }

    /// Close explicitly and report. `Ok(n)` is the number of references still held
    /// elsewhere: 0 means every domain handle was freed too.
    pub fn close(self) -> Result<i32, Error> {
        let mut this = std::mem::ManuallyDrop::new(self);
        let mut link = std::mem::take(&mut this.link);
        // SAFETY: we owned the only Connection for this pointer and will not drop it
        // (ManuallyDrop), so Drop will not close it a second time.
        let r = unsafe { close_watched(this.raw(), &mut link) };
        check(r, "virConnectClose")
    }
}

/// `virConnectClose`, itself a round trip to libvirtd: the socket's idle watch goes
/// first, the socket stays known until the close returned, so a close that waits on a
/// silent libvirtd is ended like any call.
///
/// # Safety
/// `raw` must be an open connection that is closed by no one else, before or after.
unsafe fn close_watched(raw: ffi::virConnectPtr, link: &mut silence::Link) -> c_int {
    link.unwatch();
    let _waiting = silence::waiting();
    // SAFETY: the caller's contract: open, and closed only here.
    unsafe { ffi::virConnectClose(raw) }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: owned since construction and not closed yet (close() does not drop).
        // A failure here cannot be acted on; it is ignored rather than panicking.
        let _ = unsafe { close_watched(self.raw(), &mut self.link) };
    }
}

/// One `virNodeCPUStats` record (a field name and a cumulative value), as a
/// caller-owned buffer element for [`Connection::pcpu_times`].
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(super) struct NodeCpuStat(ffi::virNodeCPUStats);

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
        field_name(&self.0.field)
    }
}

/// Copy a string libvirt allocated for the caller, and free it. glib allocates with the
/// C library's malloc (since glib 2.46), so `free` is the matching release.
pub(super) fn take_string(p: NonNull<c_char>) -> String {
    // SAFETY: p is a non-null NUL-terminated string allocated by libvirt for us.
    let s = unsafe { CStr::from_ptr(p.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: ours to free (the calls that return it say so); not used after.
    unsafe { libc::free(p.as_ptr().cast()) };
    s
}

/// A fixed-size C name field (`virNodeCPUStats.field`, `virTypedParameter.field`) as
/// bytes up to its NUL, or the whole array if libvirt filled it without one.
pub(super) fn field_name(f: &[c_char]) -> &[u8] {
    let len = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    // c_char is i8 or u8 by platform; the bytes are ASCII either way.
    // SAFETY: c_char and u8 have the same size and alignment, and `len` is within
    // the array, so the slice covers initialised bytes we borrow immutably.
    unsafe { std::slice::from_raw_parts(f.as_ptr().cast::<u8>(), len) }
}
