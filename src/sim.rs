//! Simulated host: implements [`Host`] from scripted demand; pins apply at once.
//!
//! The scheduler sees only what libvirt would show it: cumulative `cpu_time_ns` per vCPU,
//! the affinity (`pinned_to` is `Some` only when it is exactly one pCPU) and the pCPU
//! each vCPU last ran on. What the simulator knows besides (each vCPU's demand, its true
//! share) is for tests and reports, through [`SimHost::vcpu`] and
//! [`SimHost::demand_placement_stats`]. Nothing here knows about FFI or the policy.
//!
//! # The model, one interval at a time ([`SimHost::advance`])
//!
//! Every pCPU has a capacity of 1.0; every vCPU a demand between 0 and 1.0 of one pCPU
//! (what it would use alone).
//!
//! 1. **Placement.** A vCPU whose affinity is exactly one pCPU runs there. The others are
//!    placed by a deliberately simple stand-in for the host scheduler: after every pinned
//!    vCPU is counted, they are taken in a fixed order (domains in the order they started,
//!    vCPUs by index) and each goes to the allowed pCPU with the least demand placed so far;
//!    a tie goes to the pCPU it last ran on (the kernel prefers a warm cache), else to the
//!    lowest-numbered one. Placement depends only on demands, affinities and the previous
//!    placement, so steady demand gives a steady placement: no flapping the scheduler
//!    would have to chase.
//! 2. **Sharing.** The vCPUs placed on one pCPU share it max–min fairly (water-filling):
//!    none gets more than it demands, and what the satisfied ones leave is split evenly
//!    among the rest. Four busy vCPUs on one pCPU get 0.25 each; 0.3 and 1.0 get 0.3/0.7.
//! 3. **Measurement.** Each vCPU's cumulative time grows by share × interval, times
//!    `1 + u × noise` with `u` uniform in [-1, 1] when noise is set. The factor is clamped
//!    at 0, so cumulative time never goes backwards. The noise comes from [`SplitMix64`],
//!    so a seed gives the same run every time.
//!
//! A pin ([`Host::pin`]) changes the affinity at once; it is used from the next interval.
//!
//! # Domains
//!
//! A domain's [`DomainKey`] has a UUID derived from its name (the same name always gives
//! the same UUID) and an id from an instance counter, so a domain stopped and started
//! again keeps its UUID and gets a new id, as under libvirt. A domain started or stopped
//! between two [`Host::refresh`] calls is seen by the scheduler only at the next one; a
//! stopped domain it still lists fails to sample or pin with [`FailureKind::DomainGone`].
//!
//! # Allocation
//!
//! Buffers are sized when domains are added; [`SimHost::advance`], [`Host::sample`] (into a
//! caller-sized vector) and [`Host::pin`] do not allocate.

use std::fmt;

use crate::cpumap::CpuMap;
use crate::host::{
    DomainInfo, DomainKey, FailureKind, Host, HostError, PcpuId, VcpuId, VcpuSample,
};

/// Two placed loads closer than this are a tie (sums of demands carry rounding error).
const TIE: f64 = 1e-9;

/// A tiny deterministic generator (SplitMix64, Steele, Lea and Flood 2014): enough for
/// measurement noise and random scenarios, with no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`). The modulo bias is far below what a
    /// simulation can notice.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

/// A failed call on the simulated host. `Display` is one line.
#[derive(Debug, Clone, PartialEq)]
pub enum SimHostError {
    /// No domain with this key or name (libvirt's `VIR_ERR_NO_DOMAIN`).
    NoSuchDomain {
        name: Option<String>,
        key: Option<DomainKey>,
    },
    /// The domain was stopped (libvirt: "domain is not running").
    NotRunning {
        name: String,
    },
    /// A domain with this name is already running.
    AlreadyRunning {
        name: String,
    },
    NoSuchVcpu {
        name: String,
        vcpu: u32,
        vcpus: usize,
    },
    PcpuOutOfRange {
        pcpu: u32,
        pcpus: usize,
    },
    /// Demands were given for a different number of vCPUs than the domain has.
    VcpuCount {
        name: String,
        expected: usize,
        got: usize,
    },
    /// A demand outside 0–1.0 (or not a number).
    BadDemand {
        name: String,
        vcpu: usize,
        demand: f64,
    },
    /// An affinity mask sized for another host, or with no pCPU set.
    BadAffinity {
        name: String,
        affinity: String,
    },
}

