//! The simulator's own records of domains and vCPUs: what it knows of each (true demand,
//! affinity, cumulative counters, work delivered), shared by the host (`host.rs`), the
//! model of sharing (`share.rs`) and the measures (`metrics.rs`).

use crate::cpumap::CpuMap;
use crate::host::DomainKey;

#[derive(Debug, Clone)]
pub(super) struct SimVcpu {
    pub(super) demand: f64,
    pub(super) affinity: CpuMap,
    /// `affinity.only()`, kept beside it: read for every vCPU every tick.
    pub(super) only: Option<u32>,
    /// Measured cumulative time (noise included): what the scheduler reads.
    pub(super) cpu_time_ns: u64,
    /// Measured cumulative run-queue delay (noise included): demand − share, summed.
    pub(super) delay_ns: u64,
    /// True share of the last interval.
    pub(super) usage: f64,
    /// Work delivered in the last interval (usage × its core's work ratio), and since
    /// it started (pCPU-ns).
    pub(super) work: f64,
    pub(super) work_ns: f64,
    pub(super) last_ran_on: u32,
}

impl SimVcpu {
    pub(super) fn new(demand: f64, affinity: CpuMap, first: u32) -> SimVcpu {
        SimVcpu {
            demand,
            only: affinity.only().map(pcpu_u32),
            affinity,
            cpu_time_ns: 0,
            delay_ns: 0,
            usage: 0.0,
            work: 0.0,
            work_ns: 0.0,
            last_ran_on: first,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct SimDomain {
    pub(super) name: String,
    pub(super) key: DomainKey,
    pub(super) running: bool,
    /// The node holding its memory, when bound.
    pub(super) mem_node: Option<u16>,
    pub(super) vcpus: Vec<SimVcpu>,
}

/// A pCPU index below `pcpus`, which `SimHost::new` checked fits a `u32`.
pub(super) fn pcpu_u32(p: usize) -> u32 {
    p as u32
}
