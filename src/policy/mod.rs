//! Analyze: from per-vCPU usage and demand, decide which vCPUs go to which pCPU this
//! tick, and whether the host is balanced.
//!
//! Pure functions over slices of numbers and plain indices; knows nothing of libvirt,
//! clocks or I/O, so the same code runs on a live host and in the simulator. The caller
//! owns every buffer: [`Scratch`] for the work in between, [`Outputs`] for the results.
//!
//! Units: usage, demand and load are fractions of one pCPU (1.0 = one pCPU busy);
//! σ is reported in percentage points, as the course and the threshold use it; the
//! cost is in pCPU² (see `cost.rs`).
//!
//! `balance` scores a placement with one cost (`cost.rs`: load per thread and per
//! core, demand no pCPU can serve, demand away from its home node, and a price per
//! migration) and searches for the placement that lowers it:
//!
//! ```text
//! plan:
//!     demand = measured, else usage, else a guess for vCPUs held back (demand.rs)
//!     start from the pins as they are; the host's own load is fixed (home.rs)
//!     pin each vCPU that must be pinned, largest first, where it adds least (repack.rs)
//!     local = descend(plan)                         # search.rs
//!     if some placement could beat local by more than a price:
//!         scratch = descend(every vCPU placed again, largest first; on several
//!                           nodes also with each unbound domain given the node
//!                           with most room, largest first)
//!         plan = the cheaper of local and scratch (migrations counted)
//!     verdict: σ of measured load and of demand ≤ threshold, node by node
//! descend:
//!     while a move, an exchange or a whole-domain move lowers the cost by more
//!     than its migrations cost: make the one that lowers it most
//! ```
//!
//! Files: `types.rs` (what goes in and out), `demand.rs` (usage to demand), `home.rs`
//! (where each vCPU starts and belongs), `state.rs` (the buffers the plan changes),
//! `cost.rs` (what a placement costs), `search.rs` (the local search), `repack.rs`
//! (largest first), `seed.rs` (the reference rule), `heap.rs` (the search's heaps).
//! None imports `mod.rs`. `types` imports nothing and `heap` only `types`; `state`
//! imports those two; `cost`, `demand`, `home` and `seed` import `state` and `types`;
//! `repack` imports `heap`, `home` and `state`, and `search` `cost`, `heap` and
//! `state`: no two files import each other.

mod cost;
mod demand;
mod heap;
mod home;
mod repack;
mod search;
mod seed;
mod state;
mod types;

pub use state::Scratch;
pub use types::{
    Analysis, BUSY, DEFAULT_THRESHOLD_PCT, Item, Outputs, Params, Pcpu, Planned, Policy, TIE, Why,
    bound, sigma_pct,
};

use cost::Terms;
use repack::Toward;
use state::PcpuWork;
use types::sigma_pct_iter;

/// Decide this tick's pins and give the verdict. `pcpus` has one entry per pCPU (at
/// least one of them allowed), and so have `out.loads` and `out.demand`;
/// `out.observed`, `out.item_demand` and `out.home` have one per item.
///
/// Both policies first pin the vCPUs that must be pinned (new ones, ones outside the
/// allowed pCPUs), largest demand first where each adds least to the cost. `seed` then
/// makes at most one move, busiest → idlest, unless the host is balanced. `balance`
/// searches for the placement of least cost (see the module docs).
pub fn plan(
    policy: Policy,
    items: &[Item],
    pcpus: &[Pcpu],
    params: &Params,
    s: &mut Scratch,
    out: Outputs<'_>,
) -> Analysis {
    out.moves.clear();
    s.reset(pcpus, items);
    demand::measure_loads(items, s);
    demand::estimate(policy, items, params.noise_sigmas, s);
    home::settle(items, s);
    home::start(items, params, s);
    let any_usage = items.iter().any(|i| i.usage.is_some());
    let first = items.iter().all(|i| i.usage.is_none() || i.first_reading);
    // vCPUs that just started are placed on a guess; moving others around it would be
    // undone when the guess is measured next tick.
    let starting = items
        .iter()
        .any(|i| i.managed && i.fresh && i.usage.is_none());
    let (sigma, sigma_within) = verdict(s, params, |w| w.measured);
    let (demand_sigma, demand_within) = verdict(s, params, |w| w.demand_here);
    let mut analysis = Analysis {
        sigma_pct: any_usage.then_some(sigma),
        demand_sigma_pct: any_usage.then_some(demand_sigma),
        sigma_within: any_usage && sigma_within,
        demand_within: any_usage && demand_within,
        plans_on_demand: policy == Policy::Balance,
        settled: true,
    };
    // A first reading cannot price a move: its noise is not known yet, and it adds to
    // the spread of the loads (σ² of a reading = σ² of the loads + σ² of the noise).
    // Loads within the threshold read with noise as large as the threshold itself read
    // up to √2 × threshold: such a host is left as it is until the second reading,
    // unless vCPUs must be pinned now anyway (placed alone, they would be placed twice).
    let must_place = s.item.iter().any(|w| w.movable && w.at.is_none());
    let noise_may_explain =
        !must_place && sigma.max(demand_sigma) <= std::f64::consts::SQRT_2 * params.threshold_pct;
    for w in s.item.iter_mut() {
        w.home0 = w.home;
    }
    repack::place_forced(s);
    match policy {
        Policy::Seed if any_usage && !analysis.balanced() => seed::seed_move(s),
        Policy::Balance if any_usage && !starting && !(first && noise_may_explain) => {
            search(s, params)
        }
        _ => {}
    }
    for (i, it) in items.iter().enumerate() {
        let w = &s.item[i];
        let Some(to) = w.at.filter(|&q| w.movable && w.orig != Some(q)) else {
            continue;
        };
        let (why, gain) = match w.why {
            Some(why @ (Why::New | Why::Outside | Why::Busiest)) => (why, 0.0),
            _ => why_moved(s, i),
        };
        analysis.settled &= matches!(why, Why::New | Why::Outside);
        let from = it.pinned.filter(|&p| s.pcpu[p].allowed);
        out.moves.push(Planned {
            item: i,
            to,
            why,
            gain,
            loads: (
                from.map_or(0.0, |p| s.pcpu[p].demand_here),
                s.pcpu[to].demand_here,
            ),
            demand: w.demand,
            contended: it.demand.is_some() && it.usage.is_some_and(|u| u < 0.5 * w.demand),
        });
    }
    for ((l, d), w) in out.loads.iter_mut().zip(out.demand.iter_mut()).zip(&s.pcpu) {
        (*l, *d) = (w.measured, w.demand_here);
    }
    for i in 0..items.len() {
        out.observed[i] = demand::observed(items, s, i);
        out.item_demand[i] = s.item[i].demand;
        out.home[i] = home_after(s, i);
    }
    analysis
}

