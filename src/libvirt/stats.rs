//! The bulk stats call (`virConnectGetAllDomainStats`), vCPU group only: one round trip
//! gives the run time and run-queue delay of every vCPU of every running domain, copied
//! into a caller-owned [`VcpuStatsTable`]. Owns the returned record list for the length
//! of the call and nothing else; knows nothing of the scheduler's `Host` seam.
#![allow(unsafe_code)]

use std::ptr;

use super::error::{Error, check};
use super::ffi;
use super::handles::{Connection, count_rpc, field_name};

/// vCPU indexes at or above this are treated as malformed input and skipped. It is
/// KVM's own ceiling on x86 (`KVM_MAX_VCPUS` with `MAXSMP`), and it bounds how far one
/// bad field name can grow the table.
const MAX_VCPUS: usize = 4096;

// Domain keys are 16 bytes throughout the crate; virDomainGetUUID writes this many.
const _: () = assert!(ffi::VIR_UUID_BUFLEN == 16);

/// What the bulk stats call reported for one vCPU. Either figure is `None` when the
/// driver did not report it, or reported it with a type other than a (signed or
/// unsigned) long long, or negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// `vcpu.N.time`: cumulative run time, ns (the same clock as `virVcpuInfo.cpuTime`).
    pub time_ns: Option<u64>,
    /// `vcpu.N.delay`: cumulative time the vCPU thread was runnable but waiting for a
    /// pCPU (run-queue delay, from the host's schedstat), ns.
    pub delay_ns: Option<u64>,
}

/// One domain's slice of [`VcpuStatsTable::vcpus`].
#[derive(Clone, Copy, Debug)]
struct DomainEntry {
    uuid: [u8; 16],
    first: usize,
    count: usize,
}

/// The result of one [`Connection::vcpu_stats`] call, owned by the caller and refilled
/// in place: both vectors are cleared and refilled, so a steady host costs no
/// allocation on our side (libvirt still allocates its record list on every call).
///
/// Per domain, the slice is indexed by vCPU number: entry N holds `vcpu.N.*`. A vCPU
/// the driver skipped (an offline one below an online one) is an entry with both
/// figures `None`; a domain the driver reported no vCPU fields for has an empty slice.
#[derive(Debug, Default)]
pub struct VcpuStatsTable {
    /// Sorted by UUID after each fill, for [`VcpuStatsTable::domain`].
    domains: Vec<DomainEntry>,
    vcpus: Vec<VcpuStats>,
    delay_seen: bool,
}

