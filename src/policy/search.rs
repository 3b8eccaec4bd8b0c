//! The local search: from the plan as it stands, apply the change that lowers the cost
//! most, among moves and exchanges off the pCPU with the steepest load cost, vCPUs
//! away from home or from where they are pinned, and whole-domain moves to another
//! node, while one lowers the cost by more than the migrations it takes.
//!
//! Cost: a move of `x` from `p` to `q` can gain at most `(e_p − e_q)² / 2c` (`e` the
//! slope of the load cost, `c` its curvature; more off a pCPU over capacity), so a
//! source whose bound is under one price is not searched, nor any pair of pCPUs whose
//! bound is. A balanced host is dismissed in O(pCPUs + vCPUs). A source's best move goes
//! to the cheapest pCPU of each node (the move's gain falls as the destination's slope
//! rises, so only the two lowest slopes and loads of each node are tried); its best
//! exchange with a pCPU is found by binary search in that pCPU's vCPUs sorted by
//! demand. No step looks at every vCPU of a domain per candidate.

use super::cost::Terms;
use super::heap::Heap;
use super::state::{NONE, Scratch};
use super::types::TIE;

/// A change the search may make, and what it does to the cost (terms and prices).
#[derive(Debug, Clone, Copy)]
struct Change {
    kind: Kind,
    terms: Terms,
    price: f64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Item `i` to pCPU `to`.
    Move { i: usize, to: usize },
    /// Items `i` and `j` exchange pCPUs.
    Swap { i: usize, j: usize },
    /// The domain whose first item is `first` moves whole to `node`.
    Domain { first: usize, node: u16 },
}

impl Change {
    fn delta(&self) -> f64 {
        self.terms.total() + self.price
    }

    /// Keep the better of `self` and `other`.
    fn better(best: Option<Change>, other: Change) -> Option<Change> {
        match best {
            Some(b) if b.delta() <= other.delta() + TIE => Some(b),
            _ if other.delta().is_finite() => Some(other),
            b => b,
        }
    }
}

/// Lower the cost as far as single changes go, each paying for its migrations. `pmin`
/// is the smallest price of any item: a change gaining less cannot pay.
pub(super) fn descend(s: &mut Scratch, pmin: f64) {
    // Each step lowers the cost; this only bounds a pathological float cycle.
    let mut budget = 4 * s.item.len() + 64;
    rebuild(s);
    // Whether a pCPU was searched in vain since the last full look at every pCPU, and
    // whether this pass is such a look.
    let (mut stale, mut recheck) = (false, false);
    while budget > 0 {
        budget -= 1;
        dests(s);
        let emin = s.dest_min;
        let mut found = None;
        while let Some(p) = s.steep.first() {
            if bound(s, p, emin) <= pmin {
                break;
            }
            found = best_from(s, p, pmin).filter(|c| c.delta() < -TIE);
            if found.is_some() {
                break;
            }
            // Searched in vain: not again until it or its destinations change.
            s.pcpu[p].stuck = true;
            s.steep.remove(p);
            stale = !recheck;
        }
        if found.is_none() && special_pass(s) {
            rebuild(s);
            continue;
        }
        if found.is_none() && s.nodes > 1 {
            found = best_domain(s).filter(|c| c.delta() < -TIE);
        }
        let Some(c) = found else {
            // Nothing left; but a pCPU given up on may have a change since its
            // neighbours changed: look at every one once more before stopping.
            if stale {
                (stale, recheck) = (false, true);
                rebuild(s);
                continue;
            }
            break;
        };
        recheck = false;
        apply(s, c, emin);
    }
}

/// Every pCPU back in the heaps, none stuck.
fn rebuild(s: &mut Scratch) {
    let n = s.pcpu.len();
    s.steep.reset(n);
    s.cheap.resize_with(s.nodes, Default::default);
    s.light.resize_with(s.nodes, Default::default);
    for h in s.cheap.iter_mut().chain(s.light.iter_mut()) {
        h.reset(n);
    }
    for p in 0..n {
        s.pcpu[p].stuck = false;
        refresh(s, p);
    }
}

/// pCPU `p`'s load changed (or a sibling thread's): its place in the heaps.
fn refresh(s: &mut Scratch, p: usize) {
    let (w, e) = (s.pcpu[p], s.slope(p));
    if w.count > 0 && !w.stuck && w.allowed {
        s.steep.set(p, -e);
    } else {
        s.steep.remove(p);
    }
    if w.allowed {
        let n = w.node as usize;
        s.cheap[n].set(p, e);
        s.light[n].set(p, w.load);
    }
}

