//! The host's shape in the plan: each domain has a home NUMA node and its vCPUs stay
//! there; a whole domain changes node only when its node wants more than it has and
//! another node has room for all of it; and busy vCPUs do not share a core's SMT
//! threads while a core of their node has none.
//!
//! On a host without topology there is one node and one thread per core: every domain
//! is at home, no domain ever changes node, and no core is shared, so nothing here
//! changes a plan.

use super::moves::{movable, place_one, planned, put, unplace};
use super::{BUSY, Item, Params, Planned, Scratch, TIE, Why};
/// Nodes are numbered within a u64 mask.
const MAX_NODES: usize = 64;

/// Settle each domain's home nodes: its memory's nodes (`Item::home` as given), else
/// the node most of its vCPUs run on now (first seen there), else the least loaded node.
/// All vCPUs of a domain get the same home.
pub(super) fn settle_homes(items: &[Item], s: &mut Scratch) {
    let nodes = s.nodes.min(MAX_NODES);
    let all = if nodes == MAX_NODES {
        u64::MAX
    } else {
        (1u64 << nodes) - 1
    };
    // Nodes with an allowed pCPU: a home without one (--cpus leaves none of it) could
    // take no vCPU, so such a domain is homed like one without a home.
    let usable = s
        .pcpu
        .iter()
        .filter(|p| p.allowed && (p.node as usize) < MAX_NODES)
        .fold(0u64, |m, p| m | 1 << p.node);
    let mut i = 0;
    while i < items.len() {
        let (first, len) = (s.item[i].group_first, s.item[i].group_len.max(1));
        let end = (first + len).min(items.len());
        let given = items[first].home & all & usable;
        let home = if given != 0 {
            given
        } else {
            let mut count = [0u32; MAX_NODES];
            for it in &items[first..end] {
                if let Some(p) = it.pinned.or(it.last_ran) {
                    let n = s.pcpu[p].node as usize;
                    if n < MAX_NODES && usable & (1 << n) != 0 {
                        count[n] += 1;
                    }
                }
            }
            let most = (0..nodes).max_by(|&a, &b| count[a].cmp(&count[b]).then(b.cmp(&a)));
            match most.filter(|&n| count[n] > 0) {
                Some(n) => 1 << n,
                None => least_loaded_node(s).map_or(all, |n| 1 << n),
            }
        };
        for w in &mut s.item[first..end] {
            w.home = home;
        }
        i = end;
    }
}

/// Is pCPU `p` in item `i`'s home nodes?
pub(super) fn at_home(s: &Scratch, i: usize, p: usize) -> bool {
    let home = s.item[i].home;
    home == 0 || home & (1 << s.pcpu[p].node) != 0
}

/// Planning load and capacity (allowed pCPUs) of node `n`.
fn node_load(s: &Scratch, n: usize) -> (f64, f64) {
    s.pcpu
        .iter()
        .filter(|p| p.allowed && p.node as usize == n)
        .fold((0.0, 0.0), |(l, c), p| (l + p.load, c + 1.0))
}

