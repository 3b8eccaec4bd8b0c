//! Support shared by the integration tests.
pub mod guests;
pub mod harness;
pub mod prom;
