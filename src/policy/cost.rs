//! The cost of a placement (the state it is read from is `state.rs`).
//!
//! The cost, in pCPU² (a pCPU's demand squared: the unit of its first term):
//!
//! ```text
//! cost = (1 − s) × Σ_pcpu L²  +  s × Σ_core K²       load, per thread and per core
//!      + OVERLOAD × (1 + s) × Σ_pcpu max(0, L − 1)     demand no pCPU can serve
//!      + REMOTE × (1 + s) × Σ_vcpu d × [off home]     NUMA
//!      + price × Σ_vcpu [moved] × its price factor     migrations (see Params)
//! ```
//!
//! `L` is a pCPU's demand: its vCPUs', plus the host's own load and what nothing may
//! move (domains left alone); `K` the sum over a core's threads, `d` one vCPU's demand.
//! On a host without SMT a core is one pCPU and `s` is 0: the load term is Σ L², which
//! for a fixed total is the pCPUs' variance, the very σ the verdict reads. With SMT,
//! `s` = [`SMT_SHARED`] moves part of the weight to the cores: `K² = Σ L² + 2 Σ L_i L_j`,
//! so what two threads of one core carry together costs `2 s L_i L_j` more than the same
//! load on two cores, and two busy vCPUs share a core only where that is cheaper than
//! any free thread pair, off their node included (where the NUMA term prices it).

use super::state::Scratch;
use super::types::{TIE, Why};

/// Of two busy sibling threads, the share of one thread's work that is lost: a core
/// whose threads are all busy delivers 1.3 threads' work, not 2 (the simulator's
/// model; Intel's figure for Hyper-Threading), so 0.7 of a thread is lost where a
/// second busy pCPU would lose nothing. Two busy vCPUs on one pCPU cost 2 more than
/// apart (and lose a whole pCPU); on sibling threads `2 × 0.7` more.
pub const SMT_SHARED: f64 = 0.7;

/// The NUMA term, pCPU² per pCPU of demand away from its home node, on a host without
/// SMT: 2, what that demand can at most save in the load term while its pCPU is not
/// over capacity (adding `d` to a pCPU at `L` costs `2 L d`, at most `2 d` up to
/// `L = 1`). With SMT it is `2 (1 + s)` ([`Scratch::remote`]): at a full core of two
/// threads the load term's slope is `(1 − s) 2 L + s 2 K = 2 + 2 s`. So a vCPU never
/// leaves its memory for balance alone, not even to a freer core, only to escape a pCPU
/// over capacity. (Priced at 2 on SMT hosts too, the bench's random topologies ended
/// with vCPUs off their node to relieve a full core on 14 hosts of the 720 where a
/// placement had no vCPU remote and no SMT conflict: README, *Topology*.) A domain
/// whose memory is not bound pays it only for vCPUs away from the rest: moved whole,
/// its home (and, by the kernel's NUMA balancing, its memory) goes with it; a bound
/// one pays for each vCPU away from its memory wherever the domain goes.
pub const REMOTE: f64 = 2.0;

/// The least demand the NUMA term counts a vCPU at: 0.01 of a pCPU. An idle vCPU away
/// from its domain's node costs nothing now, but it will run again, there.
const REMOTE_LEAST: f64 = 0.01;

/// Demand beyond a pCPU's capacity is work lost: pCPU² per pCPU of it, on top of the
/// squares. 2 on a host without SMT, `2 (1 + s)` with it ([`Scratch::overload`]): the
/// marginal load cost at a full pCPU (of a full core), so demand that cannot be served
/// costs twice what it costs to fill the pCPU, and escaping an overloaded pCPU pays
/// for going remote, at the same scale as [`REMOTE`] (four busy vCPUs on a node of two
/// pCPUs move two away).
pub const OVERLOAD: f64 = 2.0;

/// The shape of a term's change, for the log: load, SMT and NUMA parts of a delta.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Terms {
    pub load: f64,
    pub smt: f64,
    pub numa: f64,
}

impl Terms {
    pub fn total(&self) -> f64 {
        self.load + self.smt + self.numa
    }

    /// The term that fell the most, and by how much (`Why::Load` on a tie or a rise).
    pub fn lowered(&self) -> (Why, f64) {
        let mut best = (Why::Load, -self.load);
        for (w, x) in [(Why::Smt, -self.smt), (Why::Numa, -self.numa)] {
            if x > best.1 + TIE {
                best = (w, x);
            }
        }
        best
    }
}

fn over(l: f64) -> f64 {
    (l - 1.0).max(0.0)
}

impl Scratch {
    /// Weight of the per-core term: [`SMT_SHARED`] on a host with SMT, else 0.
    pub(super) fn smt(&self) -> f64 {
        if self.shared_cores { SMT_SHARED } else { 0.0 }
    }

    /// The overload and NUMA weights on this host: [`OVERLOAD`] and [`REMOTE`] scaled
    /// by `1 + s`, the load term's steepest slope below capacity over a flat host's.
    pub(super) fn overload(&self) -> f64 {
        OVERLOAD * (1.0 + self.smt())
    }

    pub(super) fn remote(&self) -> f64 {
        REMOTE * (1.0 + self.smt())
    }

