// Compiled only under #[cfg(test)]: helpers the simulator's unit tests share.
use crate::cpumap::CpuMap;
use crate::host::{Host, VcpuSample};
use crate::sim::SimHost;

pub const SEC: u64 = 1_000_000_000;

pub fn all(n: usize) -> CpuMap {
    CpuMap::all(n)
}

/// A map of `n` pCPUs with only `p` set.
pub fn one(n: usize, p: usize) -> CpuMap {
    let mut m = CpuMap::new(n);
    m.set(p).unwrap();
    m
}

pub fn usage(h: &SimHost, name: &str, vcpu: usize) -> f64 {
    h.vcpu(name, vcpu).unwrap().usage
}

/// Samples of every listed domain, as the scheduler would read them.
pub fn samples(h: &mut SimHost) -> Vec<VcpuSample> {
    h.refresh().unwrap();
    let mut out = Vec::new();
    for i in 0..h.domain_count() {
        h.sample(i, &mut out).unwrap();
    }
    out
}
