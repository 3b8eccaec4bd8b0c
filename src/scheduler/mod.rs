//! The Measure – Analyze – Act loop. [`Scheduler::tick`] reads like the algorithm:
//! measure the vCPUs, analyze the pCPU loads, act on the plan, keep the baseline.
//!
//! The scheduler owns every buffer a tick needs and reuses them, so once the set of
//! domains is stable a tick allocates nothing (`tests/alloc_per_tick.rs` proves it).
//! Sleeping between ticks is the caller's business: the daemon sleeps on the wall
//! clock, the simulator advances a virtual one.

pub mod act;
pub mod report;
pub mod sample;
pub mod select;

use crate::cpumap::CpuMap;
use crate::host::Host;
use crate::policy::{self, Analysis, Item, Outputs, Params, Pcpu, Planned, Policy, Scratch};
use crate::topology::Topology;
use act::{Move, Pin};
use report::Report;
use sample::{DemandMode, Sampler, Unit};
use select::Selection;

/// What the scheduler is told to do; validated by the CLI before it gets here.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedConfig {
    /// The threshold (σ of pCPU loads, percentage points, at or below which nothing
    /// changes) and the policy's tuning.
    pub params: Params,
    pub policy: Policy,
    /// Decide and report, never pin.
    pub dry_run: bool,
    /// Which domains may be pinned.
    pub select: Selection,
    /// The pCPUs managed vCPUs may be placed on (`--cpus`), sized to the host; `None`
    /// for all of them.
    pub cpus: Option<CpuMap>,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            params: Params::default(),
            policy: Policy::Balance,
            dry_run: false,
            select: Selection::default(),
            cpus: None,
        }
    }
}

pub struct Scheduler<H: Host> {
    host: H,
    cfg: SchedConfig,
    /// Ticks completed so far.
    ticks: u64,
    sampler: Sampler,
    units: Vec<Unit>,
    items: Vec<Item>,
    pcpus: Vec<Pcpu>,
    scratch: Scratch,
    planned: Vec<Planned>,
    moves: Vec<Move>,
    /// The policy's outputs: measured load of each pCPU, and the demand each item
    /// showed when nothing held it back.
    loads: Vec<f64>,
    pcpu_demand: Vec<f64>,
    observed: Vec<Option<f64>>,
    item_demand: Vec<f64>,
    homes: Vec<u64>,
    /// The host's shape, read when the scheduler starts (once per connection).
    topology: Topology,
    analysis: Analysis,
    migrations: u64,
    /// Pins libvirt refused since start.
    failed_pins: u64,
}

impl<H: Host> Scheduler<H> {
    pub fn new(host: H, cfg: SchedConfig) -> Self {
        let pcpus = host.pcpus();
        let topology = host
            .topology()
            .filter(|t| t.pcpus() == pcpus)
            .cloned()
            .unwrap_or_else(|| Topology::flat(pcpus));
        Scheduler {
            host,
            cfg,
            ticks: 0,
            sampler: Sampler::default(),
            units: Vec::with_capacity(64),
            items: Vec::with_capacity(64),
            pcpus: Vec::with_capacity(pcpus),
            scratch: Scratch::default(),
            planned: Vec::with_capacity(64),
            moves: Vec::with_capacity(64),
            loads: Vec::with_capacity(pcpus),
            pcpu_demand: Vec::with_capacity(pcpus),
            observed: Vec::with_capacity(64),
            item_demand: Vec::with_capacity(64),
            homes: Vec::with_capacity(64),
            topology,
            analysis: Analysis {
                sigma_pct: None,
                demand_sigma_pct: None,
                sigma_within: false,
                demand_within: false,
                plans_on_demand: false,
                settled: true,
            },
            migrations: 0,
            failed_pins: 0,
        }
    }

