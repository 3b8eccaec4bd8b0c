//! [`LibvirtHost`]: the scheduler's [`Host`] seam over one [`Connection`]. Safe code
//! only: every libvirt call goes through the handles in `handles.rs`.

use std::ffi::c_int;
use std::time::Instant;

use super::domain::{Domain, VcpuInfo};
use super::error::Error;
use super::ffi;
use super::handles::{Connection, NodeCpuStat};
use super::stats::VcpuStatsTable;
use crate::cpumap::{self, CpuMap};
use crate::host::{
    DomainInfo, DomainKey, FailureKind, Host, HostError, PcpuId, PcpuTimes, RunQueue, VcpuId,
    VcpuSample,
};
use crate::topology::Topology;

/// A domain the host is tracking, looked up once when it first appeared.
struct Tracked<'c> {
    dom: Domain<'c>,
    /// The id it was looked up by (libvirt's `int`), to compare with the listing.
    id: c_int,
    key: DomainKey,
    name: String,
    /// The most vCPUs it can have: its buffers are sized for them, so vCPUs hotplugged
    /// later (`virsh setvcpus --live`) are read from the next tick on.
    max_vcpus: usize,
    /// Its owner pinned it in its persistent configuration (see [`DomainInfo`]).
    config_pinned: bool,
    /// Each vCPU's affinity as the last `virDomainGetVcpus` wrote it (`maplen` bytes per
    /// vCPU, `max_vcpus` of them), and how many vCPUs that call reported: its own
    /// buffer, so [`Host::affinity`] can answer after the other domains were read.
    maps: Vec<u8>,
    vcpus_read: usize,
    /// The nodes its memory is bound to (see [`DomainInfo`]).
    mem_nodes: u64,
}

/// The most vCPUs of one domain this program reads: QEMU's own limit is 4096 (16384
/// with the newest machine types); a larger figure from libvirt is not believed.
pub const MAX_DOMAIN_VCPUS: usize = 16_384;

/// The scheduler's view of a live hypervisor through one [`Connection`].
///
/// Owns every buffer a tick needs (ids, vCPU records, affinity masks, the pin mask) and
/// grows them only when the host grows: a new domain, more vCPUs.
pub struct LibvirtHost<'c> {
    conn: &'c Connection,
    pcpus: usize,
    /// NUMA nodes and SMT siblings, from the capabilities; `None`: one flat node.
    topology: Option<Topology>,
    maplen: usize,
    epoch: Instant,
    ids: Vec<c_int>,
    known_ids: Vec<c_int>,
    domains: Vec<Tracked<'c>>,
    info: Vec<VcpuInfo>,
    pin_map: CpuMap,
    /// Set when a domain vanished mid-tick or an event said domains changed: the next
    /// refresh re-reads the table even if the id list looks the same.
    stale: bool,
    /// Set when a domain was (re)defined: the next refresh re-reads configured pins.
    config_stale: bool,
    /// `virNodeGetCPUStats` parameter buffer, and whether the driver supports it.
    cpu_stats: Vec<NodeCpuStat>,
    cpu_stats_ok: bool,
    /// Whether `virDomainPinVcpuFlags(VIR_DOMAIN_AFFECT_LIVE)` is accepted; the test
    /// driver refuses any flag, so we fall back to `virDomainPinVcpu` once and remember.
    live_flag_ok: bool,
    /// This tick's bulk vCPU stats (run time and run-queue delay), when they were read
    /// and whether the driver answers the call at all.
    stats: VcpuStatsTable,
    stats_at_ns: u64,
    stats_ok: bool,
}

impl<'c> LibvirtHost<'c> {
    pub fn new(conn: &'c Connection) -> Result<Self, Error> {
        let pcpus = conn.node_pcpus()?;
        let maplen = cpumap::cpu_maplen(pcpus);
        let topology = read_topology(conn, pcpus)?;
        Ok(LibvirtHost {
            conn,
            pcpus,
            topology,
            maplen,
            epoch: Instant::now(),
            ids: Vec::with_capacity(64),
            known_ids: Vec::with_capacity(64),
            domains: Vec::with_capacity(64),
            info: Vec::new(),
            pin_map: CpuMap::new(pcpus),
            stale: true,
            config_stale: false,
            cpu_stats: Vec::new(),
            cpu_stats_ok: true,
            live_flag_ok: true,
            stats: VcpuStatsTable::with_capacity(64, 256),
            stats_at_ns: 0,
            stats_ok: true,
        })
    }

