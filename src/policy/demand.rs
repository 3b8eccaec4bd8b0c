//! From usage to demand: the measured load of each pCPU, which vCPUs are held back by
//! sharing a saturated pCPU, and the demand the policy plans with for each.

use super::{Item, Params, Policy, Scratch};

/// Measured load per pCPU: a pinned vCPU counts on its pCPU, an unpinned one where it
/// last ran (the best we know of where its load is). Also how busy each pCPU was by
/// anyone (as the host reported it, but never less than the vCPU load).
pub(super) fn measure_loads(items: &[Item], s: &mut Scratch) {
    for (i, it) in items.iter().enumerate() {
        let Some(u) = it.usage else { continue };
        if let Some(p) = it.pinned.or(it.last_ran) {
            let w = &mut s.pcpu[p];
            w.measured += u;
            w.top = w.top.max(u);
            w.sharing += 1;
        }
        if let Some(p) = it.pinned {
            s.pcpu[p].count += 1;
            s.item[i].at = Some(p);
        }
    }
    for w in s.pcpu.iter_mut() {
        w.busy = w.busy.max(w.measured);
    }
}

/// Is a vCPU with usage `u` on pCPU `p` held back by sharing it, so that its usage
/// understates its demand? Only on a saturated pCPU that it shares (with other vCPUs,
/// or with host work), and only for the vCPUs getting (nearly) the most there: under
/// fair sharing the capped ones all get the same share, and the ones that got less than
/// that got all they wanted.
///
/// Saturation is judged on how busy the pCPU was by anyone, when the host reports it:
/// vCPU figures alone dip when host threads take their share, and a pair of busy vCPUs
/// reading 42 % each would look satisfied.
fn capped(s: &Scratch, params: &Params, p: usize, u: f64) -> bool {
    let w = &s.pcpu[p];
    let shared = w.sharing >= 2 || w.busy - w.measured >= params.host_share;
    w.busy >= params.saturated && shared && u >= params.capped_share * w.top
}

/// Fill each item's planning demand (and whether it is a guess) and the starting
/// planning load of each pCPU.
pub(super) fn estimate(policy: Policy, items: &[Item], params: &Params, s: &mut Scratch) {
    for (i, it) in items.iter().enumerate() {
        let Some(u) = it.usage else { continue };
        let mut d = match policy {
            Policy::Balance => it.usage_smoothed.unwrap_or(u),
            Policy::Seed => u,
        };
        if policy == Policy::Balance
            && let Some(m) = it.demand
        {
            // Measured: what it wants, whatever it got. Nothing to guess.
            d = m;
        } else if policy == Policy::Balance
            && let Some(p) = it.pinned.or(it.last_ran)
            && capped(s, params, p, u)
        {
            match it.known_demand {
                // It gets no more than it wanted when it last had room: assume it wants
                // that still (the share holds it back, or it is simply satisfied).
                Some(k) if u <= k * params.known_slack => d = k.max(d),
                // Nothing better known: it may want a whole pCPU, until a move shows.
                _ => {
                    d = 1.0;
                    s.item[i].uncertain = true;
                }
            }
        }
        s.item[i].demand = d;
        if let Some(p) = it.pinned.or(it.last_ran) {
            s.pcpu[p].demand_here += d;
        }
        match (it.pinned, it.managed, it.last_ran) {
            (Some(p), _, _) => s.add_load(p, d),
            // Unmanaged and unpinned: it stays where it is, so its load stays there.
            (None, false, Some(p)) => s.add_load(p, d),
            _ => {}
        }
    }
    // vCPUs of a domain that just started have no figures yet; they are placed now, on
    // a guess: as much as the average vCPU here wants (half a pCPU on an idle host).
    // The guess is refined from the next tick, like any guess.
    let (n, sum) = items
        .iter()
        .zip(&s.item)
        .filter(|(it, _)| it.usage.is_some())
        .fold((0usize, 0.0), |(n, t), (_, w)| (n + 1, t + w.demand));
    let guess = if n > 0 { sum / n as f64 } else { 0.5 };
    for (it, w) in items.iter().zip(s.item.iter_mut()) {
        if it.usage.is_none() && it.fresh {
            w.demand = guess;
            w.uncertain = true;
        }
    }
}

/// The demand item `i` showed this tick, if its usage *is* its demand: it was not
/// held back by sharing its pCPU.
pub(super) fn observed(items: &[Item], params: &Params, s: &Scratch, i: usize) -> Option<f64> {
    let it = &items[i];
    let p = it.pinned.or(it.last_ran)?;
    let u = it.usage?;
    (!capped(s, params, p, u)).then_some(u)
}
