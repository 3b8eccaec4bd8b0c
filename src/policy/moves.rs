//! Where vCPUs go: new vCPUs placed largest first, `seed`'s one move, and `balance`'s
//! moves and swaps over the planning loads in [`Scratch`].
//!
//! Cost: a search looks only at the vCPUs on the busiest pCPU, and finds a swap partner
//! on another pCPU by binary search in that pCPU's vCPUs sorted by demand, through an
//! index built once per plan. A tick costs about moves × pCPUs × log(vCPUs), not
//! vCPUs × pCPUs per move.

use super::{Item, Params, Planned, Scratch, TIE, Why};

/// Pin every managed vCPU that is not pinned to exactly one allowed pCPU of its home
/// node (new ones, ones found outside `--cpus`, ones off their home node): largest
/// first onto the least loaded allowed pCPU of the home node (greedy LPT); ties to the
/// emptier core (SMT threads of a busy core deliver less), then to fewer vCPUs of the
/// same domain.
///
/// With `relieve` (the `balance` policy), when there are such vCPUs, pCPUs loaded over
/// `top_target` × the bound first give up vCPUs to place along with them: placing the
/// newcomers and the excess together gets close to the best placement in one tick, where
/// placing the newcomers around an overload leaves moves for later ticks.
pub(super) fn place_new(
    items: &[Item],
    relieve: Option<&Params>,
    s: &mut Scratch,
    moves: &mut Vec<Planned>,
) {
    for (i, it) in items.iter().enumerate() {
        if !it.managed || (it.usage.is_none() && !it.fresh) {
            continue;
        }
        let why = match it.pinned {
            None => Why::New,
            Some(p) if !s.pcpu[p].allowed => Why::Outside,
            Some(p) if !super::topo::at_home(s, i, p) && !it.cooling => Why::Remote,
            Some(_) => continue,
        };
        // Off the pCPU it is pinned to, if any: it is placed anew.
        s.item[i].why = Some(why);
        unplace(s, i);
        s.order.push(i);
    }
    if let Some(params) = relieve.filter(|_| !s.order.is_empty()) {
        relieve_overloads(items, params, s);
    }
    let work = &s.item;
    s.order
        .sort_unstable_by(|&a, &b| work[b].demand.total_cmp(&work[a].demand).then(a.cmp(&b)));
    for k in 0..s.order.len() {
        let i = s.order[k];
        // No allowed pCPU for it (none at all): it stays where it is, unplanned.
        let Some(to) = place_one(items, s, i) else {
            continue;
        };
        let w = &s.item[i];
        let from_load = items[i].pinned.map_or(0.0, |p| s.pcpu[p].load + w.demand);
        moves.push(Planned {
            item: i,
            to,
            guessed: w.uncertain,
            contended: false,
            why: w.why.unwrap_or(Why::New),
            loads: (from_load, s.pcpu[to].load),
            demand: w.demand,
        });
        put(s, i, to);
    }
}

/// The pCPU item `i` goes to when placed anew: the least loaded allowed pCPU of its
/// home nodes; among equals the one on the emptier core, then with fewer vCPUs of its
/// domain, not back where it just left unless there is nowhere else, lowest index.
pub(super) fn place_one(items: &[Item], s: &Scratch, i: usize) -> Option<usize> {
    let home = s.item[i].home;
    let fits = |p: usize| s.open(p) && (home == 0 || home & (1 << s.pcpu[p].node) != 0);
    let min = (0..s.pcpu.len())
        .filter(|&p| fits(p))
        .map(|p| s.pcpu[p].load)
        .min_by(f64::total_cmp)?;
    (0..s.pcpu.len())
        .filter(|&p| fits(p) && s.pcpu[p].load <= min + TIE)
        .min_by(|&a, &b| {
            let key = |p: usize| (items[i].left == Some(p), siblings(s, i, p));
            s.core_load_of(a)
                .total_cmp(&s.core_load_of(b))
                .then_with(|| key(a).cmp(&key(b)))
                .then(a.cmp(&b))
        })
}

/// Take item `i` off its planned pCPU, if it has one.
pub(super) fn unplace(s: &mut Scratch, i: usize) {
    if let Some(p) = s.item[i].at.take() {
        let d = s.item[i].demand;
        s.add_load(p, -d);
        s.pcpu[p].count -= 1;
    }
}

/// Put item `i` (not placed) on pCPU `to`, marked as moved this tick.
pub(super) fn put(s: &mut Scratch, i: usize, to: usize) {
    let d = s.item[i].demand;
    s.item[i].at = Some(to);
    s.item[i].moved = true;
    s.add_load(to, d);
    s.pcpu[to].count += 1;
}