impl fmt::Display for SimHostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimHostError::NoSuchDomain { name: Some(n), .. } => write!(f, "no domain {n:?}"),
            SimHostError::NoSuchDomain { key: Some(k), .. } => {
                write!(f, "no domain with id {}", k.id)
            }
            SimHostError::NoSuchDomain { .. } => f.write_str("no such domain"),
            SimHostError::NotRunning { name } => write!(f, "domain {name:?} is not running"),
            SimHostError::AlreadyRunning { name } => {
                write!(f, "domain {name:?} is already running")
            }
            SimHostError::NoSuchVcpu { name, vcpu, vcpus } => {
                write!(f, "domain {name:?} has no vcpu {vcpu} (it has {vcpus})")
            }
            SimHostError::PcpuOutOfRange { pcpu, pcpus } => {
                write!(f, "pcpu {pcpu} does not exist (host has {pcpus} pcpus)")
            }
            SimHostError::VcpuCount {
                name,
                expected,
                got,
            } => {
                write!(
                    f,
                    "{got} demands given but domain {name:?} has {expected} vcpus"
                )
            }
            SimHostError::BadDemand { name, vcpu, demand } => {
                write!(
                    f,
                    "demand {demand} of vcpu {vcpu} of domain {name:?} is outside 0-1"
                )
            }
            SimHostError::BadAffinity { name, affinity } => {
                write!(
                    f,
                    "affinity {affinity} of domain {name:?} does not fit this host"
                )
            }
        }
    }
}

impl std::error::Error for SimHostError {}

impl HostError for SimHostError {
    fn kind(&self) -> FailureKind {
        match self {
            SimHostError::NoSuchDomain { .. } | SimHostError::NotRunning { .. } => {
                FailureKind::DomainGone
            }
            _ => FailureKind::Other,
        }
    }
}

/// What the simulator knows of one vCPU, for tests and reports.
#[derive(Debug, Clone, Copy)]
pub struct VcpuView<'a> {
    /// What it would use alone, fraction of one pCPU.
    pub demand: f64,
    /// What it got in the last interval (before measurement noise).
    pub usage: f64,
    /// Where it ran in the last interval (before any: the first pCPU of its affinity).
    pub ran_on: PcpuId,
    pub affinity: &'a CpuMap,
}

#[derive(Debug, Clone)]
struct SimVcpu {
    demand: f64,
    affinity: CpuMap,
    /// Measured cumulative time (noise included): what the scheduler reads.
    cpu_time_ns: u64,
    /// True share of the last interval.
    usage: f64,
    last_ran_on: u32,
}

#[derive(Debug, Clone)]
struct SimDomain {
    name: String,
    key: DomainKey,
    running: bool,
    vcpus: Vec<SimVcpu>,
}

/// One running vCPU in the per-interval sharing pass.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pcpu: u32,
    demand: f64,
    domain: u32,
    vcpu: u32,
}

/// A simulated KVM host. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct SimHost {
    pcpus: usize,
    now_ns: u64,
    /// Running domains, and stopped ones the scheduler has not refreshed away yet.
    domains: Vec<SimDomain>,
    /// `domains[..listed]` is what the last [`Host::refresh`] reported.
    listed: usize,
    /// The set of running domains changed since the last refresh.
    changed: bool,
    next_id: u32,
    /// Relative noise on measured usage, as a fraction (0.05 = ±5 %).
    noise: f64,
    rng: SplitMix64,
    /// The pCPU of every running vCPU, in model order, for the next interval.
    placement: Vec<u32>,
    /// Sum of the demands placed on each pCPU by `placement`.
    placed_demand: Vec<f64>,
    /// Pins, demands or domains changed since `placement` was computed.
    placement_stale: bool,
    slots: Vec<Slot>,
}

impl SimHost {
    /// A host with `pcpus` pCPUs, no domains, no noise, at virtual time 0.
    ///
    /// # Panics
    /// If `pcpus` is 0 or does not fit a `u32` (a host always has a CPU, and libvirt
    /// numbers them with 32 bits).
    pub fn new(pcpus: usize) -> Self {
        assert!(
            pcpus > 0 && u32::try_from(pcpus).is_ok(),
            "a host has 1 to 2^32-1 pcpus"
        );
        SimHost {
            pcpus,
            now_ns: 0,
            domains: Vec::new(),
            listed: 0,
            changed: false,
            next_id: 1,
            noise: 0.0,
            rng: SplitMix64::new(0),
            placement: Vec::new(),
            placed_demand: vec![0.0; pcpus],
            placement_stale: false,
            slots: Vec::new(),
        }
    }

