//! Analyze: from per-vCPU usage, decide which vCPUs go to which pCPU this tick, and
//! whether the host is balanced.
//!
//! Pure functions over slices of numbers and plain indices; knows nothing of libvirt,
//! clocks or I/O, so the same code runs on a live host and in the simulator. The caller
//! owns every buffer: [`Scratch`] for the work in between, [`Outputs`] for the results.
//!
//! Units: usage, demand and load are fractions of one pCPU (1.0 = one pCPU busy);
//! σ is reported in percentage points, as the course and the threshold use it.
//!
//! Files: this one has the types, [`plan`] and the verdict ([`Analysis::balanced`]);
//! `demand.rs` turns usage into the demand the policy plans with; `moves.rs` picks the
//! moves (new vCPUs, `seed`'s one move, `balance`'s moves and swaps).

mod demand;
mod moves;
mod topo;

/// Loads or demands closer than this are equal: sums of demands carry rounding error.
/// The one tie margin of the planner and of the simulator's model of the host.
pub const TIE: f64 = 1e-9;

/// A vCPU demanding at least this fraction of a pCPU is busy: two busy vCPUs on the SMT
/// threads of one core get about 1.3 cores of work between them, not 2.
pub const BUSY: f64 = 0.5;

/// The least demand any placement could leave on the busiest of `pcpus` pCPUs holding
/// `total` demand whose largest vCPU wants `largest`: `max(largest, total / pcpus)`.
/// Placements are judged against it (`max_over_bound`, the residual imbalance). Not
/// always reachable (two vCPUs of 0.6 on 2 pCPUs with a third of 0.6: 1.2, bound 0.9).
pub fn bound(largest: f64, total: f64, pcpus: usize) -> f64 {
    largest.max(total / pcpus.max(1) as f64)
}

/// σ (percentage points) at or below which a host is balanced, unless told otherwise.
/// The course's figure, and the one place it is written.
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;

/// Which rule decides the moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The seed design, verbatim: when σ > threshold, one move from the busiest pCPU to
    /// the idlest, of the vCPU that best narrows their gap. The reference.
    Seed,
    /// The default: plans every move needed this tick from estimated demand, with
    /// safeguards against noise (see [`plan`]).
    Balance,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "seed" => Some(Policy::Seed),
            "balance" => Some(Policy::Balance),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Seed => "seed",
            Policy::Balance => "balance",
        }
    }
}

/// The threshold and the tuning of the `balance` policy. Defaults are what the README
/// documents; each says why it has its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// σ of pCPU load, in percentage points, at or below which the host is balanced.
    pub threshold_pct: f64,
    /// A move must lower the busier pCPU of its pair by at least this much (fraction of
    /// a pCPU): smaller gains are within measurement noise and not worth a migration.
    /// 0.03: QEMU's vCPU times move in 10 ms steps, so a 1 s sample is ±1 % per vCPU.
    pub min_gain: f64,
    /// Once balancing starts, keep planning until σ is this fraction of the threshold,
    /// so the next tick's noise does not push the host straight back over it.
    pub target_ratio: f64,
    /// A pCPU busy at or above this fraction is saturated: the usage of its vCPUs
    /// understates what they would use elsewhere. 0.95, not 1.0: the host's own
    /// threads and sampling jitter keep a full pCPU from reading exactly 100 %.
    pub saturated: f64,
    /// On a saturated pCPU, a vCPU getting at least this fraction of the top share there
    /// counts as capped. 0.9: fair shares are equal, but measured ones differ by noise.
    pub capped_share: f64,
    /// A pCPU with a single vCPU is still shared when host work takes at least this
    /// fraction of it (busy minus vCPU load). 0.1: below that it is sampling noise.
    pub host_share: f64,
    /// A capped vCPU that gets at most this multiple of its known demand is assumed to
    /// still want just that. 1.05 absorbs measurement noise; more means it grew.
    pub known_slack: f64,
    /// A vCPU whose demand is a guess may move where free capacity covers this fraction
    /// of what it gets now (0.9: as much, give or take noise) ...
    pub room_fit: f64,
    /// ... or where an equal share would be this multiple of what it gets now (1.1:
    /// clearly more, not a gain within noise).
    pub room_gain: f64,
    /// σ says little about one pCPU far above the rest on a large host (one pCPU 20
    /// points over on 64 moves σ by 2.5). So `balance` also acts when the busiest pCPU's
    /// demand is over this multiple of the best any placement could do,
    /// max(largest demand, mean load) ...
    pub top_trigger: f64,
    /// ... and then plans until it is within this multiple (below the trigger, so the
    /// next tick's noise does not trigger again).
    pub top_target: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold_pct: DEFAULT_THRESHOLD_PCT,
            min_gain: 0.03,
            target_ratio: 0.6,
            saturated: 0.95,
            capped_share: 0.9,
            host_share: 0.1,
            known_slack: 1.05,
            room_fit: 0.9,
            room_gain: 1.1,
            top_trigger: 1.1,
            top_target: 1.05,
        }
    }
}

