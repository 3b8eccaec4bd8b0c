//! The references a placement is measured against, computed from a scenario's demands
//! alone (no scheduler): the bound, largest-first from scratch, the exact optimum for
//! small hosts, a long min-max search, and the work a placement delivers on SMT.

use vcpu_scheduler::sim::SMT_ALL_BUSY;

/// Hosts small enough for the exact optimum: at most this many pCPUs and vCPUs.
pub const EXACT_PCPUS: usize = 4;
pub const EXACT_VCPUS: usize = 10;

const EPS: f64 = 1e-9;

/// Busiest pCPU of `assign` (item → pCPU) over `m` pCPUs.
pub fn busiest(demands: &[f64], assign: &[usize], m: usize) -> f64 {
    let mut load = vec![0.0; m];
    for (d, &p) in demands.iter().zip(assign) {
        load[p] += d;
    }
    load.into_iter().fold(0.0, f64::max)
}

/// Largest first onto the least loaded pCPU, from scratch: item → pCPU.
pub fn lpt(demands: &[f64], m: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| demands[b].total_cmp(&demands[a]).then(a.cmp(&b)));
    let mut load = vec![0.0_f64; m];
    let mut assign = vec![0; demands.len()];
    for i in order {
        let p = (0..m)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        load[p] += demands[i];
        assign[i] = p;
    }
    assign
}

/// The exact optimum: the lowest busiest pCPU of any placement, and the fewest
/// migrations among the placements that reach it (a vCPU pinned to one pCPU migrates
/// if it ends elsewhere; one with no single pin is pinned anyway, one migration).
/// `None` when the host is too large to search exhaustively.
pub fn exact(demands: &[f64], pins: &[Option<usize>], m: usize) -> Option<(f64, u64)> {
    if m > EXACT_PCPUS || demands.len() > EXACT_VCPUS {
        return None;
    }
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| demands[b].total_cmp(&demands[a]));
    // Pass 1: the optimum, pCPUs interchangeable (an item goes to at most one empty one).
    let mut best = busiest(demands, &lpt(demands, m), m);
    let mut load = vec![0.0; m];
    min_max(demands, &order, 0, &mut load, &mut best);
    // Pass 2: fewest changed pins among placements within EPS of it.
    let unpinned = pins.iter().filter(|p| p.is_none()).count() as u64;
    let mut fewest = u64::MAX;
    load.fill(0.0);
    fewest_moves(
        demands,
        pins,
        &order,
        0,
        &mut load,
        best + EPS,
        0,
        &mut fewest,
    );
    Some((best, fewest.saturating_add(unpinned)))
}

fn min_max(d: &[f64], order: &[usize], k: usize, load: &mut [f64], best: &mut f64) {
    let Some(&i) = order.get(k) else {
        *best = best.min(load.iter().copied().fold(0.0, f64::max));
        return;
    };
    let mut tried_empty = false;
    for p in 0..load.len() {
        if load[p] == 0.0 {
            if tried_empty {
                continue;
            }
            tried_empty = true;
        }
        if load[p] + d[i] >= *best - EPS {
            continue;
        }
        load[p] += d[i];
        min_max(d, order, k + 1, load, best);
        load[p] -= d[i];
    }
}

#[allow(clippy::too_many_arguments)]
fn fewest_moves(
    d: &[f64],
    pins: &[Option<usize>],
    order: &[usize],
    k: usize,
    load: &mut [f64],
    cap: f64,
    moved: u64,
    fewest: &mut u64,
) {
    if moved >= *fewest {
        return;
    }
    let Some(&i) = order.get(k) else {
        *fewest = moved;
        return;
    };
    for p in 0..load.len() {
        if load[p] + d[i] > cap {
            continue;
        }
        let extra = u64::from(pins[i].is_some_and(|q| q != p));
        load[p] += d[i];
        fewest_moves(d, pins, order, k + 1, load, cap, moved + extra, fewest);
        load[p] -= d[i];
    }
}

