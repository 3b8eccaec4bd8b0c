//! What a recording says: each tick's measurements, turned into the lines of a scenario
//! file. Knows the [`Host`] seam and the Measure phase's [`Unit`]s, not libvirt, and
//! writes nothing to disk (see [`super::run`]).
//!
//! A line is written only when something changed, so a steady host gives a short file:
//! - a domain's first line once every vCPU of it has a measured interval: `vm` when it
//!   ran from the start, else `at T start` at the tick it appeared, with its pins
//!   (`pin LIST`) and its memory's node (`mem NODE`);
//! - `at T load` when a vCPU's demand moved from what the file says by more than the
//!   noise band the sampler uses ([`Smoothed::band`]: three times its noise, at least
//!   5 % of a pCPU); the line gives every vCPU of the domain;
//! - `at T vcpus` when its vCPU count changed (hotplug), `at T stop` when it is gone;
//! - `host PCPU PCT` (from the start) and `at T host PCPU PCT`: load on a pCPU that no
//!   recorded vCPU explains, when it moved beyond the same band.
//!
//! Tick `T` of the file is the interval that ended at the recorder's `T`-th measurement,
//! as `simulate` counts them: an event `at T` applies before interval `T` runs.
//!
//! Steady state allocates nothing: the tables grow only when a domain, a vCPU or a name
//! appears, and text is appended only when a line is written.

use std::fmt::Write as _;

use super::names::Names;
use crate::cpumap::CpuMap;
use crate::host::{DomainInfo, DomainKey, Host, PcpuId};
use crate::scheduler::sample::{DemandMode, JUMP_FLOOR, Smoothed, Unit};
use crate::scheduler::select::Selection;

/// At most this many notes go into the header; more are counted.
const MAX_NOTES: usize = 40;

/// One domain the recording knows, by the key of its current run.
struct Dom {
    key: DomainKey,
    /// Its name in the file: an index into [`Names`].
    name: usize,
    /// The observation at which the host last listed it.
    seen: u64,
    /// What the file says each vCPU wants, as written (a fraction, rounded to a whole
    /// percent); empty until its first line.
    written: Vec<f64>,
    /// The pCPU each vCPU was pinned to when last read, to count pins others changed.
    pins: Vec<Option<PcpuId>>,
}

/// The host's own load on one pCPU: its smoothed figure and what the file says.
#[derive(Clone, Copy, Default)]
struct HostLoad {
    smoothed: Option<Smoothed>,
    written: f64,
}

/// Per-pCPU sums of one tick, scratch for the host's own load.
#[derive(Clone, Copy, Default)]
struct PcpuSums {
    usage: f64,
    demand: f64,
    /// vCPUs pinned to exactly this pCPU.
    pinned: u32,
    /// A vCPU allowed on several pCPUs last ran here: its usage may be anywhere.
    floating: bool,
    /// A vCPU here has no measured interval yet (its domain just started, or it was
    /// hotplugged): what it ran is in the pCPU's busy time but not in `usage`.
    unmeasured: bool,
}

/// The recording so far: the lines after the header, and what they were written from.
pub struct Trace {
    select: Selection,
    pub(super) names: Names,
    pcpus: usize,
    /// NUMA nodes of the file's host: the `topology` line's sockets, else 1.
    nodes: usize,
    doms: Vec<Dom>,
    host: Vec<HostLoad>,
    sums: Vec<PcpuSums>,
    one: CpuMap,
    first: CpuMap,
    union: CpuMap,
    /// The `vm` and `host` lines of tick 1, then `at` lines in the order they happen.
    pub(super) body: String,
    /// The last tick observed (0: the baseline).
    pub(super) tick: u64,
    obs: u64,
    /// Where the demands written came from; `None` until the first was written.
    pub(super) source: Option<DemandMode>,
    /// Pins that changed under the recording (the format has no event for them).
    pub(super) pin_changes: u64,
    pub(super) notes: Vec<String>,
    pub(super) notes_dropped: usize,
}

