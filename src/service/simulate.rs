//! `vcpu-scheduler simulate`: runs the real [`Scheduler`] against a [`SimHost`] driven by
//! a [`Scenario`], one virtual second per tick, and sums the run up.
//!
//! Each tick: apply the scenario's events due at it, run the host for one interval,
//! let the scheduler measure, analyze and act, print the tick. Before the first tick the
//! scheduler takes its baselines (tick 0). Output is one line per tick (the daemon's
//! format, [`crate::scheduler::report::write_tick_line`]) or one JSON object per tick, then a
//! summary. Nothing here decides anything: the policy is the daemon's own.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use crate::host::{DomainKey, PcpuId, VcpuId};
use crate::policy::{Params, Policy};
use crate::scheduler::report::{Report, write_json_num, write_json_tick, write_tick_line};
use crate::scheduler::{SchedConfig, Scheduler};
use crate::sim::scenario::{Action, Scenario, ScenarioError};
use crate::sim::{SimHost, SimHostError};

/// One tick of virtual time.
pub const INTERVAL_NS: u64 = 1_000_000_000;

/// How to run a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimOptions {
    pub policy: Policy,
    /// Run this many ticks instead of the scenario's own `ticks`.
    pub ticks: Option<u64>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// The threshold (σ, percentage points, at or below which the host counts as
    /// balanced) and the policy's tuning.
    pub params: Params,
    /// Run the scheduler as if the host had no topology (the model keeps it).
    pub hide_topology: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            policy: Policy::Balance,
            ticks: None,
            json: false,
            params: Params::default(),
            hide_topology: false,
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Ticks run (not counting the baseline).
    pub ticks: u64,
    /// Ticks from the last event (or the start) until σ ≤ threshold held to the end:
    /// 1 when the first measurement after it was already balanced. `None`: it never did.
    pub ticks_to_balance: Option<u64>,
    /// Pins of managed vCPUs over the whole run.
    pub migrations: u64,
    /// Pins that sent a vCPU back to the pCPU it had been moved away from within
    /// [`REVERSAL_TICKS`]: a move a later tick undid, so one not worth making.
    pub reversals: u64,
    /// σ of measured pCPU loads at the last tick, percentage points.
    pub final_sigma_pct: Option<f64>,
    /// Busiest pCPU's demand over the best possible, for the final placement (1.0 is
    /// perfect; see [`SimHost::demand_placement_stats`]).
    pub max_over_bound: f64,
    /// The same, node by node (each node's busiest pCPU over its own bound), worst
    /// node; only on a host of several nodes
    /// ([`SimHost::max_over_bound_within_nodes`]).
    pub max_over_bound_nodes: Option<f64>,
    /// vCPUs off their domain's home node in the final placement
    /// ([`SimHost::remote_vcpus`]); 0 on a host of one node.
    pub remote_vcpus: u64,
    /// SMT cores with two busy vCPUs while a core of their node has none, in the final
    /// placement ([`SimHost::smt_conflicts`]); 0 without SMT.
    pub smt_conflicts: u64,
    /// Work delivered over work demanded over ticks 1 to the last, percent
    /// ([`SimHost::work_pct`]).
    pub work_pct: f64,
    /// σ at each tick; index 0 is tick 1.
    pub sigma_pct: Vec<Option<f64>>,
    /// Pins made at each tick; index 0 is tick 1.
    pub moves: Vec<u64>,
    /// The ticks at which scenario events applied, ascending, each once.
    pub event_ticks: Vec<u64>,
}

/// A return to the pCPU a vCPU left counts as a reversal within this many ticks.
pub const REVERSAL_TICKS: u64 = 5;

/// `ticks_to_balance=K migrations=M reversals=V final_sigma=S max_over_bound=R
/// remote_vcpus=N smt_conflicts=C work=W`
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ticks_to_balance=")?;
        match self.ticks_to_balance {
            Some(k) => write!(f, "{k}")?,
            None => f.write_str("never")?,
        }
        write!(
            f,
            " migrations={} reversals={} final_sigma=",
            self.migrations, self.reversals
        )?;
        match self.final_sigma_pct {
            Some(s) => write!(f, "{s:.2}")?,
            None => f.write_str("-")?,
        }
        write!(f, " max_over_bound={:.3}", self.max_over_bound)?;
        if let Some(r) = self.max_over_bound_nodes {
            write!(f, " max_over_bound_nodes={r:.3}")?;
        }
        write!(
            f,
            " remote_vcpus={} smt_conflicts={} work={:.1}",
            self.remote_vcpus, self.smt_conflicts, self.work_pct
        )
    }
}