/// A long min-max search from `start`: while an item of the busiest pCPU can move, or
/// be exchanged with an item elsewhere, so that both pCPUs end below the busiest, do
/// the one that leaves the pair's larger load lowest; when none, re-partition the
/// busiest pCPU's items with another pCPU's optimally (when they are at most 14).
/// Returns the busiest pCPU at the end.
pub fn long_search(demands: &[f64], m: usize, start: &[usize]) -> f64 {
    let mut assign = start.to_vec();
    let mut load = vec![0.0; m];
    for (d, &p) in demands.iter().zip(&assign) {
        load[p] += d;
    }
    for _ in 0..10_000 {
        let p = (0..m)
            .max_by(|&a, &b| load[a].total_cmp(&load[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        let top = load[p];
        // (resulting pair max, item, pCPU, partner)
        let mut best: Option<(f64, usize, usize, Option<usize>)> = None;
        let on_p: Vec<usize> = (0..demands.len()).filter(|&i| assign[i] == p).collect();
        for &i in &on_p {
            for q in (0..m).filter(|&q| q != p) {
                let after = (top - demands[i]).max(load[q] + demands[i]);
                if after < top - EPS && best.is_none_or(|b| after < b.0 - EPS) {
                    best = Some((after, i, q, None));
                }
                for j in (0..demands.len()).filter(|&j| assign[j] == q) {
                    let x = demands[i] - demands[j];
                    let after = (top - x).max(load[q] + x);
                    if x > 0.0 && after < top - EPS && best.is_none_or(|b| after < b.0 - EPS) {
                        best = Some((after, i, q, Some(j)));
                    }
                }
            }
        }
        if let Some((_, i, q, j)) = best {
            assign[i] = q;
            load[p] -= demands[i];
            load[q] += demands[i];
            if let Some(j) = j {
                assign[j] = p;
                load[q] -= demands[j];
                load[p] += demands[j];
            }
            continue;
        }
        if !repartition(demands, &mut assign, &mut load, p) {
            break;
        }
    }
    load.into_iter().fold(0.0, f64::max)
}

/// Split the items of `p` and of some other pCPU between the two as evenly as
/// possible (every subset, when they are few), if that lowers the pair's larger load.
fn repartition(d: &[f64], assign: &mut [usize], load: &mut [f64], p: usize) -> bool {
    let top = load[p];
    for q in (0..load.len()).filter(|&q| q != p) {
        let both: Vec<usize> = (0..d.len())
            .filter(|&i| assign[i] == p || assign[i] == q)
            .collect();
        if both.len() > 14 {
            continue;
        }
        let total: f64 = both.iter().map(|&i| d[i]).sum();
        let (mut best, mut pick) = (top, None);
        for mask in 0u32..(1 << both.len()) {
            let a: f64 = (0..both.len())
                .filter(|&k| mask & (1 << k) != 0)
                .map(|k| d[both[k]])
                .sum();
            let worse = a.max(total - a);
            if worse < best - EPS {
                (best, pick) = (worse, Some(mask));
            }
        }
        if let Some(mask) = pick {
            for (k, &i) in both.iter().enumerate() {
                assign[i] = if mask & (1 << k) != 0 { p } else { q };
            }
            let a: f64 = (0..both.len())
                .filter(|&k| mask & (1 << k) != 0)
                .map(|k| d[both[k]])
                .sum();
            (load[p], load[q]) = (a, total - a);
            return true;
        }
    }
    false
}

/// Work a placement delivers over the work demanded, percent, in the simulator's SMT
/// model: each pCPU busy `min(1, load)`; a core of `k` threads delivers its busiest
/// thread's time in full and `(SMT_ALL_BUSY − 1) / (k − 1)` of every other thread's.
/// `core[p]` is pCPU `p`'s core.
pub fn work_pct(demands: &[f64], assign: &[usize], core: &[usize]) -> f64 {
    let m = core.len();
    let mut load = vec![0.0; m];
    for (d, &p) in demands.iter().zip(assign) {
        load[p] += d;
    }
    let cores = core.iter().max().map_or(0, |c| c + 1);
    let (mut sum, mut max, mut threads) =
        (vec![0.0; cores], vec![0.0_f64; cores], vec![0u32; cores]);
    for p in 0..m {
        let b = load[p].min(1.0);
        sum[core[p]] += b;
        max[core[p]] = max[core[p]].max(b);
        threads[core[p]] += 1;
    }
    let work: f64 = (0..cores)
        .map(|c| {
            if threads[c] <= 1 {
                sum[c]
            } else {
                max[c] + (SMT_ALL_BUSY - 1.0) / f64::from(threads[c] - 1) * (sum[c] - max[c])
            }
        })
        .sum();
    let want: f64 = demands.iter().sum();
    if want > 0.0 {
        100.0 * work / want
    } else {
        100.0
    }
}
