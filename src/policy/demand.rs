//! From usage to demand: the measured load of each pCPU, which vCPUs are held back by
//! sharing a saturated pCPU, and the demand the policy plans with for each.

use super::state::Scratch;
use super::types::{Item, Policy};

/// A pCPU busy at or above this fraction is saturated: the usage of its vCPUs
/// understates what they would use elsewhere. 0.95, not 1.0: the host's own threads
/// and sampling jitter keep a full pCPU from reading exactly 100 %.
const SATURATED: f64 = 0.95;
/// A pCPU this busy is full whoever shares it: 0.99, beyond what noise lifts a pCPU
/// that has room to (a balanced host at 90 % read with ±10 % noise reaches 97 %).
const FULL: f64 = 0.99;
/// On a saturated pCPU, a vCPU getting at least this fraction of the top share there
/// counts as capped. 0.9: fair shares are equal, but measured ones differ by noise.
const CAPPED_SHARE: f64 = 0.9;
/// A pCPU with a single vCPU is still shared when the host's own load takes at least
/// this fraction of it. 0.1: below that it is sampling noise.
const HOST_SHARE: f64 = 0.1;
/// A capped vCPU that gets at most this multiple of its known demand (plus
/// `noise_sigmas` times the noise of its own readings) is assumed to still want just
/// that. 1.05 absorbs the error of one reading; more than both means it grew.
const KNOWN_SLACK: f64 = 1.05;

/// Measured load per pCPU: the host's own load, plus each vCPU's usage where it is (a
/// pinned vCPU on its pCPU, an unpinned one where it last ran: the best we know of
/// where its load is). Also how busy each pCPU was by anyone: as the host reported it,
/// else the sum of the vCPUs' usage.
pub(super) fn measure_loads(items: &[Item], s: &mut Scratch) {
    for w in s.pcpu.iter_mut() {
        w.measured = w.host;
    }
    for it in items {
        let Some(u) = it.usage else { continue };
        if let Some(p) = it.pinned.or(it.last_ran) {
            let w = &mut s.pcpu[p];
            w.measured += u;
            w.top = w.top.max(u);
            w.sharing += 1;
        }
    }
    for it in items {
        if let (Some(u), Some(p)) = (it.usage, it.pinned.or(it.last_ran)) {
            let w = &mut s.pcpu[p];
            w.at_top += u32::from(u >= CAPPED_SHARE * w.top);
        }
    }
    for w in s.pcpu.iter_mut() {
        // Where the host reported how busy the pCPU was, that figure: the kernel's own
        // count, while the vCPUs' readings carry their noise (a balanced pCPU at 90 %
        // read with ±10 % noise would look saturated). Elsewhere (negative: not
        // reported) the vCPUs' sum is all there is.
        if w.busy < 0.0 {
            w.busy = w.measured;
        }
    }
}

/// Is a vCPU with usage `u` on pCPU `p` held back by sharing it, so that its usage
/// understates its demand? Only on a saturated pCPU that it shares, and only for the
/// vCPUs getting (nearly) the most there: under fair sharing the capped ones all get
/// the same share, and the ones that got less than that got all they wanted. So the
/// top share must be shared, by two vCPUs or with host work, unless the pCPU is
/// [`FULL`]: one vCPU above the others on a pCPU just over [`SATURATED`] got what they
/// left, which is as likely all it wanted (a noisy tick lifts a pCPU at 90 % that far).
///
/// Saturation is judged on how busy the pCPU was by anyone, when the host reports it:
/// vCPU figures alone dip when host threads take their share, and a pair of busy vCPUs
/// reading 42 % each would look satisfied.
fn capped(s: &Scratch, p: usize, u: f64) -> bool {
    let w = &s.pcpu[p];
    let vcpus = w.measured - w.host;
    let shared = w.at_top >= 2 || w.busy - vcpus >= HOST_SHARE;
    let held = (w.busy >= SATURATED && shared) || (w.busy >= FULL && w.sharing >= 2);
    held && u >= CAPPED_SHARE * w.top
}

/// Fill each item's planning demand (and whether it is only a guess), and the demand
/// on each pCPU before the plan (the host's load included).
pub(super) fn estimate(policy: Policy, items: &[Item], noise_sigmas: f64, s: &mut Scratch) {
    for w in s.pcpu.iter_mut() {
        w.demand_here = w.host;
    }
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
            && capped(s, p, u)
        {
            match it.known_demand {
                // It gets no more than it wanted when it last had room, give or take
                // the noise of its readings: assume it wants that still (the share
                // holds it back, or it is simply satisfied).
                Some(k) if u <= k * KNOWN_SLACK + noise_sigmas * it.noise => d = k.max(d),
                // Nothing better known: it may want a whole pCPU, until a move shows.
                _ => {
                    d = 1.0;
                    s.item[i].uncertain = true;
                }
            }
        }
        s.item[i].demand = d;
        s.item[i].low = if s.item[i].uncertain { u.min(d) } else { d };
        if let Some(p) = it.pinned.or(it.last_ran) {
            s.pcpu[p].demand_here += d;
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
            w.low = 0.0;
        }
    }
}

/// The demand item `i` showed this tick, if its usage *is* its demand: it was not
/// held back by sharing its pCPU.
pub(super) fn observed(items: &[Item], s: &Scratch, i: usize) -> Option<f64> {
    let it = &items[i];
    let p = it.pinned.or(it.last_ran)?;
    let u = it.usage?;
    (!capped(s, p, u)).then_some(u)
}