impl Trace {
    /// A recording of `pcpus` pCPUs in `nodes` NUMA nodes (as the file's host line
    /// says); names anonymized or made safe.
    pub fn new(select: Selection, anonymize: bool, pcpus: usize, nodes: usize) -> Trace {
        Trace {
            select,
            names: Names::new(anonymize),
            pcpus,
            nodes,
            doms: Vec::with_capacity(64),
            host: vec![HostLoad::default(); pcpus],
            sums: vec![PcpuSums::default(); pcpus],
            one: CpuMap::new(pcpus),
            first: CpuMap::new(pcpus),
            union: CpuMap::new(pcpus),
            body: String::with_capacity(64 * 1024),
            tick: 0,
            obs: 0,
            source: None,
            pin_changes: 0,
            notes: Vec::new(),
            notes_dropped: 0,
        }
    }

    pub fn pcpus(&self) -> usize {
        self.pcpus
    }

    /// A line for the header (a lost connection, a pin the format cannot say).
    pub fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(text);
        } else {
            self.notes_dropped += 1;
        }
    }

    /// Domains the recording is following now.
    pub fn domains(&self) -> usize {
        self.doms.len()
    }

    /// Take one measurement of the host: `units` as the sampler just measured them (in
    /// host order, each domain's vCPUs together), `busy` each pCPU's busy fraction when
    /// the host reported it. `tick` is the interval that just ended (0 or a repeated
    /// tick: a baseline, after connecting, which only notes who runs).
    pub fn observe<H: Host>(
        &mut self,
        tick: u64,
        host: &H,
        units: &[Unit],
        busy: &[Option<f64>],
        mode: DemandMode,
    ) {
        self.obs += 1;
        let obs = self.obs;
        self.tick = self.tick.max(tick);
        // Who runs: every listed domain, read or not (one whose read failed this tick
        // has not stopped).
        for i in 0..host.domain_count() {
            let info = host.domain(i);
            match self.doms.binary_search_by(|d| d.key.cmp(&info.key)) {
                Ok(j) => self.doms[j].seen = obs,
                Err(j) if self.select.manages(info.name) => {
                    let name = self.names.index(info.name);
                    self.doms.insert(
                        j,
                        Dom {
                            key: info.key,
                            name,
                            seen: obs,
                            written: Vec::new(),
                            pins: Vec::new(),
                        },
                    );
                }
                Err(_) => {}
            }
        }
        // Who stopped: before anything starts, so a domain restarted under its name
        // stops first.
        for d in self
            .doms
            .iter()
            .filter(|d| d.seen != obs && !d.written.is_empty())
        {
            let _ = writeln!(
                self.body,
                "at {} stop {}",
                tick.max(1),
                self.names.safe(d.name)
            );
        }
        self.doms.retain(|d| d.seen == obs);
        self.sums.fill(PcpuSums::default());
        let mut start = 0;
        while start < units.len() {
            let group = units[start].group;
            let len = units[start..]
                .iter()
                .take_while(|u| u.group == group)
                .count();
            let vcpus = &units[start..start + len];
            start += len;
            let i = group as usize;
            let info = host.domain(i);
            if let Ok(j) = self.doms.binary_search_by(|d| d.key.cmp(&info.key)) {
                let seen = Seen {
                    host,
                    info,
                    i,
                    vcpus,
                    mode,
                    tick,
                };
                self.domain_tick(j, &seen);
            }
        }
        self.host_tick(tick, busy, mode);
    }

    /// One domain's vCPUs this tick (`self.doms[j]`): its first line, a hotplug, a
    /// change of demand.
    fn domain_tick<H: Host>(&mut self, j: usize, seen: &Seen<'_, H>) {
        let (tick, vcpus, mode) = (seen.tick, seen.vcpus, seen.mode);
        // Every vCPU needs a measured interval (a new domain or vCPU has none yet; a
        // vCPU whose delay could not be read this tick falls back): else wait a tick.
        if tick == 0 {
            return;
        }
        if !vcpus.iter().all(|u| value(u, mode).is_some()) {
            for u in vcpus {
                if let Some(p) = u.pinned_to.or(u.last_ran_on) {
                    self.sums[p.index()].unmeasured = true;
                }
            }
            return;
        }
        for u in vcpus {
            if let Some(p) = u.pinned_to.or(u.last_ran_on) {
                let s = &mut self.sums[p.index()];
                s.usage += u.usage.unwrap_or(0.0);
                s.demand += value(u, mode).map_or(0.0, |v| v.value);
                if u.pinned_to.is_some() {
                    s.pinned += 1;
                } else {
                    s.floating = true;
                }
            }
        }
        let d = &mut self.doms[j];
        let changed =
            d.pins.len() == vcpus.len() && d.pins.iter().zip(vcpus).any(|(p, u)| *p != u.pinned_to);
        if changed {
            self.pin_changes += 1;
        }
        if d.pins.len() != vcpus.len() {
            d.pins.resize(vcpus.len(), None);
        }
        for (p, u) in d.pins.iter_mut().zip(vcpus) {
            *p = u.pinned_to;
        }
        let name = d.name;
        if d.written.is_empty() {
            self.first_line(j, seen);
            return;
        }
        let d = &mut self.doms[j];
        let (kind, at) = if vcpus.len() > d.written.len() {
            // The new vCPUs appeared a tick ago, without a measured interval.
            ("vcpus", tick.saturating_sub(1).max(1))
        } else if vcpus.len() < d.written.len() {
            ("vcpus", tick)
        } else if d
            .written
            .iter()
            .zip(vcpus)
            .any(|(&w, u)| value(u, mode).is_some_and(|v| (v.value - w).abs() > v.band()))
        {
            ("load", tick)
        } else {
            return;
        };
        let _ = write!(self.body, "at {at} {kind} {} ", self.names.safe(name));
        write_demands(&mut self.body, &mut d.written, vcpus, mode);
        self.body.push('\n');
    }

    /// The `vm` or `at T start` line of a domain whose every vCPU was just measured.
    fn first_line<H: Host>(&mut self, j: usize, seen: &Seen<'_, H>) {
        let (vcpus, mode, info) = (seen.vcpus, seen.mode, &seen.info);
        // It ran during the interval before the one first measured: it started then.
        let at = seen.tick - 1;
        let name = self.doms[j].name;
        if at == 0 {
            let _ = write!(self.body, "vm {} ", self.names.safe(name));
        } else {
            let _ = write!(self.body, "at {at} start {} ", self.names.safe(name));
        }
        write_demands(&mut self.body, &mut self.doms[j].written, vcpus, mode);
        // One affinity per domain in the format: the union of its vCPUs'.
        self.union.clear();
        let mut differ = false;
        for k in 0..vcpus.len() {
            seen.affinity(k, &mut self.one);
            if k == 0 {
                self.first.copy_from(self.one.as_bytes());
            } else if self.one != self.first {
                differ = true;
            }
            for p in self.one.iter() {
                let _ = self.union.set(p);
            }
        }
        if self.union.count() < self.pcpus && self.union.count() > 0 {
            let _ = write!(self.body, " pin {}", self.union);
        }
        let mem = info.mem_nodes;
        let node = mem.trailing_zeros() as usize;
        if mem.count_ones() == 1 && node < self.nodes {
            let _ = write!(self.body, " mem {node}");
        }
        self.body.push('\n');
        self.source.get_or_insert(mode);
        let safe = self.names.safe(name).to_owned();
        if differ {
            let mut each = String::new();
            for (k, u) in vcpus.iter().enumerate() {
                seen.affinity(k, &mut self.one);
                let sep = if k > 0 { ", " } else { "" };
                let _ = write!(each, "{sep}vcpu {}: {}", u.vcpu.0, self.one);
            }
            let union = self.union.to_string();
            self.note(format!(
                "{safe}: its vcpus' pins differ ({each}); the format has one pin per domain, \
                 so the file gives their union, {union}"
            ));
        }
        if mem.count_ones() > 1 {
            let nodes: Vec<String> = (0..64)
                .filter(|n| mem & (1 << n) != 0)
                .map(|n| n.to_string())
                .collect();
            self.note(format!(
                "{safe}: memory bound to nodes {}; the format takes one node, so no mem is written",
                nodes.join(",")
            ));
        } else if mem.count_ones() == 1 && node >= self.nodes {
            self.note(format!(
                "{safe}: memory bound to node {node}, which the file's host (one node) does not \
                 have; no mem is written"
            ));
        }
        if info.config_pinned {
            self.note(format!(
                "{safe}: pinned in its persistent configuration; the daemon leaves such domains \
                 alone unless --repin-configured, a replay moves it (the format cannot say so)"
            ));
        }
    }

    /// Load on each pCPU that no recorded vCPU explains.
    ///
    /// Where the host reports how busy each pCPU was (demand estimated from usage: the
    /// sampler reads it then), it is that busy time minus the usage of the recorded
    /// vCPUs there. Where demand is measured, the sampler does not read it (nor does the
    /// daemon: no more calls than the daemon), and it is inferred: a pCPU whose vCPUs
    /// (all pinned to it) wanted clearly more than they got was full, so whatever they
    /// did not get went to someone else; one whose vCPUs got what they wanted had room
    /// for at most what they left, so a host load written earlier above that is lowered
    /// to it. A pCPU with a vCPU free to run elsewhere, or none, or one not measured
    /// over the whole interval, tells nothing.
    fn host_tick(&mut self, tick: u64, busy: &[Option<f64>], mode: DemandMode) {
        if tick == 0 {
            return;
        }
        for p in 0..self.pcpus {
            let s = self.sums[p];
            if s.unmeasured {
                continue;
            }
            let h = &mut self.host[p];
            let raw = match busy.get(p).copied().flatten() {
                Some(b) => Some((b - s.usage).clamp(0.0, 1.0)),
                None if mode == DemandMode::Measured && s.pinned > 0 && !s.floating => {
                    if s.demand - s.usage > JUMP_FLOOR {
                        Some((1.0 - s.usage).clamp(0.0, 1.0))
                    } else {
                        let room = (1.0 - s.demand).max(0.0);
                        (h.written > room + JUMP_FLOOR).then_some(room)
                    }
                }
                None => None,
            };
            let Some(raw) = raw else { continue };
            let sm = Smoothed::update(h.smoothed, raw);
            h.smoothed = Some(sm);
            if (sm.value - h.written).abs() <= sm.band() {
                continue;
            }
            let pct = pct(sm.value);
            h.written = f64::from(pct) / 100.0;
            if tick == 1 {
                let _ = writeln!(self.body, "host {p} {pct}");
            } else {
                let _ = writeln!(self.body, "at {tick} host {p} {pct}");
            }
        }
    }
}