/// `balance`: the local search, and the placement from scratch when it could do better.
fn search(s: &mut Scratch, params: &Params) {
    let pmin = params.price;
    if s.item.len() > repack::SCRATCH_VCPUS {
        // Too many vCPUs to place from scratch every tick. But where a node is over
        // capacity beside one with room, whole domains must change node, which the
        // local search does one at a time, each step looking at every domain: there the
        // placement that gives every domain a node again goes first.
        if repack::nodes_uneven(s) {
            let start = s.total();
            s.save(0);
            repack::from_scratch(s, Toward::Nodes);
            search::descend(s, pmin);
            if s.total() < start - TIE {
                return;
            }
            s.restore(0);
        }
        search::descend(s, pmin);
        return;
    }
    search::descend(s, pmin);
    let digest = s.digest();
    if digest == s.lost_to {
        return;
    }
    let local = s.total();
    // From scratch, leaning towards the pins as they are, then towards the local
    // search's result (where the next tick would start), and on a host of several
    // nodes with every unbound domain given a node again: the cheapest of them all.
    s.save(0);
    let mut best = local;
    let tries = if s.nodes > 1 { 3 } else { 2 };
    for &toward in &[Toward::Pins, Toward::Saved, Toward::Nodes][..tries] {
        repack::from_scratch(s, toward);
        search::descend(s, pmin);
        let cost = s.total();
        if cost < best - TIE {
            best = cost;
            s.save(1);
        }
        s.restore(0);
    }
    if best < local - TIE {
        s.restore(1);
        s.lost_to = 0;
    } else {
        s.lost_to = digest;
    }
}

/// Which term item `i`'s move lowered, and by how much: what moving it back alone
/// (the rest of the plan as it is) would cost. A domain moved whole says so; a move
/// that only made room for another shows what it cost on its own.
fn why_moved(s: &Scratch, i: usize) -> (Why, f64) {
    let w = &s.item[i];
    let Some(back) = w.orig else {
        return (Why::New, 0.0);
    };
    let (t, _) = s.move_terms(i, back);
    let gained = Terms {
        load: -t.load,
        smt: -t.smt,
        numa: -t.numa,
    };
    let (why, gain) = gained.lowered();
    // A domain whose memory is not bound that changed node changed it whole.
    let node_changed = s.pcpu[back].node != w.at.map_or(s.pcpu[back].node, |p| s.pcpu[p].node);
    if !w.bound && (w.home != w.home0 || (w.len == 1 && node_changed)) {
        return (Why::Node, t.total());
    }
    (why, gain)
}

/// An item's home once the plan is made: a lone vCPU of an unbound domain is at home
/// wherever it is planned.
fn home_after(s: &Scratch, i: usize) -> u64 {
    let w = &s.item[i];
    match w.at {
        Some(p) if w.movable && !w.bound && w.len == 1 && (s.pcpu[p].node as usize) < 64 => {
            1 << s.pcpu[p].node
        }
        _ => w.home,
    }
}

/// σ of a per-pCPU figure over the allowed pCPUs, node by node: the worst node's σ,
/// and whether every node is within the threshold.
fn verdict(s: &Scratch, params: &Params, f: impl Fn(&PcpuWork) -> f64 + Copy) -> (f64, bool) {
    let mut worst = 0.0_f64;
    for n in 0..s.nodes {
        let node = s
            .pcpu
            .iter()
            .filter(move |w| w.allowed && w.node as usize == n)
            .map(f);
        worst = worst.max(sigma_pct_iter(node));
    }
    (worst, worst <= params.threshold_pct)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_topology;