impl VcpuStatsTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `domains` domains with `vcpus` vCPUs between them, so the first fills
    /// on a host of that size do not grow anything.
    pub fn with_capacity(domains: usize, vcpus: usize) -> Self {
        VcpuStatsTable {
            domains: Vec::with_capacity(domains),
            vcpus: Vec::with_capacity(vcpus),
            delay_seen: false,
        }
    }

    /// Number of domains reported.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The vCPUs of the domain with this UUID, indexed by vCPU number; `None` if the
    /// last call did not report that domain (not running, or it stopped meanwhile).
    pub fn domain(&self, uuid: &[u8; 16]) -> Option<&[VcpuStats]> {
        let i = self.domains.binary_search_by(|d| d.uuid.cmp(uuid)).ok()?;
        Some(self.slice(&self.domains[i]))
    }

    /// Every domain reported, in UUID order (not libvirt's order, which the driver
    /// does not define).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], &[VcpuStats])> {
        self.domains.iter().map(|d| (&d.uuid, self.slice(d)))
    }

    /// Whether at least one vCPU came with a usable `vcpu.N.delay`: the driver reports
    /// run-queue delay, so demand can be told from usage. QEMU does (libvirt >= 6.x on a
    /// host with schedstat); libvirt's test driver reports no vCPU fields at all.
    pub fn any_delay(&self) -> bool {
        self.delay_seen
    }

    fn slice(&self, d: &DomainEntry) -> &[VcpuStats] {
        // first..first+count lies within `vcpus` by construction; `get` keeps a broken
        // invariant from ever panicking.
        d.first
            .checked_add(d.count)
            .and_then(|end| self.vcpus.get(d.first..end))
            .unwrap_or(&[])
    }

    fn clear(&mut self) {
        self.domains.clear();
        self.vcpus.clear();
        self.delay_seen = false;
    }

    /// Start the next domain; the fields that follow belong to it.
    fn begin_domain(&mut self, uuid: [u8; 16]) {
        self.domains.push(DomainEntry {
            uuid,
            first: self.vcpus.len(),
            count: 0,
        });
    }

    /// Record one vCPU figure for the domain begun last. The current domain's vCPUs
    /// are always the tail of `vcpus`, so a higher index only extends that tail.
    fn set(&mut self, vcpu: usize, field: VcpuField, value: Option<u64>) {
        let Some(d) = self.domains.last_mut() else {
            return;
        };
        if vcpu >= d.count {
            d.count = vcpu + 1;
            self.vcpus.resize(d.first + d.count, VcpuStats::default());
        }
        let slot = &mut self.vcpus[d.first + vcpu];
        match field {
            VcpuField::Time => slot.time_ns = value,
            VcpuField::Delay => {
                slot.delay_ns = value;
                self.delay_seen |= value.is_some();
            }
        }
    }

    /// Done filling: sort for lookup. `sort_unstable` works in place (no allocation);
    /// UUIDs are unique, so stability would buy nothing.
    fn finish(&mut self) {
        self.domains.sort_unstable_by_key(|d| d.uuid);
    }
}

/// The two per-vCPU fields we keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VcpuField {
    Time,
    Delay,
}

/// `vcpu.N.time` / `vcpu.N.delay` to `(N, field)`; every other name (`vcpu.current`,
/// `vcpu.maximum`, `vcpu.N.state`, `vcpu.N.wait`, `vcpu.N.halted`, the KVM counters such
/// as `vcpu.N.exits.sum`) and any N that is not a plain number below [`MAX_VCPUS`] to
/// `None`. Works on the bytes in place: called for every field of every domain each tick.
fn parse_vcpu_field(name: &[u8]) -> Option<(usize, VcpuField)> {
    let rest = name.strip_prefix(b"vcpu.")?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (digits, suffix) = (&rest[..dot], &rest[dot + 1..]);
    let field = match suffix {
        b"time" => VcpuField::Time,
        b"delay" => VcpuField::Delay,
        _ => return None,
    };
    Some((parse_index(digits)?, field))
}

/// Decimal digits to an index below [`MAX_VCPUS`]; stops as soon as the value is too
/// large, so no length of input can overflow.
fn parse_index(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    let mut n = 0usize;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
        if n >= MAX_VCPUS {
            return None;
        }
    }
    Some(n)
}

/// A typed parameter's value as a count of nanoseconds, if it is a long long; a
/// negative signed value is no count.
fn param_u64(p: &ffi::virTypedParameter) -> Option<u64> {
    use ffi::virTypedParameterType::{VIR_TYPED_PARAM_LLONG, VIR_TYPED_PARAM_ULLONG};
    match u32::try_from(p.type_).ok()? {
        VIR_TYPED_PARAM_ULLONG => {
            // SAFETY: the type tag says `ul` is the member libvirt wrote; every bit
            // pattern is a valid u64.
            Some(unsafe { p.value.ul })
        }
        VIR_TYPED_PARAM_LLONG => {
            // SAFETY: the type tag says `l` is the member libvirt wrote; every bit
            // pattern is a valid i64.
            u64::try_from(unsafe { p.value.l }).ok()
        }
        _ => None,
    }
}

/// The record list `virConnectGetAllDomainStats` returns, freed on drop so every path
/// out of [`Connection::vcpu_stats`] releases it (with it the records, their parameters
/// and the domain reference each record holds).
struct RecordList {
    ptr: *mut ffi::virDomainStatsRecordPtr,
    len: usize,
}

