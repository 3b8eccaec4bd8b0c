//! Measure: turn cumulative vCPU times into usage and, where the host reports run-queue
//! delay, into demand smoothed against noise; one [`Unit`] per vCPU.
//!
//! Previous samples are matched by domain key (UUID + run id) and vCPU number, never by
//! position, so a domain that stops or starts cannot shift anyone else's figures. Knows
//! the [`Host`] seam, not libvirt and not the policy.

use super::select::{LeftAlone, Selection};
use crate::host::{
    DomainKey, FailureKind, Host, HostError, PcpuId, PcpuTimes, RunQueue, VcpuId, VcpuSample,
};

/// One vCPU this tick: what was read, the usage derived from it, and our own history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unit {
    pub domain: DomainKey,
    pub vcpu: VcpuId,
    /// Index of the domain in this tick's listing: groups the vCPUs of one domain.
    pub group: u32,
    /// Why it is not managed, when it is not (see [`Unit::managed`]).
    pub left_alone: Option<LeftAlone>,
    pub cpu_time_ns: u64,
    pub at_ns: u64,
    /// Δcpu_time / Δwall since the previous sample, fraction of a pCPU; `None` for a
    /// vCPU seen for the first time or whose cpu time went backwards.
    pub usage: Option<f64>,
    /// Δcpu_time since the previous sample, ns (0 without a valid one): charged to the
    /// pCPU it ran on, to tell the host's own load there from the vCPUs'.
    pub ran_ns: u64,
    pub pinned_to: Option<PcpuId>,
    pub last_ran_on: Option<PcpuId>,
    /// The tick at which we last pinned it (for the cooldown).
    pub moved_at: Option<u64>,
    /// Its usage when it last had room to spare: its demand then (see `policy`).
    pub known_demand: Option<f64>,
    /// This tick's run-queue reading, the baseline for the next one.
    pub run_queue: Option<RunQueue>,
    /// What it wanted over the last interval, measured from run-queue delay and
    /// smoothed; `None` where the host reports no delay, or no valid interval.
    pub demand: Option<Smoothed>,
    /// Usage smoothed the same way: what the policy plans with where demand is not
    /// measured and the vCPU is not held back.
    pub usage_smoothed: Option<Smoothed>,
    /// First seen after the scheduler's baseline: its domain started (or the vCPU was
    /// hotplugged) while the scheduler ran.
    pub fresh: bool,
    /// The nodes its domain's memory is bound to (`DomainInfo::mem_nodes`), and the
    /// home nodes the policy settled for it (0 until then).
    pub mem_nodes: u64,
    pub home: u64,
}

impl Unit {
    /// May it be pinned? Selected by `--domain`/`--exclude-domain` and not pinned by
    /// its owner: nothing leaves it alone.
    pub fn managed(&self) -> bool {
        self.left_alone.is_none()
    }
}

/// Where the demand the policy plans with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemandMode {
    /// Run time plus run-queue delay: what each vCPU wanted (libvirt's `vcpu.N.delay`).
    Measured,
    /// From usage alone: a vCPU sharing a saturated pCPU is guessed at (see `policy`).
    Estimated,
}

impl DemandMode {
    pub fn describe(self) -> &'static str {
        match self {
            DemandMode::Measured => "measured (run-queue delay)",
            DemandMode::Estimated => "estimated from usage",
        }
    }
}

/// A measured figure smoothed against noise without lagging behind real changes.
///
/// Small differences from the running value are taken as noise and averaged away
/// (exponentially, weight [`SMOOTH_WEIGHT`]), while their size is tracked as `noise`.
/// A difference beyond the noise band (three times `noise`, at least
/// [`JUMP_FLOOR`]) is a real change and is taken at once: a vCPU that turns busy is
/// seen as busy the same tick. A jump that the next reading takes back (the other way,
/// beyond the band again) was noise after all: the value goes back to where it was,
/// and the noise is raised to half the jumps. The noise is first measured by the
/// second reading (the two readings' difference, whatever its size), so a noisy figure
/// gets a wide band from the start. One reading cannot show its own noise: `readings`
/// says so, and the policy does not re-pin a host that reads balanced on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothed {
    /// The smoothed value, fraction of a pCPU.
    pub value: f64,
    /// Mean absolute difference of the raw readings from `value`: the noise observed.
    pub noise: f64,
    /// Readings folded in so far (counted up to 2: only the first two differ).
    pub readings: u8,
    /// The last reading was a jump, of this much (0 if it was not), from `before`.
    pub jump: f64,
    pub before: f64,
}

