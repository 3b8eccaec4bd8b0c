//! The seam between the scheduler and the world: the [`Host`] trait and the plain data
//! that crosses it.
//!
//! [`crate::libvirt::LibvirtHost`] implements it over a live hypervisor and
//! [`crate::sim::SimHost`] over a simulated one; the scheduler cannot tell them apart.
//! Nothing here knows about FFI.
//!
//! Vocabulary, with units:
//! - `domain`: a running virtual machine (libvirt's word).
//! - `vcpu`: a virtual CPU, numbered from 0 within its domain.
//! - `pcpu`: a host CPU, numbered as libvirt numbers it.
//! - `cpu_time_ns`: cumulative nanoseconds one vCPU has run (`virVcpuInfo.cpuTime`).
//! - `usage`: Δcpu_time / Δwall of one vCPU, as a fraction of one pCPU (0.0–1.0).
//! - `load`: the sum of the usage of the vCPUs on one pCPU.
//! - `delay_ns`: cumulative nanoseconds one vCPU was runnable but waited for a pCPU
//!   (libvirt's `vcpu.N.delay`, the guest's steal time).
//! - `demand`: what a vCPU would use uncontended, (Δtime + Δdelay) / Δwall, 0.0–1.0.

use std::fmt;

use crate::cpumap::CpuMap;
use crate::topology::Topology;

/// A host CPU index. A newtype so a vCPU number cannot be passed where a pCPU is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PcpuId(pub u32);

/// A vCPU index within its domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

impl PcpuId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl VcpuId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Identity of one *run* of a domain: its UUID plus the id the hypervisor gave this run.
///
/// The UUID alone is not enough: a domain that is restarted keeps its UUID but its
/// cpu time starts again from zero, and libvirt gives it a new id. The id alone is not
/// enough either: ids can be reused by another domain. Together they never confuse an
/// old sample with a new domain. `Copy`, so hot data carries it without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainKey {
    pub uuid: [u8; 16],
    pub id: u32,
}

/// One vCPU as read at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VcpuSample {
    pub domain: DomainKey,
    pub vcpu: VcpuId,
    /// Cumulative run time of this vCPU, nanoseconds.
    pub cpu_time_ns: u64,
    /// When it was read, on the host's monotonic clock, nanoseconds.
    pub at_ns: u64,
    /// `Some(p)` when the vCPU's affinity is exactly one pCPU of this host: what the
    /// scheduler set (or someone else did). `None` when it may run on several.
    pub pinned_to: Option<PcpuId>,
    /// Where the vCPU last ran (`virVcpuInfo.cpu`). Not its pinning: a vCPU allowed on
    /// all pCPUs still last ran on one of them.
    pub last_ran_on: Option<PcpuId>,
    /// Run time and run-queue delay from one reading, where the host reports the delay
    /// (libvirt's bulk stats on QEMU); `None` elsewhere.
    pub run_queue: Option<RunQueue>,
}

/// Cumulative run time and run-queue delay of one vCPU, read together at `at_ns`, so
/// that (Δtime + Δdelay) / Δat is what it wanted, whatever it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunQueue {
    pub time_ns: u64,
    pub delay_ns: u64,
    pub at_ns: u64,
}

/// Cumulative time of one pCPU, nanoseconds: `busy_ns` (user + kernel, whoever ran)
/// and `total_ns` (busy + idle + iowait). Differences give how busy the pCPU was,
/// counting host work the vCPU figures cannot show: the host's own load is that busy
/// time minus what the vCPUs on it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcpuTimes {
    pub busy_ns: u64,
    pub total_ns: u64,
}

/// What the host knows of one running domain.
#[derive(Debug, Clone, Copy)]
pub struct DomainInfo<'a> {
    pub key: DomainKey,
    pub name: &'a str,
    /// Its owner pinned some vCPU to fewer than all pCPUs in its persistent
    /// configuration (`virsh vcpupin --config`, `<cputune><vcpupin>`): left alone
    /// unless told otherwise. False for transient domains and where it cannot be read.
    pub config_pinned: bool,
    /// The NUMA nodes its memory is bound to (`<numatune>`), as a mask of node indices
    /// of the host's [`Topology`] (bit n = node n); 0 when not bound.
    pub mem_nodes: u64,
}

