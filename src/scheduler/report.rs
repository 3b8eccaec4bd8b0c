//! Output: what one tick found ([`Report`]) and every way it is printed: the tick line,
//! the verbose per-vCPU table, the live monitor view and the JSON line.
//!
//! A [`Report`] carries all its writers need, so none of them reaches into the
//! scheduler, and all of them print the one verdict [`Analysis::balanced`]. Everything
//! is written with `write!` straight to the caller's stream: nothing is formatted into a
//! `String` first, so printing a tick allocates nothing.

use std::fmt;
use std::io::{self, Write};

use super::act::{Move, Pin};
use super::sample::{DemandMode, Unit};
use crate::cpumap::CpuMap;
use crate::host::{DomainKey, DomainNames, PcpuId};
use crate::policy::{Analysis, Why};

/// One tick, as its printers see it.
#[derive(Clone, Copy)]
pub struct Report<'a> {
    /// 0 for the first tick, which only records baselines.
    pub tick: u64,
    /// σ of measured and of demand loads, and the verdict on them.
    pub analysis: Analysis,
    pub threshold_pct: f64,
    /// The policy's name (`balance`, `seed`).
    pub policy: &'static str,
    pub dry_run: bool,
    /// Measured load of each pCPU, fraction of one pCPU.
    pub loads: &'a [f64],
    /// Demand on each pCPU before this tick's moves, fraction of one pCPU.
    pub demand: &'a [f64],
    /// Whether that demand was measured or estimated.
    pub mode: DemandMode,
    pub moves: &'a [Move],
    /// Every vCPU seen this tick.
    pub units: &'a [Unit],
    /// What each of them wants, as the policy planned it (same order as `units`).
    pub unit_demand: &'a [f64],
    /// Domain names, looked up by key when printed.
    pub names: &'a dyn DomainNames,
    /// The pCPUs managed vCPUs may use (`--cpus`), `None` for all.
    pub cpus: Option<&'a CpuMap>,
    /// Pins made since the scheduler started (planned ones in a dry run), and pins
    /// libvirt refused.
    pub migrations: u64,
    pub failed_pins: u64,
}

impl Report<'_> {
    /// The name of a domain, `?` if it vanished since the tick.
    pub fn name(&self, key: DomainKey) -> &str {
        self.names.name_of(key).unwrap_or("?")
    }

    /// The first vCPU of each domain seen (units come grouped by domain).
    pub fn domain_firsts(&self) -> impl Iterator<Item = &Unit> {
        let units = self.units;
        units
            .iter()
            .enumerate()
            .filter(move |(i, u)| *i == 0 || units[i - 1].group != u.group)
            .map(|(_, u)| u)
    }

    /// Domains seen this tick: (managed, left alone).
    pub fn domain_counts(&self) -> (usize, usize) {
        let managed = self.domain_firsts().filter(|u| u.managed()).count();
        let alone = self.domain_firsts().filter(|u| !u.managed()).count();
        (managed, alone)
    }

    /// What the tick line says after the loads (and JSON's `"outcome"`).
    pub fn outcome(&self) -> Outcome {
        if self.analysis.sigma_pct.is_none() {
            Outcome::Baseline
        } else if !self.moves.is_empty() {
            Outcome::Moved
        } else if self.analysis.balanced() {
            Outcome::Balanced
        } else {
            Outcome::NoUsefulMove
        }
    }

    /// σ of estimated demand, when it is over the threshold (saturated pCPUs all read
    /// 100 % while their vCPUs want more, so measured σ alone can look even).
    fn demand_note(&self) -> Option<f64> {
        let a = &self.analysis;
        a.demand_sigma_pct
            .filter(|_| a.plans_on_demand && !a.demand_within)
    }
}

/// What became of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first sample: no usage yet.
    Baseline,
    /// Pins were made (or, in a dry run, planned).
    Moved,
    /// [`Analysis::balanced`]: nothing needed to change.
    Balanced,
    /// Over the threshold, and no move is worth its price ([`Analysis::settled`]): the
    /// host is as even as its vCPUs allow, or the gain would be noise.
    NoUsefulMove,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Baseline => "baseline",
            Outcome::Moved => "moved",
            Outcome::Balanced => "balanced",
            Outcome::NoUsefulMove => "no useful move",
        }
    }
}

