//! The owned handles: [`Connection`] (`virConnectPtr`) and [`Domain`] (`virDomainPtr`),
//! freed on drop, plus the caller-owned record types their calls fill in place.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int, c_uint};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use super::error::{Error, check, quiet_libvirt_errors, to_c_int};
use crate::cpumap::{self, CpuMap};
use crate::ffi;
use crate::host::{PcpuTimes, VcpuId};

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
/// `virNodeGetCPUStats`, `virDomainIsActive`, `virConnectGetURI`,
/// `virConnectGetAllDomainStats`), once per call made, whether it succeeds or not.
/// Not counted: accessors that read libvirt's local copy of an object
/// (`virDomainGetName`, `virDomainGetUUID`, `virDomainGetID`), the error functions, frees,
/// and opening or closing a connection (not part of a tick). Round trips are what a tick
/// costs the daemon, so this is the number the README reports.
pub fn rpc_calls() -> u64 {
    RPC_CALLS.with(Cell::get)
}

/// Count one round trip to the hypervisor; called right before each such FFI call.
pub(super) fn count_rpc() {
    RPC_CALLS.with(|c| c.set(c.get().wrapping_add(1)));
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
        count_rpc();
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
    pub(super) fn pcpu_times(
        &self,
        cpu: usize,
        buf: &mut Vec<NodeCpuStat>,
    ) -> Result<PcpuTimes, Error> {
        const CALL: &str = "virNodeGetCPUStats";
        let cpu = to_c_int(cpu, CALL)?;
        if buf.is_empty() {
            let mut n: c_int = 0;
            count_rpc();
            // SAFETY: open connection; a null params array with *nparams == 0 asks
            // libvirt how many parameters it would return, writing only n.
            let r = unsafe { ffi::virNodeGetCPUStats(self.raw(), cpu, ptr::null_mut(), &mut n, 0) };
            check(r, CALL)?;
            buf.resize(usize::try_from(n).unwrap_or(0), NodeCpuStat::default());
        }
        let mut n = to_c_int(buf.len(), CALL)?;
        count_rpc();
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
        count_rpc();
        let p = check(
            // SAFETY: open connection; the returned string is ours to free.
            unsafe { ffi::virConnectGetCapabilities(self.raw()) },
            "virConnectGetCapabilities",
        )?;
        Ok(take_string(p))
    }

    /// The URI libvirt actually connected to (after defaults and aliases).
    pub fn uri(&self) -> Result<String, Error> {
        count_rpc();
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
        count_rpc();
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
        count_rpc();
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
        count_rpc();
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
        count_rpc();
        // SAFETY: valid domain reference; returns 1, 0 or -1 and touches nothing else.
        let r = unsafe { ffi::virDomainIsActive(self.raw()) };
        if r < 0 {
            // Clear the error this left behind so it cannot surface in a later report.
            // SAFETY: no arguments.
            unsafe { ffi::virResetLastError() };
        }
        r == 1
    }

    /// Whether the domain has a persistent configuration (`virDomainIsPersistent`);
    /// transient ones (`virsh create`) have none.
    pub fn is_persistent(&self) -> Result<bool, Error> {
        count_rpc();
        let r = check(
            // SAFETY: valid domain reference; returns 1, 0 or -1.
            unsafe { ffi::virDomainIsPersistent(self.raw()) },
            "virDomainIsPersistent",
        )?;
        Ok(r == 1)
    }

    /// The nodeset its memory is bound to (`<numatune><memory nodeset=...>`, read with
    /// `virDomainGetNumaParameters`), as libvirt writes it (`0`, `0-1`); `None` when not
    /// bound. Read when a domain is first seen.
    pub fn numa_nodeset(&self) -> Result<Option<String>, Error> {
        const CALL: &str = "virDomainGetNumaParameters";
        let live = ffi::virDomainModificationImpact::VIR_DOMAIN_AFFECT_LIVE;
        let mut n: c_int = 0;
        count_rpc();
        check(
            // SAFETY: valid domain; a null array with *nparams == 0 asks how many
            // parameters there are, writing only n.
            unsafe { ffi::virDomainGetNumaParameters(self.raw(), ptr::null_mut(), &mut n, live) },
            CALL,
        )?;
        let len = usize::try_from(n).unwrap_or(0);
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: an all-zero virTypedParameter is a valid value (empty name, int 0).
        let zero: ffi::virTypedParameter = unsafe { std::mem::zeroed() };
        let mut params = vec![zero; len];
        count_rpc();
        let got = check(
            // SAFETY: valid domain; params holds n writable records and we pass n.
            unsafe {
                ffi::virDomainGetNumaParameters(self.raw(), params.as_mut_ptr(), &mut n, live)
            },
            CALL,
        );
        let filled = usize::try_from(n).unwrap_or(0).min(len);
        let mut nodeset = None;
        if got.is_ok() {
            for p in &params[..filled] {
                let string = ffi::virTypedParameterType::VIR_TYPED_PARAM_STRING as c_int;
                if field_name(&p.field) == b"numa_nodeset" && p.type_ == string {
                    // SAFETY: a STRING parameter's value is the `s` member, a
                    // NUL-terminated string owned by the array until it is cleared.
                    let s = unsafe { p.value.s };
                    if !s.is_null() {
                        // SAFETY: non-null, NUL-terminated (see above).
                        let v = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
                        nodeset = Some(v).filter(|v| !v.is_empty());
                    }
                }
            }
        }
        let c_filled = to_c_int(filled, CALL)?;
        // SAFETY: params holds `filled` records libvirt filled; this frees the strings
        // they own (not the array, which is ours) and is safe on zeroed records.
        unsafe { ffi::virTypedParamsClear(params.as_mut_ptr(), c_filled) };
        got?;
        Ok(nodeset)
    }

    /// The most vCPUs the running domain can have (`virDomainGetMaxVcpus`): buffers
    /// sized to it survive vCPU hotplug.
    pub fn max_vcpus(&self) -> Result<usize, Error> {
        count_rpc();
        let n = check(
            // SAFETY: valid domain reference.
            unsafe { ffi::virDomainGetMaxVcpus(self.raw()) },
            "virDomainGetMaxVcpus",
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
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
        count_rpc();
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
        count_rpc();
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
        count_rpc();
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
        count_rpc();
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
        let nvcpus = self.vcpu_count()?;
        let live = ffi::virDomainModificationImpact::VIR_DOMAIN_AFFECT_LIVE;
        self.pin_info(ncpus, nvcpus, live)
    }

    /// The pinning the owner put in the persistent configuration
    /// (`virDomainGetVcpuPinInfo` with `VIR_DOMAIN_AFFECT_CONFIG`): `virsh vcpupin
    /// --config`, `<cputune><vcpupin>`, `<vcpu cpuset=...>`. One mask per configured vCPU
    /// (up to the maximum). Read when a domain is first seen or redefined.
    pub fn configured_pins(&self, ncpus: usize) -> Result<Vec<CpuMap>, Error> {
        let nvcpus = self.max_vcpus()?;
        let config = ffi::virDomainModificationImpact::VIR_DOMAIN_AFFECT_CONFIG;
        self.pin_info(ncpus, nvcpus, config)
    }

    fn pin_info(&self, ncpus: usize, nvcpus: usize, flags: c_uint) -> Result<Vec<CpuMap>, Error> {
        const CALL: &str = "virDomainGetVcpuPinInfo";
        let maplen = cpumap::cpu_maplen(ncpus);
        let mut maps = vec![0u8; nvcpus * maplen];
        let c_n = to_c_int(nvcpus, CALL)?;
        let c_maplen = to_c_int(maplen, CALL)?;
        count_rpc();
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

/// A fixed-size C name field (`virNodeCPUStats.field`, `virTypedParameter.field`) as
/// bytes up to its NUL, or the whole array if libvirt filled it without one.
/// Copy a string libvirt allocated for the caller, and free it. glib allocates with the
/// C library's malloc (since glib 2.46), so `free` is the matching release.
fn take_string(p: NonNull<c_char>) -> String {
    // SAFETY: p is a non-null NUL-terminated string allocated by libvirt for us.
    let s = unsafe { CStr::from_ptr(p.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: ours to free (the calls that return it say so); not used after.
    unsafe { libc::free(p.as_ptr().cast()) };
    s
}

pub(super) fn field_name(f: &[c_char]) -> &[u8] {
    let len = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    // c_char is i8 or u8 by platform; the bytes are ASCII either way.
    // SAFETY: c_char and u8 have the same size and alignment, and `len` is within
    // the array, so the slice covers initialised bytes we borrow immutably.
    unsafe { std::slice::from_raw_parts(f.as_ptr().cast::<u8>(), len) }
}
