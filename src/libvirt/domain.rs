//! The owned domain handle: [`Domain`] (`virDomainPtr`), freed on drop and tied to the
//! lifetime of its [`Connection`], plus the caller-owned [`VcpuInfo`] records its calls
//! fill in place.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_uint};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use super::error::{Error, check, to_c_int};
use super::ffi;
use super::handles::{Connection, count_rpc, field_name};
use crate::cpumap::{self, CpuMap};
use crate::host::VcpuId;

// In this file rather than beside `Connection`'s other calls, so that the connection
// need not know the domain type: the domain depends on the connection, not both ways.
impl Connection {
    /// Look up a running domain by its id.
    pub fn domain_by_id(&self, id: c_int) -> Result<Domain<'_>, Error> {
        let _waiting = count_rpc();
        let raw = check(
            // SAFETY: open connection; any id is acceptable input.
            unsafe { ffi::virDomainLookupByID(self.raw(), id) },
            "virDomainLookupByID",
        )?;
        // SAFETY: libvirt returned a new reference that the caller must free.
        Ok(unsafe { Domain::from_raw(raw) })
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
    pub(super) unsafe fn from_raw(raw: NonNull<ffi::virDomain>) -> Domain<'c> {
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
        let _waiting = count_rpc();
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