impl RecordList {
    fn records(&self) -> &[ffi::virDomainStatsRecordPtr] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: libvirt returned an array of `len` record pointers (plus a null
        // terminator), valid until Drop frees it; the slice borrows self, so it cannot
        // outlive the list.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for RecordList {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: ptr came from virConnectGetAllDomainStats and is freed here only,
            // once. The call returns nothing and cannot fail, so Drop cannot panic.
            unsafe { ffi::virDomainStatsRecordListFree(self.ptr) };
        }
    }
}

/// The parameters of one record, empty if libvirt gave none.
fn params(rec: &ffi::virDomainStatsRecord) -> &[ffi::virTypedParameter] {
    match usize::try_from(rec.nparams) {
        Ok(n) if n > 0 && !rec.params.is_null() => {
            // SAFETY: libvirt's record holds `nparams` typed parameters at `params`,
            // owned by the record list, which outlives the borrow of `rec`.
            unsafe { std::slice::from_raw_parts(rec.params, n) }
        }
        _ => &[],
    }
}

impl Connection {
    /// Fill `out` with the time and delay of every vCPU of every running domain, in one
    /// `virConnectGetAllDomainStats` call (`VIR_DOMAIN_STATS_VCPU`).
    ///
    /// `NOWAIT`: a domain stuck in a long job (migration, a hung QEMU monitor) is
    /// reported with what libvirt has without waiting for the job, instead of stalling
    /// the whole call and with it the tick. Records without a domain, or whose UUID
    /// cannot be read, are skipped. On error `out` is left as it was.
    pub fn vcpu_stats(&self, out: &mut VcpuStatsTable) -> Result<(), Error> {
        use ffi::virConnectGetAllDomainStatsFlags::{
            VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE as ACTIVE,
            VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT as NOWAIT,
        };
        const CALL: &str = "virConnectGetAllDomainStats";
        let stats = ffi::virDomainStatsTypes::VIR_DOMAIN_STATS_VCPU;
        let mut records: *mut ffi::virDomainStatsRecordPtr = ptr::null_mut();
        let _waiting = count_rpc();
        // SAFETY: the connection is open (owned by self); `records` is a valid
        // out-pointer that libvirt sets to a list the caller must free.
        let r = unsafe {
            ffi::virConnectGetAllDomainStats(self.raw(), stats, &mut records, ACTIVE | NOWAIT)
        };
        // Owned from here, before the check, so that no return path can leak it; the
        // check copies libvirt's error before the guard's free could reset it.
        let mut list = RecordList {
            ptr: records,
            len: 0,
        };
        let n = check(r, CALL)?;
        list.len = usize::try_from(n).unwrap_or(0);

        out.clear();
        for &rec in list.records() {
            // SAFETY: a record pointer from the list (checked for null by as_ref), valid
            // while `list` lives, which outlives this loop.
            let Some(rec) = (unsafe { rec.as_ref() }) else {
                continue;
            };
            if rec.dom.is_null() {
                continue;
            }
            let mut uuid = [0u8; 16];
            // SAFETY: rec.dom is non-null and kept alive by the record list (borrowed: we
            // do not free it); uuid has VIR_UUID_BUFLEN (16, asserted above) writable
            // bytes. A local read, no round trip.
            let r = unsafe { ffi::virDomainGetUUID(rec.dom, uuid.as_mut_ptr()) };
            // check() also clears libvirt's error, so skipping leaves nothing stale.
            if check(r, "virDomainGetUUID").is_err() {
                continue;
            }
            out.begin_domain(uuid);
            for p in params(rec) {
                if let Some((vcpu, field)) = parse_vcpu_field(field_name(&p.field)) {
                    out.set(vcpu, field, param_u64(p));
                }
            }
        }
        out.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_index_and_field() {
        assert_eq!(
            parse_vcpu_field(b"vcpu.12.delay"),
            Some((12, VcpuField::Delay))
        );
        assert_eq!(parse_vcpu_field(b"vcpu.0.time"), Some((0, VcpuField::Time)));
        assert_eq!(
            parse_vcpu_field(b"vcpu.4095.time"),
            Some((4095, VcpuField::Time))
        );
    }

    #[test]
    fn other_names_are_ignored() {
        for name in [
            &b"vcpu.current"[..],
            b"vcpu.maximum",
            b"vcpu.1.state",
            b"vcpu.1.wait",
            b"vcpu.1.halted",
            b"vcpu.1.exits.sum",
            b"vcpu.1.delay.sum",
            b"vcpu.1.time.x",
            b"vcpu.1.",
            b"vcpu.1",
            b"vcpu.",
            b"cpu.time",
            b"vcpux.1.time",
            b"",
        ] {
            assert_eq!(
                parse_vcpu_field(name),
                None,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn bad_indexes_are_skipped() {
        for name in [
            &b"vcpu.x.time"[..],
            b"vcpu..time",
            b"vcpu.-1.time",
            b"vcpu.+1.time",
            b"vcpu.1 .time",
            b"vcpu.4096.time",
            b"vcpu.99999999999.time",
            b"vcpu.99999999999999999999999999999999.delay",
        ] {
            assert_eq!(
                parse_vcpu_field(name),
                None,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    fn uuid(b: u8) -> [u8; 16] {
        [b; 16]
    }

    #[test]
    fn table_is_indexed_by_vcpu_number_and_found_by_uuid() {
        let mut t = VcpuStatsTable::new();
        t.clear();
        t.begin_domain(uuid(9));
        t.set(0, VcpuField::Time, Some(10));
        t.set(0, VcpuField::Delay, Some(1));
        // Sparse: vCPU 1 offline, vCPU 2 online.
        t.set(2, VcpuField::Time, Some(30));
        t.begin_domain(uuid(3));
        t.begin_domain(uuid(5));
        t.set(0, VcpuField::Time, None);
        t.finish();

        assert_eq!(t.len(), 3);
        let nine = t.domain(&uuid(9)).unwrap();
        assert_eq!(nine.len(), 3);
        assert_eq!(
            nine[0],
            VcpuStats {
                time_ns: Some(10),
                delay_ns: Some(1)
            }
        );
        assert_eq!(nine[1], VcpuStats::default());
        assert_eq!(nine[2].time_ns, Some(30));
        assert_eq!(t.domain(&uuid(3)), Some(&[][..]));
        assert_eq!(t.domain(&uuid(5)), Some(&[VcpuStats::default()][..]));
        assert_eq!(t.domain(&uuid(4)), None);
        assert!(t.any_delay());
        let order: Vec<u8> = t.iter().map(|(u, _)| u[0]).collect();
        assert_eq!(order, [3, 5, 9]);
    }

    #[test]
    fn refill_forgets_the_last_call_and_does_not_grow() {
        let mut t = VcpuStatsTable::with_capacity(2, 4);
        for _ in 0..3 {
            t.clear();
            t.begin_domain(uuid(1));
            t.set(3, VcpuField::Delay, Some(7));
            t.begin_domain(uuid(2));
            t.finish();
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.domain(&uuid(1)).map(<[_]>::len), Some(4));
        assert_eq!((t.domains.capacity(), t.vcpus.capacity()), (2, 4));

        t.clear();
        t.begin_domain(uuid(1));
        t.set(0, VcpuField::Delay, None);
        t.finish();
        assert!(!t.any_delay(), "a delay field without a usable value");
        assert_eq!(t.domain(&uuid(2)), None);
    }

    #[test]
    fn a_field_before_any_domain_is_dropped() {
        let mut t = VcpuStatsTable::new();
        t.set(0, VcpuField::Time, Some(1));
        t.finish();
        assert!(t.is_empty());
        assert!(!t.any_delay());
    }
}
