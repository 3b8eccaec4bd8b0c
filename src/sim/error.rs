//! Why a call on the simulated host failed, classified as libvirt's failures are.

use std::fmt;

use crate::host::{DomainKey, FailureKind, HostError};

/// A failed call on the simulated host. `Display` is one line.
#[derive(Debug, Clone, PartialEq)]
pub enum SimHostError {
    /// No domain with this key or name (libvirt's `VIR_ERR_NO_DOMAIN`).
    NoSuchDomain {
        name: Option<String>,
        key: Option<DomainKey>,
    },
    /// The domain was stopped (libvirt: "domain is not running").
    NotRunning {
        name: String,
    },
    /// A domain with this name is already running.
    AlreadyRunning {
        name: String,
    },
    NoSuchVcpu {
        name: String,
        vcpu: u32,
        vcpus: usize,
    },
    PcpuOutOfRange {
        pcpu: u32,
        pcpus: usize,
    },
    /// Demands were given for a different number of vCPUs than the domain has.
    VcpuCount {
        name: String,
        expected: usize,
        got: usize,
    },
    /// A demand outside 0–1.0 (or not a number).
    BadDemand {
        name: String,
        vcpu: usize,
        demand: f64,
    },
    /// An affinity mask sized for another host, or with no pCPU set.
    BadAffinity {
        name: String,
        affinity: String,
    },
    /// A host load outside 0–1.0 (or not a number).
    BadHostLoad {
        pcpu: u32,
        load: f64,
    },
    /// A memory node the host's topology does not have.
    BadMemNode {
        name: String,
        node: u16,
        nodes: usize,
    },
}

impl fmt::Display for SimHostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimHostError::NoSuchDomain { name: Some(n), .. } => write!(f, "no domain {n:?}"),
            SimHostError::NoSuchDomain { key: Some(k), .. } => {
                write!(f, "no domain with id {}", k.id)
            }
            SimHostError::NoSuchDomain { .. } => f.write_str("no such domain"),
            SimHostError::NotRunning { name } => write!(f, "domain {name:?} is not running"),
            SimHostError::AlreadyRunning { name } => {
                write!(f, "domain {name:?} is already running")
            }
            SimHostError::NoSuchVcpu { name, vcpu, vcpus } => {
                write!(f, "domain {name:?} has no vcpu {vcpu} (it has {vcpus})")
            }
            SimHostError::PcpuOutOfRange { pcpu, pcpus } => {
                write!(f, "pcpu {pcpu} does not exist (host has {pcpus} pcpus)")
            }
            SimHostError::VcpuCount {
                name,
                expected,
                got,
            } => {
                write!(
                    f,
                    "{got} demands given but domain {name:?} has {expected} vcpus"
                )
            }
            SimHostError::BadDemand { name, vcpu, demand } => {
                write!(
                    f,
                    "demand {demand} of vcpu {vcpu} of domain {name:?} is outside 0-1"
                )
            }
            SimHostError::BadAffinity { name, affinity } => {
                write!(
                    f,
                    "affinity {affinity} of domain {name:?} does not fit this host"
                )
            }
            SimHostError::BadHostLoad { pcpu, load } => {
                write!(f, "host load {load} on pcpu {pcpu} is outside 0-1")
            }
            SimHostError::BadMemNode { name, node, nodes } => {
                write!(
                    f,
                    "memory node {node} of domain {name:?} does not exist (host has {nodes} nodes)"
                )
            }
        }
    }
}

impl std::error::Error for SimHostError {}

impl HostError for SimHostError {
    fn kind(&self) -> FailureKind {
        match self {
            SimHostError::NoSuchDomain { .. } | SimHostError::NotRunning { .. } => {
                FailureKind::DomainGone
            }
            _ => FailureKind::Other,
        }
    }
}
