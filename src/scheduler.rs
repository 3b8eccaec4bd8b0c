//! The Measure – Analyze – Act loop. [`Scheduler::tick`] reads like the algorithm:
//! measure the vCPUs, analyze the pCPU loads, act on the plan, keep the baseline.
//!
//! The scheduler owns every buffer a tick needs and reuses them, so once the set of
//! domains is stable a tick allocates nothing (`tests/alloc_per_tick.rs` proves it).
//! Sleeping between ticks is the caller's business: the daemon sleeps on the wall
//! clock, the simulator advances a virtual one.

use crate::act::{self, Move};
use crate::host::Host;
use crate::policy::{self, Analysis, Item, Params, Planned, Policy, Scratch};
use crate::sample::{Sampler, Unit};
use crate::select::Selection;

/// What the scheduler is told to do; validated by the CLI before it gets here.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedConfig {
    /// σ of pCPU loads (percentage points) at or below which nothing changes.
    pub threshold_pct: f64,
    pub policy: Policy,
    /// Decide and report, never pin.
    pub dry_run: bool,
    /// Which domains may be pinned.
    pub select: Selection,
    /// Ticks a vCPU stays where `balance` put it before it may move again.
    pub cooldown_ticks: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            threshold_pct: 5.0,
            policy: Policy::Balance,
            dry_run: false,
            select: Selection::default(),
            cooldown_ticks: 2,
        }
    }
}

/// The last tick, for printing.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// 0 for the first tick, which only records baselines.
    pub tick: u64,
    /// σ of measured pCPU loads, percentage points; `None` before usage is known.
    pub sigma_pct: Option<f64>,
    /// Measured load of each pCPU, percent of one pCPU.
    pub loads_pct: &'a [f64],
    pub moves: &'a [Move],
    /// At or below the threshold, so nothing needed to change.
    pub balanced: bool,
    /// σ of the loads the policy balanced (estimated demand for `balance`), before
    /// this tick's moves; it can exceed `sigma_pct` when saturation hides demand.
    pub planned_sigma_pct: Option<f64>,
    pub dry_run: bool,
    /// Every vCPU seen this tick.
    pub units: &'a [Unit],
}

pub struct Scheduler<H: Host> {
    host: H,
    cfg: SchedConfig,
    params: Params,
    /// Ticks completed so far.
    ticks: u64,
    sampler: Sampler,
    units: Vec<Unit>,
    items: Vec<Item>,
    scratch: Scratch,
    planned: Vec<Planned>,
    moves: Vec<Move>,
    loads_pct: Vec<f64>,
    analysis: Analysis,
    migrations: u64,
}

impl<H: Host> Scheduler<H> {
    pub fn new(host: H, cfg: SchedConfig) -> Self {
        let params = Params {
            threshold_pct: cfg.threshold_pct,
            ..Params::default()
        };
        let pcpus = host.pcpus();
        Scheduler {
            host,
            cfg,
            params,
            ticks: 0,
            sampler: Sampler::default(),
            units: Vec::with_capacity(64),
            items: Vec::with_capacity(64),
            scratch: Scratch::default(),
            planned: Vec::with_capacity(64),
            moves: Vec::with_capacity(64),
            loads_pct: Vec::with_capacity(pcpus),
            analysis: Analysis {
                sigma_pct: None,
                planned_sigma_pct: None,
                balanced: true,
            },
            migrations: 0,
        }
    }

    /// One round of the loop. The first call only records baselines: usage needs two
    /// samples. Fails only when the host cannot be listed or the connection is lost.
    pub fn tick(&mut self) -> Result<(), H::Error> {
        self.measure()?;
        self.analyze();
        self.act();
        self.sampler.commit(&self.units);
        self.ticks += 1;
        Ok(())
    }

    /// Measure: every vCPU of every running domain, with its usage since last tick.
    fn measure(&mut self) -> Result<(), H::Error> {
        self.sampler
            .measure(&mut self.host, &self.cfg.select, &mut self.units)
    }

    /// Analyze: per-pCPU loads, σ, and the policy's plan.
    fn analyze(&mut self) {
        let tick = self.ticks;
        let cooldown = self.cfg.cooldown_ticks;
        self.items.clear();
        self.items.extend(self.units.iter().map(|u| Item {
            usage: u.usage,
            pinned: u.pinned_to.map(|p| p.index()),
            last_ran: u.last_ran_on.map(|p| p.index()),
            managed: u.managed,
            cooling: u.moved_at.is_some_and(|t| tick < t + cooldown),
            group: u.group,
            known_demand: u.known_demand,
        }));
        self.analysis = policy::plan(
            self.cfg.policy,
            &self.items,
            &self.sampler.pcpu_busy,
            self.host.pcpus(),
            &self.params,
            &mut self.scratch,
            &mut self.planned,
        );
        self.loads_pct.clear();
        self.loads_pct
            .extend(self.scratch.measured.iter().map(|l| l * 100.0));
        // Remember what each vCPU wanted when nothing held it back, for the next time
        // it shares a saturated pCPU.
        for (i, u) in self.units.iter_mut().enumerate() {
            if let Some(d) = policy::observed_demand(&self.items, &self.params, &self.scratch, i) {
                u.known_demand = Some(d);
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
    }

    pub fn report(&self) -> Report<'_> {
        Report {
            tick: self.ticks.saturating_sub(1),
            sigma_pct: self.analysis.sigma_pct,
            loads_pct: &self.loads_pct,
            moves: &self.moves,
            balanced: self.analysis.balanced,
            planned_sigma_pct: self.analysis.planned_sigma_pct,
            dry_run: self.cfg.dry_run,
            units: &self.units,
        }
    }

    /// Pins made since start (planned ones in dry-run mode).
    pub fn migrations(&self) -> u64 {
        self.migrations
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
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
