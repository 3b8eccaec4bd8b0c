//! The simulated host itself: domains with scripted demand, and its shape. The [`Host`]
//! seam over them is `host/seam.rs`. What it knows besides (true demand, work delivered,
//! the bound and the other measures of a placement) is read through `metrics`, for tests
//! and reports.

use crate::cpumap::CpuMap;
#[cfg(doc)]
use crate::host::{DomainInfo, Host};
use crate::host::{DomainKey, PcpuId};
use crate::topology::Topology;

use super::error::SimHostError;
use super::model::{SimDomain, SimVcpu, pcpu_u32};
use super::rng::SplitMix64;
use super::share::{self, Slot, SmtModel, place};

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
    /// Work it delivered in the last interval, in pCPUs: `usage` times its thread's
    /// work ratio (below 1 only on a core whose sibling threads were busy too).
    pub work: f64,
    /// Work delivered since it started, pCPU-nanoseconds.
    pub work_ns: f64,
}

/// A simulated KVM host. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub(super) pcpus: usize,
    /// Nodes and SMT siblings; flat unless built [`SimHost::with_topology`].
    pub(super) topology: Topology,
    /// Whether the topology was given (a scenario's `topology` line): only then does
    /// [`Host::topology`] report it, so a flat host reads exactly as before.
    shaped: bool,
    /// The scheduler is not told the shape (to measure what ignoring it costs); the
    /// model and the summary's figures still use it.
    hidden: bool,
    now_ns: u64,
    /// Running domains, and stopped ones the scheduler has not refreshed away yet.
    pub(super) domains: Vec<SimDomain>,
    /// `domains[..listed]` is what the last [`Host::refresh`] reported.
    listed: usize,
    /// Every domain's key and index in `domains`, sorted by key, so a pin finds its
    /// domain in O(log domains); rebuilt when domains are added or forgotten.
    by_key: Vec<(DomainKey, usize)>,
    next_id: u32,
    /// Relative noise on measured usage and delay, as a fraction (0.05 = ±5 %).
    noise: f64,
    /// Whether the host reports run-queue delay (QEMU does; libvirt's test driver and
    /// other drivers do not).
    reports_delay: bool,
    rng: SplitMix64,
    /// The pCPU of every running vCPU, in model order, for the next interval.
    pub(super) placement: Vec<u32>,
    /// Sum of the demands placed on each pCPU by `placement`.
    pub(super) placed_demand: Vec<f64>,
    /// Pins, demands or domains changed since `placement` was computed.
    pub(super) placement_stale: bool,
    slots: Vec<Slot>,
    /// The host's own load on each pCPU (load from outside any domain: a storage
    /// daemon, a backup job), fraction of the pCPU; and what it got in the last
    /// interval, sharing the pCPU with the vCPUs there.
    pub(super) host_load: Vec<f64>,
    host_got: Vec<f64>,
    /// How busy each pCPU was in the last interval (sum of its shares, host included).
    busy: Vec<f64>,
    /// Each pCPU's cumulative busy time (the vCPUs' measured run time there plus the
    /// host's own) and total time, ns: what `virNodeGetCPUStats` reports.
    busy_ns: Vec<u64>,
    total_ns: Vec<u64>,
    smt: SmtModel,
    /// Since the start, over every interval: demand wanted and work delivered, in
    /// pCPU-nanoseconds (true figures, no noise).
    pub(super) demand_ns: f64,
    pub(super) work_ns: f64,
}

impl SimHost {
    /// A flat host with `pcpus` pCPUs (one node, one thread per core), no domains, no
    /// noise, at virtual time 0. [`Host::topology`] reports `None`.
    ///
    /// # Panics
    /// If `pcpus` is 0 or does not fit a `u32` (a host always has a CPU, and libvirt
    /// numbers them with 32 bits).
    pub fn new(pcpus: usize) -> Self {
        check_pcpus(pcpus);
        Self::build(Topology::flat(pcpus), false)
    }

    /// A host of this shape (its pCPUs, nodes and SMT siblings), reported by
    /// [`Host::topology`]; otherwise as [`SimHost::new`].
    ///
    /// # Panics
    /// As [`SimHost::new`], for the topology's pCPU count.
    pub fn with_topology(topology: Topology) -> Self {
        Self::build(topology, true)
    }

