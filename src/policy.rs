//! Analyze: from per-vCPU usage, decide which vCPUs go to which pCPU this tick.
//!
//! Pure functions over slices of numbers and plain indices; knows nothing of libvirt,
//! clocks or I/O, so the same code runs on a live host and in the simulator. Every
//! buffer lives in [`Scratch`], owned by the caller and reused tick after tick.
//!
//! Units: usage, demand and load are fractions of one pCPU (1.0 = one pCPU busy);
//! σ is reported in percentage points, as the course and the threshold use it.

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

/// Tuning of the `balance` policy. Defaults are what the README documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// σ of pCPU load, in percentage points, at or below which the host is balanced.
    pub threshold_pct: f64,
    /// A move must lower the busier pCPU of its pair by at least this much (fraction of
    /// a pCPU): smaller gains are within measurement noise and not worth a migration.
    pub min_gain: f64,
    /// Once balancing starts, keep planning until σ is this fraction of the threshold,
    /// so the next tick's noise does not push the host straight back over it.
    pub target_ratio: f64,
    /// A load at or above this fraction of a pCPU means the pCPU is saturated: the
    /// usage of its vCPUs understates what they would use elsewhere.
    pub saturated: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold_pct: 5.0,
            min_gain: 0.03,
            target_ratio: 0.6,
            saturated: 0.95,
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
    /// demand (see [`observed_demand`]). Refines the guess when it is squeezed again.
    pub known_demand: Option<f64>,
}

/// One planned pin: item index (into the slice given to [`plan`]) to pCPU `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub item: usize,
    pub to: usize,
    /// The move was planned on a guessed demand: it explores, and the next tick's
    /// measurement may well call for another move of the same vCPU. Such moves do not
    /// start the cooldown, which exists to stop noise on *known* demand ping-ponging.
    pub guessed: bool,
}

/// What the analysis found, besides the moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// σ of measured pCPU loads, percentage points. `None` when nothing was measured.
    pub sigma_pct: Option<f64>,
    /// σ of the loads the policy balanced (demand estimates for `balance`), before its
    /// moves.
    pub planned_sigma_pct: Option<f64>,
    /// At or below the threshold before any move.
    pub balanced: bool,
}

/// Buffers the analysis reuses; sized once per host shape.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    /// Measured load per pCPU (what is reported and what `seed` balances).
    pub measured: Vec<f64>,
    /// Planning load per pCPU: starts from pinned vCPUs, updated as moves are planned.
    load: Vec<f64>,
    /// Per pCPU: number of vCPUs on it (planned positions).
    count: Vec<u32>,
    /// Per pCPU: highest usage of a vCPU running there, and how many run there (for
    /// the saturation test; unpinned vCPUs count where they last ran).
    top: Vec<f64>,
    sharing: Vec<u32>,
    /// Per pCPU: the fraction that was busy, by vCPUs or anything else on the host
    /// (the vCPU load where the host cannot tell).
    busy: Vec<f64>,
    /// Per item: the demand the policy plans with, and whether it is only a guess.
    demand: Vec<f64>,
    uncertain: Vec<bool>,
    /// Per item: where it is in the plan (`None` = not placed), and moved this tick.
    at: Vec<Option<usize>>,
    moved: Vec<bool>,
    /// Item indices, for sorting new vCPUs by demand.
    order: Vec<usize>,
}

impl Scratch {
    fn reset(&mut self, pcpus: usize, items: usize) {
        for v in [
            &mut self.measured,
            &mut self.load,
            &mut self.top,
            &mut self.busy,
        ] {
            v.clear();
            v.resize(pcpus, 0.0);
        }
        self.count.clear();
        self.count.resize(pcpus, 0);
        self.sharing.clear();
        self.sharing.resize(pcpus, 0);
        self.demand.clear();
        self.demand.resize(items, 0.0);
        self.uncertain.clear();
        self.uncertain.resize(items, false);
        self.at.clear();
        self.at.resize(items, None);
        self.moved.clear();
        self.moved.resize(items, false);
        self.order.clear();
    }
}

