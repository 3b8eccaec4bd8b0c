//! Largest first: the vCPUs that must be pinned anyway placed one by one, largest
//! demand first, each where it adds least to the cost, within its domain's home
//! nodes; and the same for every vCPU at once, from scratch, which is how the plan
//! gets off a plateau that no single change can leave (on hosts of up to
//! [`SCRATCH_VCPUS`]).
//!
//! "Where it adds least" counts the migration: a vCPU's own pCPU is cheaper by its
//! price, so among placements about as good the one that keeps vCPUs where they are
//! wins, and the from-scratch placement moves few vCPUs when few need to move. The
//! cheapest pCPU of a pool is found in O(log pCPUs) by two heaps (lowest slope, lowest
//! load), so placing `n` vCPUs costs `n log n + n log pCPUs`.

use super::heap::Heap;
use super::home::in_pool;
use super::state::Scratch;
use super::types::TIE;
use crate::topology::MAX_NODES;

/// Place the movable items that are planned nowhere (they must be pinned anyway).
pub(super) fn place_forced(s: &mut Scratch) {
    let mut order = std::mem::take(&mut s.order);
    order.clear();
    order.extend((0..s.item.len()).filter(|&i| s.item[i].movable && s.item[i].at.is_none()));
    place(s, &mut order, Toward::Pins);
    s.order = order;
}

/// The most vCPUs a placement from scratch is tried for: 1,024, every vCPU of all but
/// large hosts. Plateaus that no single change leaves come from vCPUs as large as a
/// good part of a pCPU; a host with more vCPUs than this has them fine grained enough
/// for the local search (and the from-scratch placement, tried there, never won).
pub const SCRATCH_VCPUS: usize = 1024;

/// Which placement a placement from scratch leans towards, where choices cost about
/// the same: the pins as they are (staying costs no migration), or the one the local
/// search found (the one the next tick would start from). `Nodes` leans towards the
/// pins too, but first gives every domain whose memory is not bound a home again,
/// largest first on the node with most room: what no move of one domain at a time
/// reaches when each would first overload the node it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Toward {
    Pins,
    Saved,
    Nodes,
}

/// Take every movable item off and place them all again, largest first. The plan as it
/// stands must be saved in slot 0. vCPUs whose demand is a guess stay where they are:
/// only a move that pays whatever they want may move them (`cost.rs`).
pub(super) fn from_scratch(s: &mut Scratch, toward: Toward) {
    let mut order = std::mem::take(&mut s.order);
    order.clear();
    for i in 0..s.item.len() {
        if s.item[i].movable && s.item[i].at.is_some() && !s.item[i].uncertain {
            s.take(i);
            order.push(i);
        }
    }
    if toward == Toward::Nodes {
        rehome(s);
    }
    place(s, &mut order, toward);
    // A vCPU whose home has no allowed pCPU goes back where it was.
    for &i in order.iter() {
        if s.item[i].at.is_none()
            && let Some(p) = s.saved[0].get(i).and_then(|x| x.0)
        {
            s.put(i, p);
        }
    }
    s.order = order;
}

/// Is some node's planned load over its allowed pCPUs while another node has room?
pub(super) fn nodes_uneven(s: &mut Scratch) -> bool {
    let nodes = s.nodes.min(MAX_NODES);
    let mut t = std::mem::take(&mut s.fill);
    node_totals(s, nodes, &mut t);
    let room = |n: usize| t[nodes + n] - t[n];
    let uneven =
        nodes > 1 && (0..nodes).any(|n| room(n) < -TIE) && (0..nodes).any(|n| room(n) > TIE);
    s.fill = t;
    uneven
}

/// Per node (the first `nodes`), the planned load on its allowed pCPUs, then how many
/// there are: `t[n]` and `t[nodes + n]`.
fn node_totals(s: &Scratch, nodes: usize, t: &mut Vec<f64>) {
    t.clear();
    t.resize(2 * nodes, 0.0);
    for w in s
        .pcpu
        .iter()
        .filter(|w| w.allowed && (w.node as usize) < nodes)
    {
        t[w.node as usize] += w.load;
        t[nodes + w.node as usize] += 1.0;
    }
}