/// Take vCPUs off every pCPU loaded over `top_target` × the bound (counting the vCPUs
/// about to be placed), into `s.order`: per pCPU, the smallest one whose leaving is
/// enough, else the largest, until it is under. Few moves, and the big ones go where
/// there is room for them.
fn relieve_overloads(items: &[Item], params: &Params, s: &mut Scratch) {
    index_by_pcpu(s);
    // Node by node: the bound of a node counts its own load and newcomers.
    for node in 0..s.nodes as u16 {
        s.scope = Some(node);
        let home = 1u64 << node;
        let arriving = s
            .order
            .iter()
            .filter(|&&i| s.item[i].home == 0 || s.item[i].home & home != 0)
            .map(|&i| s.item[i].demand);
        let bound = s.bound(arriving);
        let cap = Scratch::top_cap(params, bound, params.top_target);
        relieve_node(items, s, cap);
    }
    s.scope = None;
}

fn relieve_node(items: &[Item], s: &mut Scratch, cap: f64) {
    for p in 0..s.pcpu.len() {
        while s.open(p) && s.pcpu[p].load > cap + TIE {
            let excess = s.pcpu[p].load - cap;
            let on = started_on(s, p);
            let enough = on.partition_point(|&i| s.item[i].demand < excess);
            let pick = on[enough..]
                .iter()
                .chain(on[..enough].iter().rev())
                .copied()
                .find(|&i| movable(items, s, i, p));
            let Some(i) = pick else { break };
            s.item[i].why = Some(Why::Relief);
            unplace(s, i);
            s.order.push(i);
        }
    }
}

/// How many other vCPUs of item `i`'s domain are (planned to be) on pCPU `p`.
fn siblings(s: &Scratch, i: usize, p: usize) -> usize {
    let (first, len) = (s.item[i].group_first, s.item[i].group_len);
    (first..first + len)
        .filter(|&j| j != i && s.item[j].at == Some(p))
        .count()
}

/// The seed's rule: one move, busiest → idlest measured pCPU, of the vCPU whose usage
/// is closest to half their gap (so the gap narrows most), if it narrows at all.
pub(super) fn seed_move(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    let (Some(src), Some(dst)) = (busiest(s), idlest(s)) else {
        return;
    };
    let gap = s.pcpu[src].load - s.pcpu[dst].load;
    let best = items
        .iter()
        .enumerate()
        .filter(|&(i, it)| it.managed && !s.item[i].moved && s.item[i].at == Some(src))
        .map(|(i, _)| (i, (gap - 2.0 * s.item[i].demand).abs()))
        .filter(|&(_, after)| after < gap)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((i, _)) = best {
        moves.push(planned(items, s, i, dst, Why::Busiest));
        apply(s, i, dst);
    }
}

/// A candidate change: move `a` to `to`, and for a swap `b` from `to` back to `a`'s
/// pCPU.
#[derive(Clone, Copy)]
struct Candidate {
    a: usize,
    to: usize,
    b: Option<(usize, usize)>,
    /// Change in the sum of squared loads (negative is better).
    delta: f64,
}

/// Plan moves off the busiest pCPU until σ of the planning loads is within
/// `target_ratio × threshold` and the busiest is within `top_target` of the bound, or
/// no move helps.
pub(super) fn balance_moves(
    items: &[Item],
    params: &Params,
    s: &mut Scratch,
    moves: &mut Vec<Planned>,
) {
    // Domains change node on a settled placement only: not in a tick that is taking
    // vCPUs in (their pCPUs' loads are still moving).
    if moves.is_empty() {
        super::topo::node_moves(items, params, s, moves);
    }
    index_by_pcpu(s);
    // Each node is balanced on its own: vCPUs stay on their domain's node.
    for node in 0..s.nodes as u16 {
        s.scope = Some(node);
        balance_node(items, params, s, moves);
    }
    s.scope = None;
    super::topo::smt_moves(items, s, moves);
}

/// [`balance_moves`] within the node in `s.scope`.
fn balance_node(items: &[Item], params: &Params, s: &mut Scratch, moves: &mut Vec<Planned>) {
    let target = params.threshold_pct * params.target_ratio;
    // Moves change neither the total nor the largest demand: the bound holds all along.
    let cap = Scratch::top_cap(params, s.bound(std::iter::empty()), params.top_target);
    // Each round moves at least one vCPU that cannot move again this tick.
    for _ in 0..items.len() {
        if s.sigma_of(|p| p.load) <= target && !s.any_over(cap) {
            break;
        }
        let Some(src) = busiest(s) else { break };
        least_loaded(s, src);
        let best = best_move(items, params, s, src).or_else(|| best_swap(items, params, s, src));
        let Some(c) = best else { break };
        let why = if c.b.is_some() {
            Why::Swap
        } else {
            Why::Busiest
        };
        for (i, to) in [Some((c.a, c.to)), c.b].into_iter().flatten() {
            moves.push(planned(items, s, i, to, why));
            apply(s, i, to);
        }
    }
}