    /// Measured usage of each interval is off by up to ± `noise_pct` % of itself, drawn
    /// from a generator seeded with `seed`. Negative or NaN noise means none.
    pub fn set_noise(&mut self, noise_pct: f64, seed: u64) {
        self.noise = if noise_pct > 0.0 {
            noise_pct / 100.0
        } else {
            0.0
        };
        self.rng = SplitMix64::new(seed);
    }

    /// Start a domain with one vCPU per demand (fractions of one pCPU, 0–1.0), every
    /// vCPU with affinity `affinity`. Its cpu time starts at 0.
    pub fn add_domain(
        &mut self,
        name: &str,
        demands: &[f64],
        affinity: &CpuMap,
    ) -> Result<DomainKey, SimHostError> {
        if self.running_index(name).is_some() {
            return Err(SimHostError::AlreadyRunning {
                name: name.to_owned(),
            });
        }
        check_demands(name, demands)?;
        let first = affinity.iter().next();
        let first = match first {
            Some(p) if affinity.ncpus() == self.pcpus => p,
            _ => {
                return Err(SimHostError::BadAffinity {
                    name: name.to_owned(),
                    affinity: affinity.to_string(),
                });
            }
        };
        let key = DomainKey {
            uuid: uuid_from_name(name),
            id: self.next_id,
        };
        self.next_id = self.next_id.wrapping_add(1);
        let vcpus = demands
            .iter()
            .map(|&demand| SimVcpu {
                demand,
                affinity: affinity.clone(),
                cpu_time_ns: 0,
                usage: 0.0,
                last_ran_on: pcpu_u32(first),
            })
            .collect();
        self.domains.push(SimDomain {
            name: name.to_owned(),
            key,
            running: true,
            vcpus,
        });
        // Grow the per-interval buffers now, once, rather than inside `advance`.
        let total = self.running_vcpus();
        self.placement
            .reserve(total.saturating_sub(self.placement.len()));
        self.slots.reserve(total.saturating_sub(self.slots.len()));
        self.changed = true;
        self.placement_stale = true;
        Ok(key)
    }

    /// Stop the running domain `name`. The scheduler notices at its next refresh.
    pub fn stop_domain(&mut self, name: &str) -> Result<DomainKey, SimHostError> {
        let i = self.running_index(name).ok_or_else(|| no_domain(name))?;
        let d = &mut self.domains[i];
        d.running = false;
        self.changed = true;
        self.placement_stale = true;
        Ok(d.key)
    }

    /// New demands for every vCPU of the running domain `name` (fractions, 0–1.0).
    pub fn set_demands(&mut self, name: &str, demands: &[f64]) -> Result<(), SimHostError> {
        let i = self.running_index(name).ok_or_else(|| no_domain(name))?;
        check_demands(name, demands)?;
        let d = &mut self.domains[i];
        if d.vcpus.len() != demands.len() {
            return Err(SimHostError::VcpuCount {
                name: name.to_owned(),
                expected: d.vcpus.len(),
                got: demands.len(),
            });
        }
        for (v, &demand) in d.vcpus.iter_mut().zip(demands) {
            v.demand = demand;
        }
        self.placement_stale = true;
        Ok(())
    }

    /// The key of the running domain `name`.
    pub fn key(&self, name: &str) -> Option<DomainKey> {
        self.running_index(name).map(|i| self.domains[i].key)
    }

