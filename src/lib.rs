//! vcpu-scheduler: keeps the pCPUs of a KVM host evenly loaded by re-pinning the vCPUs
//! of running libvirt domains, in a Measure – Analyze – Act loop.
//!
//! The folders are the layers; every import points down this list, never up:
//!
//! ```text
//! main.rs            parse, run the daemon or the simulator, map Failure to an exit code
//! service/           the program around the loop: cli, settings, daemon (event loop,
//!                    signals, sd_notify, back-off), the Prometheus writer, the
//!                    simulator's runner, the recorder (a live host as a scenario)
//! scheduler/         the loop: mod.rs (Scheduler::tick = measure, analyze, act, commit),
//!                    sample.rs (Measure), act.rs (Act), select.rs (which domains),
//!                    report.rs (what a tick found, and its printers)
//! policy/            Analyze: pure functions over numbers (demand, the plan, the verdict)
//! libvirt/           the only module with raw pointers: ffi.rs (bindgen, private),
//!                    Connection, Domain<'c>, errors, events; implements Host
//! sim/               a simulated host and its scenario files; implements Host
//! host.rs            the seam (trait Host, plain ids); cpumap.rs: libvirt's CPU masks;
//! topology.rs        the host's shape (NUMA nodes, SMT siblings); log.rs: log lines;
//! files.rs           reading the files a user names, bounded; paths shown on one line
//! ```
//!
//! - [`host`]: the seam between the loop and the world; [`cpumap`]: libvirt's CPU masks;
//!   [`topology`]: NUMA nodes and SMT siblings; [`log`]: leveled log lines; [`files`]:
//!   bounded reads of the files a user names.
//! - [`libvirt`]: the safe handles over the raw bindings and the live [`host::Host`].
//! - [`sim`]: the simulated [`host::Host`] and its scenario files.
//! - [`policy`] (Analyze), driven by [`scheduler`] (Measure, Act, the loop itself).
//! - [`service`]: the daemon, the command line, metrics, the simulator's runner, and
//!   `record`, which writes a live host's load as a scenario for it.

#[macro_use]
pub mod log;
pub mod cpumap;
pub mod files;
pub mod host;
pub mod libvirt;
pub mod policy;
pub mod scheduler;
pub mod service;
pub mod sim;
pub mod topology;