/// The node with the most room for its size (load over capacity), if any has pCPUs.
fn least_loaded_node(s: &Scratch) -> Option<usize> {
    (0..s.nodes)
        .filter_map(|n| {
            let (load, cap) = node_load(s, n);
            (cap > 0.0).then_some((n, load / cap))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(n, _)| n)
}

/// Is there topology work for the plan: a node over capacity while another has room,
/// or two busy vCPUs on one core while a core of their node has no busy vCPU?
pub(super) fn needs_work(items: &[Item], params: &Params, s: &mut Scratch) -> bool {
    overloaded_node(params, s).is_some() || any_smt_conflict(items, s) || any_away(items, s)
}

/// Is a domain away from the node its memory is bound to (it may come back)?
fn any_away(items: &[Item], s: &Scratch) -> bool {
    s.nodes > 1
        && items
            .iter()
            .zip(&s.item)
            .any(|(it, w)| it.mem_nodes != 0 && w.home & it.mem_nodes == 0)
}

/// A node whose demand exceeds its capacity, and the other node with the most room:
/// `(node, excess, target, room)`. Only on known demand: a guess (a vCPU just taken in,
/// or one squeezed with no history) can make a node look full that is not, and a
/// domain moved on it would run away from its memory for nothing.
fn overloaded_node(params: &Params, s: &Scratch) -> Option<(usize, f64, usize, f64)> {
    if s.nodes < 2 || s.item.iter().any(|w| w.uncertain) {
        return None;
    }
    (0..s.nodes).find_map(|n| {
        let (load, cap) = node_load(s, n);
        let excess = load - cap;
        if cap == 0.0 || excess <= params.min_gain {
            return None;
        }
        let (m, room) = (0..s.nodes)
            .filter(|&m| m != n)
            .map(|m| {
                let (l, c) = node_load(s, m);
                (m, c - l)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        (room > params.min_gain).then_some((n, excess, m, room))
    })
}

/// When a node wants more than it has and another node has room for a whole domain of
/// it, move that domain, all its vCPUs: the smallest one whose leaving is enough, else
/// the largest that fits. One domain per tick: such moves are rare, and the next tick
/// measures the result.
pub(super) fn node_moves(
    items: &[Item],
    params: &Params,
    s: &mut Scratch,
    moves: &mut Vec<Planned>,
) {
    if return_home(items, params, s, moves) {
        return;
    }
    let Some((node, excess, target, room)) = overloaded_node(params, s) else {
        return;
    };
    // Only once the node has settled: with vCPUs there still cooling down from a move,
    // the domain that may move now is whichever is not, not the one that should.
    let settling = (0..items.len()).any(|j| {
        (items[j].cooling || s.item[j].moved)
            && s.item[j]
                .at
                .is_some_and(|p| s.pcpu[p].node as usize == node)
    });
    if settling {
        return;
    }
    let home = 1u64 << node;
    // (first item of the domain, its demand, its memory bound)
    let mut best: Option<(usize, f64, bool)> = None;
    let mut i = 0;
    while i < items.len() {
        let (first, len) = (s.item[i].group_first, s.item[i].group_len.max(1));
        let end = (first + len).min(items.len());
        i = end;
        if s.item[first].home != home {
            continue;
        }
        let all_movable = (first..end).all(|j| {
            s.item[j]
                .at
                .is_some_and(|p| s.pcpu[p].node as usize == node && movable(items, s, j, p))
        });
        if !all_movable {
            continue;
        }
        let demand: f64 = (first..end).map(|j| s.item[j].demand).sum();
        if demand <= params.min_gain || demand > room - params.min_gain {
            continue;
        }
        // A domain whose memory is not bound first: its pages follow it (the kernel's
        // NUMA balancing migrates them), where a bound domain's stay behind. Then the
        // smallest that is enough; else the largest that fits.
        let bound = items[first].mem_nodes != 0;
        let better = match best {
            None => true,
            Some((_, _, b)) if b != bound => !bound,
            Some((_, b, _)) if b >= excess => demand >= excess && demand < b,
            Some((_, b, _)) => demand >= excess || demand > b,
        };
        if better {
            best = Some((first, demand, bound));
        }
    }
    let Some((first, _, _)) = best else { return };
    move_domain(items, s, first, target, Why::Node, moves);
}

/// A domain sent away from the node its memory is bound to comes back once that node
/// has room for all of it again (one per tick, on known demand).
fn return_home(items: &[Item], params: &Params, s: &mut Scratch, moves: &mut Vec<Planned>) -> bool {
    if s.nodes < 2 || s.item.iter().any(|w| w.uncertain) {
        return false;
    }
    let mut i = 0;
    while i < items.len() {
        let (first, len) = (s.item[i].group_first, s.item[i].group_len.max(1));
        let end = (first + len).min(items.len());
        i = end;
        let mem = items[first].mem_nodes;
        if mem == 0 || s.item[first].home & mem != 0 {
            continue;
        }
        let Some(node) = (0..s.nodes.min(MAX_NODES)).find(|&n| mem & (1 << n) != 0) else {
            continue;
        };
        let all_movable =
            (first..end).all(|j| s.item[j].at.is_some_and(|p| movable(items, s, j, p)));
        let demand: f64 = (first..end).map(|j| s.item[j].demand).sum();
        let (load, cap) = node_load(s, node);
        if all_movable && cap > 0.0 && load + demand <= cap - params.min_gain {
            move_domain(items, s, first, node, Why::Home, moves);
            return true;
        }
    }
    false
}

/// Move the domain whose first item is `first` to node `target`, all its vCPUs, and
/// make that node its home.
fn move_domain(
    items: &[Item],
    s: &mut Scratch,
    first: usize,
    target: usize,
    why: Why,
    moves: &mut Vec<Planned>,
) {
    let end = (first + s.item[first].group_len.max(1)).min(items.len());
    for w in &mut s.item[first..end] {
        w.home = 1 << target;
    }
    // Largest vCPU first, each onto the least loaded pCPU of the new node.
    for _ in first..end {
        let Some(j) = (first..end).filter(|&j| !s.item[j].moved).max_by(|&a, &b| {
            s.item[a]
                .demand
                .total_cmp(&s.item[b].demand)
                .then(b.cmp(&a))
        }) else {
            break;
        };
        let from = s.item[j].at;
        let from_load = from.map_or(0.0, |p| s.pcpu[p].load);
        unplace(s, j);
        let Some(to) = place_one(items, s, j) else {
            // No allowed pCPU on the target node after all: leave it where it was.
            if let Some(p) = from {
                put(s, j, p);
            }
            continue;
        };
        let mut m = planned(items, s, j, to, why);
        m.loads.0 = from_load;
        moves.push(m);
        put(s, j, to);
    }
}

/// Is item `j` a busy vCPU for the SMT rules: demand at least [`BUSY`], measured?
fn is_busy(items: &[Item], s: &Scratch, j: usize) -> bool {
    s.item[j].demand >= BUSY && items[j].usage.is_some()
}

/// Count the busy vCPUs of each core into `s.core_busy`. False on a host without SMT.
fn count_core_busy(items: &[Item], s: &mut Scratch) -> bool {
    if s.core_load.len() >= s.pcpu.len() {
        return false; // one thread per core
    }
    s.core_busy.clear();
    s.core_busy.resize(s.core_load.len(), 0);
    for j in 0..items.len() {
        if let Some(p) = s.item[j].at.filter(|_| is_busy(items, s, j)) {
            s.core_busy[s.pcpu[p].core as usize] += 1;
        }
    }
    true
}

/// Every thread of `core` is allowed and on `node`: a core the plan may fill.
fn core_open(s: &Scratch, core: u32, node: u16) -> bool {
    s.pcpu
        .iter()
        .filter(|p| p.core == core)
        .all(|p| p.allowed && p.node == node)
}

/// The pCPU through which each crowded core is looked at: its lowest-numbered thread,
/// allowed, with two or more busy vCPUs on the core.
fn crowded(s: &Scratch, p: usize) -> bool {
    let w = &s.pcpu[p];
    w.allowed && s.core_busy[w.core as usize] >= 2 && !s.pcpu[..p].iter().any(|q| q.core == w.core)
}

/// A core of `node` other than `core` with no busy vCPU, all of it allowed: the
/// `skip`-th such core by planning load, least loaded first (lowest index on ties).
fn free_core(s: &Scratch, core: u32, node: u16, skip: usize) -> Option<u32> {
    let mut best: [Option<(f64, u32)>; FREE_TRIED] = [None; FREE_TRIED];
    for (c, &busy) in s.core_busy.iter().enumerate() {
        let c = c as u32;
        if busy != 0 || c == core || !s.pcpu.iter().any(|q| q.core == c && q.node == node) {
            continue;
        }
        if !core_open(s, c, node) {
            continue;
        }
        let load = s.core_load[c as usize];
        // Keep the FREE_TRIED least loaded, sorted.
        let mut cand = Some((load, c));
        for slot in &mut best {
            match (*slot, cand) {
                (None, _) => {
                    *slot = cand;
                    break;
                }
                (Some(b), Some(x)) if x.0 < b.0 => {
                    *slot = Some(x);
                    cand = Some(b);
                }
                _ => {}
            }
        }
    }
    best.get(skip).copied().flatten().map(|(_, c)| c)
}

/// How many free cores are tried for each crowded one before giving up on it.
const FREE_TRIED: usize = 4;

/// Is there a busy pair on one core while a core of the same node has no busy vCPU?
fn any_smt_conflict(items: &[Item], s: &mut Scratch) -> bool {
    if !count_core_busy(items, s) {
        return false;
    }
    (0..s.pcpu.len())
        .any(|p| crowded(s, p) && free_core(s, s.pcpu[p].core, s.pcpu[p].node, 0).is_some())
}

/// Never leave a core of a node without a busy vCPU while two busy vCPUs share another
/// core of that node. For each crowded core, each free core (least loaded first): move
/// a busy vCPU to one of its threads, or exchange it with a light vCPU there, whichever
/// leaves the busier of the two threads least loaded, as long as that is no more than
/// the busier of them was before (or a whole pCPU).
pub(super) fn smt_moves(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    if !count_core_busy(items, s) {
        return;
    }
    for p in 0..s.pcpu.len() {
        let mut skip = 0;
        while crowded(s, p) && skip < FREE_TRIED {
            let (core, node) = (s.pcpu[p].core, s.pcpu[p].node);
            let Some(free) = free_core(s, core, node, skip) else {
                break;
            };
            match best_smt_fix(items, s, core, free) {
                Some((v, to, partner)) => {
                    let from = s.item[v].at.unwrap_or(to);
                    moves.push(planned(items, s, v, to, Why::Smt));
                    if let Some(k) = partner {
                        moves.push(planned(items, s, k, from, Why::Smt));
                    }
                    super::moves::apply(s, v, to);
                    if let Some(k) = partner {
                        super::moves::apply(s, k, from);
                    }
                    s.core_busy[core as usize] -= 1;
                    s.core_busy[free as usize] += 1;
                }
                None => skip += 1,
            }
        }
    }
}

/// The best way to take a busy vCPU off `crowded` onto a thread of `free`:
/// `(vcpu, to, partner)`, the partner being the light vCPU it exchanges places with.
fn best_smt_fix(
    items: &[Item],
    s: &Scratch,
    crowded: u32,
    free: u32,
) -> Option<(usize, usize, Option<usize>)> {
    let mut best: Option<(f64, usize, usize, Option<usize>)> = None;
    let mut consider = |cost: f64, limit: f64, v: usize, to: usize, k: Option<usize>| {
        if cost <= limit + TIE && best.is_none_or(|b| cost < b.0 - TIE) {
            best = Some((cost, v, to, k));
        }
    };
    for v in 0..items.len() {
        let Some(from) = s.item[v].at else { continue };
        if s.pcpu[from].core != crowded || !is_busy(items, s, v) || !movable(items, s, v, from) {
            continue;
        }
        let dv = s.item[v].demand;
        let lf = s.pcpu[from].load;
        for to in (0..s.pcpu.len()).filter(|&t| s.pcpu[t].core == free && s.pcpu[t].allowed) {
            let lt = s.pcpu[to].load;
            let limit = lf.max(lt).max(1.0);
            consider(lt + dv, lf.max(1.0), v, to, None);
            for k in 0..items.len() {
                if s.item[k].at != Some(to) || is_busy(items, s, k) || !movable(items, s, k, to) {
                    continue;
                }
                let dk = s.item[k].demand;
                let cost = (lt - dk + dv).max(lf - dv + dk);
                consider(cost, limit, v, to, Some(k));
            }
        }
    }
    best.map(|(_, v, to, k)| (v, to, k))
}