/// One domain as this tick saw it: index `i` of the host's listing, its vCPUs' units.
struct Seen<'a, H> {
    host: &'a H,
    info: DomainInfo<'a>,
    i: usize,
    vcpus: &'a [Unit],
    mode: DemandMode,
    tick: u64,
}

impl<H: Host> Seen<'_, H> {
    /// The `k`-th vCPU's affinity into `out`: as the host read it, else what its sample
    /// says (one pCPU, or all of them).
    fn affinity(&self, k: usize, out: &mut CpuMap) {
        if self.host.affinity(self.i, k, out) {
            return;
        }
        out.clear();
        match self.vcpus.get(k).and_then(|u| u.pinned_to) {
            Some(p) => drop(out.set(p.index())),
            None => out.fill(),
        }
    }
}

/// What the file records of a vCPU: its demand measured from run-queue delay where the
/// host reports it, else its usage (both smoothed, with their noise).
fn value(u: &Unit, mode: DemandMode) -> Option<Smoothed> {
    match mode {
        DemandMode::Measured => u.demand,
        DemandMode::Estimated => u.usage_smoothed,
    }
}

/// A fraction of a pCPU as the file writes it: a whole percent, 0-100.
fn pct(x: f64) -> u32 {
    (x * 100.0).round().clamp(0.0, 100.0) as u32
}

/// `d0,d1,...` of `vcpus` into `out`, and what was written into `written`.
fn write_demands(out: &mut String, written: &mut Vec<f64>, vcpus: &[Unit], mode: DemandMode) {
    written.clear();
    for (k, u) in vcpus.iter().enumerate() {
        let p = pct(value(u, mode).map_or(0.0, |v| v.value));
        written.push(f64::from(p) / 100.0);
        let _ = write!(out, "{}{p}", if k > 0 { "," } else { "" });
    }
}