/// Why a simulation could not run. `Display` is one line.
#[derive(Debug)]
pub enum SimError {
    /// The scenario file is unreadable or malformed (`FILE:LINE: reason`).
    Scenario(ScenarioError),
    /// The simulated host refused a scenario step (names the tick).
    Host { tick: u64, error: SimHostError },
    /// Output could not be written.
    Io(io::Error),
    /// SIGINT or SIGTERM came: the run stopped at the next tick.
    Interrupted,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Scenario(e) => write!(f, "{e}"),
            SimError::Host { tick, error } => write!(f, "tick {tick}: {error}"),
            SimError::Io(e) => write!(f, "cannot write output: {e}"),
            SimError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<ScenarioError> for SimError {
    fn from(e: ScenarioError) -> Self {
        SimError::Scenario(e)
    }
}

impl From<io::Error> for SimError {
    fn from(e: io::Error) -> Self {
        SimError::Io(e)
    }
}

/// Load the scenario at `path` and run it; see [`run_scenario`].
pub fn run(path: &Path, opts: &SimOptions, out: &mut dyn Write) -> Result<Summary, SimError> {
    let scenario = Scenario::load(path)?;
    run_scenario(&scenario, opts, out)
}

/// Run a parsed scenario, writing every tick and the summary to `out`.
pub fn run_scenario(
    sc: &Scenario,
    opts: &SimOptions,
    out: &mut dyn Write,
) -> Result<Summary, SimError> {
    run_scenario_then(sc, opts, out, |_| ()).map(|(summary, ())| summary)
}

/// [`run_scenario`], then `at_end` on the simulated host as the run left it, for a
/// measure the summary does not carry (e.g. [`SimHost::max_over_bound_within_nodes`]).
pub fn run_scenario_then<T>(
    sc: &Scenario,
    opts: &SimOptions,
    out: &mut dyn Write,
    at_end: impl FnOnce(&SimHost) -> T,
) -> Result<(Summary, T), SimError> {
    let host_err = |tick| move |error| SimError::Host { tick, error };
    let mut host = SimHost::from_scenario(sc).map_err(host_err(0))?;
    host.hide_topology(opts.hide_topology);
    // Demands as fractions, for one domain at a time; sized once for the widest.
    let widest = sc
        .domains
        .iter()
        .map(|d| d.demands_pct.len())
        .chain(sc.events.iter().map(|e| match &e.action {
            Action::Load { demands_pct, .. } | Action::Vcpus { demands_pct, .. } => {
                demands_pct.len()
            }
            Action::Start(d) => d.demands_pct.len(),
            Action::Stop { .. } | Action::Host(_) => 0,
        }))
        .max()
        .unwrap_or(0);
    let mut fractions = Vec::with_capacity(widest);

    let cfg = SchedConfig {
        params: opts.params,
        policy: opts.policy,
        ..SchedConfig::default()
    };
    let mut sched = Scheduler::new(host, cfg);
    sched.tick().map_err(host_err(0))?;
    print_tick(out, &sched, opts.json)?;

    let ticks = opts.ticks.unwrap_or(sc.ticks);
    // Histories are the run's, not the tick's: sized up front (within reason).
    let cap = usize::try_from(ticks).unwrap_or(usize::MAX).min(1 << 20);
    let mut sigma_pct = Vec::with_capacity(cap);
    let mut within = Vec::with_capacity(cap);
    let mut moves = Vec::with_capacity(cap);
    let mut event_ticks = Vec::new();
    let (mut reversals, mut recent) = (0, Vec::new());
    let mut events = sc.events.iter().peekable();
    for tick in 1..=ticks {
        if super::signal::stop_requested() {
            return Err(SimError::Interrupted);
        }
        while let Some(e) = events.next_if(|e| e.tick <= tick) {
            sched
                .host_mut()
                .apply(&e.action, &mut fractions)
                .map_err(host_err(tick))?;
            if event_ticks.last() != Some(&tick) {
                event_ticks.push(tick);
            }
        }
        let before = sched.migrations();
        sched.host_mut().advance(INTERVAL_NS);
        sched.tick().map_err(host_err(tick))?;
        let a = sched.report().analysis;
        sigma_pct.push(a.sigma_pct);
        within.push(a.sigma_within);
        moves.push(sched.migrations() - before);
        reversals += count_reversals(&sched.report(), tick, &mut recent);
        print_tick(out, &sched, opts.json)?;
    }

    let last_event = event_ticks.last().copied();
    let host = sched.host();
    let summary = Summary {
        ticks,
        ticks_to_balance: ticks_to_balance(&within, last_event),
        migrations: sched.migrations(),
        reversals,
        final_sigma_pct: sigma_pct.last().copied().flatten(),
        max_over_bound: host.max_over_bound(),
        max_over_bound_nodes: (host.shape().nodes() > 1)
            .then(|| host.max_over_bound_within_nodes()),
        remote_vcpus: host.remote_vcpus(),
        smt_conflicts: host.smt_conflicts(),
        work_pct: host.work_pct(),
        sigma_pct,
        moves,
        event_ticks,
    };
    if opts.json {
        write_json_summary(out, &summary)?;
    } else {
        writeln!(out, "summary {summary}")?;
    }
    out.flush()?;
    let extra = at_end(sched.host());
    Ok((summary, extra))
}

/// A move made in a run: which vCPU left which pCPU, at which tick.
type Left = (DomainKey, VcpuId, PcpuId, u64);

/// Count this tick's pins that return a vCPU to a pCPU it left within
/// [`REVERSAL_TICKS`], and remember this tick's departures in `recent`.
fn count_reversals(r: &Report<'_>, tick: u64, recent: &mut Vec<Left>) -> u64 {
    recent.retain(|&(_, _, _, t)| tick <= t + REVERSAL_TICKS);
    let mut n = 0;
    for m in r.moves.iter().filter(|m| m.counts()) {
        if recent
            .iter()
            .any(|&(d, v, p, _)| d == m.domain && v == m.vcpu && p == m.to)
        {
            n += 1;
        }
        if let Some(from) = m.from {
            recent.push((m.domain, m.vcpu, from, tick));
        }
    }
    n
}

/// Ticks from the last event (or the start) to the first tick from which measured σ
/// stays within the threshold ([`crate::policy::Analysis::sigma_within`], one entry per
/// tick) to the end. `sigma_within[0]` is tick 1; an event at tick `e` is first
/// measured at tick `e`, so balance at that very tick counts 1, as balance at tick 1
/// does.
pub fn ticks_to_balance(sigma_within: &[bool], last_event: Option<u64>) -> Option<u64> {
    // Ticks at the end that are all within; none means it never settled.
    let tail = sigma_within.iter().rev().take_while(|&&w| w).count();
    if tail == 0 {
        return None;
    }
    let since = sigma_within.len() as u64 - tail as u64 + 1; // first tick of that tail
    let start = last_event.unwrap_or(1); // the first tick that measures the change
    Some(since.max(start) - start + 1)
}

fn print_tick(out: &mut dyn Write, sched: &Scheduler<SimHost>, json: bool) -> io::Result<()> {
    let r = sched.report();
    if json {
        write_json_tick(out, &r)
    } else {
        write_tick_line(out, &r)
    }
}

fn write_json_summary(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    write!(
        out,
        "{{\"summary\":{{\"ticks\":{},\"ticks_to_balance\":",
        s.ticks
    )?;
    match s.ticks_to_balance {
        Some(k) => write!(out, "{k}")?,
        None => out.write_all(b"null")?,
    }
    write!(
        out,
        ",\"migrations\":{},\"reversals\":{},\"final_sigma\":",
        s.migrations, s.reversals
    )?;
    write_json_num(out, s.final_sigma_pct)?;
    out.write_all(b",\"max_over_bound\":")?;
    write_json_num(out, Some(s.max_over_bound))?;
    if let Some(r) = s.max_over_bound_nodes {
        out.write_all(b",\"max_over_bound_nodes\":")?;
        write_json_num(out, Some(r))?;
    }
    write!(
        out,
        ",\"remote_vcpus\":{},\"smt_conflicts\":{},\"work\":",
        s.remote_vcpus, s.smt_conflicts
    )?;
    write_json_num(out, Some(s.work_pct))?;
    out.write_all(b"}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_to_balance_counts_from_the_measurement_of_the_change() {
        // `w` for a tick within the threshold, `x` for one over it.
        let s = |v: &str| v.chars().map(|c| c == 'w').collect::<Vec<_>>();
        // Balanced from the first measurement: 1.
        assert_eq!(ticks_to_balance(&s("www"), None), Some(1));
        // One tick to fix: 2.
        assert_eq!(ticks_to_balance(&s("xww"), None), Some(2));
        // Balanced, then a blip, then balanced for good: from the blip's end.
        assert_eq!(ticks_to_balance(&s("wxww"), None), Some(3));
        // An event at tick 3, measured at 3, fixed at 4: 2.
        assert_eq!(ticks_to_balance(&s("wwxw"), Some(3)), Some(2));
        // An event that disturbed nothing: 1.
        assert_eq!(ticks_to_balance(&s("xwww"), Some(3)), Some(1));
        // Never settled, or no measurement at all.
        assert_eq!(ticks_to_balance(&s("wx"), None), None);
        assert_eq!(ticks_to_balance(&[], None), None);
    }

    #[test]
    fn summary_line() {
        let s = Summary {
            ticks: 30,
            ticks_to_balance: None,
            migrations: 4,
            reversals: 1,
            final_sigma_pct: Some(7.123),
            max_over_bound: 1.0,
            max_over_bound_nodes: None,
            remote_vcpus: 3,
            smt_conflicts: 1,
            work_pct: 87.654,
            sigma_pct: Vec::new(),
            moves: Vec::new(),
            event_ticks: Vec::new(),
        };
        assert_eq!(
            s.to_string(),
            "ticks_to_balance=never migrations=4 reversals=1 final_sigma=7.12 max_over_bound=1.000 \
             remote_vcpus=3 smt_conflicts=1 work=87.7"
        );
        let mut json = Vec::new();
        write_json_summary(&mut json, &s).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "{\"summary\":{\"ticks\":30,\"ticks_to_balance\":null,\"migrations\":4,\
             \"reversals\":1,\"final_sigma\":7.123,\"max_over_bound\":1,\
             \"remote_vcpus\":3,\"smt_conflicts\":1,\"work\":87.654}}\n"
        );
    }
}
