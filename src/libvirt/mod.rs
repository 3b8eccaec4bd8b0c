//! Safe handles over libvirt: the only module that touches raw pointers.
//!
//! [`Connection`] owns a `virConnectPtr` and closes it on drop; [`Domain`] owns one
//! reference to a `virDomainPtr`, frees it on drop and borrows its connection, so the
//! compiler keeps every domain from outliving it. [`Error`] copies libvirt's last error
//! right after the failing call. [`LibvirtHost`] implements the scheduler's
//! [`Host`] seam over a connection with reused buffers, so a tick allocates nothing.
//!
//! Files: `error.rs` (the error type and the one return-code check), `handles.rs` (the
//! owned pointers, the only place with `unsafe` besides the error reader), `host.rs`
//! (the adapter, safe code only).

mod error;
mod handles;
mod host;

pub use error::Error;
pub use handles::{Connection, Domain, VcpuInfo};
pub use host::LibvirtHost;