/// One vCPU as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item {
    /// Usage over the last interval, `None` until a domain has been sampled twice.
    pub usage: Option<f64>,
    /// The one pCPU the vCPU is pinned to, if it is pinned to exactly one.
    pub pinned: Option<usize>,
    /// Where it last ran: where the load of an unpinned vCPU is.
    pub last_ran: Option<usize>,
    /// May the policy move it? False for unselected domains.
    pub managed: bool,
    /// Moved recently: counted, but not moved again yet (the anti-ping-pong cooldown).
    pub cooling: bool,
    /// Which domain it belongs to (an index valid this tick): vCPUs of one domain are
    /// kept on different pCPUs when the choice is otherwise a tie.
    pub group: u32,
    /// Its usage the last time it ran on a pCPU with room to spare, where usage is
    /// demand (what [`Outputs::observed`] reported then). Refines the guess when it is
    /// squeezed again.
    pub known_demand: Option<f64>,
    /// What it wants, measured (run time plus run-queue delay, smoothed), where the
    /// host reports it. `balance` then plans with it and guesses nothing.
    pub demand: Option<f64>,
    /// Usage smoothed against noise: what `balance` plans with for a vCPU whose
    /// demand is not measured and that is not held back.
    pub usage_smoothed: Option<f64>,
    /// The pCPU it was moved away from a few ticks ago: it is not sent back there yet
    /// (a move that a later tick undoes was not worth making).
    pub left: Option<usize>,
    /// The NUMA nodes its domain belongs on (bit n = node n): where its memory is
    /// bound, or where the domain was first seen to run; 0 when not settled yet (the
    /// plan settles it, see [`Outputs::home`]).
    pub home: u64,
    /// The nodes its domain's memory is bound to (`<numatune>`), 0 when not bound:
    /// such a domain pays most for running away from them.
    pub mem_nodes: u64,
    /// Its domain started since the scheduler began: with no usage yet, it is still
    /// taken into management at once, on a guessed demand.
    pub fresh: bool,
}

/// One pCPU as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pcpu {
    /// The fraction of it that was busy since last tick, by anyone (the host reports
    /// it when demand is estimated); `None` when unknown.
    pub busy: Option<f64>,
    /// May managed vCPUs be placed here (`--cpus`)? The verdict and the plan look at
    /// allowed pCPUs only; managed vCPUs found elsewhere are moved in.
    pub allowed: bool,
    /// Its NUMA node (0 on a host without topology).
    pub node: u16,
    /// Its core: pCPUs with the same core are SMT siblings.
    pub core: u32,
}

/// Why a pin was planned, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its affinity spanned several pCPUs (a new domain): taken into management.
    New,
    /// It was pinned outside the allowed pCPUs (`--cpus`).
    Outside,
    /// It ran off its domain's home NUMA node.
    Remote,
    /// Its whole domain moved to another node: its own was over capacity, the other
    /// had room for all of it.
    Node,
    /// Its whole domain went back to the node its memory is bound to, which has room
    /// for it again.
    Home,
    /// It shared a core with another busy vCPU while a core of the node was free.
    Smt,
    /// Its pCPU was well over the bound when newcomers were placed: placed with them.
    Relief,
    /// Moved off the busiest pCPU to the least loaded one.
    Busiest,
    /// Exchanged with a vCPU of the busiest pCPU.
    Swap,
}

impl Why {
    pub fn describe(self) -> &'static str {
        match self {
            Why::New => "taken into management",
            Why::Outside => "outside the allowed pcpus",
            Why::Remote => "back to its domain's home node",
            Why::Node => "its domain moved to a node with room for it",
            Why::Home => "its domain went back to its memory's node, which has room again",
            Why::Smt => "off a core shared with another busy vcpu",
            Why::Relief => "its pcpu was overloaded as new vcpus arrived",
            Why::Busiest => "off the busiest pcpu",
            Why::Swap => "swapped with a vcpu of the busiest pcpu",
        }
    }
}

