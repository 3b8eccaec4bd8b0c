//! The state the search changes: per pCPU its planning load and the movable vCPUs
//! planned there (a list kept sorted by demand where the search needs it), per core the
//! load of its threads, per vCPU where it is planned and what moving it costs; and
//! placements put aside while another is tried. What a placement costs is `cost.rs`.

use std::ops::Range;

use super::heap::Heap;
use super::types::{Item, Params, Pcpu, Why};

/// No item (end of a pCPU's list).
pub(super) const NONE: usize = usize::MAX;

/// Per pCPU, the analysis's working figures.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PcpuWork {
    /// Measured load: the usage of the vCPUs on it plus the host's load (reported).
    pub measured: f64,
    /// Planning demand here before any move (reported).
    pub demand_here: f64,
    /// Planning load `L`: fixed load plus the demand of the items planned here.
    pub load: f64,
    /// Highest usage of a vCPU running there, and how many run there (for the
    /// saturation test; unpinned vCPUs count where they last ran).
    pub top: f64,
    pub sharing: u32,
    /// How many of them get (nearly) the top share ([`demand`]'s `CAPPED_SHARE`).
    pub at_top: u32,
    /// The fraction that was busy, by vCPUs or anything else on the host (negative
    /// until `demand::measure_loads` where the host did not report it).
    pub busy: f64,
    /// The host's own load (part of `load`, never moved).
    pub host: f64,
    pub allowed: bool,
    pub node: u16,
    pub core: u32,
    /// Movable items planned here: a list through [`ItemWork::next`] from `head` to
    /// `tail`, its length, and whether it is sorted by demand, largest first (only the
    /// pCPUs the search works on need it: see [`Scratch::sort`]).
    pub head: usize,
    pub tail: usize,
    pub count: u32,
    pub sorted: bool,
    /// The search found no move off it since the last change.
    pub stuck: bool,
}

/// Per item, the analysis's working figures.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ItemWork {
    /// The demand the policy plans with, whether it is only a guess, and the least it
    /// may want (what it gets now, for a guess; else its demand).
    pub demand: f64,
    pub uncertain: bool,
    pub low: f64,
    /// May the plan place it? Managed and measured (or just started).
    pub movable: bool,
    /// Where it is planned (`None` = nowhere yet), and where it is pinned now if it
    /// may stay there (staying costs nothing; `None`: it must be pinned anyway).
    pub at: Option<usize>,
    pub orig: Option<usize>,
    /// What moving it away from `orig` costs, pCPU².
    pub price: f64,
    /// Its domain's home nodes (and as the plan began), and whether they are its
    /// memory's (fixed).
    pub home: u64,
    pub home0: u64,
    pub bound: bool,
    /// The run of items of its domain (`first..first + len`).
    pub first: usize,
    pub len: usize,
    /// Links in its pCPU's list.
    pub next: usize,
    pub prev: usize,
    /// Why it is being placed when it must be ([`Why::New`], [`Why::Outside`]), or
    /// `seed`'s move ([`Why::Busiest`]); `None` otherwise.
    pub why: Option<Why>,
}

/// Buffers the analysis reuses; sized once per host shape (they grow only when the
/// host or its domains grow).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    pub(super) pcpu: Vec<PcpuWork>,
    /// `K`: planning load of each core (the sum over its threads).
    pub(super) core: Vec<f64>,
    pub(super) item: Vec<ItemWork>,
    /// Item or pCPU indices, for sorting.
    pub(super) order: Vec<usize>,
    pub(super) buf: Vec<usize>,
    /// Placements put aside (`at` and home of every item) while another is tried: the
    /// local search's result, and the best tried since.
    pub(super) saved: [Vec<(Option<usize>, u64)>; 2],
    /// A domain's placement before a trial move to another node.
    pub(super) trial: Vec<Option<usize>>,
    /// Per-pCPU or per-node scratch (the noise of each pCPU's load; each node's load
    /// and pCPUs).
    pub(super) fill: Vec<f64>,
    /// pCPUs by core: core `c`'s threads are `threads[thread_at[c]..thread_at[c + 1]]`.
    pub(super) threads: Vec<usize>,
    pub(super) thread_at: Vec<usize>,
    /// Per node, the search's cheapest destinations (two by slope, two by load;
    /// `usize::MAX` for none), and the lowest slope of all.
    pub(super) dest: Vec<[usize; 4]>,
    pub(super) dest_min: f64,
    /// The search's heaps: pCPUs to take load off, steepest first (by minus their
    /// slope; only those with movable items not searched in vain); per node, allowed
    /// pCPUs by slope and by load, lowest first.
    pub(super) steep: Heap,
    /// The heaps of the pool being placed largest first (`repack.rs`): by slope, by load.
    pub(super) pool: [Heap; 2],
    pub(super) cheap: Vec<Heap>,
    pub(super) light: Vec<Heap>,
    /// A digest of the plan as it stood when a placement from scratch last lost to it
    /// (kept from tick to tick, 0 for none): the same inputs give the same placement,
    /// which would lose again, so it is not built twice.
    pub(super) lost_to: u64,
    /// Number of NUMA nodes; whether some core has several threads (SMT).
    pub(super) nodes: usize,
    pub(super) shared_cores: bool,
}