/// How a failed host call should be treated by the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The domain stopped or vanished between listing and use: forget it quietly.
    DomainGone,
    /// The connection to the hypervisor is broken: the daemon drops it and reconnects.
    ConnectionLost,
    /// Anything else: report it and go on with the other domains.
    Other,
}

/// The errors a [`Host`] returns: printable on one line, and classified.
pub trait HostError: fmt::Display {
    fn kind(&self) -> FailureKind;
}

/// Domain names by key, for printing. Every [`Host`] is one; reports hold one as a
/// `&dyn DomainNames`, so printers need not know the host's type.
pub trait DomainNames {
    fn name_of(&self, key: DomainKey) -> Option<&str>;
}

impl<H: Host> DomainNames for H {
    fn name_of(&self, key: DomainKey) -> Option<&str> {
        self.domain_name(key)
    }
}

/// A hypervisor as the scheduler sees it.
///
/// Implementations must not allocate in steady state: [`Host::refresh`] may grow its
/// tables when domains appear, [`Host::sample`] pushes into the caller's vector (which
/// the caller sized), and [`Host::pin`] works in place.
pub trait Host {
    type Error: HostError;

    /// Number of pCPUs; every pin is validated against it.
    fn pcpus(&self) -> usize;

    /// The host's NUMA nodes and SMT siblings, when known; `None` means one node with
    /// one thread per core.
    fn topology(&self) -> Option<&Topology> {
        None
    }

    /// The host's monotonic clock, nanoseconds since an arbitrary start.
    fn now_ns(&self) -> u64;

    /// Re-read the set of running domains.
    fn refresh(&mut self) -> Result<(), Self::Error>;

    /// Domains started, stopped or were redefined (an event said so): the next
    /// [`Host::refresh`] must not trust its cached table, and with `config` must
    /// re-read what the owners configured. The default does nothing.
    fn domains_changed(&mut self, config: bool) {
        let _ = config;
    }

    /// Number of domains known after the last [`Host::refresh`].
    fn domain_count(&self) -> usize;

    /// Domain `i`, for `i < domain_count()`. Stable between two refreshes.
    fn domain(&self, i: usize) -> DomainInfo<'_>;

    /// The name of the domain with this key, if it is still known.
    fn domain_name(&self, key: DomainKey) -> Option<&str> {
        (0..self.domain_count())
            .map(|i| self.domain(i))
            .find(|d| d.key == key)
            .map(|d| d.name)
    }

    /// Read the run-queue figures of every vCPU of every domain at once, for the
    /// [`Host::sample`] calls of this tick to attach. The default reads none: demand is
    /// then estimated from usage.
    fn sample_run_queues(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Append one [`VcpuSample`] per vCPU of domain `i` to `out`, vCPU 0 first.
    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), Self::Error>;

    /// The affinity (every pCPU it may run on) of the `k`-th vCPU that the last
    /// [`Host::sample`] of domain `i` appended, into `out` (sized to the host). `false`
    /// when the host cannot tell; a [`VcpuSample`] then says only whether it is pinned
    /// to one pCPU. `record` writes it on a domain's first line; the scheduler does not
    /// need it. The default cannot tell.
    fn affinity(&self, i: usize, k: usize, out: &mut CpuMap) -> bool {
        let _ = (i, k, out);
        false
    }

    /// Read pCPU `p`'s cumulative times into `out` (`virNodeGetCPUStats`, one call).
    /// `Ok(false)` when the host cannot tell; the scheduler then judges saturation from
    /// vCPU usage alone and sees no host load. The default cannot tell.
    fn sample_pcpu(&mut self, p: usize, out: &mut PcpuTimes) -> Result<bool, Self::Error> {
        let _ = (p, out);
        Ok(false)
    }

    /// Pin one vCPU to exactly one pCPU (live).
    fn pin(&mut self, domain: DomainKey, vcpu: VcpuId, pcpu: PcpuId) -> Result<(), Self::Error>;
}
