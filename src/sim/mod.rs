//! The simulated host: implements [`Host`] from scripted demand; pins apply at once.
//!
//! The scheduler sees only what libvirt would show it: cumulative `cpu_time_ns` per vCPU,
//! the affinity (`pinned_to` is `Some` only when it is exactly one pCPU) and the pCPU
//! each vCPU last ran on. What the simulator knows besides (each vCPU's demand, its true
//! share, the work it delivered) is for tests and reports, through [`SimHost::vcpu`],
//! [`SimHost::demand_placement_stats`] and the other measures in `metrics`. Nothing here
//! knows about FFI or the policy.
//!
//! # The model, one interval at a time ([`SimHost::advance`])
//!
//! Every pCPU has a capacity of 1.0; every vCPU a demand between 0 and 1.0 of one pCPU
//! (what it would use alone). The host has a shape ([`Topology`]): flat by default (one
//! node, one thread per core, and [`Host::topology`] says `None`), or as a scenario's
//! `topology` line gives it ([`SimHost::with_topology`]). A domain's memory may be bound
//! to one node ([`SimHost::add_domain_with_memory`], reported in
//! [`DomainInfo::mem_nodes`]).
//!
//! 1. **Placement.** A vCPU whose affinity is exactly one pCPU runs there. The others are
//!    placed by a deliberately simple stand-in for the host scheduler: after every pinned
//!    vCPU is counted, they are taken in a fixed order (domains in the order they started,
//!    vCPUs by index) and each goes to the allowed pCPU with the least demand placed so far;
//!    a tie goes to the pCPU it last ran on (the kernel prefers a warm cache), else to the
//!    lowest-numbered one. Placement depends only on demands, affinities and the previous
//!    placement, so steady demand gives a steady placement: no flapping the scheduler
//!    would have to chase.
//! 2. **Sharing.** The vCPUs placed on one pCPU share it max–min fairly (water-filling):
//!    none gets more than it demands, and what the satisfied ones leave is split evenly
//!    among the rest. Four busy vCPUs on one pCPU get 0.25 each; 0.3 and 1.0 get 0.3/0.7.
//! 3. **Measurement.** Each vCPU's cumulative time grows by share × interval, times
//!    `1 + u × noise` with `u` uniform in [-1, 1] when noise is set. The factor is clamped
//!    at 0, so cumulative time never goes backwards. The noise comes from [`SplitMix64`],
//!    so a seed gives the same run every time. Run-queue delay is demand − share, as
//!    before: neither figure shows SMT contention (on real hardware a thread whose
//!    sibling is busy still reads fully used), and that is the point of modelling it.
//! 4. **Work (SMT).** What a vCPU's share delivers depends on its core. A pCPU's busy
//!    fraction `b` is the sum of the shares on it. A core whose threads are all busy
//!    delivers [`SMT_ALL_BUSY`] = 1.3 pCPUs of work in total; one thread busy alone
//!    delivers 1.0. In between, for a core of `k` threads with busy fractions `b_i`:
//!
//!    ```text
//!    work = max(b) + 0.3 / (k − 1) × (Σ b − max(b))
//!    ```
//!
//!    which for two threads is `b1 + b2 − 0.7 × min(b1, b2)`. It assumes the threads'
//!    busy periods overlap as much as they can (the less busy thread runs only while the
//!    busier one does), so the overlap is `min(b1, b2)` and each unit of it delivers 1.3
//!    instead of 2; with more threads, each thread beyond the busiest adds an equal part
//!    of the 0.3. Why this one: it is exact at the two ends the hardware is known by
//!    (alone 1.0, all busy 1.3), continuous and increasing in every `b_i`, needs no
//!    sorting, and errs towards counting contention (independent timing would overlap
//!    less, `b1 × b2`), which is what a placement is judged on. The core's work is shared
//!    among its threads in proportion to their busy fractions, so every thread of a core
//!    has the same ratio `work / Σ b` (0.65 with two busy siblings), and each vCPU
//!    delivers its share × that ratio ([`VcpuView::work`], cumulated in
//!    [`VcpuView::work_ns`]). On a flat host the ratio is exactly 1.
//!
//! Memory placement does not slow anything down: a vCPU away from its domain's memory
//! node is only counted ([`SimHost::remote_vcpus`]).
//!
//! A pin ([`Host::pin`]) changes the affinity at once; it is used from the next interval.
//!
//! # Domains
//!
//! A domain's [`DomainKey`] has a UUID derived from its name (the same name always gives
//! the same UUID) and an id from an instance counter, so a domain stopped and started
//! again keeps its UUID and gets a new id, as under libvirt. A domain started or stopped
//! between two [`Host::refresh`] calls is seen by the scheduler only at the next one; a
//! stopped domain it still lists fails to sample or pin with [`FailureKind::DomainGone`].
//!
//! # Allocation
//!
//! Buffers are sized when domains are added; [`SimHost::advance`], [`Host::sample`] (into a
//! caller-sized vector) and [`Host::pin`] do not allocate.
//!
//! # Files
//!
//! - [`host`](SimHost): domains and their shape; `host/seam.rs`, the [`Host`] seam over
//!   them (what the scheduler reads and pins); errors;
//! - `model`: the records of domains and vCPUs the other files share;
//! - `share`: the model above (placement, water-filling, SMT work);
//! - `metrics`: what a placement is judged by (the bound, within nodes too, remote
//!   vCPUs, SMT conflicts, work delivered);
//! - [`rng`]: the seeded generator behind noise and random scenarios;
//! - [`scenario`]: the scenario file format (and random scenarios); `script`: a
//!   scenario played on the host ([`SimHost::from_scenario`], [`SimHost::apply`]). The
//!   runner that drives the real scheduler over it is [`crate::service::simulate`].
//!
//! [`Host`]: crate::host::Host
//! [`Host::topology`]: crate::host::Host::topology
//! [`Topology`]: crate::topology::Topology
//! [`DomainInfo::mem_nodes`]: crate::host::DomainInfo::mem_nodes
//! [`DomainKey`]: crate::host::DomainKey
//! [`Host::refresh`]: crate::host::Host::refresh
//! [`Host::pin`]: crate::host::Host::pin
//! [`Host::sample`]: crate::host::Host::sample
//! [`FailureKind::DomainGone`]: crate::host::FailureKind::DomainGone

mod error;
mod host;
mod metrics;
mod model;
pub mod rng;
pub mod scenario;
mod script;
#[cfg(test)]
mod shape_tests;
mod share;
#[cfg(test)]
mod test_support;

pub use error::SimHostError;
pub use host::{SimHost, VcpuView};
pub use rng::SplitMix64;
pub use share::SMT_ALL_BUSY;