/// Group item indices by the pCPU they start the search on, each group sorted by
/// demand (into `s.members`, pCPU `p`'s run at `first..first + len`). Items that move
/// during the search are marked `moved` and never move again, so the index need not
/// follow them.
fn index_by_pcpu(s: &mut Scratch) {
    for p in s.pcpu.iter_mut() {
        p.len = 0;
    }
    for w in &s.item {
        if let Some(p) = w.at {
            s.pcpu[p].len += 1;
        }
    }
    let mut next = 0;
    for p in s.pcpu.iter_mut() {
        p.first = next;
        next += p.len;
        p.len = 0;
    }
    s.members.clear();
    s.members.resize(next, 0);
    for (i, w) in s.item.iter().enumerate() {
        if let Some(p) = w.at {
            let slot = s.pcpu[p].first + s.pcpu[p].len;
            s.members[slot] = i;
            s.pcpu[p].len += 1;
        }
    }
    for p in &s.pcpu {
        let item = &s.item;
        s.members[p.first..p.first + p.len]
            .sort_unstable_by(|&a, &b| item[a].demand.total_cmp(&item[b].demand).then(a.cmp(&b)));
    }
}

/// The items that started on pCPU `p`, by ascending demand.
fn started_on(s: &Scratch, p: usize) -> &[usize] {
    let w = &s.pcpu[p];
    &s.members[w.first..w.first + w.len]
}

/// May item `i`, planned on `p`, move this round?
pub(super) fn movable(items: &[Item], s: &Scratch, i: usize, p: usize) -> bool {
    let (it, w) = (&items[i], &s.item[i]);
    it.managed && !it.cooling && !w.moved && it.usage.is_some() && w.at == Some(p)
}