    fn track(&mut self, id: c_int) -> Result<(), Error> {
        let dom = self.conn.domain_by_id(id)?;
        let key = DomainKey {
            uuid: dom.uuid()?,
            id: dom.id(),
        };
        let name = dom.name()?;
        let mut max_vcpus = match dom.max_vcpus() {
            Ok(n) if n > 0 => n,
            Ok(_) => dom.vcpu_count()?,
            Err(e) if e.kind() == FailureKind::Other => dom.vcpu_count()?,
            Err(e) => return Err(e),
        };
        // Its buffers are sized from what libvirt says: a figure past any real domain
        // must not size them (or overflow `max_vcpus * maplen`).
        if max_vcpus > MAX_DOMAIN_VCPUS {
            crate::warn!(
                "domain \"{name}\" reports up to {max_vcpus} vcpus; only the first \
                 {MAX_DOMAIN_VCPUS} are read and managed"
            );
            max_vcpus = MAX_DOMAIN_VCPUS;
        }
        if max_vcpus > self.info.len() {
            self.info.resize(max_vcpus, VcpuInfo::default());
        }
        let config_pinned = config_pinned(&dom, &name, self.pcpus)?;
        let mem_nodes = mem_nodes(&dom, &name, self.topology.as_ref())?;
        self.domains.push(Tracked {
            dom,
            id,
            key,
            name,
            max_vcpus,
            config_pinned,
            maps: vec![0; max_vcpus * self.maplen],
            vcpus_read: 0,
            mem_nodes,
        });
        Ok(())
    }
}

/// The host's shape from its capabilities. A document that cannot be used is one line
/// and the host is treated as one node without SMT; so is one that describes exactly
/// that. Only a lost connection is an error.
fn read_topology(conn: &Connection, pcpus: usize) -> Result<Option<Topology>, Error> {
    let parsed = match conn.capabilities() {
        Ok(xml) => Topology::from_capabilities(&xml, pcpus),
        Err(e) if e.kind() == FailureKind::ConnectionLost => return Err(e),
        Err(e) => Err(e.to_string()),
    };
    match parsed {
        Ok(Some(t)) if t.nodes() > 1 || t.smt() => Ok(Some(t)),
        Ok(_) => Ok(None),
        Err(e) => {
            crate::warn!(
                "cannot use the host's topology ({e}); treating it as one node without SMT"
            );
            Ok(None)
        }
    }
}

/// The nodes `dom`'s memory is bound to, as a mask of the topology's node indices; 0
/// when not bound, when the driver cannot tell, or (with one line) when the nodeset
/// names a node the host does not have.
fn mem_nodes(dom: &Domain<'_>, name: &str, topology: Option<&Topology>) -> Result<u64, Error> {
    let nodeset = match dom.numa_nodeset() {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(0),
        Err(e) if e.kind() == FailureKind::Other => return Ok(0),
        Err(e) => return Err(e),
    };
    match nodes_mask(&nodeset, topology) {
        Ok(mask) => Ok(mask),
        Err(why) => {
            crate::warn!("domain \"{name}\": numatune nodeset {nodeset:?}: {why}; ignoring it");
            Ok(0)
        }
    }
}

/// A numatune nodeset (`0`, `0-1,3`: host NUMA cell ids) as a mask of the topology's
/// node indices; on a flat host (no topology) only cell 0 exists. The error says why
/// the nodeset cannot be used.
fn nodes_mask(nodeset: &str, topology: Option<&Topology>) -> Result<u64, String> {
    let cells = CpuMap::parse_list(nodeset, cpumap::MAX_CPUS).map_err(|e| e.to_string())?;
    let mut mask = 0u64;
    for cell in cells.iter() {
        let node = match topology {
            Some(t) => u32::try_from(cell).ok().and_then(|c| t.node_of_cell(c)),
            None => (cell == 0).then_some(0),
        };
        match node.filter(|&n| n < 64) {
            Some(n) => mask |= 1 << n,
            None => return Err(format!("names node {cell}, which this host does not have")),
        }
    }
    Ok(mask)
}

