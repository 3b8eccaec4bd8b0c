//! Act: apply planned pins through the [`Host`], skipping pins already in place.
//!
//! A failure to pin one vCPU does not stop the others: a domain that just stopped is
//! skipped quietly, anything else is reported on one line with libvirt's message. A
//! lost connection ends the step (the daemon notices it right after the tick).

use super::sample::Unit;
use crate::host::{DomainKey, FailureKind, Host, HostError, PcpuId, VcpuId};
use crate::policy::{Planned, Why};

/// One pin decided this tick, for the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    pub domain: DomainKey,
    pub vcpu: VcpuId,
    /// `None` when the vCPU had an affinity of several pCPUs (taken into management).
    pub from: Option<PcpuId>,
    pub to: PcpuId,
    /// Its usage when decided, fraction of a pCPU.
    pub usage: Option<f64>,
    /// What became of it.
    pub pin: Pin,
    /// Why (the term of the cost it lowered, and by how much, pCPU²), and the planning
    /// loads of the two pCPUs and the vCPU's demand behind it.
    pub why: Why,
    pub gain: f64,
    pub loads: (f64, f64),
    pub demand: f64,
}

/// What became of one planned pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Pinned.
    Made,
    /// Not tried: a dry run.
    DryRun,
    /// libvirt refused it (logged with libvirt's message).
    Refused,
    /// The domain stopped meanwhile: nothing to pin any more.
    DomainGone,
}

impl Move {
    /// A move as the counts and the log see it: pinned, or in a dry run planned.
    pub fn counts(&self) -> bool {
        matches!(self.pin, Pin::Made | Pin::DryRun)
    }
}

/// Apply `planned` to `units` through `host`. Fills `moves`; returns pins made.
pub fn apply<H: Host>(
    host: &mut H,
    units: &mut [Unit],
    planned: &[Planned],
    dry_run: bool,
    tick: u64,
    moves: &mut Vec<Move>,
) -> u64 {
    moves.clear();
    let mut pinned = 0;
    for p in planned {
        let u = &mut units[p.item];
        let to = PcpuId(p.to as u32);
        if u.pinned_to == Some(to) {
            continue; // already there: no call, no migration
        }
        let mut m = Move {
            domain: u.domain,
            vcpu: u.vcpu,
            from: u.pinned_to,
            to,
            usage: u.usage,
            pin: Pin::DryRun,
            why: p.why,
            gain: p.gain,
            loads: p.loads,
            demand: p.demand,
        };
        if !dry_run {
            match host.pin(u.domain, u.vcpu, to) {
                Ok(()) => {
                    m.pin = Pin::Made;
                    // The next move of this vCPU costs more for a few ticks, unless
                    // this one was planned on a figure contention may have inflated.
                    if !p.contended {
                        u.moved_at = Some(tick);
                    }
                    u.pinned_to = Some(to);
                }
                Err(e) if e.kind() == FailureKind::DomainGone => m.pin = Pin::DomainGone,
                // The connection is gone: every other pin would fail the same way, and
                // the daemon reports the loss once and reconnects.
                Err(e) if e.kind() == FailureKind::ConnectionLost => break,
                Err(e) => {
                    m.pin = Pin::Refused;
                    let name = host.domain_name(u.domain).unwrap_or("?");
                    crate::warn!(
                        "cannot pin vcpu {} of domain \"{name}\" to pcpu {}: {e}",
                        u.vcpu.0,
                        to.0
                    );
                }
            }
        }
        if m.counts() {
            pinned += 1;
        }
        moves.push(m);
    }
    pinned
}