/// Would moving `d` of load from `src` to `dst` be a real improvement? The change in
/// the sum of squared loads when it is.
fn improves(s: &Scratch, params: &Params, src: usize, dst: usize, d: f64) -> Option<f64> {
    let (ls, ld) = (s.pcpu[src].load, s.pcpu[dst].load);
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
fn has_room(items: &[Item], params: &Params, s: &Scratch, i: usize, dst: usize) -> bool {
    if !s.item[i].uncertain {
        return true;
    }
    let usage = items[i].usage.unwrap_or(0.0);
    let free = 1.0 - s.pcpu[dst].load;
    let share = 1.0 / (s.pcpu[dst].count as f64 + 1.0);
    free >= usage * params.room_fit || share > usage * params.room_gain
}

/// May item `i` be placed on `p`? Not back where it was just moved away from.
pub(super) fn may_go(items: &[Item], i: usize, p: usize) -> bool {
    items[i].left != Some(p)
}

/// Fill `s.ties` with the allowed pCPUs other than `src` tied for the least load.
fn least_loaded(s: &mut Scratch, src: usize) {
    s.ties.clear();
    let min = (0..s.pcpu.len())
        .filter(|&p| p != src && s.open(p))
        .map(|p| s.pcpu[p].load)
        .min_by(f64::total_cmp);
    let Some(min) = min else { return };
    for p in 0..s.pcpu.len() {
        if p != src && s.open(p) && s.pcpu[p].load <= min + TIE {
            s.ties.push(p);
        }
    }
    // The emptier cores first: an idle thread whose sibling is busy delivers less.
    if s.core_load.len() < s.pcpu.len() {
        let mut ties = std::mem::take(&mut s.ties);
        ties.sort_unstable_by(|&a, &b| {
            s.core_load_of(a)
                .total_cmp(&s.core_load_of(b))
                .then(a.cmp(&b))
        });
        s.ties = ties;
    }
}

/// Where among the tied least loaded pCPUs item `a` goes: the first with no vCPU of
/// its domain (usually the first of all), else the one with fewest; never back where
/// it was just moved away from. `None` when that rules out all of them: it waits for
/// another tick rather than settle for worse.
fn tie_for(items: &[Item], s: &Scratch, a: usize) -> Option<usize> {
    let open = s.ties.iter().copied().filter(|&p| may_go(items, a, p));
    if let Some(p) = open.clone().find(|&p| siblings(s, a, p) == 0) {
        return Some(p);
    }
    open.min_by_key(|&p| (siblings(s, a, p), p))
}

/// The best single move off `src`. The change in squared loads only grows with the
/// destination's load, so the least loaded pCPUs (`s.ties`) are the only destinations
/// worth trying, and the change is the same for all of them: pick the vCPU first, then
/// among those pCPUs the one with fewest vCPUs of the same domain.
fn best_move(items: &[Item], params: &Params, s: &Scratch, src: usize) -> Option<Candidate> {
    let &any = s.ties.first()?;
    let mut best: Option<Candidate> = None;
    for &a in started_on(s, src) {
        if !movable(items, s, a, src) {
            continue;
        }
        let Some(delta) = improves(s, params, src, any, s.item[a].demand) else {
            continue;
        };
        if best.is_some_and(|b| delta >= b.delta - TIE) {
            continue;
        }
        let Some(to) = tie_for(items, s, a) else {
            continue;
        };
        if !has_room(items, params, s, a, to) {
            continue;
        }
        {
            best = Some(Candidate {
                a,
                to,
                b: None,
                delta,
            });
        }
    }
    best
}

/// When no single move helps (every vCPU on the busiest pCPU is too big for any gap),
/// exchanging one of them for a smaller one elsewhere can. For each vCPU `a` on `src`
/// and each other pCPU, the best partner is the one whose demand is closest to
/// `demand(a) − gap / 2`: found by binary search in that pCPU's sorted vCPUs.
fn best_swap(items: &[Item], params: &Params, s: &Scratch, src: usize) -> Option<Candidate> {
    let ls = s.pcpu[src].load;
    let mut best: Option<Candidate> = None;
    for &a in started_on(s, src) {
        if !movable(items, s, a, src) || s.item[a].uncertain {
            continue;
        }
        let da = s.item[a].demand;
        for dst in (0..s.pcpu.len()).filter(|&p| p != src && s.open(p) && may_go(items, a, p)) {
            let gap = ls - s.pcpu[dst].load;
            if gap <= params.min_gain {
                continue;
            }
            let partners = started_on(s, dst);
            let ideal = da - gap / 2.0;
            let at = partners.partition_point(|&b| s.item[b].demand < ideal);
            // Look outward from the ideal on both sides: the first usable partner on
            // each side is the best on that side.
            let usable = |b: usize| {
                movable(items, s, b, dst) && !s.item[b].uncertain && may_go(items, b, src)
            };
            let lo = partners[..at].iter().rev().copied().find(|&b| usable(b));
            let hi = partners[at..].iter().copied().find(|&b| usable(b));
            for b in [lo, hi].into_iter().flatten() {
                // The exchange itself must be worth a migration: swapping two vCPUs that
                // want about the same moves noise (seen on a real host).
                let d = da - s.item[b].demand;
                if d < params.min_gain {
                    continue;
                }
                let Some(delta) = improves(s, params, src, dst, d) else {
                    continue;
                };
                if best.is_none_or(|c| delta < c.delta - TIE) {
                    best = Some(Candidate {
                        a,
                        to: dst,
                        b: Some((b, src)),
                        delta,
                    });
                }
            }
        }
    }
    best
}

/// The record of item `i` moving to `to`, taken before [`apply`].
pub(super) fn planned(items: &[Item], s: &Scratch, i: usize, to: usize, why: Why) -> Planned {
    let w = &s.item[i];
    let it = &items[i];
    let contended = it.demand.is_some() && it.usage.is_some_and(|u| u < 0.5 * w.demand);
    Planned {
        item: i,
        to,
        guessed: w.uncertain,
        contended,
        why,
        loads: (w.at.map_or(0.0, |p| s.pcpu[p].load), s.pcpu[to].load),
        demand: w.demand,
    }
}

/// Record in the plan that item `i` moves to `to`.
pub(super) fn apply(s: &mut Scratch, i: usize, to: usize) {
    unplace(s, i);
    put(s, i, to);
}

/// The allowed pCPU with the highest planning load (the lowest index on ties).
fn busiest(s: &Scratch) -> Option<usize> {
    (0..s.pcpu.len())
        .filter(|&p| s.open(p))
        .max_by(|&a, &b| s.pcpu[a].load.total_cmp(&s.pcpu[b].load).then(b.cmp(&a)))
}

/// The allowed pCPU with the lowest planning load (the lowest index on ties).
fn idlest(s: &Scratch) -> Option<usize> {
    (0..s.pcpu.len())
        .filter(|&p| s.open(p))
        .min_by(|&a, &b| s.pcpu[a].load.total_cmp(&s.pcpu[b].load).then(a.cmp(&b)))
}