/// Weight of a new reading within the noise band. 0.3: noise of ±10 % shrinks to about
/// a third of itself, and a drift inside the band is followed within a few ticks.
pub const SMOOTH_WEIGHT: f64 = 0.3;
/// The smallest step taken as a real change. 0.05 of a pCPU: below what is worth a
/// migration, above QEMU's 10 ms time steps at 1 s intervals.
pub const JUMP_FLOOR: f64 = 0.05;
/// `Sampler::vcpu_ns` of a pCPU on which a vCPU ran for an unmeasured part of the window.
const UNKNOWN_NS: u64 = u64::MAX;
/// A difference between the first two readings beyond this is a real change, not
/// noise: 0.25 of a pCPU, more than twice the noise of a busy vCPU read with ±10 %.
pub const NOISE_MOST: f64 = 0.25;

impl Smoothed {
    /// The noise band: a reading further than this from `value` is a real change (three
    /// times the noise seen, at least [`JUMP_FLOOR`]). `record` writes a new demand
    /// only when it moved further than this.
    pub fn band(&self) -> f64 {
        JUMP_FLOOR.max(3.0 * self.noise)
    }

    /// Fold one raw reading into `prev` (or start from it).
    pub fn update(prev: Option<Smoothed>, raw: f64) -> Smoothed {
        let first = |raw: f64| Smoothed {
            value: raw,
            noise: 0.0,
            readings: 1,
            jump: 0.0,
            before: raw,
        };
        let Some(p) = prev else {
            return first(raw);
        };
        let err = raw - p.value;
        if p.readings < 2 {
            if err.abs() > NOISE_MOST {
                // No noise is that large: a real change. Measure the noise from the next.
                return first(raw);
            }
            // The second reading: the first measure of the noise, and the mean of two.
            return Smoothed {
                value: p.value + 0.5 * err,
                noise: err.abs(),
                readings: 2,
                ..p
            };
        }
        let in_band = Smoothed {
            value: p.value + SMOOTH_WEIGHT * err,
            noise: p.noise + SMOOTH_WEIGHT * (err.abs() - p.noise),
            jump: 0.0,
            ..p
        };
        if err.abs() <= p.band() {
            return in_band;
        }
        if p.jump != 0.0 && (err > 0.0) != (p.jump > 0.0) {
            // Back the other way: the jump was noise.
            let back = raw - p.before;
            return Smoothed {
                value: p.before + SMOOTH_WEIGHT * back,
                noise: p.noise.max(0.5 * p.jump.abs()).max(0.5 * back.abs()),
                jump: 0.0,
                ..p
            };
        }
        Smoothed {
            value: raw,
            jump: err,
            before: p.value,
            ..p
        }
    }
}

/// Charge a vCPU's run time since last tick to the pCPU it ran on (`vcpu_ns`, per
/// pCPU), to tell the host's own load there from the vCPUs' (`Sampler::measure_pcpus`).
fn charge(vcpu_ns: &mut [u64], u: &Unit) {
    if let Some(x) = u
        .pinned_to
        .or(u.last_ran_on)
        .and_then(|p| vcpu_ns.get_mut(p.index()))
    {
        // A vCPU with no measured interval (new, or its counter reset) ran an unknown
        // part of the pCPU's busy time: the window tells nothing.
        *x = match u.usage {
            Some(_) => x.saturating_add(u.ran_ns),
            None => UNKNOWN_NS,
        };
    }
}