/// Population standard deviation of `loads`, in percentage points of one pCPU.
pub fn sigma_pct(loads: &[f64]) -> f64 {
    if loads.is_empty() {
        return 0.0;
    }
    let n = loads.len() as f64;
    let mean = loads.iter().sum::<f64>() / n;
    let var = loads.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n;
    var.sqrt() * 100.0
}

/// Decide this tick's pins. `moves` is cleared and filled; `pcpus` ≥ 1.
///
/// Both policies first take new vCPUs into management: a managed vCPU whose affinity
/// spans several pCPUs (new domains start that way) is pinned to one, largest demand
/// first onto the least loaded pCPU, so the loads stay even.
///
/// `seed` then makes at most one move, busiest → idlest, when measured σ > threshold.
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
    pcpu_busy: &[Option<f64>],
    pcpus: usize,
    params: &Params,
    s: &mut Scratch,
    moves: &mut Vec<Planned>,
) -> Analysis {
    moves.clear();
    s.reset(pcpus, items.len());
    measure_loads(items, s);
    for p in 0..pcpus {
        let reported = pcpu_busy.get(p).copied().flatten();
        s.busy[p] = reported.unwrap_or(0.0).max(s.measured[p]);
    }
    let any_usage = items.iter().any(|i| i.usage.is_some());
    let sigma = any_usage.then(|| sigma_pct(&s.measured));

    estimate_demand(policy, items, params, s);
    place_new(items, s, moves);
    let planned_sigma = sigma_pct(&s.load);
    let balanced = planned_sigma <= params.threshold_pct
        && sigma.is_none_or(|sg| sg <= params.threshold_pct || policy == Policy::Balance);

    if any_usage && !balanced {
        match policy {
            Policy::Seed => seed_move(items, s, moves),
            Policy::Balance => balance_moves(items, params, s, moves),
        }
    }
    Analysis {
        sigma_pct: sigma,
        planned_sigma_pct: any_usage.then_some(planned_sigma),
        balanced,
    }
}

/// Measured load per pCPU: a pinned vCPU counts on its pCPU, an unpinned one where it
/// last ran (the best we know of where its load is).
fn measure_loads(items: &[Item], s: &mut Scratch) {
    for (i, it) in items.iter().enumerate() {
        let Some(u) = it.usage else { continue };
        if let Some(p) = it.pinned.or(it.last_ran) {
            s.measured[p] += u;
            s.top[p] = s.top[p].max(u);
            s.sharing[p] += 1;
        }
        if let Some(p) = it.pinned {
            s.count[p] += 1;
            s.at[i] = Some(p);
        }
    }
}

/// Is a vCPU with usage `u` on pCPU `p` held back by sharing it, so that its usage
/// understates its demand? Only on a saturated pCPU that it shares (with other vCPUs,
/// or with host work that takes a tenth of it or more), and only for the vCPUs getting
/// (nearly) the most there: under fair sharing the capped ones all get the same share,
/// and the ones that got less than that got all they wanted.
///
/// Saturation is judged on how busy the pCPU was by anyone, when the host reports it:
/// vCPU figures alone dip when host threads take their share, and a pair of busy vCPUs
/// reading 42 % each would look satisfied.
fn capped(s: &Scratch, params: &Params, p: usize, u: f64) -> bool {
    let shared = s.sharing[p] >= 2 || s.busy[p] - s.measured[p] >= 0.1;
    s.busy[p] >= params.saturated && shared && u >= 0.9 * s.top[p]
}

