//! Random scenarios, for the bench and for tests that want many hosts: drawn from a
//! [`SplitMix64`], so a seed gives the same scenarios on every run.

use super::{DomainSpec, Scenario, Shape};
use crate::cpumap::CpuMap;
use crate::sim::SplitMix64;

/// A flat host of 2–64 pCPUs with the domains of [`domains`], 30 ticks, no noise,
/// demand measured; `seed` seeds its run.
pub fn flat(rng: &mut SplitMix64, seed: u64) -> Scenario {
    let pcpus = rng.range(2, 64) as usize;
    Scenario {
        pcpus,
        topology: None,
        ticks: 30,
        noise_pct: 0.0,
        seed,
        reports_delay: true,
        domains: domains(rng, pcpus),
        host: Vec::new(),
        events: Vec::new(),
    }
}

/// Domains of 1–8 vCPUs until the host has between half and twice as many vCPUs as
/// pCPUs, demands uniform in 0–100 %, each domain free, pinned to one random pCPU, or
/// to a random range; memory bound to no node.
pub fn domains(rng: &mut SplitMix64, pcpus: usize) -> Vec<DomainSpec> {
    let want_vcpus = rng.range(pcpus as u64 / 2, 2 * pcpus as u64).max(1) as usize;
    let mut domains = Vec::new();
    let mut vcpus = 0;
    while vcpus < want_vcpus {
        let count = (rng.range(1, 8) as usize).min(want_vcpus - vcpus);
        let demands_pct = (0..count).map(|_| rng.range(0, 100) as f64).collect();
        let mut affinity = CpuMap::new(pcpus);
        let last = pcpus as u64 - 1;
        let (lo, hi) = match rng.range(0, 2) {
            0 => (0, last),
            1 => {
                let p = rng.range(0, last);
                (p, p)
            }
            _ => {
                let lo = rng.range(0, last);
                (lo, rng.range(lo, last))
            }
        };
        for p in lo..=hi {
            // In range: lo ≤ hi ≤ pcpus - 1.
            let _ = affinity.set(p as usize);
        }
        domains.push(DomainSpec {
            name: format!("d{}", domains.len()),
            demands_pct,
            affinity,
            mem_node: None,
        });
        vcpus += count;
    }
    domains
}

/// A random shape (1–4 sockets, 1–2 threads per core, cores per socket so that there
/// are 2–64 pCPUs) with the domains of [`domains`], a third of them with their
/// memory on a random node.
pub fn shaped(rng: &mut SplitMix64, seed: u64) -> Scenario {
    let sockets = rng.range(1, 4) as usize;
    let threads = rng.range(1, 2) as usize;
    let per_core = sockets * threads;
    let cores = rng.range(2_u64.div_ceil(per_core as u64), (64 / per_core) as u64) as usize;
    let shape = Shape {
        sockets,
        cores,
        threads,
    };
    let pcpus = shape.pcpus();
    let mut domains = domains(rng, pcpus);
    for d in &mut domains {
        if rng.range(0, 2) == 0 {
            // sockets ≤ 4: fits.
            d.mem_node = Some(rng.range(0, sockets as u64 - 1) as u16);
        }
    }
    Scenario {
        pcpus,
        topology: Some(shape),
        ticks: 30,
        noise_pct: 0.0,
        seed,
        reports_delay: true,
        domains,
        host: Vec::new(),
        events: Vec::new(),
    }
}