/// One planned pin: item index (into the slice given to [`plan`]) to pCPU `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub item: usize,
    pub to: usize,
    /// The move was planned on a guessed demand: it explores, and the next tick's
    /// measurement may well call for another move of the same vCPU. Such moves do not
    /// start the cooldown, which exists to stop noise on *known* demand ping-ponging.
    pub guessed: bool,
    /// The move was planned on a demand measured while the vCPU got less than half of
    /// what it wanted. With that much contention some guests' demand reads higher than
    /// it is once they have room (a guest pacing itself by timer interrupts stays
    /// runnable while it waits), so the next tick may show the move was the wrong one:
    /// it starts neither the cooldown nor the no-return rule, and can be corrected.
    pub contended: bool,
    pub why: Why,
    /// Planning load (demand) of the pCPU it leaves and of the one it joins, before
    /// the move; the first is 0 for a vCPU that had no single pCPU.
    pub loads: (f64, f64),
    /// Its demand as planned.
    pub demand: f64,
}

/// What the analysis found, besides the moves: the figures and the verdict on them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// σ of measured pCPU loads, percentage points. `None` when nothing was measured.
    pub sigma_pct: Option<f64>,
    /// σ of the loads the policy planned with (estimated demand for `balance`, usage
    /// for `seed`), before this tick's moves. `None` when nothing was measured.
    pub demand_sigma_pct: Option<f64>,
    /// Measured σ is known and at or below the threshold.
    pub sigma_within: bool,
    /// Planned demand σ is known and at or below the threshold.
    pub demand_within: bool,
    /// The policy planned with demand, measured or estimated, rather than usage
    /// (`balance`), so the demand σ says something measured σ does not.
    pub plans_on_demand: bool,
}

impl Analysis {
    /// The verdict every printer shows: the host is balanced when both what was
    /// measured and what the vCPUs demand are within the threshold. (Saturated pCPUs
    /// all read 100 %, so measured σ alone can look even while demand is not.)
    pub fn balanced(&self) -> bool {
        self.sigma_within && self.demand_within
    }
}

/// What [`plan`] hands back, into buffers the caller owns and sizes: `loads` one entry
/// per pCPU (its length *is* the pCPU count), `observed` one per item.
#[derive(Debug)]
pub struct Outputs<'a> {
    /// Measured load of each pCPU: the usage of the vCPUs on it.
    pub loads: &'a mut [f64],
    /// Demand on each pCPU before this tick's moves: what the vCPUs on it want, as the
    /// policy sees it (measured, estimated, or usage for `seed`).
    pub demand: &'a mut [f64],
    /// Per item: the demand the policy planned with (measured, estimated, or usage),
    /// fraction of one pCPU; 0 for a vCPU not measured yet.
    pub item_demand: &'a mut [f64],
    /// Per item: its domain's home nodes after this plan (settled for a new domain,
    /// changed when the domain moved node). Callers keep it as [`Item::home`].
    pub home: &'a mut [u64],
    /// Per item: its usage when that usage *is* its demand (it was not held back by
    /// sharing its pCPU), else `None`. Callers keep it as [`Item::known_demand`].
    pub observed: &'a mut [Option<f64>],
    /// The pins to make, cleared and filled.
    pub moves: &'a mut Vec<Planned>,
}

/// Per pCPU, the analysis's working figures.
#[derive(Debug, Default, Clone, Copy)]
struct PcpuWork {
    /// Measured load (what is reported and what `seed` balances).
    measured: f64,
    /// Demand of the vCPUs running here before any move (what is reported).
    demand_here: f64,
    /// Planning load: starts from pinned vCPUs' demand, updated as moves are planned.
    load: f64,
    /// Number of vCPUs on it (planned positions).
    count: u32,
    /// Highest usage of a vCPU running there, and how many run there (for the
    /// saturation test; unpinned vCPUs count where they last ran).
    top: f64,
    sharing: u32,
    /// The fraction that was busy, by vCPUs or anything else on the host (the vCPU
    /// load where the host cannot tell).
    busy: f64,
    /// May managed vCPUs be placed here?
    allowed: bool,
    node: u16,
    core: u32,
    /// Where the items that started the search here sit in [`Scratch::members`].
    first: usize,
    len: usize,
}

/// Per item, the analysis's working figures.
#[derive(Debug, Default, Clone, Copy)]
struct ItemWork {
    /// The demand the policy plans with, and whether it is only a guess.
    demand: f64,
    uncertain: bool,
    /// Where it is in the plan (`None` = not placed), and whether it moved this tick.
    at: Option<usize>,
    moved: bool,
    /// Why it is being placed, when it is.
    why: Option<Why>,
    /// Its domain's home nodes (see [`Item::home`]), settled by the plan.
    home: u64,
    /// The run of items of its domain (`group_first..group_first + group_len`): the
    /// vCPUs of one domain arrive together.
    group_first: usize,
    group_len: usize,
}