    fn build(topology: Topology, shaped: bool) -> Self {
        let pcpus = topology.pcpus();
        check_pcpus(pcpus);
        SimHost {
            pcpus,
            smt: SmtModel::new(&topology),
            topology,
            shaped,
            hidden: false,
            now_ns: 0,
            domains: Vec::new(),
            listed: 0,
            by_key: Vec::new(),
            next_id: 1,
            noise: 0.0,
            reports_delay: true,
            rng: SplitMix64::new(0),
            placement: Vec::new(),
            placed_demand: vec![0.0; pcpus],
            placement_stale: false,
            slots: Vec::with_capacity(pcpus),
            host_load: vec![0.0; pcpus],
            host_got: vec![0.0; pcpus],
            busy: vec![0.0; pcpus],
            busy_ns: vec![0; pcpus],
            total_ns: vec![0; pcpus],
            demand_ns: 0.0,
            work_ns: 0.0,
        }
    }

    /// The host's shape as the model uses it (flat unless given), whether or not the
    /// scheduler is told of it.
    pub fn shape(&self) -> &Topology {
        &self.topology
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

    /// Whether vCPU samples carry run-queue delay (the default) or not, as with
    /// libvirt's test driver: the scheduler then estimates demand from usage.
    pub fn set_reports_delay(&mut self, on: bool) {
        self.reports_delay = on;
    }

    /// Keep the topology from the scheduler ([`Host::topology`] says none), while the
    /// model still runs on it: what a topology-blind scheduler would do on this host.
    pub fn hide_topology(&mut self, hidden: bool) {
        self.hidden = hidden;
    }

    /// Start a domain with one vCPU per demand (fractions of one pCPU, 0–1.0), every
    /// vCPU with affinity `affinity`. Its cpu time starts at 0. Its memory is bound to
    /// no node.
    pub fn add_domain(
        &mut self,
        name: &str,
        demands: &[f64],
        affinity: &CpuMap,
    ) -> Result<DomainKey, SimHostError> {
        self.add_domain_with_memory(name, demands, affinity, None)
    }

    /// [`SimHost::add_domain`], with the domain's memory on NUMA node `mem_node` (an
    /// index of the host's topology) when given: [`DomainInfo::mem_nodes`] says so, and
    /// the node is its home for [`SimHost::remote_vcpus`].
    pub fn add_domain_with_memory(
        &mut self,
        name: &str,
        demands: &[f64],
        affinity: &CpuMap,
        mem_node: Option<u16>,
    ) -> Result<DomainKey, SimHostError> {
        if let Some(node) = mem_node.filter(|&n| usize::from(n) >= self.topology.nodes()) {
            return Err(SimHostError::BadMemNode {
                name: name.to_owned(),
                node,
                nodes: self.topology.nodes(),
            });
        }
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
            .map(|&demand| SimVcpu::new(demand, affinity.clone(), pcpu_u32(first)))
            .collect();
        self.domains.push(SimDomain {
            name: name.to_owned(),
            key,
            running: true,
            mem_node,
            vcpus,
        });
        // Grow the per-interval buffers now, once, rather than inside `advance`.
        let total = self.running_vcpus();
        self.placement
            .reserve(total.saturating_sub(self.placement.len()));
        self.slots
            .reserve((total + self.pcpus).saturating_sub(self.slots.len()));
        self.placement_stale = true;
        Ok(key)
    }

    /// Stop the running domain `name`. The scheduler notices at its next refresh.
    pub fn stop_domain(&mut self, name: &str) -> Result<DomainKey, SimHostError> {
        let i = self.running_index(name).ok_or_else(|| no_domain(name))?;
        let d = &mut self.domains[i];
        d.running = false;
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

    /// vCPU hotplug: give the running domain `name` one vCPU per demand. Added vCPUs
    /// start with an affinity of every pCPU and no cpu time; removed ones are the
    /// highest numbered, as when libvirt unplugs vCPUs.
    pub fn set_vcpus(&mut self, name: &str, demands: &[f64]) -> Result<(), SimHostError> {
        let i = self.running_index(name).ok_or_else(|| no_domain(name))?;
        check_demands(name, demands)?;
        let pcpus = self.pcpus;
        let d = &mut self.domains[i];
        d.vcpus.truncate(demands.len());
        while d.vcpus.len() < demands.len() {
            d.vcpus.push(SimVcpu::new(0.0, CpuMap::all(pcpus), 0));
        }
        for (v, &demand) in d.vcpus.iter_mut().zip(demands) {
            v.demand = demand;
        }
        let total = self.running_vcpus();
        self.placement
            .reserve(total.saturating_sub(self.placement.len()));
        self.slots
            .reserve((total + self.pcpus).saturating_sub(self.slots.len()));
        self.placement_stale = true;
        Ok(())
    }

    /// Load from outside any domain on pCPU `pcpu`, fraction of it (0–1.0), from the
    /// next interval on: it competes for the pCPU like one more thread, so the vCPUs
    /// there get less, and the pCPU reads busy for it while the vCPUs' times do not.
    pub fn set_host_load(&mut self, pcpu: usize, load: f64) -> Result<(), SimHostError> {
        let pcpus = self.pcpus;
        let slot = self
            .host_load
            .get_mut(pcpu)
            .ok_or(SimHostError::PcpuOutOfRange {
                pcpu: u32::try_from(pcpu).unwrap_or(u32::MAX),
                pcpus,
            })?;
        if !(0.0..=1.0).contains(&load) {
            return Err(SimHostError::BadHostLoad {
                pcpu: pcpu_u32(pcpu),
                load,
            });
        }
        *slot = load;
        self.placement_stale = true;
        Ok(())
    }

    /// What the host's own work got of pCPU `pcpu` in the last interval.
    pub fn host_got(&self, pcpu: usize) -> Option<f64> {
        self.host_got.get(pcpu).copied()
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
            work: v.work,
            work_ns: v.work_ns,
        })
    }

