//! Safe handles over libvirt: the only module that touches raw pointers.
//!
//! [`Connection`] owns a `virConnectPtr` and closes it on drop; [`Domain`] owns one
//! reference to a `virDomainPtr`, frees it on drop and borrows its connection, so the
//! compiler keeps every domain from outliving it. [`Error`] copies libvirt's last error
//! right after the failing call. [`LibvirtHost`] implements the scheduler's
//! [`Host`] seam over a connection with reused buffers, so a tick allocates nothing.
//!
//! Files: `error.rs` (the error type and the one return-code check), `handles.rs` (the
//! owned pointers and the round-trip counter), `stats.rs` (the bulk vCPU stats call and
//! the table it fills), `host.rs` (the adapter, safe code only). Only `error.rs`,
//! `handles.rs` and `stats.rs` contain `unsafe`.

mod error;
pub mod events;
mod handles;
mod host;
mod stats;

pub use error::Error;
pub use handles::{Connection, Domain, VcpuInfo, rpc_calls};
pub use host::LibvirtHost;
pub use stats::{VcpuStats, VcpuStatsTable};