/// `  45.0%`, or `    - ` when unknown.
fn write_pct(w: &mut dyn Write, x: Option<f64>) -> io::Result<()> {
    match x {
        Some(x) => write!(w, "{:>5.1}%", x * 100.0),
        None => w.write_all(b"    - "),
    }
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
pub fn write_tick_line(w: &mut dyn Write, r: &Report<'_>) -> io::Result<()> {
    write!(w, "tick {}", r.tick)?;
    match r.analysis.sigma_pct {
        Some(sigma) => write!(w, " sigma={sigma:.1}")?,
        None => write!(w, " sigma=-")?,
    }
    w.write_all(b" loads=")?;
    for (i, l) in r.loads.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(w, "{sep}{:.1}", l * 100.0)?;
    }
    match r.outcome() {
        Outcome::Baseline => write!(w, " baseline ({} vcpus)", r.units.len())?,
        Outcome::Moved => {
            w.write_all(if r.dry_run { b" would-move" } else { b" moved" })?;
            for m in r.moves {
                write!(w, " {}/{}:", r.name(m.domain), m.vcpu.0)?;
                write_pcpu(w, m.from)?;
                write!(w, "->{}", m.to.0)?;
                if !m.counts() {
                    w.write_all(b"(failed)")?;
                }
            }
        }
        o @ (Outcome::Balanced | Outcome::NoUsefulMove) => {
            write!(w, " {}", o.as_str())?;
            if let Some(d) = r.demand_note() {
                write!(w, " (demand sigma={d:.1})")?;
            }
        }
    }
    writeln!(w)
}

/// The per-vCPU table printed under each tick line with `--verbose`.
pub fn write_vcpu_table(w: &mut dyn Write, r: &Report<'_>) -> io::Result<()> {
    for (u, d) in r.units.iter().zip(r.unit_demand) {
        write!(w, "  {:<24} vcpu {:>3}  usage ", r.name(u.domain), u.vcpu.0)?;
        write_pct(w, u.usage)?;
        w.write_all(b"  demand ")?;
        write_pct(w, u.usage.map(|_| *d))?;
        if u.usage.is_some() && r.analysis.plans_on_demand {
            w.write_all(if u.demand.is_some() {
                b" (measured)"
            } else {
                b" (estimated)"
            })?;
        }
        w.write_all(b"  pinned ")?;
        write_pcpu(w, u.pinned_to)?;
        w.write_all(b"  last-ran ")?;
        write_pcpu(w, u.last_ran_on)?;
        if !u.managed() {
            let why = u.left_alone.map_or("?", |w| w.describe());
            write!(w, "  (not managed: {why})")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

const BAR: usize = 30;

/// The live view: one bar per pCPU with the vCPUs placed there. On a terminal it
/// redraws in place (cursor home, clear); otherwise it prints plain blocks.
pub fn write_monitor(w: &mut dyn Write, r: &Report<'_>, tty: bool) -> io::Result<()> {
    if tty {
        w.write_all(b"\x1b[H\x1b[J")?;
    }
    write!(
        w,
        "vcpu-scheduler  tick {}  policy {}  threshold {}  sigma ",
        r.tick, r.policy, r.threshold_pct
    )?;
    match r.analysis.sigma_pct {
        Some(sigma) => writeln!(
            w,
            "{sigma:.1} ({}; {})",
            if r.analysis.balanced() {
                "balanced"
            } else {
                "unbalanced"
            },
            if r.analysis.settled {
                "no move worth its price"
            } else {
                "moves worth their price"
            }
        )?,
        None => writeln!(w, "- (first sample)")?,
    }
    for (p, load) in r.loads.iter().enumerate() {
        let load = load * 100.0;
        let filled = ((load / 100.0) * BAR as f64).round().clamp(0.0, BAR as f64) as usize;
        write!(w, "pcpu {p:>3} [")?;
        for i in 0..BAR {
            w.write_all(if i < filled { b"#" } else { b"." })?;
        }
        write!(w, "] {load:>5.1}% ")?;
        let demand = r.demand.get(p).copied().unwrap_or(0.0) * 100.0;
        write!(w, "(demand {demand:>5.1}%) ")?;
        for u in r
            .units
            .iter()
            .filter(|u| u.pinned_to.or(u.last_ran_on).map(|q| q.index()) == Some(p))
        {
            write!(w, " {}/{}", r.name(u.domain), u.vcpu.0)?;
            if u.pinned_to.is_none() {
                w.write_all(b"*")?;
            }
        }
        writeln!(w)?;
    }
    write_tick_line(w, r)?;
    if !tty {
        writeln!(w)?;
    }
    w.flush()
}

/// One applied (or, in a dry run, planned) move as a log line, saying which term of the
/// cost it lowered and by how much (pCPU²):
/// `moved web/0 pcpu 0 -> 2: lowers the load cost by 0.520 (demand on pcpu 0 155 %, on
/// pcpu 2 40 %); it wants 45 %`.
pub struct MoveLine<'a>(pub &'a Report<'a>, pub &'a Move);

impl fmt::Display for MoveLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, m) = (self.0, self.1);
        let verb = if r.dry_run { "would move" } else { "moved" };
        write!(f, "{verb} {}/{} pcpu ", r.name(m.domain), m.vcpu.0)?;
        match m.from {
            Some(p) => write!(f, "{}", p.0)?,
            None => f.write_str("*")?,
        }
        write!(f, " -> {}: ", m.to.0)?;
        match (m.why, m.why.term()) {
            (_, Some(term)) if m.gain <= 0.0 => write!(
                f,
                "makes room for another move (the {term} cost {:+.3} on its own)",
                -m.gain
            )?,
            (w, Some(_)) => write!(f, "{} by {:.3}", w.describe(), m.gain)?,
            (Why::Node, None) => write!(f, "{} (cost {:.3} lower)", m.why.describe(), m.gain)?,
            (w, None) => f.write_str(w.describe())?,
        }
        match m.from {
            Some(p) => write!(
                f,
                " (demand on pcpu {} {:.0} %, on pcpu {} {:.0} %)",
                p.0,
                m.loads.0 * 100.0,
                m.to.0,
                m.loads.1 * 100.0
            )?,
            None => write!(f, " (demand on pcpu {} {:.0} %)", m.to.0, m.loads.1 * 100.0)?,
        }
        write!(f, "; it wants {:.0} %", m.demand * 100.0)
    }
}