impl Scratch {
    /// Size the buffers for this host and these items, and set the fixed part of every
    /// pCPU's figures. Loads are filled by `demand::estimate`.
    pub(super) fn reset(&mut self, pcpus: &[Pcpu], items: &[Item]) {
        self.pcpu.clear();
        self.pcpu.extend(pcpus.iter().map(|p| PcpuWork {
            busy: p.busy.unwrap_or(-1.0),
            host: p.host.max(0.0),
            allowed: p.allowed,
            node: p.node,
            core: p.core,
            head: NONE,
            tail: NONE,
            sorted: true,
            ..PcpuWork::default()
        }));
        let cores = pcpus.iter().map(|p| p.core as usize + 1).max().unwrap_or(0);
        self.core.clear();
        self.core.resize(cores, 0.0);
        self.shared_cores = cores < pcpus.len();
        self.thread_at.clear();
        self.thread_at.resize(cores + 1, 0);
        for p in pcpus {
            self.thread_at[p.core as usize + 1] += 1;
        }
        for c in 0..cores {
            self.thread_at[c + 1] += self.thread_at[c];
        }
        self.threads.clear();
        self.threads.extend(0..pcpus.len());
        self.threads.sort_unstable_by_key(|&p| (pcpus[p].core, p));
        self.nodes = pcpus.iter().map(|p| p.node as usize + 1).max().unwrap_or(1);
        // Every buffer at its largest size for this host, now: none may grow in a tick.
        let (n, m) = (items.len(), pcpus.len());
        for v in [&mut self.order, &mut self.buf] {
            v.reserve(n.max(m + 1).saturating_sub(v.len()));
        }
        for v in self.saved.iter_mut() {
            v.reserve(n.saturating_sub(v.len()));
        }
        self.trial.reserve(n.saturating_sub(self.trial.len()));
        let fill = (m + cores).max(2 * self.nodes);
        self.fill.reserve(fill.saturating_sub(self.fill.len()));
        self.dest
            .reserve(self.nodes.saturating_sub(self.dest.len()));
        self.item.clear();
        self.item.resize(
            items.len(),
            ItemWork {
                next: NONE,
                prev: NONE,
                ..ItemWork::default()
            },
        );
        // The vCPUs of one domain come together: each item knows its domain's run.
        let mut first = 0;
        for run in items.chunk_by(|a, b| a.group == b.group) {
            for w in &mut self.item[first..first + run.len()] {
                (w.first, w.len) = (first, run.len());
            }
            first += run.len();
        }
    }

    /// The items of item `i`'s domain.
    pub(super) fn domain(&self, i: usize) -> Range<usize> {
        let w = &self.item[i];
        w.first..w.first + w.len
    }

    /// The price of moving item `i` away from where it is pinned, from its history and
    /// the noise of the loads there (see [`Params`]). `noise2` is, per pCPU, the sum of
    /// the squared noise of the items on it.
    pub(super) fn set_price(&mut self, i: usize, it: &Item, params: &Params, noise2: f64) {
        let recent = it.moved_ago.map_or(0, |k| {
            params.recent_ticks.saturating_sub(k.saturating_sub(1))
        });
        let guess = if self.item[i].uncertain {
            params.guess_prices
        } else {
            1.0
        };
        // The gap between its pCPU and another is read with the noise of both: twice
        // that of its own, as far as it knows.
        let margin = params.noise_sigmas * (2.0 * noise2).sqrt();
        let own = params.price + 2.0 * self.item[i].demand * margin;
        self.item[i].price = own * (1.0 + recent as f64) * guess;
    }

    /// Add `d` of demand to pCPU `p` (and its core), without placing an item.
    pub(super) fn add_load(&mut self, p: usize, d: f64) {
        self.pcpu[p].load += d;
        if let Some(k) = self.core.get_mut(self.pcpu[p].core as usize) {
            *k += d;
        }
    }

    /// Plan item `i` (placed nowhere) on pCPU `p`: at the end of its list where that
    /// keeps it sorted (arrivals largest first, as placements make them), at the head
    /// where that does, else at the end, and the list is no longer sorted.
    pub(super) fn put(&mut self, i: usize, p: usize) {
        let d = self.item[i].demand;
        self.add_load(p, d);
        let (head, tail) = (self.pcpu[p].head, self.pcpu[p].tail);
        if tail == NONE || self.item[tail].demand >= d {
            self.link(i, p, tail);
        } else if self.item[head].demand <= d {
            self.link(i, p, NONE);
        } else {
            self.pcpu[p].sorted = false;
            self.link(i, p, tail);
        }
    }

    /// Link item `i` into `p`'s list after `after` (`NONE`: at the head).
    fn link(&mut self, i: usize, p: usize, after: usize) {
        let before = if after == NONE {
            self.pcpu[p].head
        } else {
            self.item[after].next
        };
        let w = &mut self.item[i];
        (w.at, w.prev, w.next) = (Some(p), after, before);
        if after == NONE {
            self.pcpu[p].head = i;
        } else {
            self.item[after].next = i;
        }
        if before == NONE {
            self.pcpu[p].tail = i;
        } else {
            self.item[before].prev = i;
        }
        self.pcpu[p].count += 1;
    }