/// Per node, the two allowed pCPUs with the lowest slope and the two with the lowest
/// load (`s.dest`; `usize::MAX` for none); the lowest slope of all (`s.dest_min`).
fn dests(s: &mut Scratch) {
    s.dest.clear();
    s.dest_min = f64::INFINITY;
    for n in 0..s.nodes {
        let pick = |h: &Heap| {
            [
                h.first().unwrap_or(usize::MAX),
                h.second().unwrap_or(usize::MAX),
            ]
        };
        let ([a, b], [c, d]) = (pick(&s.cheap[n]), pick(&s.light[n]));
        if a != usize::MAX {
            s.dest_min = s.dest_min.min(s.slope(a));
        }
        s.dest.push([a, b, c, d]);
    }
}

/// The most a change moving load off `p` towards a pCPU of slope `e` can gain.
fn bound(s: &Scratch, p: usize, e: f64) -> f64 {
    let gap = (s.slope(p) - e).max(0.0) + relief(s, p);
    // The least curvature: between two threads of one core, only the per-thread part.
    gap * gap / (2.0 * (1.0 - s.smt()))
}

/// What the overload term adds to the slope of a pCPU over capacity, for load taken
/// off it (half the term's weight, as the slope is half the derivative).
fn relief(s: &Scratch, p: usize) -> f64 {
    if s.pcpu[p].load > 1.0 {
        s.overload() / 2.0
    } else {
        0.0
    }
}

/// A pCPU with at most this many vCPUs has each of them tried for a move.
const FEW: usize = 16;

/// The best move off `p`, else its best exchange. A move of `x` to `q` gains most at
/// `x = (e_p − e_q) / 2c` (more off a pCPU over capacity): the items nearest that, to
/// each node's cheapest pCPUs.
fn best_from(s: &mut Scratch, p: usize, pmin: f64) -> Option<Change> {
    s.sort(p);
    let mut best = None;
    for n in 0..s.dest.len() {
        let d = s.dest[n];
        for (k, &q) in d.iter().enumerate() {
            // The same pCPU is often both the lowest slope and the lowest load.
            if q == usize::MAX || q == p || d[..k].contains(&q) {
                continue;
            }
            let Some(x) = ideal(s, p, q, pmin) else {
                continue;
            };
            // Few vCPUs: try each (their NUMA and SMT terms differ, not only their
            // demand); many: the two whose demand is nearest the best amount.
            if s.pcpu[p].count as usize <= FEW {
                let mut i = s.pcpu[p].head;
                while i != NONE {
                    best = try_move(s, i, q, best);
                    i = s.item[i].next;
                }
            } else {
                for i in s.around(p, x).into_iter().filter(|&i| i != NONE) {
                    best = try_move(s, i, q, best);
                }
            }
        }
    }
    if best.is_some_and(|c| c.delta() < -TIE) {
        return best;
    }
    for q in 0..s.pcpu.len() {
        if q != p && s.pcpu[q].allowed && s.pcpu[q].count > 0 {
            best = best_swap(s, p, q, pmin, best);
        }
    }
    best
}

/// `best`, or moving `i` to `q` if that is better.
fn try_move(s: &Scratch, i: usize, q: usize, best: Option<Change>) -> Option<Change> {
    let (terms, price) = s.move_terms(i, q);
    let kind = Kind::Move { i, to: q };
    Change::better(best, Change { kind, terms, price })
}

/// The amount of load worth moving from `p` to `q` (the gain's peak), if the peak
/// could pay for a migration.
fn ideal(s: &Scratch, p: usize, q: usize, pmin: f64) -> Option<f64> {
    let same_core = s.pcpu[p].core == s.pcpu[q].core;
    let curvature = if same_core { 1.0 - s.smt() } else { 1.0 };
    let gap = s.slope(p) - s.slope(q) + relief(s, p);
    (gap > 0.0 && gap * gap / (2.0 * curvature) > pmin).then_some(gap / (2.0 * curvature))
}

/// Item `i`'s best move: to the cheapest pCPUs of each node, or back where it is
/// pinned.
fn best_move(s: &Scratch, i: usize, mut best: Option<Change>) -> Option<Change> {
    let at = s.item[i].at;
    let orig = s.item[i].orig.filter(|&o| s.pcpu[o].allowed);
    for q in s.dest.iter().flatten().copied().chain(orig) {
        if q == usize::MAX || Some(q) == at {
            continue;
        }
        best = try_move(s, i, q, best);
    }
    best
}