/// Demand of one vCPU between two run-queue readings: (Δtime + Δdelay) / Δat, clamped to
/// one pCPU. `None` without a forward interval, or when a counter went backwards (a
/// reset, or a bad reading): that vCPU falls back to estimation for the tick.
pub fn demand(prev: &RunQueue, now: &RunQueue) -> Option<f64> {
    let dt = now.at_ns.checked_sub(prev.at_ns).filter(|&d| d > 0)?;
    let ran = now.time_ns.checked_sub(prev.time_ns)?;
    let waited = now.delay_ns.checked_sub(prev.delay_ns)?;
    Some((ran.saturating_add(waited) as f64 / dt as f64).min(1.0))
}

/// Usage of one vCPU between two samples, or `None` when there is no valid interval.
///
/// A cpu time that went backwards means the counter was reset (the vCPU was unplugged
/// and replugged, or the domain restarted under the same id): start a new baseline.
/// Usage is clamped to one pCPU: a vCPU cannot run on two at once, and a reading a few
/// percent over 1.0 is sampling jitter.
pub fn usage(prev_time_ns: u64, prev_at_ns: u64, time_ns: u64, at_ns: u64) -> Option<f64> {
    let dt = at_ns.checked_sub(prev_at_ns).filter(|&d| d > 0)?;
    let dcpu = time_ns.checked_sub(prev_time_ns)?;
    Some((dcpu as f64 / dt as f64).min(1.0))
}

/// pCPUs whose times are read per tick while demand is measured (one
/// `virNodeGetCPUStats` call each, 0.27 ms apiece on the project's machine): the host's
/// own load on each is then refreshed every `pCPUs / 4` ticks, over that window, where
/// reading them all would cost 69 ms a tick on a host of 256. Host load changes slowly
/// (a backup job, a storage daemon); estimated demand needs every pCPU every tick.
pub const PCPU_READS_PER_TICK: usize = 4;

/// Reads the host each tick and keeps the previous tick's units to difference against.
#[derive(Debug)]
pub struct Sampler {
    samples: Vec<VcpuSample>,
    /// Last tick's units, in the host's order (which is stable from tick to tick), and
    /// an index of them sorted by (domain, vcpu) for when this tick's order differs.
    prev: Vec<Unit>,
    prev_index: Vec<(DomainKey, VcpuId, u32)>,
    /// Domains already reported as unreadable, so a failure is one line, not one per tick.
    warned: Vec<DomainKey>,
    /// Per pCPU: its cumulative times at its last reading (if any), and the vCPU run
    /// time charged to it since then (ns).
    pcpu_last: Vec<Option<PcpuTimes>>,
    vcpu_ns: Vec<u64>,
    /// The next pCPU to read while demand is measured (round robin).
    next_pcpu: usize,
    /// Fraction of each pCPU that was busy since last tick, by anyone; `None` when
    /// unknown (first tick, a host that cannot tell, or demand measured, which does not
    /// need it every tick).
    pub pcpu_busy: Vec<Option<f64>>,
    /// The host's own load on each pCPU (busy time the vCPUs on it did not use),
    /// fraction of the pCPU, smoothed; `None` until two readings of that pCPU.
    pub pcpu_host: Vec<Option<Smoothed>>,
    /// Where this tick's demand came from: measured if any vCPU had a run-queue reading.
    pub mode: DemandMode,
    /// A baseline was committed: vCPUs seen from now on are new arrivals.
    baselined: bool,
    /// The last `measure` found every vCPU at its place in the previous tick's list
    /// (none gone, none new): `prev_index` still holds, `commit` need not sort again.
    in_order: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            samples: Vec::new(),
            prev: Vec::new(),
            prev_index: Vec::new(),
            warned: Vec::new(),
            pcpu_last: Vec::new(),
            vcpu_ns: Vec::new(),
            next_pcpu: 0,
            pcpu_busy: Vec::new(),
            pcpu_host: Vec::new(),
            mode: DemandMode::Estimated,
            baselined: false,
            in_order: false,
        }
    }
}