    /// What the simulator knows of vCPU `vcpu` of the running domain `name`.
    pub fn vcpu(&self, name: &str, vcpu: usize) -> Option<VcpuView<'_>> {
        let v = self
            .domains
            .get(self.running_index(name)?)?
            .vcpus
            .get(vcpu)?;
        Some(VcpuView {
            demand: v.demand,
            usage: v.usage,
            ran_on: PcpuId(v.last_ran_on),
            affinity: &v.affinity,
        })
    }

    /// Run the model for one interval of `dt_ns` with the current pins and demands, and
    /// move virtual time forward. Does not allocate.
    pub fn advance(&mut self, dt_ns: u64) {
        if self.placement_stale {
            place(&self.domains, &mut self.placement, &mut self.placed_demand);
            self.placement_stale = false;
        }
        self.share();
        let dt = dt_ns as f64;
        let running = self.domains.iter_mut().filter(|d| d.running);
        for (v, &p) in running
            .flat_map(|d| d.vcpus.iter_mut())
            .zip(&self.placement)
        {
            let mut ran = v.usage * dt;
            if self.noise > 0.0 {
                let u = 2.0 * self.rng.next_f64() - 1.0;
                ran *= (1.0 + u * self.noise).max(0.0);
            }
            // `as` saturates and maps NaN to 0: never backwards, never a panic.
            v.cpu_time_ns = v.cpu_time_ns.saturating_add(ran.round() as u64);
            v.last_ran_on = p;
        }
        self.now_ns = self.now_ns.saturating_add(dt_ns);
    }

    /// `(busiest, bound)`: the largest sum of demands placed on one pCPU by the placement
    /// the next interval will use, and the least any placement could achieve,
    /// `max(largest vCPU demand, total demand / pCPUs)`. Both are 0 when nothing demands
    /// anything. Allocates when pins changed since the last [`SimHost::advance`]: meant
    /// for reports, not for the tick path.
    pub fn demand_placement_stats(&self) -> (f64, f64) {
        let busiest = if self.placement_stale {
            let mut placement = Vec::with_capacity(self.placement.capacity());
            let mut load = vec![0.0; self.pcpus];
            place(&self.domains, &mut placement, &mut load);
            load.iter().copied().fold(0.0, f64::max)
        } else {
            self.placed_demand.iter().copied().fold(0.0, f64::max)
        };
        let (mut total, mut largest) = (0.0, 0.0_f64);
        for v in self
            .domains
            .iter()
            .filter(|d| d.running)
            .flat_map(|d| &d.vcpus)
        {
            total += v.demand;
            largest = largest.max(v.demand);
        }
        (busiest, largest.max(total / self.pcpus as f64))
    }

    /// `busiest / bound` from [`SimHost::demand_placement_stats`]: 1.0 is a placement no
    /// other beats; 1.0 too when nothing demands anything.
    pub fn max_over_bound(&self) -> f64 {
        let (busiest, bound) = self.demand_placement_stats();
        if bound > 0.0 { busiest / bound } else { 1.0 }
    }

    /// Water-fill every pCPU among the vCPUs placed on it; store each vCPU's share.
    fn share(&mut self) {
        self.slots.clear();
        let mut k = 0;
        for (di, d) in self.domains.iter().enumerate().filter(|(_, d)| d.running) {
            for (vi, v) in d.vcpus.iter().enumerate() {
                // Indices fit u32: domains and vCPUs are far fewer than 2^32.
                self.slots.push(Slot {
                    pcpu: self.placement[k],
                    demand: v.demand,
                    domain: di as u32,
                    vcpu: vi as u32,
                });
                k += 1;
            }
        }
        // Per pCPU, smallest demand first: each takes min(demand, fair share of what is left).
        self.slots
            .sort_unstable_by(|a, b| a.pcpu.cmp(&b.pcpu).then(a.demand.total_cmp(&b.demand)));
        for group in self.slots.chunk_by(|a, b| a.pcpu == b.pcpu) {
            let mut left = 1.0_f64;
            for (i, s) in group.iter().enumerate() {
                let got = s.demand.min(left / (group.len() - i) as f64).max(0.0);
                left -= got;
                self.domains[s.domain as usize].vcpus[s.vcpu as usize].usage = got;
            }
        }
    }

    fn running_index(&self, name: &str) -> Option<usize> {
        self.domains
            .iter()
            .position(|d| d.running && d.name == name)
    }

    fn running_vcpus(&self) -> usize {
        self.domains
            .iter()
            .filter(|d| d.running)
            .map(|d| d.vcpus.len())
            .sum()
    }
}

