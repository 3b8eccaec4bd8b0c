//! Output: one line per tick, the verbose per-vCPU table, and the live monitor view.
//!
//! Everything is written with `write!` straight to the caller's stream: nothing is
//! formatted into a `String` first, so printing a tick allocates nothing.

use std::io::{self, Write};

use crate::host::{DomainKey, Host, PcpuId};
use crate::policy::Policy;
use crate::scheduler::Scheduler;

fn name_of<H: Host>(s: &Scheduler<H>, key: DomainKey) -> &str {
    s.host().domain_name(key).unwrap_or("?")
}

fn write_pcpu(w: &mut dyn Write, p: Option<PcpuId>) -> io::Result<()> {
    match p {
        Some(p) => write!(w, "{}", p.0),
        None => w.write_all(b"*"),
    }
}

/// `tick 3 sigma=12.4 loads=97.0,3.1,50.2,50.0 moved web/0:0->1 db/1:*->2`
///
/// `*` as a source means the vCPU could run on several pCPUs and was taken into
/// management. In dry-run mode `moved` reads `would-move`.
pub fn write_tick_line<H: Host>(w: &mut dyn Write, s: &Scheduler<H>) -> io::Result<()> {
    let r = s.report();
    write!(w, "tick {}", r.tick)?;
    match r.sigma_pct {
        Some(sigma) => write!(w, " sigma={sigma:.1}")?,
        None => write!(w, " sigma=-")?,
    }
    w.write_all(b" loads=")?;
    for (i, l) in r.loads_pct.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(w, "{sep}{l:.1}")?;
    }
    if r.sigma_pct.is_none() {
        write!(w, " baseline ({} vcpus)", r.units.len())?;
    } else if r.moves.is_empty() {
        let threshold = s.config().threshold_pct;
        let within = r.sigma_pct.is_some_and(|sigma| sigma <= threshold);
        w.write_all(if within {
            b" balanced"
        } else {
            b" no useful move"
        })?;
        if !r.balanced {
            // The policy saw an imbalance yet every move would reverse it, gain only
            // noise, or touch a vCPU that just moved. With `balance` that can be in
            // estimated demand while usage looks even (saturated pCPUs): say so.
            if let Some(p) = r
                .planned_sigma_pct
                .filter(|_| s.config().policy == Policy::Balance)
            {
                write!(w, " (demand sigma={p:.1}")?;
                w.write_all(if within { b", no useful move)" } else { b")" })?;
            }
        }
    } else {
        w.write_all(if r.dry_run { b" would-move" } else { b" moved" })?;
        for m in r.moves {
            write!(w, " {}/{}:", name_of(s, m.domain), m.vcpu.0)?;
            write_pcpu(w, m.from)?;
            write!(w, "->{}", m.to.0)?;
            if !m.applied && !r.dry_run {
                w.write_all(b"(failed)")?;
            }
        }
    }
    writeln!(w)
}

/// The per-vCPU table printed under each tick line with `--verbose`.
pub fn write_vcpu_table<H: Host>(w: &mut dyn Write, s: &Scheduler<H>) -> io::Result<()> {
    let r = s.report();
    for u in r.units {
        write!(
            w,
            "  {:<24} vcpu {:>3}  usage ",
            name_of(s, u.domain),
            u.vcpu.0
        )?;
        match u.usage {
            Some(x) => write!(w, "{:>5.1}%", x * 100.0)?,
            None => w.write_all(b"    - ")?,
        }
        w.write_all(b"  pinned ")?;
        write_pcpu(w, u.pinned_to)?;
        w.write_all(b"  last-ran ")?;
        write_pcpu(w, u.last_ran_on)?;
        if !u.managed {
            w.write_all(b"  (not managed)")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

const BAR: usize = 30;

/// The live view: one bar per pCPU with the vCPUs placed there. On a terminal it
/// redraws in place (cursor home, clear); otherwise it prints plain blocks.
pub fn write_monitor<H: Host>(w: &mut dyn Write, s: &Scheduler<H>, tty: bool) -> io::Result<()> {
    let r = s.report();
    if tty {
        w.write_all(b"\x1b[H\x1b[J")?;
    }
    let cfg = s.config();
    write!(
        w,
        "vcpu-scheduler  tick {}  policy {}  threshold {}  sigma ",
        r.tick,
        cfg.policy.name(),
        cfg.threshold_pct
    )?;
    match r.sigma_pct {
        Some(sigma) => writeln!(
            w,
            "{sigma:.1} {}",
            if sigma <= cfg.threshold_pct {
                "(balanced)"
            } else {
                "(unbalanced)"
            }
        )?,
        None => writeln!(w, "- (first sample)")?,
    }
    for (p, load) in r.loads_pct.iter().enumerate() {
        let filled = ((load / 100.0) * BAR as f64).round().clamp(0.0, BAR as f64) as usize;
        write!(w, "pcpu {p:>3} [")?;
        for i in 0..BAR {
            w.write_all(if i < filled { b"#" } else { b"." })?;
        }
        write!(w, "] {load:>5.1}% ")?;
        for u in r
            .units
            .iter()
            .filter(|u| u.pinned_to.or(u.last_ran_on).map(|q| q.index()) == Some(p))
        {
            write!(w, " {}/{}", name_of(s, u.domain), u.vcpu.0)?;
            if u.pinned_to.is_none() {
                w.write_all(b"*")?;
            }
        }
        writeln!(w)?;
    }
    write_tick_line(w, s)?;
    if !tty {
        writeln!(w)?;
    }
    w.flush()
}
