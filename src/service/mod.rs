//! The program around the loop: the command line and settings file, the daemon that runs
//! the [`crate::scheduler::Scheduler`] over libvirt as a host service (signals, systemd
//! notification, reconnect with back-off), the Prometheus writer, and the simulator's
//! runner that drives the same scheduler over a [`crate::sim::SimHost`].
//!
//! Uses the scheduler and the libvirt module; knows the policy only by its public
//! settings (`Params`, `Policy`).

mod backoff;
pub mod cli;
pub mod daemon;
mod notify;
mod options;
pub mod prometheus;
mod settings;
pub mod signal;
pub mod simulate;