/// With every movable item taken off: each domain whose memory is not bound and whose
/// vCPUs were all taken off gets the node where its demand leaves the most room (load
/// over allowed pCPUs), largest domain first, after the load that stays and the bound
/// domains' demand on their nodes. Ties go to the node it is on.
fn rehome(s: &mut Scratch) {
    let nodes = s.nodes.min(MAX_NODES);
    let (mut load, mut domains) = (std::mem::take(&mut s.fill), std::mem::take(&mut s.buf));
    node_totals(s, nodes, &mut load);
    domains.clear();
    let mut first = 0;
    while first < s.item.len() {
        let run = s.domain(first);
        first = run.end;
        let w = &s.item[run.start];
        let taken = s.item[run.clone()]
            .iter()
            .all(|x| x.movable && x.at.is_none());
        let n = w.home.trailing_zeros() as usize;
        if taken && !w.bound && w.home.count_ones() == 1 {
            domains.push(run.start);
        } else if n < nodes {
            // Its vCPUs taken off go back to its home; the others are in `load` already.
            let off = s.item[run].iter().filter(|x| x.movable && x.at.is_none());
            load[n] += off.map(|x| x.demand).sum::<f64>();
        }
    }
    let total =
        |s: &Scratch, d: usize| -> f64 { s.item[s.domain(d)].iter().map(|x| x.demand).sum() };
    domains.sort_unstable_by(|&a, &b| total(s, b).total_cmp(&total(s, a)).then(a.cmp(&b)));
    for &d in &domains {
        let (x, own) = (total(s, d), s.item[d].home.trailing_zeros() as usize);
        let room = |n: usize| (load[n] + x) / load[nodes + n];
        let best = (0..nodes)
            .filter(|&n| load[nodes + n] > 0.0)
            .min_by(|&a, &b| {
                room(a)
                    .total_cmp(&room(b))
                    .then((a != own).cmp(&(b != own)))
                    .then(a.cmp(&b))
            });
        if let Some(n) = best {
            load[n] += x;
            let run = s.domain(d);
            for w in &mut s.item[run] {
                w.home = 1 << n;
            }
        }
    }
    (s.fill, s.buf) = (load, domains);
}

/// Place `items` (none planned anywhere), largest demand first, grouped by home (one
/// pool of pCPUs per home), each onto its pool's cheapest pCPU.
fn place(s: &mut Scratch, items: &mut [usize], toward: Toward) {
    let w = &s.item;
    items.sort_unstable_by(|&a, &b| {
        w[a].home
            .cmp(&w[b].home)
            .then(w[b].demand.total_cmp(&w[a].demand))
            .then(a.cmp(&b))
    });
    let mut start = 0;
    while start < items.len() {
        let home = s.item[items[start]].home;
        let end = start + items[start..].partition_point(|&i| s.item[i].home == home);
        place_pool(s, home, &items[start..end], toward);
        start = end;
    }
}

/// Place `items` (sorted largest first) on the pCPUs of one home.
fn place_pool(s: &mut Scratch, home: u64, items: &[usize], toward: Toward) {
    let n = s.pcpu.len();
    let (mut by_slope, mut by_load) = (
        std::mem::take(&mut s.pool[0]),
        std::mem::take(&mut s.pool[1]),
    );
    by_slope.reset(n);
    by_load.reset(n);
    for p in (0..n).filter(|&p| in_pool(s, home, p)) {
        key(s, &mut by_slope, &mut by_load, p);
    }
    for &i in items {
        let (Some(a), Some(b)) = (by_slope.first(), by_load.first()) else {
            break;
        };
        let lean = match toward {
            Toward::Pins | Toward::Nodes => s.item[i].orig,
            Toward::Saved => s.saved[0].get(i).and_then(|x| x.0),
        };
        let own = lean.filter(|&o| in_pool(s, home, o));
        let mut best: Option<(usize, f64)> = None;
        for q in [a, b].into_iter().chain(own) {
            let (terms, price) = s.move_terms(i, q);
            // Leaning towards the saved placement: staying there is as cheap as home.
            let bonus = if toward == Toward::Saved && Some(q) == own && s.item[i].orig != own {
                s.item[i].price
            } else {
                0.0
            };
            let cost = terms.total() + price - bonus;
            let better = match best {
                None => true,
                Some((b, c)) => {
                    cost < c - TIE
                        || (cost <= c + TIE && (s.pcpu[q].count, q) < (s.pcpu[b].count, b))
                }
            };
            if better {
                best = Some((q, cost));
            }
        }
        let Some((q, _)) = best else { continue };
        s.put(i, q);
        // Its core's threads changed slope.
        let (from, to) = s.core_threads(s.pcpu[q].core);
        for k in from..to {
            let p = s.threads[k];
            if in_pool(s, home, p) {
                key(s, &mut by_slope, &mut by_load, p);
            }
        }
    }
    s.pool = [by_slope, by_load];
}

/// pCPU `p`'s place in the pool's heaps: by slope and by load, ties to fewer vCPUs
/// (so vCPUs of no demand spread out), then the lower index.
fn key(s: &Scratch, by_slope: &mut Heap, by_load: &mut Heap, p: usize) {
    let fewer = 2.0 * TIE * f64::from(s.pcpu[p].count);
    by_slope.set(p, s.slope(p) + fewer);
    by_load.set(p, s.pcpu[p].load + fewer);
}