    /// Sort `p`'s list by demand, largest first, if it is not.
    pub(super) fn sort(&mut self, p: usize) {
        if self.pcpu[p].sorted {
            return;
        }
        let mut list = std::mem::take(&mut self.buf);
        list.clear();
        let mut i = self.pcpu[p].head;
        while i != NONE {
            list.push(i);
            i = self.item[i].next;
        }
        let w = &self.item;
        list.sort_unstable_by(|&a, &b| w[b].demand.total_cmp(&w[a].demand).then(a.cmp(&b)));
        let (mut prev, n) = (NONE, list.len());
        for (k, &i) in list.iter().enumerate() {
            self.item[i].prev = prev;
            self.item[i].next = if k + 1 < n { list[k + 1] } else { NONE };
            prev = i;
        }
        self.pcpu[p].head = list.first().copied().unwrap_or(NONE);
        self.pcpu[p].tail = prev;
        self.pcpu[p].sorted = true;
        self.buf = list;
    }

    /// Take item `i` off its planned pCPU, if it has one.
    pub(super) fn take(&mut self, i: usize) {
        let Some(p) = self.item[i].at.take() else {
            return;
        };
        let (d, next, prev) = (self.item[i].demand, self.item[i].next, self.item[i].prev);
        self.add_load(p, -d);
        if prev == NONE {
            self.pcpu[p].head = next;
        } else {
            self.item[prev].next = next;
        }
        if next == NONE {
            self.pcpu[p].tail = prev;
        } else {
            self.item[next].prev = prev;
        }
        self.pcpu[p].count -= 1;
    }

    /// Move item `i` to `to`.
    pub(super) fn shift(&mut self, i: usize, to: usize) {
        self.take(i);
        self.put(i, to);
    }

    /// The items planned on `p` (sorted: see [`Scratch::sort`]) on either side of
    /// demand `x`: the smallest at least as
    /// large and the largest smaller (`NONE` where there is none). O(1) when `x` is
    /// past either end (moves are large at first), else walked from the end whose
    /// demand is nearer `x`.
    pub(super) fn around(&self, p: usize, x: f64) -> [usize; 2] {
        let (head, tail) = (self.pcpu[p].head, self.pcpu[p].tail);
        if head == NONE || self.item[head].demand < x {
            return [NONE, head];
        }
        if self.item[tail].demand >= x {
            return [tail, NONE];
        }
        // Walk from the end whose demand is nearer `x`.
        if self.item[head].demand - x < x - self.item[tail].demand {
            let mut above = head;
            while self.item[above].next != NONE && self.item[self.item[above].next].demand >= x {
                above = self.item[above].next;
            }
            return [above, self.item[above].next];
        }
        let mut below = tail;
        while self.item[below].prev != NONE && self.item[self.item[below].prev].demand < x {
            below = self.item[below].prev;
        }
        [self.item[below].prev, below]
    }

    /// The movable items planned on `p`, largest demand first.
    pub(super) fn on(&self, p: usize) -> impl Iterator<Item = usize> + '_ {
        let mut i = self.pcpu[p].head;
        std::iter::from_fn(move || {
            let here = i;
            (here != NONE).then(|| {
                i = self.item[here].next;
                here
            })
        })
    }

    /// Where core `c`'s threads are in [`Scratch::threads`].
    pub(super) fn core_threads(&self, c: u32) -> (usize, usize) {
        let c = c as usize;
        (self.thread_at[c], self.thread_at[c + 1])
    }

    pub(super) fn core_load(&self, p: usize) -> f64 {
        self.core
            .get(self.pcpu[p].core as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// A digest (FNV-1a) of everything the placement from scratch depends on: each
    /// item's demand, price, home and where it is and is pinned, each pCPU's load.
    pub(super) fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
        };
        eat(self.item.len() as u64);
        for w in self.item.iter().filter(|w| w.movable) {
            eat(w.demand.to_bits());
            eat(w.price.to_bits());
            eat(w.home);
            eat(w.at.map_or(u64::MAX, |p| p as u64));
            eat(w.orig.map_or(u64::MAX, |p| p as u64));
        }
        for w in &self.pcpu {
            eat(w.load.to_bits());
            eat(u64::from(w.allowed));
        }
        h | 1
    }

    /// Keep the planned placement aside (in slot `k`), or put it back.
    pub(super) fn save(&mut self, k: usize) {
        self.saved[k].clear();
        self.saved[k].extend(self.item.iter().map(|w| (w.at, w.home)));
    }

    pub(super) fn restore(&mut self, k: usize) {
        for i in 0..self.item.len() {
            let (at, home) = self.saved[k][i];
            self.item[i].home = home;
            if self.item[i].movable && self.item[i].at != at {
                self.take(i);
                if let Some(p) = at {
                    self.put(i, p);
                }
            }
        }
    }
}