    /// Run the model for one interval of `dt_ns` with the current pins and demands, and
    /// move virtual time forward. Does not allocate.
    pub fn advance(&mut self, dt_ns: u64) {
        if self.placement_stale {
            place(
                &self.domains,
                &self.host_load,
                &mut self.placement,
                &mut self.placed_demand,
            );
            self.placement_stale = false;
        }
        share::share(
            &mut self.domains,
            &self.placement,
            &self.host_load,
            &mut self.slots,
            &mut self.busy,
            &mut self.host_got,
        );
        self.smt.update(&self.topology, &self.busy);
        let dt = dt_ns as f64;
        let running = self.domains.iter_mut().filter(|d| d.running);
        for (v, &p) in running
            .flat_map(|d| d.vcpus.iter_mut())
            .zip(&self.placement)
        {
            let ran = v.usage * dt;
            // What it wanted and did not get, it spent waiting in the run queue.
            let waited = (v.demand - v.usage).max(0.0) * dt;
            let ran_ns = noisy(&mut self.rng, self.noise, ran);
            v.cpu_time_ns = v.cpu_time_ns.saturating_add(ran_ns);
            // The pCPU's busy time counts what the vCPU's time reads (the same ticks).
            self.busy_ns[p as usize] = self.busy_ns[p as usize].saturating_add(ran_ns);
            if waited > 0.0 {
                v.delay_ns = v
                    .delay_ns
                    .saturating_add(noisy(&mut self.rng, self.noise, waited));
            }
            // The CPU time above reads the whole share; SMT contention shows only here.
            v.work = v.usage * self.smt.ratio(&self.topology, p as usize);
            v.work_ns += v.work * dt;
            self.work_ns += v.work * dt;
            self.demand_ns += v.demand * dt;
            v.last_ran_on = p;
        }
        for ((b, t), &h) in self
            .busy_ns
            .iter_mut()
            .zip(self.total_ns.iter_mut())
            .zip(&self.host_got)
        {
            *b = b.saturating_add((h * dt).round() as u64);
            *t = t.saturating_add(dt_ns);
        }
        self.now_ns = self.now_ns.saturating_add(dt_ns);
    }

    /// Rebuild [`SimHost::by_key`] (its capacity grows only with the domains).
    fn index_keys(&mut self) {
        self.by_key.clear();
        self.by_key
            .extend(self.domains.iter().enumerate().map(|(i, d)| (d.key, i)));
        self.by_key.sort_unstable_by_key(|&(k, _)| k);
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

/// Checked before any table is sized for the host.
fn check_pcpus(pcpus: usize) {
    assert!(
        pcpus > 0 && u32::try_from(pcpus).is_ok(),
        "a host has 1 to 2^32-1 pcpus"
    );
}

/// `ns` off by up to ± `noise` of itself (none when `noise` is 0), in whole nanoseconds.
/// The factor is clamped at 0 and `as` saturates (NaN becomes 0), so a cumulative
/// counter fed with it never goes backwards and nothing panics.
fn noisy(rng: &mut SplitMix64, noise: f64, ns: f64) -> u64 {
    let mut x = ns;
    if noise > 0.0 {
        let u = 2.0 * rng.next_f64() - 1.0;
        x *= (1.0 + u * noise).max(0.0);
    }
    x.round() as u64
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

mod seam;
#[cfg(test)]
mod tests;
