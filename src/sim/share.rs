//! The host's scheduler and hardware as the simulator models them: where each vCPU runs
//! ([`place`]), what share of its pCPU it gets ([`share`]), and how much work a core
//! delivers when its SMT threads are busy together ([`SmtModel`]). See the model in
//! [`crate::sim`]. Pure functions over the simulator's own tables; no allocation once
//! built.

use super::model::{SimDomain, pcpu_u32};
use crate::policy::TIE;
use crate::topology::Topology;

/// Work a core delivers when every one of its threads is busy, in pCPUs: two busy
/// siblings get 0.65 each of what one thread alone would do.
pub const SMT_ALL_BUSY: f64 = 1.3;

/// One running vCPU, or the host's own load on a pCPU, in the per-interval sharing pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pcpu: u32,
    demand: f64,
    /// The domain's index, or [`HOST`] for the host's own load.
    domain: u32,
    vcpu: u32,
}

/// The slot of the host's own load on a pCPU.
const HOST: u32 = u32::MAX;

/// Water-fill every pCPU among the vCPUs `placement` puts on it and the host's own load
/// there (`host`, which competes for the pCPU like one more thread), store each running
/// vCPU's share in its `usage`, what the host got in `host_got`, and each pCPU's busy
/// fraction (the sum of its shares) in `busy`. `slots` is the caller's reused buffer.
pub(super) fn share(
    domains: &mut [SimDomain],
    placement: &[u32],
    host: &[f64],
    slots: &mut Vec<Slot>,
    busy: &mut [f64],
    host_got: &mut [f64],
) {
    busy.fill(0.0);
    host_got.fill(0.0);
    slots.clear();
    for (p, &h) in host.iter().enumerate().filter(|&(_, &h)| h > 0.0) {
        slots.push(Slot {
            pcpu: pcpu_u32(p),
            demand: h,
            domain: HOST,
            vcpu: 0,
        });
    }
    let mut k = 0;
    for (di, d) in domains.iter().enumerate().filter(|(_, d)| d.running) {
        for (vi, v) in d.vcpus.iter().enumerate() {
            // Indices fit u32: domains and vCPUs are far fewer than 2^32.
            slots.push(Slot {
                pcpu: placement[k],
                demand: v.demand,
                domain: di as u32,
                vcpu: vi as u32,
            });
            k += 1;
        }
    }
    // Per pCPU, smallest demand first: each takes min(demand, fair share of what is left).
    slots.sort_unstable_by(|a, b| a.pcpu.cmp(&b.pcpu).then(a.demand.total_cmp(&b.demand)));
    for group in slots.chunk_by(|a, b| a.pcpu == b.pcpu) {
        let mut left = 1.0_f64;
        for (i, s) in group.iter().enumerate() {
            let got = s.demand.min(left / (group.len() - i) as f64).max(0.0);
            left -= got;
            busy[s.pcpu as usize] += got;
            if s.domain == HOST {
                host_got[s.pcpu as usize] = got;
            } else {
                domains[s.domain as usize].vcpus[s.vcpu as usize].usage = got;
            }
        }
    }
}

/// The SMT throughput model (see [`crate::sim`]): per core, the work its threads deliver
/// over the time they are busy, from each pCPU's busy fraction in the interval. Sized
/// for one topology when built; [`SmtModel::update`] does not allocate.
#[derive(Debug, Clone)]
pub(super) struct SmtModel {
    /// Threads of each core (1 on a flat host: every ratio is then exactly 1).
    threads: Vec<u32>,
    /// Per core, this interval: the sum and the largest of its threads' busy fractions.
    sum: Vec<f64>,
    max: Vec<f64>,
    /// Per core: work delivered / busy time of its threads, 0.65–1.
    ratio: Vec<f64>,
}

impl SmtModel {
    pub(super) fn new(topology: &Topology) -> SmtModel {
        let cores = (0..topology.pcpus())
            .map(|p| topology.place(p).core as usize + 1)
            .max()
            .unwrap_or(0);
        let mut threads = vec![0; cores];
        for p in 0..topology.pcpus() {
            threads[topology.place(p).core as usize] += 1;
        }
        SmtModel {
            threads,
            sum: vec![0.0; cores],
            max: vec![0.0; cores],
            ratio: vec![1.0; cores],
        }
    }