impl Sampler {
    /// Refresh the domain list, read every vCPU, and fill `units` in host order.
    ///
    /// A domain that vanished mid-read is dropped quietly; any other per-domain failure
    /// is reported once and that domain skipped. Only a failure to list domains, or a
    /// lost connection, is returned.
    pub fn measure<H: Host>(
        &mut self,
        host: &mut H,
        select: &Selection,
        units: &mut Vec<Unit>,
    ) -> Result<(), H::Error> {
        host.refresh()?;
        host.sample_run_queues()?;
        self.samples.clear();
        // Run time is charged to the pCPUs as it is read (see `measure_pcpus`).
        self.vcpu_ns.resize(host.pcpus(), 0);
        // Units are written over last-but-one tick's in place (a Unit is a few hundred
        // bytes: built elsewhere and pushed, each would be copied once more).
        let mut n = 0;
        let mut in_order = true;
        for d in 0..host.domain_count() {
            let start = self.samples.len();
            if let Err(e) = host.sample(d, &mut self.samples) {
                self.samples.truncate(start);
                match e.kind() {
                    FailureKind::DomainGone => continue,
                    FailureKind::ConnectionLost => {
                        // Part of this tick's run time is charged: the windows are lost.
                        self.vcpu_ns.fill(UNKNOWN_NS);
                        return Err(e);
                    }
                    FailureKind::Other => {
                        let info = host.domain(d);
                        if !self.warned.contains(&info.key) {
                            self.warned.push(info.key);
                            crate::warn!("cannot read vcpus of domain \"{}\": {e}", info.name);
                        }
                        continue;
                    }
                }
            }
            let info = host.domain(d);
            let left_alone = select.left_alone(info.name, info.config_pinned);
            let mem_nodes = info.mem_nodes;
            for s in &self.samples[start..] {
                if n == units.len() {
                    units.push(Unit::default());
                }
                in_order &= self.fill(&mut units[n], n, s, d as u32, left_alone, mem_nodes);
                charge(&mut self.vcpu_ns, &units[n]);
                n += 1;
            }
        }
        units.truncate(n);
        self.in_order = in_order && n == self.prev.len();
        // Forget the warnings of domains that are gone: the list stays as short as the
        // domains that fail, and one that comes back and fails again is reported again.
        self.warned
            .retain(|k| (0..host.domain_count()).any(|d| host.domain(d).key == *k));
        self.mode = if units.iter().any(|u| u.run_queue.is_some()) {
            DemandMode::Measured
        } else {
            DemandMode::Estimated
        };
        self.measure_pcpus(host)
    }

    /// How busy each pCPU was, by anyone, and how much of that was the host's own load:
    /// every pCPU each tick where demand is estimated (saturation is judged on it), else
    /// [`PCPU_READS_PER_TICK`] of them in turn, each over the window since its last
    /// reading. The vCPUs' run time in the window is charged to the pCPU each was on.
    fn measure_pcpus<H: Host>(&mut self, host: &mut H) -> Result<(), H::Error> {
        let n = host.pcpus();
        self.pcpu_last.resize(n, None);
        self.pcpu_host.resize(n, None);
        self.pcpu_busy.clear();
        self.pcpu_busy.resize(n, None);
        let reads = match self.mode {
            DemandMode::Estimated => n,
            DemandMode::Measured => PCPU_READS_PER_TICK.min(n),
        };
        for _ in 0..reads {
            let p = self.next_pcpu % n.max(1);
            self.next_pcpu = (p + 1) % n.max(1);
            let mut now = PcpuTimes::default();
            if !host.sample_pcpu(p, &mut now)? {
                self.pcpu_last[p] = None;
                continue;
            }
            if let Some(last) = self.pcpu_last[p] {
                let busy = now.busy_ns.checked_sub(last.busy_ns);
                let total = now.total_ns.checked_sub(last.total_ns).filter(|&t| t > 0);
                if let (Some(b), Some(t)) = (busy, total) {
                    let (b, t) = (b as f64, t as f64);
                    self.pcpu_busy[p] = Some((b / t).min(1.0));
                    if self.vcpu_ns[p] != UNKNOWN_NS {
                        let own = ((b - self.vcpu_ns[p] as f64) / t).clamp(0.0, 1.0);
                        self.pcpu_host[p] = Some(Smoothed::update(self.pcpu_host[p], own));
                    }
                }
            }
            self.pcpu_last[p] = Some(now);
            self.vcpu_ns[p] = 0;
        }
        Ok(())
    }

