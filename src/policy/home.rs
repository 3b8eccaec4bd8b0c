//! Where each vCPU starts the plan and where its domain belongs: the fixed load of every
//! pCPU (the host's own, domains left alone), each managed vCPU on the pCPU it is
//! pinned to or, if it must be pinned anyway, nowhere yet; and each domain's home
//! nodes, which the NUMA term is measured from.

use super::state::Scratch;
use super::types::{Item, Params, Why};

// Nodes are numbered within a u64 mask (the topology refuses more).
use crate::topology::MAX_NODES;

/// Settle each domain's home nodes: its memory's nodes when bound (fixed: a bound
/// domain pays for every vCPU away from them); else the home it was given (where it
/// was first seen running, or where a whole-domain move took it); else the node most
/// of its vCPUs run on now; else the least loaded node. Only nodes with an allowed
/// pCPU count: a home that `--cpus` leaves empty could take no vCPU.
pub(super) fn settle(items: &[Item], s: &mut Scratch) {
    let nodes = s.nodes.min(MAX_NODES);
    let usable = s
        .pcpu
        .iter()
        .filter(|p| p.allowed && (p.node as usize) < MAX_NODES)
        .fold(0u64, |m, p| m | 1 << p.node);
    let mut first = 0;
    while first < items.len() {
        let end = s.domain(first).end;
        let it = &items[first];
        let bound = it.mem_nodes & usable;
        let given = it.home & usable;
        let home = if bound != 0 {
            bound
        } else if given != 0 {
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
                None => least_loaded_node(s).map_or(usable, |n| 1 << n),
            }
        };
        for w in &mut s.item[first..end] {
            (w.home, w.bound) = (home, bound != 0);
        }
        first = end;
    }
}

/// The node with the most room for its size (measured load over allowed pCPUs).
fn least_loaded_node(s: &Scratch) -> Option<usize> {
    (0..s.nodes.min(MAX_NODES))
        .filter_map(|n| {
            let (load, cap) = s
                .pcpu
                .iter()
                .filter(|p| p.allowed && p.node as usize == n)
                .fold((0.0, 0.0), |(l, c), p| (l + p.measured, c + 1.0));
            (cap > 0.0).then_some((n, load / cap))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(n, _)| n)
}

/// Put every load where the plan starts from: the host's own load and what the plan
/// may not move on their pCPUs; each movable vCPU on the pCPU it is pinned to when it
/// is allowed there, else nowhere (it must be pinned anyway: [`Why::New`],
/// [`Why::Outside`]). Movable: managed, and measured or just started.
pub(super) fn start(items: &[Item], params: &Params, s: &mut Scratch) {
    for p in 0..s.pcpu.len() {
        let host = s.pcpu[p].host;
        s.add_load(p, host);
    }
    // The noise of each pCPU's load (squared, summed over its vCPUs), for the prices.
    let mut noise2 = std::mem::take(&mut s.fill);
    noise2.clear();
    noise2.resize(s.pcpu.len(), 0.0);
    for it in items.iter().filter(|it| it.usage.is_some()) {
        if let Some(p) = it.pinned.or(it.last_ran) {
            noise2[p] += it.noise * it.noise;
        }
    }
    for (i, it) in items.iter().enumerate() {
        let d = s.item[i].demand;
        if !it.managed || (it.usage.is_none() && !it.fresh) {
            // Unmanaged: its load stays where it is. Unmeasured: nothing known yet.
            if let (true, Some(p)) = (it.usage.is_some(), it.pinned.or(it.last_ran)) {
                s.add_load(p, d);
            }
            continue;
        }
        s.item[i].movable = true;
        let n2 = it.pinned.or(it.last_ran).map_or(0.0, |p| noise2[p]);
        s.set_price(i, it, params, n2);
        match it.pinned {
            Some(p) if s.pcpu[p].allowed => s.item[i].orig = Some(p),
            Some(_) => s.item[i].why = Some(Why::Outside),
            None => s.item[i].why = Some(Why::New),
        }
    }
    s.fill = noise2;
    for i in 0..items.len() {
        if let Some(p) = s.item[i].orig {
            s.put(i, p);
        }
    }
}

/// Is pCPU `p` one that item `i` may be placed on first: allowed, on its home nodes
/// (any allowed pCPU when its home has none).
pub(super) fn in_pool(s: &Scratch, home: u64, p: usize) -> bool {
    let w = &s.pcpu[p];
    w.allowed && (home == 0 || (w.node as usize) >= MAX_NODES || home & (1 << w.node) != 0)
}
