//! The policy's vocabulary: what it is given ([`Item`], [`Pcpu`], [`Params`]), what it
//! hands back ([`Planned`], [`Analysis`], [`Outputs`]), and the figures every layer
//! shares ([`TIE`], [`bound`], [`sigma_pct`]). No logic beyond those figures.

/// Loads or demands closer than this are equal: sums of demands carry rounding error.
/// The one tie margin of the planner and of the simulator's model of the host.
pub const TIE: f64 = 1e-9;

/// A vCPU demanding at least this fraction of a pCPU is busy, for the simulator's
/// count of SMT conflicts (two busy vCPUs on the threads of one core).
pub const BUSY: f64 = 0.5;

/// σ (percentage points) at or below which a host is balanced, unless told otherwise.
/// The course's figure, and the one place it is written.
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;

/// The least demand any placement could leave on the busiest of `pcpus` pCPUs holding
/// `total` demand whose largest vCPU wants `largest`: `max(largest, total / pcpus)`.
/// Placements are judged against it (`max_over_bound`, the residual imbalance). Not
/// always reachable (two vCPUs of 0.6 on 2 pCPUs with a third of 0.6: 1.2, bound 0.9).
pub fn bound(largest: f64, total: f64, pcpus: usize) -> f64 {
    largest.max(total / pcpus.max(1) as f64)
}

/// Population standard deviation of `loads`, in percentage points of one pCPU.
pub fn sigma_pct(loads: &[f64]) -> f64 {
    sigma_pct_iter(loads.iter().copied())
}

pub(super) fn sigma_pct_iter(loads: impl Iterator<Item = f64> + Clone) -> f64 {
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

/// Which rule decides the moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The seed design, verbatim: when σ > threshold, one move from the busiest pCPU to
    /// the idlest, of the vCPU that best narrows their gap. The reference.
    Seed,
    /// The default: the placement that lowers the cost (load, NUMA, SMT) by more than
    /// the migrations it takes (see [`crate::policy`]).
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

/// The verdict's threshold and the price of a migration. Every other figure of the
/// cost is derived from the model it stands for (see `cost.rs`); these are the ones a
/// judgement sets. Defaults are what the README documents.
///
/// A migration of a vCPU of demand `d` costs
/// `(price + 2 d × noise_sigmas × noise) × (1 + recent) × (guess_prices if guessed)`:
/// moving `d` from a pCPU to one `g` lighter gains `2 d (g − d)`, so the second part
/// asks the gap to stand `noise_sigmas` times the noise of the loads above what the
/// move needs; `noise` is what the sampler measured on the vCPUs of its pCPU (0 on a
/// host without noise, where only `price` is paid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// σ of pCPU load, in percentage points, at or below which the host is balanced.
    pub threshold_pct: f64,
    /// The fixed part of what one migration costs, in the cost's unit (pCPU², see
    /// `cost.rs`): 0.001, the gain of moving 10 % of a pCPU across a 5-point gap. A
    /// migration itself costs the guest a refill of its caches: microseconds a second.
    pub price: f64,
    /// How many times the measured noise of the loads a move's gap must stand (ratio,
    /// of the mean deviation of the raw readings from the smoothed ones): 3, about 2.4
    /// standard deviations of a raw reading (the mean deviation of a normal one is 0.8
    /// of its standard deviation), so a gap made by noise alone passes once in about 60.
    pub noise_sigmas: f64,
    /// A vCPU moved `k` ticks ago costs `1 + recent_ticks − k` prices to move again
    /// (ticks): 4, so the next tick asks five times the gain, and a vCPU moved a
    /// while ago is as cheap as any. A move undone by the next tick's noise was wasted.
    pub recent_ticks: u64,
    /// A vCPU whose demand is a guess (it shares a saturated pCPU and the host reports
    /// no run-queue delay, or its domain just started) costs this many prices to move
    /// (ratio): 2, as the move may well show the guess wrong and call for another.
    pub guess_prices: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold_pct: DEFAULT_THRESHOLD_PCT,
            price: 0.001,
            noise_sigmas: 3.0,
            recent_ticks: 4,
            guess_prices: 2.0,
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
    /// Ticks since the scheduler last pinned it (1 = the previous tick); `None` if it
    /// never did. A recent move makes the next one dearer ([`Params::recent_ticks`]).
    pub moved_ago: Option<u64>,
    /// Which domain it belongs to (an index valid this tick); the vCPUs of one domain
    /// come one after another.
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
    /// The noise seen on what it is planned with (demand, or usage): the mean
    /// deviation of its raw readings from the smoothed value, fraction of a pCPU; and
    /// whether it has been read only once (its noise is not known yet).
    pub noise: f64,
    pub first_reading: bool,
    /// The NUMA nodes its domain belongs on (bit n = node n): where its memory is
    /// bound, or where the domain was first seen to run, or where a whole-domain move
    /// took it; 0 when not settled yet (the plan settles it, see [`Outputs::home`]).
    pub home: u64,
    /// The nodes its domain's memory is bound to (`<numatune>`), 0 when not bound:
    /// such a domain pays for every vCPU away from them, wherever the domain goes.
    pub mem_nodes: u64,
    /// Its domain started since the scheduler began: with no usage yet, it is still
    /// taken into management at once, on a guessed demand.
    pub fresh: bool,
}