    /// Work ratios for an interval in which pCPU `p` was `busy[p]` busy.
    pub(super) fn update(&mut self, topology: &Topology, busy: &[f64]) {
        self.sum.fill(0.0);
        self.max.fill(0.0);
        for (p, &b) in busy.iter().enumerate() {
            let c = topology.place(p).core as usize;
            self.sum[c] += b;
            self.max[c] = self.max[c].max(b);
        }
        for (c, r) in self.ratio.iter_mut().enumerate() {
            let sum = self.sum[c];
            *r = if self.threads[c] > 1 && sum > 0.0 {
                core_work(self.threads[c], sum, self.max[c]) / sum
            } else {
                1.0
            };
        }
    }

    /// Work delivered per unit of busy time on pCPU `p` in the last interval.
    pub(super) fn ratio(&self, topology: &Topology, p: usize) -> f64 {
        self.ratio
            .get(topology.place(p).core as usize)
            .copied()
            .unwrap_or(1.0)
    }
}

/// Work a core of `threads` hardware threads delivers in an interval, in pCPUs, when its
/// threads' busy fractions add up to `sum` and the busiest is `max` busy: the busiest
/// thread's time counts in full, every other thread's at `(SMT_ALL_BUSY − 1) /
/// (threads − 1)`. See [`crate::sim`] for why.
pub(super) fn core_work(threads: u32, sum: f64, max: f64) -> f64 {
    if threads <= 1 {
        return sum;
    }
    max + (SMT_ALL_BUSY - 1.0) / f64::from(threads - 1) * (sum - max)
}

/// The placement model (see the module docs): fills `placement` with the pCPU of every
/// running vCPU in model order and `load` with the demand placed on each pCPU. The
/// host's own load (`host`) is there first: unpinned vCPUs avoid it as they avoid
/// each other.
pub(super) fn place(
    domains: &[SimDomain],
    host: &[f64],
    placement: &mut Vec<u32>,
    load: &mut [f64],
) {
    load.copy_from_slice(host);
    placement.clear();
    let running = || domains.iter().filter(|d| d.running).flat_map(|d| &d.vcpus);
    // Pinned vCPUs first: they go where they must. Others get a placeholder for now.
    for v in running() {
        match v.only.map(|p| p as usize) {
            Some(p) => {
                load[p] += v.demand;
                placement.push(pcpu_u32(p));
            }
            None => placement.push(u32::MAX),
        }
    }
    for (v, slot) in running().zip(placement.iter_mut()) {
        if *slot != u32::MAX {
            continue;
        }
        let mut best: Option<usize> = None;
        for p in v.affinity.iter() {
            best = match best {
                None => Some(p),
                Some(b) if load[p] < load[b] - TIE => Some(p),
                Some(b) if load[p] <= load[b] + TIE && pcpu_u32(p) == v.last_ran_on => Some(p),
                keep => keep,
            };
        }
        // Affinities are never empty (checked when a domain starts; pins set one pCPU).
        let p = best.unwrap_or(0);
        load[p] += v.demand;
        *slot = pcpu_u32(p);
    }
}

#[cfg(test)]
mod tests {
    use crate::cpumap::CpuMap;
    use crate::host::PcpuId;
    use crate::sim::SimHost;
    use crate::sim::test_support::{SEC, all, one, samples, usage};

    /// The formula itself: the two ends the model is pinned to, and the 2-thread case
    /// `b1 + b2 − 0.7 × min(b1, b2)` in between.
    #[test]
    fn core_work_at_the_ends_and_in_between() {
        use super::core_work;
        assert_eq!(core_work(1, 0.7, 0.7), 0.7, "no SMT: work is busy time");
        assert!((core_work(2, 2.0, 1.0) - 1.3).abs() < 1e-12, "both busy");
        assert_eq!(core_work(2, 1.0, 1.0), 1.0, "one busy alone");
        for (b1, b2) in [(1.0, 0.5), (0.3, 0.8), (0.2, 0.2), (0.0, 0.6)] {
            let want = b1 + b2 - 0.7 * f64::min(b1, b2);
            assert!((core_work(2, b1 + b2, f64::max(b1, b2)) - want).abs() < 1e-12);
        }
        // Wider cores: all threads busy is still 1.3; each extra busy thread adds 0.1
        // on a 4-thread core.
        assert!((core_work(4, 4.0, 1.0) - 1.3).abs() < 1e-12);
        assert!((core_work(4, 2.0, 1.0) - 1.1).abs() < 1e-12);
        assert!((core_work(8, 8.0, 1.0) - 1.3).abs() < 1e-12);
    }