/// The best exchange of a vCPU on `p` with one on `q`: for each vCPU on `p`, the
/// partners on either side of the demand that would leave the best amount moved. Both
/// lists are sorted, largest first, and that demand falls as `p`'s vCPU does, so one
/// sweep of each finds them all.
fn best_swap(
    s: &mut Scratch,
    p: usize,
    q: usize,
    pmin: f64,
    mut best: Option<Change>,
) -> Option<Change> {
    let Some(x) = ideal(s, p, q, pmin) else {
        return best;
    };
    s.sort(q);
    let (mut j, mut above) = (s.pcpu[q].head, NONE);
    for i in s.on(p) {
        let want = s.item[i].demand - x;
        while j != NONE && s.item[j].demand > want {
            above = j;
            j = s.item[j].next;
        }
        for k in [above, j] {
            if k != NONE {
                let (terms, price) = s.swap_terms(i, k);
                let kind = Kind::Swap { i, j: k };
                best = Change::better(best, Change { kind, terms, price });
            }
        }
    }
    best
}

/// Items whose cost is not only load: away from their home node, or planned away from
/// where they are pinned (moving back saves a migration). Each moves where it is
/// cheapest if that lowers the cost, in one pass (the destinations as they were at
/// its start: the cost of each move is exact, only the choice of candidates ages).
/// Whether any moved.
///
/// After a placement from scratch most vCPUs are away from their pins, so each is
/// first judged by its move back (exact) and a bound on its moves to the
/// destinations: a move of `d` from `p` to `q` changes the load terms by
/// `2d (e_q − e_p) + 2c d²` (`c` ≥ 1 − s, see [`bound`]) plus the overload, and gains
/// at most its NUMA cost and, only going back, its price. Where neither can lower the
/// cost, the full look would move nothing either.
fn special_pass(s: &mut Scratch) -> bool {
    let mut moved = false;
    let mut emin = dest_slope(s);
    for i in 0..s.item.len() {
        let w = &s.item[i];
        let Some(p) = w.at.filter(|_| w.movable) else {
            continue;
        };
        let home = w.orig.is_none_or(|o| o == p);
        // One node: every vCPU is at home.
        let numa = if s.nodes > 1 {
            s.numa(i, s.pcpu[p].node)
        } else {
            0.0
        };
        if home && numa == 0.0 {
            continue;
        }
        let d = w.demand;
        let over = (s.pcpu[p].load - 1.0).max(0.0).min(d);
        let least = 2.0 * d * (emin - s.slope(p)) + 2.0 * (1.0 - s.smt()) * d * d
            - s.overload() * over
            - numa;
        let back = w.orig.filter(|&o| o != p && s.pcpu[o].allowed);
        let stays = |o| {
            let (t, price) = s.move_terms(i, o);
            t.total() + price >= -TIE
        };
        if d >= 0.0 && least > -TIE / 2.0 && back.is_none_or(stays) {
            continue;
        }
        if let Some(Change {
            kind: Kind::Move { i, to },
            ..
        }) = best_move(s, i, None).filter(|c| c.delta() < -TIE)
        {
            s.shift(i, to);
            emin = dest_slope(s);
            moved = true;
        }
    }
    moved
}

/// The lowest slope among the destinations [`dests`] chose, as the pCPUs stand now.
fn dest_slope(s: &Scratch) -> f64 {
    let q = s.dest.iter().flatten().filter(|&&q| q != usize::MAX);
    q.map(|&q| s.slope(q)).fold(f64::INFINITY, f64::min)
}

/// The best move of a whole domain (whose memory is not bound, of two or more vCPUs)
/// to another node: its vCPUs placed largest first, each on the cheapest pCPU there,
/// its home moved with it. Domains that could not pay for their migrations even if
/// every vCPU landed on the node's least loaded pCPU are not tried.
fn best_domain(s: &mut Scratch) -> Option<Change> {
    let mut best: Option<Change> = None;
    let mut first = 0;
    while first < s.item.len() {
        let run = s.domain(first);
        first = run.end;
        let w = s.item[run.start];
        if run.len() < 2
            || w.bound
            || !s.item[run.clone()]
                .iter()
                .all(|x| x.movable && x.at.is_some())
        {
            continue;
        }
        // The lowest slope of each node it may go to; first tried for all at once.
        let emin = |s: &Scratch, n: u16| {
            let q = s.dest[n as usize][0];
            (w.home != 1 << n && q != usize::MAX).then(|| s.slope(q))
        };
        let lowest = (0..s.nodes.min(64) as u16).filter_map(|n| emin(s, n));
        if !may_pay(s, run.clone(), lowest.fold(f64::INFINITY, f64::min), None) {
            continue;
        }
        for n in 0..s.nodes.min(64) as u16 {
            let Some(e) = emin(s, n) else {
                continue;
            };
            if may_pay(s, run.clone(), e, Some(n)) {
                let c = try_domain(s, run.start, n, false);
                best = Change::better(best, c);
            }
        }
    }
    best
}