/// Has the owner of `dom` pinned any vCPU to fewer than all `pcpus` pCPUs in its
/// persistent configuration? A transient domain has no configuration. One that cannot
/// be read is managed as if transient, after one line saying so; only a lost connection
/// or a vanished domain is an error.
fn config_pinned(dom: &Domain<'_>, name: &str, pcpus: usize) -> Result<bool, Error> {
    let read = dom.is_persistent().and_then(|persistent| {
        if !persistent {
            return Ok(false);
        }
        let maps = dom.configured_pins(pcpus)?;
        Ok(maps.iter().any(|m| m.count() < pcpus))
    });
    match read {
        Ok(pinned) => Ok(pinned),
        Err(e) if e.kind() == FailureKind::Other => {
            crate::warn!(
                "cannot read the configured pins of domain \"{name}\": {e}; managing it as \
                 transient"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

impl Host for LibvirtHost<'_> {
    type Error = Error;

    fn pcpus(&self) -> usize {
        self.pcpus
    }

    fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn refresh(&mut self) -> Result<(), Error> {
        self.conn.running_domain_ids(&mut self.ids)?;
        self.ids.sort_unstable();
        if !self.stale && self.ids == self.known_ids {
            return Ok(());
        }
        self.stale = false;
        if std::mem::take(&mut self.config_stale) {
            for d in &mut self.domains {
                match config_pinned(&d.dom, &d.name, self.pcpus) {
                    Ok(p) => d.config_pinned = p,
                    Err(e) if e.kind() == FailureKind::DomainGone => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let ids = &self.ids;
        self.domains.retain(|d| ids.binary_search(&d.id).is_ok());
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            if self.domains.iter().any(|d| d.id == id) {
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
        Ok(())
    }

    fn domains_changed(&mut self, config: bool) {
        self.stale = true;
        self.config_stale |= config;
    }

    fn domain_count(&self) -> usize {
        self.domains.len()
    }

    fn domain(&self, i: usize) -> DomainInfo<'_> {
        let d = &self.domains[i];
        DomainInfo {
            key: d.key,
            name: &d.name,
            config_pinned: d.config_pinned,
            mem_nodes: d.mem_nodes,
        }
    }

    /// One `virConnectGetAllDomainStats` call for every running domain's vCPUs. A driver
    /// without the call (or one that fails it for any reason but a lost connection)
    /// leaves demand to be estimated from usage, from then on.
    fn sample_run_queues(&mut self) -> Result<(), Error> {
        if !self.stats_ok {
            return Ok(());
        }
        match self.conn.vcpu_stats(&mut self.stats) {
            Ok(()) => {
                self.stats_at_ns = self.now_ns();
                Ok(())
            }
            Err(e) if e.kind() == FailureKind::ConnectionLost => Err(e),
            Err(_) => {
                self.stats_ok = false;
                self.stats = VcpuStatsTable::new();
                Ok(())
            }
        }
    }

    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), Error> {
        let d = &mut self.domains[i];
        let n = d.max_vcpus;
        let maplen = self.maplen;
        d.vcpus_read = 0;
        let got = match d.dom.vcpus_into(&mut self.info[..n], &mut d.maps, maplen) {
            Ok(got) => got,
            Err(e) => {
                // A domain destroyed while we read it fails with whatever the driver
                // met first ("No such process" reading its threads, say). If it is no
                // longer running, that is a stopped domain, not an error to report.
                let e = if e.kind() == FailureKind::Other && !d.dom.is_active() {
                    Error::local(
                        e.call(),
                        ffi::virErrorNumber::VIR_ERR_NO_DOMAIN,
                        format!("domain stopped while being read: {}", e.message()),
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
        let d = &mut self.domains[i];
        d.vcpus_read = got;
        let d = &self.domains[i];
        // This domain's bulk stats, matched by UUID; a domain the call did not report
        // (started since) or a vCPU it did not cover (hotplugged since) has none, and
        // its demand is estimated for this tick.
        let stats = self.stats.domain(&d.key.uuid).unwrap_or(&[]);
        let stats_at_ns = self.stats_at_ns;
        for (k, info) in self.info[..got].iter().enumerate() {
            let mask = cpumap::get_cpumap(&d.maps, maplen, k).unwrap_or(&[]);
            out.push(VcpuSample {
                domain: d.key,
                vcpu: VcpuId(info.number()),
                cpu_time_ns: info.cpu_time_ns(),
                at_ns,
                pinned_to: cpumap::only_cpu(mask, self.pcpus).map(|c| PcpuId(c as u32)),
                run_queue: stats.get(info.number() as usize).and_then(|s| {
                    Some(RunQueue {
                        time_ns: s.time_ns?,
                        delay_ns: s.delay_ns?,
                        at_ns: stats_at_ns,
                    })
                }),
                last_ran_on: info
                    .last_cpu()
                    .filter(|&c| c < self.pcpus)
                    .map(|c| PcpuId(c as u32)),
            });
        }
        Ok(())
    }

    fn affinity(&self, i: usize, k: usize, out: &mut CpuMap) -> bool {
        let Some(d) = self.domains.get(i).filter(|d| k < d.vcpus_read) else {
            return false;
        };
        match cpumap::get_cpumap(&d.maps, self.maplen, k) {
            Some(mask) => {
                out.copy_from(mask);
                true
            }
            None => false,
        }
    }

    fn sample_pcpu(&mut self, p: usize, out: &mut PcpuTimes) -> Result<bool, Error> {
        if !self.cpu_stats_ok || p >= self.pcpus {
            return Ok(false);
        }
        match self.conn.pcpu_times(p, &mut self.cpu_stats) {
            Ok(times) => {
                *out = times;
                Ok(true)
            }
            Err(e) if e.kind() == FailureKind::ConnectionLost => Err(e),
            // The driver cannot tell (or not for this CPU): judge saturation from the
            // vCPU figures from now on, rather than fail the tick every time.
            Err(_) => {
                self.cpu_stats_ok = false;
                Ok(false)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numatune_nodesets_map_to_the_topologys_nodes_or_say_why_not() {
        let two = Topology::from_shape(2, 2, 1);
        assert_eq!(nodes_mask("1", Some(&two)), Ok(0b10));
        assert_eq!(nodes_mask("0-1", Some(&two)), Ok(0b11));
        assert_eq!(nodes_mask("0", None), Ok(1));
        let e = nodes_mask("5", Some(&two)).unwrap_err();
        assert_eq!(e, "names node 5, which this host does not have");
        assert!(
            nodes_mask("1", None).is_err(),
            "a flat host has only node 0"
        );
        assert!(nodes_mask("x", Some(&two)).is_err());
    }
}