/// The placement model (see the module docs): fills `placement` with the pCPU of every
/// running vCPU in model order and `load` with the demand placed on each pCPU.
fn place(domains: &[SimDomain], placement: &mut Vec<u32>, load: &mut [f64]) {
    load.fill(0.0);
    placement.clear();
    let running = || domains.iter().filter(|d| d.running).flat_map(|d| &d.vcpus);
    // Pinned vCPUs first: they go where they must. Others get a placeholder for now.
    for v in running() {
        match v.affinity.only() {
            Some(p) => {
                load[p] += v.demand;
                placement.push(pcpu_u32(p));
            }
            None => placement.push(u32::MAX),
        }
    }
    for (v, slot) in running().zip(placement.iter_mut()) {
        if *slot != u32::MAX {
            continue;
        }
        let mut best: Option<usize> = None;
        for p in v.affinity.iter() {
            best = match best {
                None => Some(p),
                Some(b) if load[p] < load[b] - TIE => Some(p),
                Some(b) if load[p] <= load[b] + TIE && pcpu_u32(p) == v.last_ran_on => Some(p),
                keep => keep,
            };
        }
        // Affinities are never empty (checked when a domain starts; pins set one pCPU).
        let p = best.unwrap_or(0);
        load[p] += v.demand;
        *slot = pcpu_u32(p);
    }
}

impl Host for SimHost {
    type Error = SimHostError;

    fn pcpus(&self) -> usize {
        self.pcpus
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn refresh(&mut self) -> Result<bool, SimHostError> {
        self.domains.retain(|d| d.running);
        self.listed = self.domains.len();
        Ok(std::mem::replace(&mut self.changed, false))
    }

    fn domain_count(&self) -> usize {
        self.listed
    }

    fn domain(&self, i: usize) -> DomainInfo<'_> {
        let d = &self.domains[i];
        DomainInfo {
            key: d.key,
            name: &d.name,
        }
    }

    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), SimHostError> {
        let d = match self.domains.get(i) {
            Some(d) if i < self.listed => d,
            _ => {
                return Err(SimHostError::NoSuchDomain {
                    name: None,
                    key: None,
                });
            }
        };
        if !d.running {
            return Err(SimHostError::NotRunning {
                name: d.name.clone(),
            });
        }
        for (j, v) in d.vcpus.iter().enumerate() {
            out.push(VcpuSample {
                domain: d.key,
                vcpu: VcpuId(j as u32),
                cpu_time_ns: v.cpu_time_ns,
                at_ns: self.now_ns,
                pinned_to: v.affinity.only().map(|p| PcpuId(pcpu_u32(p))),
                last_ran_on: Some(PcpuId(v.last_ran_on)),
            });
        }
        Ok(())
    }

    fn pin(&mut self, domain: DomainKey, vcpu: VcpuId, pcpu: PcpuId) -> Result<(), SimHostError> {
        let pcpus = self.pcpus;
        let d = self.domains.iter_mut().find(|d| d.key == domain).ok_or(
            SimHostError::NoSuchDomain {
                name: None,
                key: Some(domain),
            },
        )?;
        if !d.running {
            return Err(SimHostError::NotRunning {
                name: d.name.clone(),
            });
        }
        let vcpus = d.vcpus.len();
        let v = d
            .vcpus
            .get_mut(vcpu.index())
            .ok_or_else(|| SimHostError::NoSuchVcpu {
                name: d.name.clone(),
                vcpu: vcpu.0,
                vcpus,
            })?;
        v.affinity
            .set_only(pcpu.index())
            .map_err(|_| SimHostError::PcpuOutOfRange {
                pcpu: pcpu.0,
                pcpus,
            })?;
        self.placement_stale = true;
        Ok(())
    }
}

fn no_domain(name: &str) -> SimHostError {
    SimHostError::NoSuchDomain {
        name: Some(name.to_owned()),
        key: None,
    }
}

fn check_demands(name: &str, demands: &[f64]) -> Result<(), SimHostError> {
    match demands.iter().position(|d| !(0.0..=1.0).contains(d)) {
        Some(vcpu) => Err(SimHostError::BadDemand {
            name: name.to_owned(),
            vcpu,
            demand: demands[vcpu],
        }),
        None => Ok(()),
    }
}

/// A pCPU index below `pcpus`, which `SimHost::new` checked fits a `u32`.
fn pcpu_u32(p: usize) -> u32 {
    p as u32
}

