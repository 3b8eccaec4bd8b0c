//! The simulated host: implements [`Host`] from scripted demand; pins apply at once.
//!
//! The scheduler sees only what libvirt would show it: cumulative `cpu_time_ns` per vCPU,
//! the affinity (`pinned_to` is `Some` only when it is exactly one pCPU) and the pCPU
//! each vCPU last ran on. What the simulator knows besides (each vCPU's demand, its true
//! share) is for tests and reports, through [`SimHost::vcpu`] and
//! [`SimHost::demand_placement_stats`]. Nothing here knows about FFI or the policy.
//!
//! # The model, one interval at a time ([`SimHost::advance`])
//!
//! Every pCPU has a capacity of 1.0; every vCPU a demand between 0 and 1.0 of one pCPU
//! (what it would use alone).
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
//!    so a seed gives the same run every time.
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
//! - [`host`](SimHost): domains, the [`Host`] seam, the bound, errors;
//! - `share`: the model above (placement and water-filling);
//! - [`rng`]: the seeded generator behind noise and random scenarios;
//! - [`scenario`]: the scenario file format; [`simulate`]: runs one through the real
//!   scheduler and sums it up.
//!
//! [`Host`]: crate::host::Host
//! [`DomainKey`]: crate::host::DomainKey
//! [`Host::refresh`]: crate::host::Host::refresh
//! [`Host::pin`]: crate::host::Host::pin
//! [`Host::sample`]: crate::host::Host::sample
//! [`FailureKind::DomainGone`]: crate::host::FailureKind::DomainGone

mod error;
mod host;
pub mod rng;
pub mod scenario;
mod share;
pub mod simulate;

pub use error::SimHostError;
pub use host::{SimHost, VcpuView};
pub use rng::SplitMix64;
