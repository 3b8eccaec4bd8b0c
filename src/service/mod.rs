//! The program around the loop: the command line and settings file, the daemon that runs
//! the [`crate::scheduler::Scheduler`] over libvirt as a host service (signals, systemd
//! notification, reconnect with back-off), the Prometheus writer, the simulator's
//! runner that drives the same scheduler over a [`crate::sim::SimHost`], and the
//! recorder that writes a live host's load as a scenario for it.
//!
//! Uses the scheduler and the libvirt module; knows the policy only by its public
//! settings (`Params`, `Policy`).

mod backoff;
pub mod cli;
pub mod daemon;
mod duration;
mod notify;
mod options;
pub mod prometheus;
mod reconnect;
pub mod record;
mod settings;
pub mod signal;
pub mod simulate;