    /// Slope of the load cost at `p`: adding a little `x` costs about `2x` times this.
    pub(super) fn slope(&self, p: usize) -> f64 {
        let w = &self.pcpu[p];
        if !self.shared_cores {
            return w.load;
        }
        (1.0 - SMT_SHARED) * w.load + SMT_SHARED * self.core_load(p)
    }

    /// Change of the load and SMT terms when `d` of demand goes from `p` to `q` (a
    /// negative `d` goes the other way); `p` may be `None` (placed from nowhere).
    pub(super) fn shift_terms(&self, p: Option<usize>, q: usize, d: f64) -> Terms {
        let (a, b) = (1.0 - self.smt(), self.smt());
        let sq = |l: f64, x: f64| (l + x) * (l + x) - l * l;
        let lq = self.pcpu[q].load;
        let mut load = a * sq(lq, d) + self.overload() * (over(lq + d) - over(lq));
        let mut smt = 0.0;
        let same_core = p.is_some_and(|p| self.pcpu[p].core == self.pcpu[q].core);
        if !same_core && b > 0.0 {
            smt += b * sq(self.core_load(q), d);
        }
        if let Some(p) = p {
            let lp = self.pcpu[p].load;
            load += a * sq(lp, -d) + self.overload() * (over(lp - d) - over(lp));
            if !same_core && b > 0.0 {
                smt += b * sq(self.core_load(p), -d);
            }
        }
        // The part of the per-core term a flat host would also pay is load, not SMT.
        let flat = b * (sq(lq, d) + p.map_or(0.0, |p| sq(self.pcpu[p].load, -d)));
        Terms {
            load: load + flat,
            smt: smt - flat,
            numa: 0.0,
        }
    }

    /// NUMA cost of item `i` planned on a pCPU of node `n`.
    pub(super) fn numa(&self, i: usize, n: u16) -> f64 {
        let w = &self.item[i];
        // A lone vCPU of an unbound domain is its domain: its home goes where it goes.
        let free = !w.bound && w.len == 1;
        if free || w.home == 0 || (n as usize) >= 64 || w.home & (1 << n) != 0 {
            0.0
        } else {
            self.remote() * w.demand.max(REMOTE_LEAST)
        }
    }

    /// Price of item `i` being planned on `p` rather than where it is pinned.
    pub(super) fn price_at(&self, i: usize, p: usize) -> f64 {
        let w = &self.item[i];
        match w.orig {
            Some(o) if o != p => w.price,
            _ => 0.0,
        }
    }

    /// Full change of the cost when item `i` moves from where it is planned to `q`.
    pub(super) fn move_terms(&self, i: usize, q: usize) -> (Terms, f64) {
        let w = &self.item[i];
        let mut t = self.shift_terms(w.at, q, w.demand);
        let from_node = w.at.map(|p| self.pcpu[p].node);
        t.numa = self.numa(i, self.pcpu[q].node) - from_node.map_or(0.0, |n| self.numa(i, n));
        let mut price = self.price_at(i, q) - w.at.map_or(0.0, |p| self.price_at(i, p));
        if w.uncertain && w.at.is_some() && !self.room(i, q) {
            price = f64::INFINITY;
        }
        (t, price)
    }

    /// May item `i`, whose demand is a guess (it may want a whole pCPU, or only what it
    /// gets), go to `q`? Only where it gets more than now whatever it wants: `q`'s free
    /// capacity covers what it gets now, or a fair share of `q` is more than that.
    /// (Two vCPUs of 50 % filling a pCPU are not sent onto one at 90 %; a busy vCPU
    /// squeezed to a third goes where it would get half.)
    fn room(&self, i: usize, q: usize) -> bool {
        let (w, d) = (&self.item[i], &self.pcpu[q]);
        1.0 - d.load >= w.low || 1.0 / f64::from(d.count + 1) > w.low
    }

    /// Full change of the cost when item `i` (on `p`) and item `j` (on `q`) exchange
    /// places. vCPUs whose demand is a guess are not exchanged: what the other gains
    /// is only as sure as the guess.
    pub(super) fn swap_terms(&self, i: usize, j: usize) -> (Terms, f64) {
        let (Some(p), Some(q)) = (self.item[i].at, self.item[j].at) else {
            return (Terms::default(), f64::INFINITY);
        };
        let (a, b) = (&self.item[i], &self.item[j]);
        if a.uncertain || b.uncertain {
            return (Terms::default(), f64::INFINITY);
        }
        let mut t = self.shift_terms(Some(p), q, a.demand - b.demand);
        let (np, nq) = (self.pcpu[p].node, self.pcpu[q].node);
        t.numa = self.numa(i, nq) - self.numa(i, np) + self.numa(j, np) - self.numa(j, nq);
        let price =
            self.price_at(i, q) - self.price_at(i, p) + self.price_at(j, p) - self.price_at(j, q);
        (t, price)
    }

    /// The whole cost of the plan as it stands (migrations included).
    pub(super) fn total(&self) -> f64 {
        let (a, b) = (1.0 - self.smt(), self.smt());
        let mut c: f64 = self
            .pcpu
            .iter()
            .map(|w| a * w.load * w.load + self.overload() * over(w.load))
            .sum();
        c += b * self.core.iter().map(|k| k * k).sum::<f64>();
        for (i, w) in self.item.iter().enumerate() {
            if let Some(p) = w.at.filter(|_| w.movable) {
                c += self.numa(i, self.pcpu[p].node) + self.price_at(i, p);
            }
        }
        c
    }
}
