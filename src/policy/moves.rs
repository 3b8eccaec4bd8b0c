//! Where vCPUs go: new vCPUs placed largest first, `seed`'s one move, and `balance`'s
//! moves and swaps over the planning loads in [`Scratch`].

use super::{Item, Params, Planned, Scratch};

/// Pin every managed vCPU that is not pinned to exactly one pCPU: largest first onto
/// the least loaded pCPU (greedy LPT), ties to fewer vCPUs of the same domain.
pub(super) fn place_new(items: &[Item], s: &mut Scratch, moves: &mut Vec<Planned>) {
    s.order.extend(
        items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.managed && it.pinned.is_none() && it.usage.is_some())
            .map(|(i, _)| i),
    );
    let work = &s.item;
    s.order
        .sort_unstable_by(|&a, &b| work[b].demand.total_cmp(&work[a].demand).then(a.cmp(&b)));
    for k in 0..s.order.len() {
        let i = s.order[k];
        let to = (0..s.pcpu.len())
            .min_by(|&a, &b| {
                s.pcpu[a]
                    .load
                    .total_cmp(&s.pcpu[b].load)
                    .then_with(|| siblings(items, s, i, a).cmp(&siblings(items, s, i, b)))
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        let w = &mut s.item[i];
        w.at = Some(to);
        w.moved = true;
        s.pcpu[to].load += w.demand;
        s.pcpu[to].count += 1;
        moves.push(Planned {
            item: i,
            to,
            guessed: w.uncertain,
        });
    }
}

/// How many other vCPUs of item `i`'s domain are (planned to be) on pCPU `p`.
fn siblings(items: &[Item], s: &Scratch, i: usize, p: usize) -> usize {
    let g = items[i].group;
    items
        .iter()
        .enumerate()
        .filter(|&(j, it)| j != i && it.group == g && s.item[j].at == Some(p))
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
        apply(s, i, dst);
        moves.push(Planned {
            item: i,
            to: dst,
            guessed: s.item[i].uncertain,
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

pub(super) fn balance_moves(
    items: &[Item],
    params: &Params,
    s: &mut Scratch,
    moves: &mut Vec<Planned>,
) {
    let target = params.threshold_pct * params.target_ratio;
    // Each round moves at least one vCPU that cannot move again this tick.
    for _ in 0..items.len() {
        if s.sigma_of(|p| p.load) <= target {
            break;
        }
        let Some(src) = busiest(s) else { break };
        let best = best_move(items, params, s, src).or_else(|| best_swap(items, params, s, src));
        let Some(c) = best else { break };
        apply(s, c.a, c.to);
        moves.push(Planned {
            item: c.a,
            to: c.to,
            guessed: s.item[c.a].uncertain,
        });
        if let Some(b) = c.b {
            apply(s, b, src);
            moves.push(Planned {
                item: b,
                to: src,
                guessed: s.item[b].uncertain,
            });
        }
    }
}

fn movable(items: &[Item], s: &Scratch, i: usize, on: usize) -> bool {
    let it = &items[i];
    let w = &s.item[i];
    it.managed && !it.cooling && !w.moved && it.usage.is_some() && w.at == Some(on)
}

/// Would moving `d` of load from `src` to `dst` be a real improvement?
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
        for dst in (0..s.pcpu.len()).filter(|&d| d != src) {
            let Some(delta) = improves(s, params, src, dst, s.item[a].demand) else {
                continue;
            };
            if !has_room(items, params, s, a, dst) {
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
            let Some(dst) = s.item[b].at else { continue };
            if dst == src
                || !movable(items, s, b, dst)
                || s.item[a].uncertain
                || s.item[b].uncertain
            {
                continue;
            }
            let d = s.item[a].demand - s.item[b].demand;
            let Some(delta) = improves(s, params, src, dst, d) else {
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

/// Record in the plan that item `i` moves to `to`.
fn apply(s: &mut Scratch, i: usize, to: usize) {
    let w = &mut s.item[i];
    if let Some(from) = w.at {
        s.pcpu[from].load -= w.demand;
        s.pcpu[from].count -= 1;
    }
    s.pcpu[to].load += w.demand;
    s.pcpu[to].count += 1;
    w.at = Some(to);
    w.moved = true;
}

/// The pCPU with the highest planning load (the lowest index on ties).
fn busiest(s: &Scratch) -> Option<usize> {
    (0..s.pcpu.len()).max_by(|&a, &b| s.pcpu[a].load.total_cmp(&s.pcpu[b].load).then(b.cmp(&a)))
}

/// The pCPU with the lowest planning load (the lowest index on ties).
fn idlest(s: &Scratch) -> Option<usize> {
    (0..s.pcpu.len()).min_by(|&a, &b| s.pcpu[a].load.total_cmp(&s.pcpu[b].load).then(a.cmp(&b)))
}
