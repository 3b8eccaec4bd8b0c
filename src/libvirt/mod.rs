//! Safe handles over libvirt: the only module that touches raw pointers.
//!
//! [`Connection`] owns a `virConnectPtr` and closes it on drop; [`Domain`] owns one
//! reference to a `virDomainPtr`, frees it on drop and borrows its connection, so the
//! compiler keeps every domain from outliving it. [`Error`] copies libvirt's last error
//! right after the failing call. [`LibvirtHost`] implements the scheduler's
//! [`Host`](crate::host::Host) seam over a connection with reused buffers, so a tick allocates nothing.
//!
//! Files: `ffi.rs` (the raw bindings bindgen generates at build time, private to this
//! module, so nothing else can reach a raw pointer), `error.rs` (the error type and the
//! one return-code check), `handles.rs` (the connection and the round-trip counter), `domain.rs` (the
//! domain handle),
//! `stats.rs` (the bulk vCPU stats call and the table it fills), `events.rs` (the event
//! loop, timers, watches, lifecycle events, keepalive), `silence.rs` (a libvirtd that
//! stops answering during a call: noticed within 15 s, the connection's socket shut
//! down; its public items are plain functions, no pointer), `host.rs` (the adapter, safe
//! code only). `host.rs` is the only file here without `unsafe`.

mod domain;
mod error;
pub mod events;
mod ffi;
mod handles;
mod host;
pub mod silence;
mod stats;

pub use domain::{Domain, VcpuInfo};
pub use error::Error;
/// libvirt's error codes, to compare with [`Error::code`] (the tests do).
pub use ffi::virErrorNumber;
pub use handles::{Connection, rpc_calls};
pub use host::LibvirtHost;
pub use stats::{VcpuStats, VcpuStatsTable};