/// One pCPU as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pcpu {
    /// The fraction of it that was busy since last tick, by anyone, where the host
    /// reports it every tick (when demand is estimated); `None` otherwise.
    pub busy: Option<f64>,
    /// The host's own load on it, fraction of the pCPU: its busy time minus what the
    /// vCPUs on it ran (a storage daemon, a backup job, QEMU's I/O threads). It cannot
    /// be moved: the plan places vCPUs around it, as around an owner-pinned domain.
    pub host: f64,
    /// May managed vCPUs be placed here (`--cpus`)? The verdict and the plan look at
    /// allowed pCPUs only; managed vCPUs found elsewhere are moved in.
    pub allowed: bool,
    /// Its NUMA node (0 on a host without topology).
    pub node: u16,
    /// Its core: pCPUs with the same core are SMT siblings.
    pub core: u32,
}

/// Why a pin was planned: which term of the cost it lowered (see `cost.rs`), or why it
/// had to be made whatever the cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its affinity spanned several pCPUs (a new domain): taken into management.
    New,
    /// It was pinned outside the allowed pCPUs (`--cpus`).
    Outside,
    /// It lowered the load term: demand spread more evenly over the pCPUs.
    Load,
    /// It lowered the SMT term: less load on the other threads of its core.
    Smt,
    /// It lowered the NUMA term: nearer the node its domain's memory is on.
    Numa,
    /// Its whole domain moved to another node, which had room for it.
    Node,
    /// `seed`'s one move, off the busiest pCPU to the idlest.
    Busiest,
}

impl Why {
    pub fn describe(self) -> &'static str {
        match self {
            Why::New => "taken into management",
            Why::Outside => "outside the allowed pcpus",
            Why::Load => "lowers the load cost",
            Why::Smt => "lowers the smt cost (a core's threads share it)",
            Why::Numa => "lowers the numa cost (nearer its memory)",
            Why::Node => "its domain moved whole to a node with room",
            Why::Busiest => "off the busiest pcpu",
        }
    }

    /// The name of the cost term it lowered, for the moves the search made.
    pub fn term(self) -> Option<&'static str> {
        match self {
            Why::Load => Some("load"),
            Why::Smt => Some("smt"),
            Why::Numa => Some("numa"),
            _ => None,
        }
    }
}

/// One planned pin: item index (into the slice given to [`crate::policy::plan`]) to
/// pCPU `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub item: usize,
    pub to: usize,
    pub why: Why,
    /// How much the move lowered that term of the cost, pCPU² (its share of what the
    /// plan gained); 0 for a pin that had to be made ([`Why::New`], [`Why::Outside`]).
    pub gain: f64,
    /// Planning load (demand) of the pCPU it leaves and of the one it joins, before
    /// the plan; the first is 0 for a vCPU that had no single pCPU.
    pub loads: (f64, f64),
    /// Its demand as planned.
    pub demand: f64,
    /// Planned on a demand measured while the vCPU got less than half of it. With that
    /// much contention some guests read more than they want once they have room (one
    /// pacing itself by timer interrupts stays runnable while it waits), so the next
    /// tick may show the move wrong: it does not make the vCPU's next move dearer.
    pub contended: bool,
}

/// What the analysis found, besides the moves: the figures and the verdict on them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// σ of measured pCPU loads, percentage points, over the allowed pCPUs. `None` when
    /// nothing was measured.
    pub sigma_pct: Option<f64>,
    /// σ of the loads the policy planned with (demand for `balance`, usage for `seed`),
    /// before this tick's moves. `None` when nothing was measured.
    pub demand_sigma_pct: Option<f64>,
    /// Measured σ is known and at or below the threshold, within every NUMA node (on a
    /// host of one node: over all the allowed pCPUs, the seed's rule).
    pub sigma_within: bool,
    /// The same for planned demand σ.
    pub demand_within: bool,
    /// The policy planned with demand, measured or estimated, rather than usage
    /// (`balance`), so the demand σ says something measured σ does not.
    pub plans_on_demand: bool,
    /// No move was worth its price: the placement is as good as the planner can make
    /// it (vCPUs that had to be pinned aside). With [`Analysis::balanced`] false, the
    /// host is as even as its vCPUs allow.
    pub settled: bool,
}

impl Analysis {
    /// The verdict every printer shows: the host is balanced when both what was
    /// measured and what the vCPUs demand are within the threshold, node by node.
    /// (Saturated pCPUs all read 100 %, so measured σ alone can look even while demand
    /// is not; and a host whose memory binding keeps one node busier than the other
    /// is balanced when each node is.)
    pub fn balanced(&self) -> bool {
        self.sigma_within && self.demand_within
    }
}

/// What [`crate::policy::plan`] hands back, into buffers the caller owns and sizes:
/// `loads` and `demand` one entry per pCPU (their length *is* the pCPU count), the
/// others one per item.
#[derive(Debug)]
pub struct Outputs<'a> {
    /// Measured load of each pCPU: the usage of the vCPUs on it plus the host's own
    /// load there.
    pub loads: &'a mut [f64],
    /// Demand on each pCPU before this tick's moves: what the vCPUs on it want, as the
    /// policy sees it (measured, estimated, or usage for `seed`), plus the host's load.
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