    /// One round of the loop, and what it found: the report, built once, for every
    /// reader of the tick (printers, the journal, metrics). The first call only records
    /// baselines: usage needs two samples. Fails only when the host cannot be listed or
    /// the connection is lost.
    pub fn tick(&mut self) -> Result<Report<'_>, H::Error> {
        self.measure()?;
        self.analyze();
        self.act();
        self.sampler.commit(&mut self.units);
        self.ticks += 1;
        Ok(self.report())
    }

    /// Measure: every vCPU of every running domain, with its usage since last tick.
    fn measure(&mut self) -> Result<(), H::Error> {
        self.sampler
            .measure(&mut self.host, &self.cfg.select, &mut self.units)
    }

    /// Analyze: per-pCPU loads, σ, the verdict and the policy's plan.
    fn analyze(&mut self) {
        let tick = self.ticks;
        self.items.clear();
        self.items.extend(self.units.iter().map(|u| {
            Item {
                usage: u.usage,
                pinned: u.pinned_to.map(|p| p.index()),
                last_ran: u.last_ran_on.map(|p| p.index()),
                managed: u.managed(),
                moved_ago: u.moved_at.map(|t| tick.saturating_sub(t)),
                group: u.group,
                known_demand: u.known_demand,
                demand: u.demand.map(|d| d.value),
                usage_smoothed: u.usage_smoothed.map(|d| d.value),
                noise: u.demand.or(u.usage_smoothed).map_or(0.0, |d| d.noise),
                first_reading: u
                    .demand
                    .or(u.usage_smoothed)
                    .is_some_and(|d| d.readings < 2),
                fresh: u.fresh,
                // The home settled earlier (its memory's nodes at first, or where a
                // whole-domain move took it), else its memory's nodes.
                home: if u.home != 0 { u.home } else { u.mem_nodes },
                mem_nodes: u.mem_nodes,
            }
        }));
        let (cpus, topology, sampler) = (&self.cfg.cpus, &self.topology, &self.sampler);
        // How busy each pCPU was this tick matters only to estimated demand, which reads
        // every pCPU every tick; the host's own load is kept from its last reading.
        let estimated = sampler.mode == DemandMode::Estimated;
        self.pcpus.clear();
        self.pcpus.extend((0..self.host.pcpus()).map(|p| {
            let place = topology.place(p);
            Pcpu {
                busy: sampler
                    .pcpu_busy
                    .get(p)
                    .copied()
                    .flatten()
                    .filter(|_| estimated),
                host: sampler
                    .pcpu_host
                    .get(p)
                    .copied()
                    .flatten()
                    .map_or(0.0, |h| h.value),
                allowed: cpus.as_ref().is_none_or(|m| m.is_set(p)),
                node: place.node,
                core: place.core,
            }
        }));
        self.loads.resize(self.host.pcpus(), 0.0);
        self.pcpu_demand.resize(self.host.pcpus(), 0.0);
        self.observed.resize(self.items.len(), None);
        self.item_demand.resize(self.items.len(), 0.0);
        self.homes.resize(self.items.len(), 0);
        let out = Outputs {
            loads: &mut self.loads,
            demand: &mut self.pcpu_demand,
            observed: &mut self.observed,
            item_demand: &mut self.item_demand,
            home: &mut self.homes,
            moves: &mut self.planned,
        };
        self.analysis = policy::plan(
            self.cfg.policy,
            &self.items,
            &self.pcpus,
            &self.cfg.params,
            &mut self.scratch,
            out,
        );
        // Remember what each vCPU wanted when nothing held it back, for the next time
        // it shares a saturated pCPU.
        for ((u, d), &h) in self.units.iter_mut().zip(&self.observed).zip(&self.homes) {
            if d.is_some() {
                u.known_demand = *d;
            }
            // Homes settle once the vCPU has run an interval under our eyes: at the
            // baseline, where it last ran may predate its start (and the simulator's
            // vCPUs have not run at all).
            if u.usage.is_some() {
                u.home = h;
            }
        }
    }

    /// Act: pin what the plan says, skipping pins already in place.
    fn act(&mut self) {
        self.migrations += act::apply(
            &mut self.host,
            &mut self.units,
            &self.planned,
            self.cfg.dry_run,
            self.ticks,
            &mut self.moves,
        );
        self.failed_pins += self.moves.iter().filter(|m| m.pin == Pin::Refused).count() as u64;
    }

    /// The last tick, with everything its printers need.
    pub fn report(&self) -> Report<'_> {
        Report {
            tick: self.ticks.saturating_sub(1),
            analysis: self.analysis,
            threshold_pct: self.cfg.params.threshold_pct,
            policy: self.cfg.policy.name(),
            dry_run: self.cfg.dry_run,
            loads: &self.loads,
            demand: &self.pcpu_demand,
            mode: self.sampler.mode,
            moves: &self.moves,
            units: self.sampler.committed(),
            unit_demand: &self.item_demand,
            names: &self.host,
            cpus: self.cfg.cpus.as_ref(),
            migrations: self.migrations,
            failed_pins: self.failed_pins,
        }
    }

    /// Pins made since start (planned ones in dry-run mode).
    pub fn migrations(&self) -> u64 {
        self.migrations
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// New settings (a reload): the next tick measures, plans and acts with them. What
    /// was learned of each vCPU (demand, move times) stays.
    pub fn reconfigure(&mut self, cfg: SchedConfig) {
        self.cfg = cfg;
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// Give the host back (to close the connection explicitly, for instance).
    pub fn into_host(self) -> H {
        self.host
    }
}