/// Fill `demand`, `uncertain` and the starting planning `load`.
fn estimate_demand(policy: Policy, items: &[Item], params: &Params, s: &mut Scratch) {
    for (i, it) in items.iter().enumerate() {
        let Some(u) = it.usage else { continue };
        let mut d = u;
        if policy == Policy::Balance
            && let Some(p) = it.pinned.or(it.last_ran)
            && capped(s, params, p, u)
        {
            match it.known_demand {
                // It gets no more than it wanted when it last had room: assume it wants
                // that still (the share holds it back, or it is simply satisfied).
                Some(k) if u <= k * 1.05 => d = k.max(u),
                // Nothing better known: it may want a whole pCPU, until a move shows.
                _ => {
                    d = 1.0;
                    s.uncertain[i] = true;
                }
            }
        }
        s.demand[i] = d;
        match (it.pinned, it.managed, it.last_ran) {
            (Some(p), _, _) => s.load[p] += d,
            // Unmanaged and unpinned: it stays where it is, so its load stays there.
            (None, false, Some(p)) => s.load[p] += d,
            _ => {}
        }
    }
}

/// The demand item `i` showed this tick, if its usage *is* its demand: it was not
/// held back by sharing its pCPU. Callers keep it as `known_demand`.
pub fn observed_demand(items: &[Item], params: &Params, s: &Scratch, i: usize) -> Option<f64> {
    let it = &items[i];
    let p = it.pinned.or(it.last_ran)?;
    let u = it.usage?;
    (!capped(s, params, p, u)).then_some(u)
}