    /// The previous sample of the vCPU that is this tick's `k`-th, and whether it was
    /// at the same place in last tick's list (the host's order did not change), else
    /// found by binary search.
    fn prev_of(&self, k: usize, s: &VcpuSample) -> (Option<&Unit>, bool) {
        if let Some(p) = self
            .prev
            .get(k)
            .filter(|p| p.domain == s.domain && p.vcpu == s.vcpu)
        {
            return (Some(p), true);
        }
        let found = self
            .prev_index
            .binary_search_by(|&(d, v, _)| (d, v).cmp(&(s.domain, s.vcpu)))
            .ok()
            .and_then(|i| self.prev.get(self.prev_index[i].2 as usize));
        (found, false)
    }

    /// Write the `k`-th unit of this tick, from its sample and its previous unit;
    /// whether that previous unit was at the same place in last tick's list.
    fn fill(
        &self,
        unit: &mut Unit,
        k: usize,
        s: &VcpuSample,
        group: u32,
        left_alone: Option<LeftAlone>,
        mem_nodes: u64,
    ) -> bool {
        let (prev, in_place) = self.prev_of(k, s);
        let now_usage = prev.and_then(|p| usage(p.cpu_time_ns, p.at_ns, s.cpu_time_ns, s.at_ns));
        let ran_ns = match (prev, now_usage) {
            (Some(p), Some(_)) => s.cpu_time_ns.saturating_sub(p.cpu_time_ns),
            _ => 0,
        };
        *unit = Unit {
            domain: s.domain,
            vcpu: s.vcpu,
            group,
            left_alone,
            cpu_time_ns: s.cpu_time_ns,
            at_ns: s.at_ns,
            usage: now_usage,
            ran_ns,
            usage_smoothed: now_usage
                .map(|u| Smoothed::update(prev.and_then(|p| p.usage_smoothed), u)),
            pinned_to: s.pinned_to,
            last_ran_on: s.last_ran_on,
            moved_at: prev.and_then(|p| p.moved_at),
            known_demand: prev.and_then(|p| p.known_demand),
            run_queue: s.run_queue,
            demand: prev.and_then(|p| {
                let raw = demand(p.run_queue.as_ref()?, s.run_queue.as_ref()?)?;
                Some(Smoothed::update(p.demand, raw))
            }),
            fresh: prev.map_or(self.baselined, |p| p.fresh && p.usage.is_none()),
            mem_nodes,
            home: prev.map_or(0, |p| p.home),
        };
        in_place
    }

    /// Keep this tick's units as the baseline for the next one, taking them from
    /// `units` (which is left with last tick's, to be refilled: no copy). Domains that
    /// stopped are forgotten here: they are simply not in `units`.
    pub fn commit(&mut self, units: &mut Vec<Unit>) {
        // `measure` saw the same list in the same order: the index still holds. Taken
        // once, so a commit without a measure before it builds the index anew.
        let same = std::mem::take(&mut self.in_order) && self.prev.len() == units.len();
        std::mem::swap(&mut self.prev, units);
        if !same {
            self.prev_index.clear();
            self.prev_index.extend(
                self.prev
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (u.domain, u.vcpu, i as u32)),
            );
            self.prev_index.sort_unstable_by_key(|&(d, v, _)| (d, v));
        }
        self.baselined = true;
    }

    /// The units of the tick last committed.
    pub fn committed(&self) -> &[Unit] {
        &self.prev
    }
}

#[cfg(test)]
mod tests;