    #[test]
    fn busy_vcpus_on_one_pcpu_share_it_evenly() {
        let mut h = SimHost::new(4);
        for name in ["a", "b", "c", "d"] {
            h.add_domain(name, &[1.0], &one(4, 0)).unwrap();
        }
        h.advance(SEC);
        for name in ["a", "b", "c", "d"] {
            assert!((usage(&h, name, 0) - 0.25).abs() < 1e-12);
        }
        for s in samples(&mut h) {
            assert_eq!(s.cpu_time_ns, SEC / 4);
            assert_eq!(s.pinned_to, Some(PcpuId(0)));
            assert_eq!(s.last_ran_on, Some(PcpuId(0)));
            assert_eq!(s.at_ns, SEC);
        }
    }

    #[test]
    fn water_filling_gives_the_small_demand_all_it_asks() {
        let mut h = SimHost::new(2);
        h.add_domain("light", &[0.3], &one(2, 1)).unwrap();
        h.add_domain("busy", &[1.0], &one(2, 1)).unwrap();
        h.add_domain("pair", &[0.2, 0.2], &one(2, 0)).unwrap();
        h.advance(SEC);
        assert!((usage(&h, "light", 0) - 0.3).abs() < 1e-12);
        assert!((usage(&h, "busy", 0) - 0.7).abs() < 1e-12);
        // Under capacity: everyone gets their demand.
        assert!((usage(&h, "pair", 0) - 0.2).abs() < 1e-12);
        assert!((usage(&h, "pair", 1) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn three_way_water_filling() {
        let mut h = SimHost::new(1);
        h.add_domain("x", &[0.1, 0.6, 0.9], &all(1)).unwrap();
        h.advance(SEC);
        // 0.1 satisfied, then 0.9 left for two: 0.45 each.
        assert!((usage(&h, "x", 0) - 0.1).abs() < 1e-12);
        assert!((usage(&h, "x", 1) - 0.45).abs() < 1e-12);
        assert!((usage(&h, "x", 2) - 0.45).abs() < 1e-12);
    }

    #[test]
    fn unpinned_vcpus_go_to_the_least_demanded_allowed_pcpu_in_start_order() {
        let mut h = SimHost::new(4);
        h.add_domain("pinned", &[0.9], &one(4, 0)).unwrap();
        h.add_domain("free", &[0.5, 0.5, 0.5, 0.2], &all(4))
            .unwrap();
        let mut two = CpuMap::new(4);
        two.set(0).unwrap();
        two.set(3).unwrap();
        h.add_domain("narrow", &[0.1], &two).unwrap();
        h.advance(SEC);
        let ran = |h: &SimHost, n: &str, v: usize| h.vcpu(n, v).unwrap().ran_on.0;
        // 0 holds 0.9; free/0 → 1 (tie 1,2,3: lowest), free/1 → 2, free/2 → 3,
        // free/3 (0.2) → 1 (0.5, 0.5, 0.5 tie: lowest); narrow may use 0 or 3: 3 (0.5 < 0.9).
        assert_eq!(ran(&h, "free", 0), 1);
        assert_eq!(ran(&h, "free", 1), 2);
        assert_eq!(ran(&h, "free", 2), 3);
        assert_eq!(ran(&h, "free", 3), 1);
        assert_eq!(ran(&h, "narrow", 0), 3);
        let (busiest, bound) = h.demand_placement_stats();
        assert!((busiest - 0.9).abs() < 1e-12);
        assert!((bound - 0.9).abs() < 1e-12, "max(0.9, 2.7/4)");
        // Unpinned vCPUs are not reported as pinned, yet say where they ran.
        let s = samples(&mut h);
        assert_eq!(s[1].pinned_to, None);
        assert_eq!(s[1].last_ran_on, Some(PcpuId(1)));
    }

    #[test]
    fn placement_is_steady_and_prefers_where_it_ran() {
        let mut h = SimHost::new(2);
        h.add_domain("a", &[0.5], &all(2)).unwrap();
        h.advance(SEC);
        assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(0));
        // Now b, pinned to 0, makes 1 the least loaded for a.
        h.add_domain("b", &[0.5], &one(2, 0)).unwrap();
        h.advance(SEC);
        assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(1));
        // b's demand falls to 0: a tie between 0 and 1, and a stays where it ran.
        h.set_demands("b", &[0.0]).unwrap();
        for _ in 0..3 {
            h.advance(SEC);
            assert_eq!(h.vcpu("a", 0).unwrap().ran_on, PcpuId(1));
        }
    }
}