/// Pin every managed vCPU that is not pinned to exactly one pCPU: largest first onto
/// the least loaded pCPU (greedy LPT), ties to fewer vCPUs of the same domain.
fn place_new(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    s.order.extend(
        items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.managed && it.pinned.is_none() && it.usage.is_some())
            .map(|(i, _)| i),
    );
    let demand = &s.demand;
    s.order
        .sort_unstable_by(|&a, &b| demand[b].total_cmp(&demand[a]).then(a.cmp(&b)));
    for k in 0..s.order.len() {
        let i = s.order[k];
        let to = (0..s.load.len())
            .min_by(|&a, &b| {
                s.load[a]
                    .total_cmp(&s.load[b])
                    .then_with(|| siblings(items, s, i, a).cmp(&siblings(items, s, i, b)))
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        s.load[to] += s.demand[i];
        s.count[to] += 1;
        s.at[i] = Some(to);
        s.moved[i] = true;
        moves.push(Planned {
            item: i,
            to,
            guessed: s.uncertain[i],
        });
    }
}

/// How many other vCPUs of item `i`'s domain are (planned to be) on pCPU `p`.
fn siblings(items: &[Item], s: &Scratch, i: usize, p: usize) -> usize {
    let g = items[i].group;
    items
        .iter()
        .enumerate()
        .filter(|&(j, it)| j != i && it.group == g && s.at[j] == Some(p))
        .count()
}

/// The seed's rule: one move, busiest → idlest measured pCPU, of the vCPU whose usage
/// is closest to half their gap (so the gap narrows most), if it narrows at all.
fn seed_move(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    let (Some(src), Some(dst)) = (argmax(&s.load), argmin(&s.load)) else {
        return;
    };
    let gap = s.load[src] - s.load[dst];
    let best = items
        .iter()
        .enumerate()
        .filter(|&(i, it)| it.managed && !s.moved[i] && s.at[i] == Some(src))
        .map(|(i, _)| (i, (gap - 2.0 * s.demand[i]).abs()))
        .filter(|&(_, after)| after < gap)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((i, _)) = best {
        apply(s, i, dst);
        moves.push(Planned {
            item: i,
            to: dst,
            guessed: s.uncertain[i],
        });
    }
}

/// A candidate change: move `a` to `to`, optionally swapping `b` back to `a`'s pCPU.
#[derive(Clone, Copy)]
struct Candidate {
    a: usize,
    b: Option<usize>,
    to: usize,
    /// Change in the sum of squared loads (negative is better).
    delta: f64,
    siblings: usize,
}

fn balance_moves(items: &[Item], params: &Params, s: &mut Scratch, moves: &mut Vec<Planned>) {
    let target = params.threshold_pct * params.target_ratio;
    // Each round moves at least one vCPU that cannot move again this tick.
    for _ in 0..items.len() {
        if sigma_pct(&s.load) <= target {
            break;
        }
        let Some(src) = argmax(&s.load) else { break };
        let best = best_move(items, params, s, src).or_else(|| best_swap(items, params, s, src));
        let Some(c) = best else { break };
        apply(s, c.a, c.to);
        moves.push(Planned {
            item: c.a,
            to: c.to,
            guessed: s.uncertain[c.a],
        });
        if let Some(b) = c.b {
            apply(s, b, src);
            moves.push(Planned {
                item: b,
                to: src,
                guessed: s.uncertain[b],
            });
        }
    }
}

fn movable(items: &[Item], s: &Scratch, i: usize, on: usize) -> bool {
    let it = &items[i];
    it.managed && !it.cooling && !s.moved[i] && it.usage.is_some() && s.at[i] == Some(on)
}

/// Would moving `d` of load from `src` to `dst` be a real improvement?
fn improves(s: &Scratch, params: &Params, src: usize, dst: usize, d: f64) -> Option<f64> {
    let (ls, ld) = (s.load[src], s.load[dst]);
    // No reversal, and a gain above noise: the destination ends clearly below where
    // the source started.
    if d <= 0.0 || ld + d > ls - params.min_gain {
        return None;
    }
    Some(2.0 * d * (ld - ls + d))
}

/// A vCPU whose demand is a guess moves only where it would get at least what it has
/// now without taking it from anyone (`dst`'s free capacity), or clearly more than now
/// by an equal share. Its neighbours on the source then gain what it leaves behind.
fn has_room(items: &[Item], s: &Scratch, i: usize, dst: usize) -> bool {
    if !s.uncertain[i] {
        return true;
    }
    let usage = items[i].usage.unwrap_or(0.0);
    let free = 1.0 - s.load[dst];
    let share = 1.0 / (s.count[dst] as f64 + 1.0);
    free >= usage * 0.9 || share > usage * 1.1
}

fn better(c: &Candidate, best: &Option<Candidate>) -> bool {
    match best {
        None => true,
        Some(b) => {
            const EPS: f64 = 1e-9;
            c.delta < b.delta - EPS || (c.delta <= b.delta + EPS && c.siblings < b.siblings)
        }
    }
}

fn best_move(items: &[Item], params: &Params, s: &Scratch, src: usize) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    for a in (0..items.len()).filter(|&a| movable(items, s, a, src)) {
        for dst in (0..s.load.len()).filter(|&d| d != src) {
            let Some(delta) = improves(s, params, src, dst, s.demand[a]) else {
                continue;
            };
            if !has_room(items, s, a, dst) {
                continue;
            }
            let mut c = Candidate {
                a,
                b: None,
                to: dst,
                delta,
                siblings: 0,
            };
            if best.is_some_and(|b| (b.delta - delta).abs() <= 1e-9) {
                c.siblings = siblings(items, s, a, dst);
            }
            if better(&c, &best) {
                c.siblings = siblings(items, s, a, dst);
                best = Some(c);
            }
        }
    }
    best
}

/// When no single move helps (every vCPU on the busiest pCPU is too big for any gap),
/// exchanging a big one for a smaller one can.
fn best_swap(items: &[Item], params: &Params, s: &Scratch, src: usize) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    for a in (0..items.len()).filter(|&a| movable(items, s, a, src)) {
        for b in 0..items.len() {
            let Some(dst) = s.at[b] else { continue };
            if dst == src || !movable(items, s, b, dst) || s.uncertain[a] || s.uncertain[b] {
                continue;
            }
            let Some(delta) = improves(s, params, src, dst, s.demand[a] - s.demand[b]) else {
                continue;
            };
            let c = Candidate {
                a,
                b: Some(b),
                to: dst,
                delta,
                siblings: 0,
            };
            if better(&c, &best) {
                best = Some(c);
            }
        }
    }
    best
}