/// The periodic summary line: σ, moves since the last one, domains managed and left
/// alone (and why), where demand comes from.
pub struct Summary<'a>(pub &'a Report<'a>, pub u64, pub f64);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, moves, minutes) = (self.0, self.1, self.2);
        f.write_str("summary: ")?;
        match (r.analysis.sigma_pct, r.analysis.demand_sigma_pct) {
            (Some(s), Some(d)) => write!(f, "sigma {s:.1}, demand sigma {d:.1}")?,
            _ => f.write_str("no figures yet")?,
        }
        write!(f, "; {moves} moves in the last {minutes:.0} min; ")?;
        let (managed, alone) = r.domain_counts();
        write!(f, "{managed} domains managed, {alone} left alone")?;
        for (k, u) in r.domain_firsts().filter(|u| !u.managed()).enumerate() {
            f.write_str(if k == 0 { " (" } else { ", " })?;
            let why = u.left_alone.map_or("?", |w| w.describe());
            write!(f, "{}: {why}", r.name(u.domain))?;
        }
        if alone > 0 {
            f.write_str(")")?;
        }
        write!(f, "; demand {}", r.mode.describe())
    }
}

/// One JSON object per tick, the same facts as the tick line:
/// `{"tick":3,"sigma":1.25,"loads":[..],"demand_sigma":9.1,"balanced":false,
/// "settled":false,"outcome":"moved","moves":[{"domain":"web","vcpu":0,"from":0,"to":2,
/// "applied":true}]}`
/// (`sigma` null before usage is known, `from` null for a vCPU that had no single pin).
pub fn write_json_tick(out: &mut dyn Write, r: &Report<'_>) -> io::Result<()> {
    let a = &r.analysis;
    write!(out, "{{\"tick\":{},\"sigma\":", r.tick)?;
    write_json_num(out, a.sigma_pct)?;
    out.write_all(b",\"loads\":[")?;
    for (i, l) in r.loads.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_json_num(out, Some(l * 100.0))?;
    }
    out.write_all(b"],\"demand_sigma\":")?;
    write_json_num(out, a.demand_sigma_pct)?;
    write!(
        out,
        ",\"sigma_within\":{},\"demand_within\":{},\"balanced\":{},\"settled\":{},\"outcome\":\"{}\",\"moves\":[",
        a.sigma_within,
        a.demand_within,
        a.balanced(),
        a.settled,
        r.outcome().as_str()
    )?;
    for (i, m) in r.moves.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(b"{\"domain\":")?;
        write_json_str(out, r.name(m.domain))?;
        write!(out, ",\"vcpu\":{},\"from\":", m.vcpu.0)?;
        match m.from {
            Some(p) => write!(out, "{}", p.0)?,
            None => out.write_all(b"null")?,
        }
        write!(
            out,
            ",\"to\":{},\"applied\":{}}}",
            m.to.0,
            m.pin == Pin::Made
        )?;
    }
    out.write_all(b"]}\n")
}

/// A number rounded to what the output needs; `null` for none or non-finite (JSON has
/// no NaN).
pub fn write_json_num(out: &mut dyn Write, x: Option<f64>) -> io::Result<()> {
    match x {
        Some(x) if x.is_finite() => write!(out, "{}", (x * 1000.0).round() / 1000.0),
        _ => out.write_all(b"null"),
    }
}

/// A JSON string, escaping quotes, backslashes and control characters.
pub fn write_json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    for c in s.chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c))?,
            c => write!(out, "{c}")?,
        }
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_and_numbers() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\u000ad""#);
        let mut out = Vec::new();
        for x in [Some(1.23456), None, Some(f64::NAN), Some(100.0)] {
            write_json_num(&mut out, x).unwrap();
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "1.235 null null 100 ");
    }
}