/// A UUID that depends only on the name: two FNV-1a hashes, with the version nibble set
/// to 8 ("custom", RFC 9562) and the RFC variant bits.
fn uuid_from_name(name: &str) -> [u8; 16] {
    let fnv = |basis: u64| {
        name.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    uuid[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn all(n: usize) -> CpuMap {
        CpuMap::all(n)
    }

    fn one(n: usize, p: usize) -> CpuMap {
        let mut m = CpuMap::new(n);
        m.set(p).unwrap();
        m
    }

    fn usage(h: &SimHost, name: &str, vcpu: usize) -> f64 {
        h.vcpu(name, vcpu).unwrap().usage
    }

    /// Samples of every listed domain, as the scheduler would read them.
    fn samples(h: &mut SimHost) -> Vec<VcpuSample> {
        h.refresh().unwrap();
        let mut out = Vec::new();
        for i in 0..h.domain_count() {
            h.sample(i, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn busy_vcpus_on_one_pcpu_share_it_evenly() {
        let mut h = SimHost::new(4);
        for name in ["a", "b", "c", "d"] {
            h.add_domain(name, &[1.0], &one(4, 0)).unwrap();
        }
        h.advance(SEC);
        for name in ["a", "b", "c", "d"] {
            assert!((usage(&h, name, 0) - 0.25).abs() < 1e-12);
        }
        for s in samples(&mut h) {
            assert_eq!(s.cpu_time_ns, SEC / 4);
            assert_eq!(s.pinned_to, Some(PcpuId(0)));
            assert_eq!(s.last_ran_on, Some(PcpuId(0)));
            assert_eq!(s.at_ns, SEC);
        }
    }

    #[test]
    fn water_filling_gives_the_small_demand_all_it_asks() {
        let mut h = SimHost::new(2);
        h.add_domain("light", &[0.3], &one(2, 1)).unwrap();
        h.add_domain("busy", &[1.0], &one(2, 1)).unwrap();
        h.add_domain("pair", &[0.2, 0.2], &one(2, 0)).unwrap();
        h.advance(SEC);
        assert!((usage(&h, "light", 0) - 0.3).abs() < 1e-12);
        assert!((usage(&h, "busy", 0) - 0.7).abs() < 1e-12);
        // Under capacity: everyone gets their demand.
        assert!((usage(&h, "pair", 0) - 0.2).abs() < 1e-12);
        assert!((usage(&h, "pair", 1) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn three_way_water_filling() {
        let mut h = SimHost::new(1);
        h.add_domain("x", &[0.1, 0.6, 0.9], &all(1)).unwrap();
        h.advance(SEC);
        // 0.1 satisfied, then 0.9 left for two: 0.45 each.
        assert!((usage(&h, "x", 0) - 0.1).abs() < 1e-12);
        assert!((usage(&h, "x", 1) - 0.45).abs() < 1e-12);
        assert!((usage(&h, "x", 2) - 0.45).abs() < 1e-12);
    }

    #[test]
    fn unpinned_vcpus_go_to_the_least_demanded_allowed_pcpu_in_start_order() {
        let mut h = SimHost::new(4);
        h.add_domain("pinned", &[0.9], &one(4, 0)).unwrap();
        h.add_domain("free", &[0.5, 0.5, 0.5, 0.2], &all(4))
            .unwrap();
        let mut two = CpuMap::new(4);
        two.set(0).unwrap();
        two.set(3).unwrap();
        h.add_domain("narrow", &[0.1], &two).unwrap();
        h.advance(SEC);
        let ran = |h: &SimHost, n: &str, v: usize| h.vcpu(n, v).unwrap().ran_on.0;
        // 0 holds 0.9; free/0 → 1 (tie 1,2,3: lowest), free/1 → 2, free/2 → 3,
        // free/3 (0.2) → 1 (0.5, 0.5, 0.5 tie: lowest); narrow may use 0 or 3: 3 (0.5 < 0.9).
        assert_eq!(ran(&h, "free", 0), 1);
        assert_eq!(ran(&h, "free", 1), 2);
        assert_eq!(ran(&h, "free", 2), 3);
        assert_eq!(ran(&h, "free", 3), 1);
        assert_eq!(ran(&h, "narrow", 0), 3);
        let (busiest, bound) = h.demand_placement_stats();
        assert!((busiest - 0.9).abs() < 1e-12);
        assert!((bound - 0.9).abs() < 1e-12, "max(0.9, 2.7/4)");
        // Unpinned vCPUs are not reported as pinned, yet say where they ran.
        let s = samples(&mut h);
        assert_eq!(s[1].pinned_to, None);
        assert_eq!(s[1].last_ran_on, Some(PcpuId(1)));
    }

    #[test]
    fn placement_is_steady_and_prefers_where_it_ran() {
        let mut h = SimHost::new(2);
        h.add_domain("a", &[0.5], &all(2)).unwrap();
        h.advance(SEC);
        assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(0));
        // Now b, pinned to 0, makes 1 the least loaded for a.
        h.add_domain("b", &[0.5], &one(2, 0)).unwrap();
        h.advance(SEC);
        assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(1));
        // b's demand falls to 0: a tie between 0 and 1, and a stays where it ran.
        h.set_demands("b", &[0.0]).unwrap();
        for _ in 0..3 {
            h.advance(SEC);
            assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(1));
        }
    }

    #[test]
    fn a_pin_takes_effect_from_the_next_interval() {
        let mut h = SimHost::new(2);
        h.add_domain("a", &[1.0], &one(2, 0)).unwrap();
        let b = h.add_domain("b", &[1.0], &one(2, 0)).unwrap();
        h.advance(SEC);
        assert!((usage(&h, "b", 0) - 0.5).abs() < 1e-12);
        assert_eq!(h.demand_placement_stats(), (2.0, 1.0));
        h.pin(b, VcpuId(0), PcpuId(1)).unwrap();
        // The stats already see the pin; the last interval's usage does not change.
        assert_eq!(h.demand_placement_stats(), (1.0, 1.0));
        assert!((usage(&h, "b", 0) - 0.5).abs() < 1e-12);
        h.advance(SEC);
        assert!((usage(&h, "b", 0) - 1.0).abs() < 1e-12);
        assert_eq!(h.vcpu("b", 0).unwrap().ran_on, PcpuId(1));
        assert!((h.max_over_bound() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bound_is_the_larger_of_the_biggest_vcpu_and_the_average() {
        let mut h = SimHost::new(4);
        assert_eq!(h.demand_placement_stats(), (0.0, 0.0));
        assert_eq!(h.max_over_bound(), 1.0, "no demand at all is perfect");
        h.add_domain("big", &[0.8], &one(4, 0)).unwrap();
        h.add_domain("small", &[0.1, 0.1], &one(4, 0)).unwrap();
        let (busiest, bound) = h.demand_placement_stats();
        assert!((busiest - 1.0).abs() < 1e-12);
        assert!((bound - 0.8).abs() < 1e-12);
        assert!((h.max_over_bound() - 1.25).abs() < 1e-12);
    }

    #[test]
    fn errors_are_classified_and_read_as_one_line() {
        let mut h = SimHost::new(2);
        let a = h.add_domain("a", &[0.5, 0.5], &all(2)).unwrap();
        let e = h.pin(a, VcpuId(0), PcpuId(2)).unwrap_err();
        assert_eq!(e, SimHostError::PcpuOutOfRange { pcpu: 2, pcpus: 2 });
        assert_eq!(e.kind(), FailureKind::Other);
        assert_eq!(e.to_string(), "pcpu 2 does not exist (host has 2 pcpus)");
        let e = h.pin(a, VcpuId(2), PcpuId(0)).unwrap_err();
        assert_eq!(e.to_string(), "domain \"a\" has no vcpu 2 (it has 2)");
        let e = h.add_domain("a", &[0.5], &all(2)).unwrap_err();
        assert_eq!(e.to_string(), "domain \"a\" is already running");
        let e = h.add_domain("b", &[1.5], &all(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "demand 1.5 of vcpu 0 of domain \"b\" is outside 0-1"
        );
        let e = h.add_domain("b", &[f64::NAN], &all(2)).unwrap_err();
        assert!(matches!(e, SimHostError::BadDemand { .. }));
        let e = h.add_domain("b", &[0.5], &CpuMap::new(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "affinity none of domain \"b\" does not fit this host"
        );
        let e = h.add_domain("b", &[0.5], &all(3)).unwrap_err();
        assert!(matches!(e, SimHostError::BadAffinity { .. }));
        let e = h.set_demands("a", &[0.5]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 demands given but domain \"a\" has 2 vcpus"
        );
        let e = h.set_demands("zz", &[0.5]).unwrap_err();
        assert_eq!(e.to_string(), "no domain \"zz\"");
        assert_eq!(e.kind(), FailureKind::DomainGone);

        // Stopped but still listed: sampling and pinning fail as "gone".
        h.refresh().unwrap();
        h.stop_domain("a").unwrap();
        let e = h.pin(a, VcpuId(0), PcpuId(0)).unwrap_err();
        assert_eq!(e.to_string(), "domain \"a\" is not running");
        assert_eq!(e.kind(), FailureKind::DomainGone);
        let e = h.sample(0, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), FailureKind::DomainGone);
        // Once refreshed away, the key is unknown.
        h.refresh().unwrap();
        let e = h.pin(a, VcpuId(0), PcpuId(0)).unwrap_err();
        assert_eq!(e.kind(), FailureKind::DomainGone);
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn domains_appear_and_vanish_at_refresh_and_restarts_get_a_new_id() {
        let mut h = SimHost::new(2);
        let a1 = h.add_domain("a", &[0.5], &all(2)).unwrap();
        h.add_domain("b", &[0.5], &all(2)).unwrap();
        assert_eq!(h.domain_count(), 0, "not listed before a refresh");
        assert!(h.refresh().unwrap());
        assert!(!h.refresh().unwrap());
        assert_eq!(h.domain_count(), 2);
        assert_eq!(h.domain(0).name, "a");
        h.advance(SEC);
        h.stop_domain("a").unwrap();
        let a2 = h.add_domain("a", &[0.5], &all(2)).unwrap();
        assert_eq!(a1.uuid, a2.uuid);
        assert_ne!(a1.id, a2.id);
        // Still the old listing until the refresh.
        assert_eq!(h.domain(0).key, a1);
        assert!(h.refresh().unwrap());
        assert_eq!(h.domain_count(), 2);
        assert_eq!(h.domain(0).name, "b");
        assert_eq!(h.domain(1).key, a2);
        assert_eq!(h.domain_name(a2), Some("a"));
        assert_eq!(h.domain_name(a1), None);
        let s = samples(&mut h);
        assert_eq!(s[1].cpu_time_ns, 0, "a restarted domain starts from zero");
        assert_ne!(uuid_from_name("a"), uuid_from_name("b"));
    }

    #[test]
    fn noise_is_bounded_seeded_and_never_runs_time_backwards() {
        let run = |seed| {
            let mut h = SimHost::new(1);
            h.set_noise(5.0, seed);
            h.add_domain("a", &[0.6], &all(1)).unwrap();
            let mut times = Vec::new();
            for _ in 0..200 {
                h.advance(SEC);
                times.push(samples(&mut h)[0].cpu_time_ns);
            }
            times
        };
        let t = run(7);
        assert_eq!(t, run(7), "same seed, same run");
        assert_ne!(t, run(8));
        let mut prev = 0;
        let mut spread = (f64::MAX, 0.0_f64);
        for &now in &t {
            assert!(now >= prev);
            let u = (now - prev) as f64 / SEC as f64;
            assert!((0.6 * 0.95 - 1e-9..=0.6 * 1.05 + 1e-9).contains(&u), "{u}");
            spread = (spread.0.min(u), spread.1.max(u));
            prev = now;
        }
        assert!(
            spread.1 - spread.0 > 0.03,
            "the noise is really there: {spread:?}"
        );
    }

    #[test]
    fn splitmix_is_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (the reference C implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = SplitMix64::new(3);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!((2..=64).contains(&r.range(2, 64)));
        }
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.range(5, 1), 5);
    }

    #[test]
    fn steady_state_buffers_do_not_grow() {
        let mut h = SimHost::new(8);
        for i in 0..20 {
            let name = format!("d{i}");
            h.add_domain(&name, &[0.3, 0.7], &all(8)).unwrap();
        }
        h.refresh().unwrap();
        h.advance(SEC);
        let caps = (h.placement.capacity(), h.slots.capacity());
        let mut out = Vec::with_capacity(40);
        for t in 0..100u32 {
            let k = h.domain(t as usize % 20).key;
            h.pin(k, VcpuId(t % 2), PcpuId(t % 8)).unwrap();
            h.advance(SEC);
            out.clear();
            for i in 0..h.domain_count() {
                h.sample(i, &mut out).unwrap();
            }
        }
        assert_eq!((h.placement.capacity(), h.slots.capacity()), caps);
        assert_eq!(out.capacity(), 40);
    }
}