/// Buffers the analysis reuses; sized once per host shape. One struct per pCPU and one
/// per item, so a new working figure cannot be forgotten when they are reset.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    pcpu: Vec<PcpuWork>,
    item: Vec<ItemWork>,
    /// Item indices, for sorting new vCPUs by demand.
    order: Vec<usize>,
    /// Item indices grouped by pCPU (see [`PcpuWork::first`]).
    members: Vec<usize>,
    /// This round's least loaded allowed pCPUs, by index: where a single move goes.
    ties: Vec<usize>,
    /// Planning load of each core (the sum over its SMT threads).
    core_load: Vec<f64>,
    /// Busy vCPUs (demand ≥ 50 %) on each core, while the SMT rules run.
    core_busy: Vec<u32>,
    /// Number of NUMA nodes.
    nodes: usize,
    /// While a node is balanced on its own: the only node the searches look at.
    scope: Option<u16>,
}

impl Scratch {
    fn reset(&mut self, pcpus: &[Pcpu], items: &[Item]) {
        self.pcpu.clear();
        self.pcpu.extend(pcpus.iter().map(|p| PcpuWork {
            busy: p.busy.unwrap_or(0.0),
            allowed: p.allowed,
            node: p.node,
            core: p.core,
            ..PcpuWork::default()
        }));
        let cores = pcpus.iter().map(|p| p.core as usize + 1).max().unwrap_or(0);
        self.core_load.clear();
        self.core_load.resize(cores, 0.0);
        self.nodes = pcpus.iter().map(|p| p.node as usize + 1).max().unwrap_or(1);
        self.scope = None;
        self.item.clear();
        self.item.resize(items.len(), ItemWork::default());
        self.order.clear();
        let mut first = 0;
        for i in 0..items.len() {
            if items[i].group != items[first].group {
                first = i;
            }
            self.item[i].group_first = first;
        }
        for i in (0..items.len()).rev() {
            let first = self.item[i].group_first;
            self.item[i].group_len = match self.item.get(i + 1) {
                Some(next) if next.group_first == first => next.group_len,
                _ => i + 1 - first,
            };
        }
    }

    /// σ of a per-pCPU figure over the allowed pCPUs.
    fn sigma_of(&self, f: impl Fn(&PcpuWork) -> f64 + Copy) -> f64 {
        sigma_pct_iter(self.allowed().map(f))
    }

    /// The pCPUs the plan may use: allowed, and in the node being balanced, if one is.
    fn allowed(&self) -> impl Iterator<Item = &PcpuWork> + Clone {
        let scope = self.scope;
        self.pcpu
            .iter()
            .filter(move |p| p.allowed && scope.is_none_or(|n| p.node == n))
    }

    /// Is pCPU `p` one of [`Scratch::allowed`]?
    fn open(&self, p: usize) -> bool {
        let w = &self.pcpu[p];
        w.allowed && self.scope.is_none_or(|n| w.node == n)
    }

    /// Add `d` to the planning load of pCPU `p` (and of its core).
    fn add_load(&mut self, p: usize, d: f64) {
        self.pcpu[p].load += d;
        let core = self.pcpu[p].core as usize;
        if let Some(c) = self.core_load.get_mut(core) {
            *c += d;
        }
    }

