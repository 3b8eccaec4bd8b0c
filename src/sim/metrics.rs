//! What the simulator judges a placement by, for tests and reports: the bound (over the
//! host and within each node), vCPUs away from their domain's memory, SMT siblings
//! doubled up while a core idles, and the work delivered. None of it reaches the
//! scheduler. Each measure of a placement reads the one the next interval will use
//! (what the last pins made, as [`SimHost::demand_placement_stats`] always has); the work
//! figure sums the intervals run so far. They allocate when pins changed since the last
//! interval: meant for reports, not for the tick path.

use std::borrow::Cow;

use super::host::SimHost;
use super::model::SimVcpu;
use super::share::place;
use crate::policy::{BUSY, bound};

impl SimHost {
    /// `(busiest, bound)`: the largest sum of demands placed on one pCPU by the placement
    /// the next interval will use, and the least any placement could achieve,
    /// `max(largest vCPU demand, total demand / pCPUs)`. Both are 0 when nothing demands
    /// anything.
    pub fn demand_placement_stats(&self) -> (f64, f64) {
        let (_, load) = self.next_placement();
        let busiest = load.iter().copied().fold(0.0, f64::max);
        let (mut total, mut largest) = (0.0, 0.0_f64);
        for v in self.running() {
            total += v.demand;
            largest = largest.max(v.demand);
        }
        // The host's own load stays where it is: the largest vCPU lands at best beside
        // the least of it, and no placement empties the busiest host pCPU.
        let (least, most) = self
            .host_load
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(l, m), &h| (l.min(h), m.max(h)));
        total += self.host_load.iter().sum::<f64>();
        let largest = (largest + least.min(1.0)).max(most);
        (busiest, bound(largest, total, self.pcpus))
    }

    /// `busiest / bound` from [`SimHost::demand_placement_stats`]: 1.0 is a placement no
    /// other beats; 1.0 too when nothing demands anything.
    pub fn max_over_bound(&self) -> f64 {
        let (busiest, bound) = self.demand_placement_stats();
        if bound > 0.0 { busiest / bound } else { 1.0 }
    }

    /// [`SimHost::max_over_bound`] taken within each NUMA node, the worst node's: for
    /// each node, its busiest pCPU's demand over `max(largest demand of a vCPU placed in
    /// the node, the node's demand / its pCPUs)`. It asks whether each node is balanced
    /// for what it holds, not whether the nodes hold the right vCPUs (see
    /// [`SimHost::remote_vcpus`] for that). With one node, equal to
    /// [`SimHost::max_over_bound`].
    pub fn max_over_bound_within_nodes(&self) -> f64 {
        let (placement, load) = self.next_placement();
        let nodes = self.topology.nodes();
        // Per node: busiest pCPU, pCPUs, total demand, largest vCPU.
        let mut busiest = vec![0.0_f64; nodes];
        let mut pcpus = vec![0usize; nodes];
        for (p, &l) in load.iter().enumerate() {
            let n = self.node_of(p);
            busiest[n] = busiest[n].max(l);
            pcpus[n] += 1;
        }
        let mut total = vec![0.0; nodes];
        let mut largest = vec![0.0_f64; nodes];
        for (p, &h) in self.host_load.iter().enumerate() {
            total[self.node_of(p)] += h;
        }
        for (v, &p) in self.running().zip(placement.iter()) {
            let n = self.node_of(p as usize);
            total[n] += v.demand;
            largest[n] = largest[n].max(v.demand);
        }
        (0..nodes)
            .map(|n| {
                let bound = bound(largest[n], total[n], pcpus[n]);
                if bound > 0.0 { busiest[n] / bound } else { 1.0 }
            })
            .fold(1.0, f64::max)
    }

    /// vCPUs placed off their domain's home node. Home is the node holding the domain's
    /// memory when it is bound (`mem`); otherwise the node holding most of its vCPUs
    /// (ties: the lowest), so a domain split across nodes counts its minority. 0 on a
    /// host of one node.
    pub fn remote_vcpus(&self) -> u64 {
        let (placement, _) = self.next_placement();
        let mut count = vec![0u64; self.topology.nodes()];
        let mut placed = placement.iter();
        let mut remote = 0;
        for d in self.domains.iter().filter(|d| d.running) {
            count.fill(0);
            for &p in placed.by_ref().take(d.vcpus.len()) {
                count[self.node_of(p as usize)] += 1;
            }
            let home = match d.mem_node {
                Some(n) => usize::from(n),
                // max_by_key keeps the last of equals: scan from the highest node down.
                None => (0..count.len())
                    .rev()
                    .max_by_key(|&n| count[n])
                    .unwrap_or(0),
            };
            remote += d.vcpus.len() as u64 - count.get(home).copied().unwrap_or(0);
        }
        remote
    }

    /// SMT cores doubled up while a core idles: cores of two or more threads on which at
    /// least two vCPUs demanding [`BUSY`] or more are placed, while another core
    /// of the same node has no such vCPU. Each such core counts once. A host without
    /// SMT has none (two busy vCPUs on one pCPU there are the bound's business).
    pub fn smt_conflicts(&self) -> u64 {
        let (placement, _) = self.next_placement();
        let cores = self.topology.cores();
        let mut busy = vec![0u32; cores];
        for (v, &p) in self.running().zip(placement.iter()) {
            if v.demand >= BUSY {
                busy[self.core_of(p as usize)] += 1;
            }
        }
        let mut threads = vec![0u32; cores];
        let mut node = vec![0usize; cores];
        let mut node_has_idle_core = vec![false; self.topology.nodes()];
        for p in 0..self.pcpus {
            let c = self.core_of(p);
            threads[c] += 1;
            node[c] = self.node_of(p);
            if busy[c] == 0 {
                node_has_idle_core[node[c]] = true;
            }
        }
        (0..cores)
            .filter(|&c| threads[c] >= 2 && busy[c] >= 2 && node_has_idle_core[node[c]])
            .count() as u64
    }

    /// Work delivered over work wanted, summed over every interval run so far, in
    /// percent: 100 when nothing wanted anything. Below 100 when vCPUs share a pCPU
    /// (they get less than they demand) or sibling threads are busy together (what
    /// they get delivers less work).
    pub fn work_pct(&self) -> f64 {
        if self.demand_ns > 0.0 {
            100.0 * self.work_ns / self.demand_ns
        } else {
            100.0
        }
    }

    /// A reference for [`SimHost::max_over_bound_within_nodes`]: keep each vCPU in the
    /// node the final placement put it in, and place each node's vCPUs again from
    /// scratch, largest first onto the least loaded of the node's pCPUs; the worst
    /// node's busiest over its bound. What a good placement within the nodes reaches
    /// for this split of the vCPUs between nodes (not always the best one).
    pub fn largest_first_within_nodes(&self) -> f64 {
        let (placement, _) = self.next_placement();
        let nodes = self.topology.nodes();
        let mut worst = 1.0_f64;
        for n in 0..nodes {
            let pcpus = (0..self.pcpus).filter(|&p| self.node_of(p) == n).count();
            let mut demands: Vec<f64> = self
                .running()
                .zip(placement.iter())
                .filter(|&(_, &p)| self.node_of(p as usize) == n)
                .map(|(v, _)| v.demand)
                .collect();
            if pcpus == 0 || demands.is_empty() {
                continue;
            }
            demands.sort_by(|a, b| b.total_cmp(a));
            let mut load = vec![0.0_f64; pcpus];
            for d in &demands {
                let least = (0..pcpus)
                    .min_by(|&a, &b| load[a].total_cmp(&load[b]))
                    .unwrap_or(0);
                load[least] += d;
            }
            let total: f64 = demands.iter().sum();
            let bound = bound(demands[0], total, pcpus);
            let busiest = load.iter().copied().fold(0.0, f64::max);
            if bound > 0.0 {
                worst = worst.max(busiest / bound);
            }
        }
        worst
    }

    /// The placement the next interval will use and the demand it puts on each pCPU:
    /// the stored one, or computed afresh when pins or demands changed since.
    fn next_placement(&self) -> (Cow<'_, [u32]>, Cow<'_, [f64]>) {
        if !self.placement_stale {
            return (
                Cow::Borrowed(&self.placement[..]),
                Cow::Borrowed(&self.placed_demand[..]),
            );
        }
        let mut placement = Vec::with_capacity(self.placement.capacity());
        let mut load = vec![0.0; self.pcpus];
        place(&self.domains, &self.host_load, &mut placement, &mut load);
        (Cow::Owned(placement), Cow::Owned(load))
    }

    /// Running vCPUs in the placement's order.
    fn running(&self) -> impl Iterator<Item = &SimVcpu> {
        self.domains
            .iter()
            .filter(|d| d.running)
            .flat_map(|d| &d.vcpus)
    }

    fn node_of(&self, p: usize) -> usize {
        usize::from(self.topology.place(p).node).min(self.topology.nodes() - 1)
    }

    fn core_of(&self, p: usize) -> usize {
        (self.topology.place(p).core as usize).min(self.topology.cores().saturating_sub(1))
    }
}