fn apply(s: &mut Scratch, i: usize, to: usize) {
    if let Some(from) = s.at[i] {
        s.load[from] -= s.demand[i];
        s.count[from] -= 1;
    }
    s.load[to] += s.demand[i];
    s.count[to] += 1;
    s.at[i] = Some(to);
    s.moved[i] = true;
}

fn argmax(v: &[f64]) -> Option<usize> {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
}

fn argmin(v: &[f64]) -> Option<usize> {
    (0..v.len()).min_by(|&a, &b| v[a].total_cmp(&v[b]).then(a.cmp(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(usage: f64, p: usize, group: u32) -> Item {
        Item {
            usage: Some(usage),
            pinned: Some(p),
            last_ran: Some(p),
            managed: true,
            cooling: false,
            group,
            known_demand: None,
        }
    }

    fn run(policy: Policy, items: &[Item], pcpus: usize) -> (Analysis, Vec<Planned>) {
        let mut s = Scratch::default();
        let mut moves = Vec::new();
        let a = plan(
            policy,
            items,
            &[],
            pcpus,
            &Params::default(),
            &mut s,
            &mut moves,
        );
        (a, moves)
    }

    /// Loads after applying `moves` with measured usage.
    fn after(items: &[Item], moves: &[Planned], pcpus: usize) -> Vec<f64> {
        let mut at: Vec<Option<usize>> = items.iter().map(|i| i.pinned).collect();
        for m in moves {
            at[m.item] = Some(m.to);
        }
        let mut loads = vec![0.0; pcpus];
        for (i, it) in items.iter().enumerate() {
            if let (Some(p), Some(u)) = (at[i], it.usage) {
                loads[p] += u;
            }
        }
        loads
    }

    #[test]
    fn sigma_is_population_std_dev_in_points() {
        assert_eq!(sigma_pct(&[0.5, 0.5]), 0.0);
        assert!((sigma_pct(&[1.0, 0.0]) - 50.0).abs() < 1e-9);
        assert_eq!(sigma_pct(&[]), 0.0);
    }

    #[test]
    fn balanced_host_gets_no_moves() {
        let items: Vec<Item> = (0..8).map(|i| pinned(0.5, i % 4, i as u32)).collect();
        for policy in [Policy::Seed, Policy::Balance] {
            let (a, moves) = run(policy, &items, 4);
            assert!(a.balanced);
            assert!(moves.is_empty(), "{policy:?}: {moves:?}");
        }
    }

    #[test]
    fn seed_makes_one_move_busiest_to_idlest() {
        let items: Vec<Item> = (0..4).map(|i| pinned(0.25, 0, i)).collect();
        let (a, moves) = run(Policy::Seed, &items, 4);
        assert!(!a.balanced);
        assert_eq!(moves.len(), 1);
        assert_ne!(moves[0].to, 0);
    }

    #[test]
    fn balance_sees_hidden_demand_and_spreads_in_one_tick() {
        // Four busy vCPUs sharing pCPU 0 each measure 25 %; they want a pCPU each.
        let items: Vec<Item> = (0..4).map(|i| pinned(0.25, 0, i)).collect();
        let (_, moves) = run(Policy::Balance, &items, 4);
        assert_eq!(moves.len(), 3);
        let mut dst: Vec<usize> = moves.iter().map(|m| m.to).collect();
        dst.sort();
        assert_eq!(dst, vec![1, 2, 3]);
    }

    #[test]
    fn saturated_pair_is_not_moved_onto_a_busy_pcpu() {
        // Two 50 % vCPUs fill pCPU 0; pCPU 1 is 90 % used. Moving one would overload 1.
        let items = [pinned(0.5, 0, 0), pinned(0.5, 0, 1), pinned(0.9, 1, 2)];
        let (_, moves) = run(Policy::Balance, &items, 2);
        assert!(moves.is_empty(), "{moves:?}");
    }

    #[test]
    fn three_busy_against_one_is_fixed_although_measured_sigma_is_zero() {
        let items = [
            pinned(0.33, 0, 0),
            pinned(0.33, 0, 1),
            pinned(0.34, 0, 2),
            pinned(1.0, 1, 3),
        ];
        let (a, moves) = run(Policy::Balance, &items, 2);
        assert!(a.sigma_pct.unwrap() < 5.0);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].to, 1);
    }

    #[test]
    fn no_move_that_reverses_the_imbalance() {
        // 60 vs 40 with one 60 % vCPU: moving it gives 0 vs 100, worse.
        let items = [pinned(0.6, 0, 0), pinned(0.4, 1, 1)];
        for policy in [Policy::Seed, Policy::Balance] {
            let (_, moves) = run(policy, &items, 2);
            assert!(moves.is_empty(), "{policy:?}");
        }
    }

    #[test]
    fn swap_when_no_single_move_helps() {
        // pCPU 0: 50+30, pCPU 1: 40+10. Gap 30; no single vCPU ≤ 15 on pCPU 0; swapping
        // 30 and 10 evens it to 60/60... 50+10 / 40+30 = 60/70, σ 5 → better than 80/50.
        let items = [
            pinned(0.5, 0, 0),
            pinned(0.3, 0, 1),
            pinned(0.4, 1, 2),
            pinned(0.1, 1, 3),
        ];
        let (_, moves) = run(Policy::Balance, &items, 2);
        assert_eq!(moves.len(), 2, "{moves:?}");
        let loads = after(&items, &moves, 2);
        assert!((loads[0] - loads[1]).abs() < 0.3 - 1e-9, "{loads:?}");
    }

    #[test]
    fn new_vcpus_are_placed_largest_first_one_heavy_one_light_per_pcpu() {
        let mut items = Vec::new();
        for i in 0..8u32 {
            let u = if i % 2 == 0 { 0.9 } else { 0.2 };
            items.push(Item {
                usage: Some(u),
                pinned: None,
                // One heavy and one light last ran on each pCPU: 110 % of demand there.
                last_ran: Some(i as usize / 2),
                managed: true,
                cooling: false,
                known_demand: None,
                group: i,
            });
        }
        let (_, moves) = run(Policy::Balance, &items, 4);
        assert_eq!(moves.len(), 8);
        let loads = after(&items, &moves, 4);
        for l in loads {
            assert!((l - 1.1).abs() < 1e-9);
        }
    }

    #[test]
    fn vcpus_of_one_domain_spread_on_ties() {
        let items: Vec<Item> = (0..2)
            .map(|_| Item {
                usage: Some(0.0),
                pinned: None,
                last_ran: None,
                managed: true,
                cooling: false,
                known_demand: None,
                group: 7,
            })
            .collect();
        let (_, moves) = run(Policy::Balance, &items, 2);
        assert_eq!(moves.len(), 2);
        assert_ne!(moves[0].to, moves[1].to);
    }

    #[test]
    fn unmanaged_and_cooling_vcpus_stay_put() {
        let mut items: Vec<Item> = (0..4).map(|i| pinned(1.0 / 4.0, 0, i)).collect();
        items[0].managed = false;
        items[1].cooling = true;
        let (_, moves) = run(Policy::Balance, &items, 4);
        assert!(moves.iter().all(|m| m.item >= 2), "{moves:?}");
    }

    #[test]
    fn nothing_measured_means_nothing_decided() {
        let items = [Item {
            usage: None,
            pinned: Some(0),
            last_ran: Some(0),
            managed: true,
            cooling: false,
            known_demand: None,
            group: 0,
        }];
        let (a, moves) = run(Policy::Balance, &items, 2);
        assert_eq!(a.sigma_pct, None);
        assert!(moves.is_empty());
    }
}
