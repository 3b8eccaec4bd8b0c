//! The host's shape in the plan: each domain has a home NUMA node and its vCPUs stay
//! there; a whole domain changes node only when its node wants more than it has and
//! another node has room for all of it; and busy vCPUs do not share a core's SMT
//! threads while a core of their node has none.
//!
//! On a host without topology there is one node and one thread per core: every domain
//! is at home, no domain ever changes node, and no core is shared, so nothing here
//! changes a plan.

use super::moves::{movable, place_one, planned, put, unplace};
use super::{Item, Params, Planned, Scratch, Why};

/// A vCPU of at least this demand is busy: two of them on one core's threads each get
/// only part of a core (1.3 cores' work for two, on common hardware).
const BUSY: f64 = 0.5;
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
    let mut i = 0;
    while i < items.len() {
        let (first, len) = (s.item[i].group_first, s.item[i].group_len.max(1));
        let end = (first + len).min(items.len());
        let given = items[first].home & all;
        let home = if given != 0 {
            given
        } else {
            let mut count = [0u32; MAX_NODES];
            for it in &items[first..end] {
                if let Some(p) = it.pinned.or(it.last_ran) {
                    let n = s.pcpu[p].node as usize;
                    if n < MAX_NODES {
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
pub(super) fn needs_work(items: &[Item], params: &Params, s: &Scratch) -> bool {
    overloaded_node(params, s).is_some() || smt_conflict(items, s, true).is_some()
}

/// A node whose demand exceeds its capacity, and the other node with the most room:
/// `(node, excess, target, room)`.
fn overloaded_node(params: &Params, s: &Scratch) -> Option<(usize, f64, usize, f64)> {
    if s.nodes < 2 {
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
    let Some((node, excess, target, room)) = overloaded_node(params, s) else {
        return;
    };
    let home = 1u64 << node;
    let mut best: Option<(usize, f64)> = None; // (first item of the domain, its demand)
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
        // Smallest that is enough; else the largest that fits.
        let better = match best {
            None => true,
            Some((_, b)) if b >= excess => demand >= excess && demand < b,
            Some((_, b)) => demand >= excess || demand > b,
        };
        if better {
            best = Some((first, demand));
        }
    }
    let Some((first, _)) = best else { return };
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
        let mut m = planned(items, s, j, to, Why::Node);
        m.loads.0 = from_load;
        moves.push(m);
        put(s, j, to);
    }
}

/// A core holding two or more busy vCPUs, and a core of the same node (allowed, in
/// scope or not) holding none: `(crowded, free)`. With `any_node` false, only the
/// node in `s.scope`. Only on hosts with SMT.
fn smt_conflict(items: &[Item], s: &Scratch, any_node: bool) -> Option<(u32, u32)> {
    if s.core_load.len() >= s.pcpu.len() {
        return None; // one thread per core
    }
    let busy_on = |core: u32| {
        s.item
            .iter()
            .enumerate()
            .filter(|(j, w)| {
                w.demand >= BUSY
                    && items[*j].usage.is_some()
                    && w.at.is_some_and(|p| s.pcpu[p].core == core)
            })
            .count()
    };
    let core_open = |core: u32, node: u16| {
        s.pcpu
            .iter()
            .filter(|p| p.core == core)
            .all(|p| p.allowed && p.node == node)
    };
    for p in 0..s.pcpu.len() {
        let w = &s.pcpu[p];
        if !w.allowed || (!any_node && s.scope.is_some_and(|n| n != w.node)) {
            continue;
        }
        // Look at each core once, from its lowest-numbered thread.
        if s.pcpu[..p].iter().any(|q| q.core == w.core) || busy_on(w.core) < 2 {
            continue;
        }
        let free = s
            .pcpu
            .iter()
            .filter(|q| q.node == w.node && q.core != w.core && core_open(q.core, w.node))
            .map(|q| q.core)
            .find(|&c| busy_on(c) == 0);
        if let Some(free) = free {
            return Some((w.core, free));
        }
    }
    None
}

/// Never leave a core of a node without a busy vCPU while two busy vCPUs share another
/// core of that node: move the smaller busy one to the free core's least loaded thread,
/// as long as that thread ends no busier than the one it leaves (or a whole pCPU).
pub(super) fn smt_moves(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    for _ in 0..items.len() {
        let Some((crowded, free)) = smt_conflict(items, s, true) else {
            return;
        };
        let v = (0..items.len())
            .filter(|&j| {
                let w = &s.item[j];
                w.demand >= BUSY
                    && w.at
                        .is_some_and(|p| s.pcpu[p].core == crowded && movable(items, s, j, p))
            })
            .min_by(|&a, &b| {
                s.item[a]
                    .demand
                    .total_cmp(&s.item[b].demand)
                    .then(a.cmp(&b))
            });
        let to = (0..s.pcpu.len())
            .filter(|&p| s.pcpu[p].core == free && s.pcpu[p].allowed)
            .min_by(|&a, &b| s.pcpu[a].load.total_cmp(&s.pcpu[b].load).then(a.cmp(&b)));
        let (Some(v), Some(to)) = (v, to) else { return };
        let from = s.item[v].at.unwrap_or(to);
        let d = s.item[v].demand;
        if s.pcpu[to].load + d > s.pcpu[from].load.max(1.0) + TIE_LOAD {
            return;
        }
        moves.push(planned(items, s, v, to, Why::Smt));
        super::moves::apply(s, v, to);
    }
}

/// Loads closer than this are equal.
const TIE_LOAD: f64 = 1e-9;