/// Whether moving the domain of items `run` to node `n` (to any node for `None`), whose
/// lowest slope is `emin`, could gain more than its migrations cost.
fn may_pay(s: &Scratch, run: std::ops::Range<usize>, emin: f64, n: Option<u16>) -> bool {
    let (mut most, mut price) = (0.0, 0.0);
    for i in run {
        let x = &s.item[i];
        let p = x.at.unwrap_or(0);
        // The load term gains at most 2 d (e_p − e_min) − 2 c d², the curvature c 1 to
        // another core (so to another node), 1 − s to a sibling thread; the overload
        // term at most what its pCPU is over capacity, up to d.
        let d = x.demand;
        let c = if n.is_none_or(|n| s.pcpu[p].node == n) {
            1.0 - s.smt()
        } else {
            1.0
        };
        let over = (s.pcpu[p].load - 1.0).max(0.0).min(d);
        most += (2.0 * d * (s.slope(p) - emin) - 2.0 * c * d * d).max(0.0) + s.overload() * over;
        most += s.numa(i, s.pcpu[p].node);
        price += x.price;
    }
    most > price
}

/// Move the domain whose first item is `first` to node `n`, as [`best_domain`] does,
/// and say what it changes; unless `keep`, put everything back.
fn try_domain(s: &mut Scratch, first: usize, n: u16, keep: bool) -> Change {
    let run = s.domain(first);
    let numa = |s: &Scratch| -> f64 {
        let node = |i: usize| s.pcpu[s.item[i].at.unwrap_or(0)].node;
        run.clone().map(|i| s.numa(i, node(i))).sum()
    };
    let (old_home, old_numa) = (s.item[first].home, numa(s));
    for w in &mut s.item[run.clone()] {
        w.home = 1 << n;
    }
    let mut order = std::mem::take(&mut s.order);
    order.clear();
    order.extend(run.clone());
    order.sort_unstable_by(|&a, &b| {
        s.item[b]
            .demand
            .total_cmp(&s.item[a].demand)
            .then(a.cmp(&b))
    });
    let (mut terms, mut price) = (Terms::default(), 0.0);
    let mut from = std::mem::take(&mut s.trial);
    from.clear();
    for &i in &order {
        from.push(s.item[i].at);
        let mut pick: Option<(usize, f64, Terms, f64)> = None;
        for q in (0..s.pcpu.len()).filter(|&q| s.pcpu[q].allowed && s.pcpu[q].node == n) {
            let (t, pr) = s.move_terms(i, q);
            let d = t.load + t.smt + pr;
            if pick.is_none_or(|b| d < b.1 - TIE) {
                pick = Some((q, d, t, pr));
            }
        }
        if let Some((q, _, t, pr)) = pick {
            terms.load += t.load;
            terms.smt += t.smt;
            price += pr;
            s.shift(i, q);
        }
    }
    terms.numa = numa(s) - old_numa;
    if !keep {
        for (k, &i) in order.iter().enumerate() {
            match from[k] {
                Some(p) => s.shift(i, p),
                None => s.take(i),
            }
        }
        for w in &mut s.item[run] {
            w.home = old_home;
        }
    }
    s.order = order;
    s.trial = from;
    Change {
        kind: Kind::Domain { first, node: n },
        terms,
        price,
    }
}

/// Make the change, and say which pCPUs must be searched again: the two it touched and
/// their cores, or all of them if it opened a new lowest slope.
fn apply(s: &mut Scratch, c: Change, emin: f64) {
    let mut touched = [usize::MAX; 2];
    match c.kind {
        Kind::Move { i, to } => {
            touched = [s.item[i].at.unwrap_or(to), to];
            s.shift(i, to);
        }
        Kind::Swap { i, j } => {
            let (p, q) = (s.item[i].at.unwrap_or(0), s.item[j].at.unwrap_or(0));
            touched = [p, q];
            s.shift(i, q);
            s.shift(j, p);
        }
        Kind::Domain { first, node } => {
            try_domain(s, first, node, true);
        }
    }
    let opened = touched
        .iter()
        .any(|&p| p != usize::MAX && s.slope(p) < emin - TIE);
    if opened || matches!(c.kind, Kind::Domain { .. }) {
        rebuild(s);
        return;
    }
    for t in touched.into_iter().filter(|&t| t != usize::MAX) {
        let (from, to) = s.core_threads(s.pcpu[t].core);
        for k in from..to {
            let p = s.threads[k];
            s.pcpu[p].stuck = false;
            refresh(s, p);
        }
    }
}
