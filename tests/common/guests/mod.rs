//! Test support for the real hypervisor: guests that need no OS, started through
//! `virsh -c qemu:///system`, and measurements that do not use the scheduler at all.
//! This file owns the vocabulary every part shares (`Load`, `GuestSpec`, the URI and the
//! name prefix) and re-exports the parts, so includers see one flat module:
//!
//! - `boot`: the 512-byte boot sector a guest runs (its source is `guest.S` beside it);
//! - `virsh`: every call to `virsh`, and parsing what it prints;
//! - `fleet`: starting the guests of one run and always removing them again;
//! - `measure`: each vCPU thread's CPU time, pCPU and affinity from `/proc`.
//!
//! Shared by `tests/real_guests.rs` (as `common::guests`) and `examples/fleet.rs` (through
//! `#[path]` to this file); std only, so it shells out to `virsh` instead of linking
//! libvirt a second time.
//!
//! Facts about the host that shape these helpers, measured on Debian 12 with libvirt 9.0
//! and QEMU 7.2 under nested KVM:
//! - Boot is not free: the BIOS burns ~2.8 s of vCPU time per guest before the boot sector
//!   runs (~0.2 s under TCG). Load measured before that is BIOS work, so every guest first
//!   writes `R` to COM1, which the domain sends to a file, and tests wait for that byte.
//! - QEMU takes a write lock on a disk image: each domain needs its own copy.
//! - vCPU time moves in 10 ms steps, so usage is sampled over windows of 1 s or more.
//! - A guest costs ~39 MB RSS; an idle one ~0.15 % of a core.
//! - Usage of a pCPU saturates at 100 %: 3 busy vCPUs on one pCPU and 1 on the other read
//!   100/100, so tests judge placement (pins per pCPU) as well as σ.

// Each includer uses a different subset of these helpers (and of the re-exports below).
#![allow(dead_code, unused_imports)]

mod boot;
mod fleet;
mod measure;
mod virsh;

pub use boot::boot_sector;
pub use fleet::{Fleet, Guest, HostLock, sweep, sweep_dead_runs};
pub use measure::{Meter, PinWatch, Pins, Sample, VcpuReading, pcpu_of, pinned_per_pcpu, sigma};
pub use virsh::{
    domain_type, domains_with_prefix, parse_cpulist, pcpu_count, require_hypervisor,
    require_hypervisor_reviving, vcpu_pins, virsh,
};

use std::fmt;

/// The hypervisor every helper talks to; the tests and the demo use it too.
pub const URI: &str = "qemu:///system";

/// Prefix of every test run's domain names: `vcst-<pid>-<tag>-`. The pid lets a later run
/// recognise leftovers of a run that died (Ctrl-C skips `Drop`) and remove them.
pub const TEST_PREFIX: &str = "vcst-";

/// What one vCPU of a guest does once its boot sector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `jmp $`: one full pCPU.
    Busy,
    /// `cli; hlt`: sleeps forever, ~0 % of a pCPU.
    Idle,
    /// Spins for this many ms out of every 100 ms (PIT at ~1 kHz), halts for the rest.
    /// Only vCPU 0 can run it: the PIC delivers the timer interrupt to vCPU 0 alone.
    Duty(u8),
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Busy => f.write_str("busy"),
            Load::Idle => f.write_str("idle"),
            Load::Duty(pct) => write!(f, "{pct}%"),
        }
    }
}

impl std::str::FromStr for Load {
    type Err = String;

    /// `busy`, `idle` or `NN%` (0 and 100 become idle and busy).
    fn from_str(s: &str) -> Result<Load, String> {
        match s {
            "busy" => Ok(Load::Busy),
            "idle" => Ok(Load::Idle),
            _ => {
                let pct = s
                    .strip_suffix('%')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|&n| n <= 100)
                    .ok_or_else(|| format!("bad load {s:?}: expected busy, idle or 0%..100%"))?;
                Ok(match pct {
                    0 => Load::Idle,
                    100 => Load::Busy,
                    n => Load::Duty(n),
                })
            }
        }
    }
}

/// One guest to start: the load of each vCPU, and the initial pin of every vCPU
/// (a cpulist such as `0` or `0-1`; `None` leaves them with affinity to all pCPUs).
#[derive(Clone, Debug)]
pub struct GuestSpec {
    pub vcpus: Vec<Load>,
    pub pin: Option<String>,
    /// Defined before it is started, so the pins above are its owner's persistent
    /// configuration (`virsh define` + `start`); otherwise transient (`virsh create`).
    pub persistent: bool,
    /// Room for this many vCPUs in all, the ones beyond `vcpus` offline until hotplugged
    /// (`<vcpu current='N'>MAX</vcpu>`).
    pub max_vcpus: Option<usize>,
}

impl GuestSpec {
    /// One vCPU with `load`, affinity to all pCPUs.
    pub fn one(load: Load) -> GuestSpec {
        GuestSpec {
            vcpus: vec![load],
            pin: None,
            persistent: false,
            max_vcpus: None,
        }
    }

    /// Checks everything `Fleet::start` needs from a guest called `name`, so a caller can
    /// reject a bad spec before starting anything; returns the boot sector.
    pub fn validate(&self, name: &str) -> Result<[u8; 512], String> {
        check_guest_name(name)?;
        if let Some(list) = &self.pin {
            parse_cpulist(list).map_err(|e| format!("guest {name}: {e}"))?;
        }
        boot_sector(&self.vcpus).map_err(|e| format!("guest {name}: {e}"))
    }

    /// Pins every vCPU to `cpulist` at start.
    pub fn pinned(mut self, cpulist: &str) -> GuestSpec {
        self.pin = Some(cpulist.to_string());
        self
    }

    /// Defined (persistent), so its pins are its owner's configuration.
    pub fn persistent(mut self) -> GuestSpec {
        self.persistent = true;
        self
    }

    /// Room for `max` vCPUs, those past its loads offline until `virsh setvcpus --live`.
    pub fn hotpluggable(mut self, max: usize) -> GuestSpec {
        self.max_vcpus = Some(max);
        self
    }
}

/// A guest's own name (after the fleet's prefix) may be awkward, as operators' names
/// are: quotes, backslashes, spaces, non-ASCII. Not what libvirt refuses ('/', control
/// characters) nor glob characters, which would make `--domain PREFIX*` match others.
fn check_guest_name(name: &str) -> Result<(), String> {
    let bad = |c: char| c == '/' || c.is_control() || matches!(c, '*' | '?' | '[' | ']');
    if name.trim().is_empty() || name.trim() != name || name.chars().any(bad) {
        return Err(format!(
            "bad guest name {name:?}: no '/', control or glob characters, no outer spaces"
        ));
    }
    Ok(())
}

/// The file name a guest's image, serial log and XML get: its name with anything outside
/// a safe alphabet replaced by '_'.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Prefixes go into file names and shell globs unescaped: allow only a safe alphabet.
fn check_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if name.is_empty() || !name.chars().all(ok) {
        return Err(format!(
            "bad guest name {name:?}: use letters, digits, '-', '_', '.'"
        ));
    }
    Ok(())
}