    /// Planning load of the core pCPU `p` belongs to; 0 on a host without SMT, where
    /// a core is its one pCPU and the order it gives adds nothing.
    fn core_load_of(&self, p: usize) -> f64 {
        if self.core_load.len() >= self.pcpu.len() {
            return 0.0;
        }
        self.core_load
            .get(self.pcpu[p].core as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// The least load any placement could give the busiest pCPU: max(largest demand,
    /// mean load), counting the placed items and `extra` (demands about to be placed).
    fn bound(&self, extra: impl Iterator<Item = f64>) -> f64 {
        let mut total: f64 = self.allowed().map(|p| p.load).sum();
        let mut largest = self
            .item
            .iter()
            .filter(|w| w.at.is_some_and(|p| self.open(p)))
            .map(|w| w.demand)
            .fold(0.0, f64::max);
        for d in extra {
            total += d;
            largest = largest.max(d);
        }
        bound(largest, total, self.allowed().count())
    }

    /// The most a pCPU may carry before the top rule acts: `ratio` × `bound`, and at
    /// least `min_gain` over it (loads of a few percent are not worth a move).
    fn top_cap(params: &Params, bound: f64, ratio: f64) -> f64 {
        (ratio * bound).max(bound + params.min_gain)
    }

    /// Is any allowed pCPU over `cap`?
    fn any_over(&self, cap: f64) -> bool {
        self.allowed().any(|p| p.load > cap)
    }
}

/// Population standard deviation of `loads`, in percentage points of one pCPU.
pub fn sigma_pct(loads: &[f64]) -> f64 {
    sigma_pct_iter(loads.iter().copied())
}

fn sigma_pct_iter(loads: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = loads
        .clone()
        .fold((0usize, 0.0), |(n, s), l| (n + 1, s + l));
    if n == 0 {
        return 0.0;
    }
    let mean = sum / n as f64;
    let var = loads.map(|l| (l - mean) * (l - mean)).sum::<f64>() / n as f64;
    var.sqrt() * 100.0
}

/// Decide this tick's pins and give the verdict. `pcpus` has one entry per pCPU (at
/// least one of them allowed), and so have `out.loads` and `out.demand`;
/// `out.observed` and `out.item_demand` have one per item.
///
/// Both policies first take new vCPUs into management: a managed vCPU whose affinity
/// spans several pCPUs (new domains start that way) is pinned to one, largest demand
/// first onto the least loaded pCPU, so the loads stay even.
///
/// `seed` then makes at most one move, busiest → idlest, unless the host is balanced.
///
/// `balance` plans with *demand* rather than usage: a vCPU on a saturated pCPU that gets
/// as much as its busiest neighbour may want a whole pCPU (four busy vCPUs on one pCPU
/// each measure 25 %), so it is counted at its known demand (its usage the last time it
/// was not held back) or, with none, as 1.0 until a move shows otherwise. While σ of
/// those loads is above the threshold it repeatedly takes the busiest pCPU and makes
/// the single move (or, failing that, the swap) that lowers the sum of squared loads
/// most, subject to: the destination must end below where the source started, minus
/// `min_gain` (no move reverses an imbalance or gains only noise); a guessed demand only
/// moves where it would get more than it has now; recently moved vCPUs stay put. Ties
/// go to the pCPU with fewer vCPUs of the same domain. It stops at
/// `target_ratio × threshold`, or when no move helps.
pub fn plan(
    policy: Policy,
    items: &[Item],
    pcpus: &[Pcpu],
    params: &Params,
    s: &mut Scratch,
    out: Outputs<'_>,
) -> Analysis {
    out.moves.clear();
    s.reset(pcpus, items);
    demand::measure_loads(items, s);
    let any_usage = items.iter().any(|i| i.usage.is_some());
    let sigma = any_usage.then(|| s.sigma_of(|p| p.measured));

    demand::estimate(policy, items, params, s);
    topo::settle_homes(items, s);
    let relieve = (policy == Policy::Balance).then_some(params);
    moves::place_new(items, relieve, s, out.moves);
    let demand_sigma = any_usage.then(|| s.sigma_of(|p| p.load));
    let within = |x: Option<f64>| x.is_some_and(|x| x <= params.threshold_pct);
    let analysis = Analysis {
        sigma_pct: sigma,
        demand_sigma_pct: demand_sigma,
        sigma_within: within(sigma),
        demand_within: within(demand_sigma),
        plans_on_demand: policy == Policy::Balance,
    };

    // `seed` balances what it measures; `balance` what the vCPUs demand, which is what
    // it can change (measured σ can stay over on a host no placement evens out).
    let act = match policy {
        Policy::Seed => !analysis.balanced(),
        Policy::Balance => {
            let bound = s.bound(std::iter::empty());
            !analysis.demand_within
                || s.any_over(Scratch::top_cap(params, bound, params.top_trigger))
                || topo::needs_work(items, params, s)
        }
    };
    if any_usage && act {
        match policy {
            Policy::Seed => moves::seed_move(items, s, out.moves),
            Policy::Balance => moves::balance_moves(items, params, s, out.moves),
        }
    }
    for ((l, d), w) in out.loads.iter_mut().zip(out.demand.iter_mut()).zip(&s.pcpu) {
        (*l, *d) = (w.measured, w.demand_here);
    }
    for (i, ((o, d), h)) in out
        .observed
        .iter_mut()
        .zip(out.item_demand.iter_mut())
        .zip(out.home.iter_mut())
        .enumerate()
    {
        *o = demand::observed(items, params, s, i);
        *d = s.item[i].demand;
        *h = s.item[i].home;
    }
    analysis
}

#[cfg(test)]
mod tests;
