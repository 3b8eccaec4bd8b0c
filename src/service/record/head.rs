//! The header of a recording (what was recorded, from where, how to read it), and the
//! host's shape as a `topology` line when it can be one.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::trace::Trace;
use crate::scheduler::sample::{DemandMode, PCPU_READS_PER_TICK};
use crate::sim::scenario::{MAX_NODES, MAX_THREADS, Shape};
use crate::topology::Topology;

/// What the header says of the recording beside what the trace found.
#[derive(Debug, Clone)]
pub struct About {
    pub uri: String,
    pub anonymize: bool,
    /// When the recording started, seconds since the Unix epoch.
    pub started_unix: u64,
    pub interval: Duration,
    /// The host as a `topology` line, when it has several nodes or SMT and its pCPUs
    /// are numbered as the simulator numbers them.
    pub shape: Option<Shape>,
    /// Why a host of several nodes or SMT is written as `pcpus N` only.
    pub shape_note: Option<String>,
}

impl About {
    /// `uri`, the interval, now, and the host's shape from its `topology` (`None`: flat).
    pub fn new(
        uri: &str,
        anonymize: bool,
        interval: Duration,
        topology: Option<&Topology>,
    ) -> About {
        let (shape, shape_note) = match topology {
            None => (None, None),
            Some(t) => match shape_of(t) {
                Some(s) => (Some(s), None),
                None => (
                    None,
                    Some(format!(
                        "the host has {} nodes and {} pcpus in {} cores, numbered otherwise than \
                         the simulator's topology line (pcpu = (socket x cores + core) x \
                         threads + thread): written as a flat host",
                        t.nodes(),
                        t.pcpus(),
                        t.cores()
                    )),
                ),
            },
        };
        About {
            uri: uri.to_owned(),
            anonymize,
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            interval,
            shape,
            shape_note,
        }
    }

    /// NUMA nodes of the file's host.
    pub fn nodes(&self) -> usize {
        self.shape.map_or(1, |s| s.sockets)
    }
}

/// Where the recording stands when the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still recording: a copy written every so often, complete as it stands.
    Recording,
    /// SIGINT or SIGTERM.
    Stopped,
    /// `--for` ran out.
    Done,
    /// Stopped by an error (the file is complete up to it).
    Failed,
}

/// The host's `topology` as `SOCKETS CORES THREADS`, when its pCPUs are numbered as the
/// simulator's line numbers them: node `p / (cores × threads)`, the threads of a core
/// consecutive.
pub fn shape_of(t: &Topology) -> Option<Shape> {
    let (pcpus, nodes, cores) = (t.pcpus(), t.nodes(), t.cores());
    if nodes == 0 || cores == 0 || pcpus % cores != 0 || cores % nodes != 0 {
        return None;
    }
    let threads = pcpus / cores;
    let shape = Shape {
        sockets: nodes,
        cores: cores / nodes,
        threads,
    };
    if nodes > MAX_NODES || threads > MAX_THREADS {
        return None;
    }
    let per_node = shape.cores * threads;
    let fits = (0..pcpus).all(|p| {
        let place = t.place(p);
        usize::from(place.node) == p / per_node && place.core == t.place(p - p % threads).core
    });
    // Each run of `threads` pCPUs shares one core and there are as many runs as cores:
    // distinct runs have distinct cores.
    fits.then_some(shape)
}

/// Write the header into `out` (cleared first): comments, then the host and `ticks`
/// lines. Reuses `out`'s capacity, so a checkpoint allocates nothing once it has grown.
pub fn write_head(out: &mut String, a: &About, t: &Trace, status: Status) {
    out.clear();
    let _ = write_all(out, a, t, status);
}

fn write_all(out: &mut String, a: &About, t: &Trace, status: Status) -> std::fmt::Result {
    writeln!(
        out,
        "# Recorded by vcpu-scheduler record {} (the Measure phase only; nothing was pinned).",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "# Replay: vcpu-scheduler simulate FILE [--policy seed|balance]"
    )?;
    if a.anonymize {
        let driver = a.uri.split([':', '+']).next().unwrap_or("");
        writeln!(
            out,
            "# uri: not written (--anonymize); driver {}",
            OneLine(driver)
        )?;
    } else {
        writeln!(out, "# uri: {}", OneLine(&a.uri))?;
    }
    writeln!(
        out,
        "# started {} UTC, interval {}: one tick is one interval of the host;\n\
         #   simulate replays one tick per interval",
        Utc(a.started_unix),
        Secs(a.interval)
    )?;
    match t.source {
        Some(DemandMode::Measured) => writeln!(
            out,
            "# demand: measured (run-queue delay): each vcpu's run time plus the time it\n\
             #   waited for a pcpu"
        )?,
        Some(DemandMode::Estimated) => writeln!(
            out,
            "# demand: estimated from usage (the host reports no run-queue delay): what\n\
             #   each vcpu got, so one on a full pcpu may have wanted more; `delay off`\n\
             #   makes the replay estimate demand as the daemon does on such a host"
        )?,
        None => writeln!(out, "# demand: no domain was measured")?,
    }
    match t.source {
        Some(DemandMode::Measured) => writeln!(
            out,
            "# host lines: load no recorded vcpu explains: pcpu busy time minus the usage\n\
             #   of the recorded vcpus there, for the {PCPU_READS_PER_TICK} pcpus read each tick in turn (as\n\
             #   the daemon reads them when demand is measured); else inferred where a\n\
             #   pcpu was full"
        )?,
        _ => writeln!(
            out,
            "# host lines: load no recorded vcpu explains: pcpu busy time minus the usage\n\
             #   of the recorded vcpus there"
        )?,
    }
    writeln!(
        out,
        "# lines are written on change: a domain's first measured interval (vm, or at T\n\
         #   start); at T load when a vcpu's demand moved more than the noise band (3 x\n\
         #   its noise, at least 5 %); at T vcpus (hotplug); at T stop; host, at T host"
    )?;
    let ticks = t.tick.max(1);
    let span = Secs(
        a.interval
            .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX)),
    );
    match status {
        Status::Recording => writeln!(
            out,
            "# status: still recording; this copy has {ticks} ticks ({span})"
        )?,
        Status::Stopped => writeln!(
            out,
            "# status: {ticks} ticks ({span}), stopped by SIGINT/SIGTERM"
        )?,
        Status::Done => writeln!(out, "# status: {ticks} ticks ({span}), --for reached")?,
        Status::Failed => writeln!(
            out,
            "# status: {ticks} ticks ({span}), stopped by an error (see the log)"
        )?,
    }
    if t.tick == 0 {
        writeln!(
            out,
            "# no interval ended before the recording stopped: nothing measured"
        )?;
    }
    if let Some(note) = &a.shape_note {
        writeln!(out, "# host: {note}")?;
    }
    if a.anonymize {
        writeln!(
            out,
            "# names: anonymized, d1, d2, ... in order of appearance"
        )?;
    } else {
        let mut first = true;
        for (safe, original) in t.names.renamed() {
            if first {
                writeln!(
                    out,
                    "# names changed to fit the format (letters, digits, '.', '_', '-'):"
                )?;
                first = false;
            }
            writeln!(out, "#   {safe} = {}", Quoted(original))?;
        }
    }
    for n in &t.notes {
        writeln!(out, "# note: {}", OneLine(n))?;
    }
    if t.notes_dropped > 0 {
        writeln!(out, "# note: {} more notes left out", t.notes_dropped)?;
    }
    if t.pin_changes > 0 {
        writeln!(
            out,
            "# note: pins changed {} times while recording (record never pins: someone \
             else did); the format has no pin event, so each domain keeps the pins of its \
             first line",
            t.pin_changes
        )?;
    }
    match a.shape {
        Some(shape) => writeln!(out, "topology {shape}")?,
        None => writeln!(out, "pcpus {}", t.pcpus())?,
    }
    writeln!(out, "ticks {ticks}")?;
    if t.source == Some(DemandMode::Estimated) {
        writeln!(out, "delay off")?;
    }
    Ok(())
}

/// Text for a comment: control characters escaped, so it stays on its line.
struct OneLine<'a>(&'a str);

impl std::fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A name in double quotes, `"` and `\` escaped and control characters too.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// A duration as `1 s`, `0.5 s`, `2 min`, `24 h`.
struct Secs(Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs_f64();
        if s >= 7_200.0 {
            write!(f, "{} h", Trim(s / 3_600.0))
        } else if s >= 120.0 {
            write!(f, "{} min", Trim(s / 60.0))
        } else {
            write!(f, "{} s", Trim(s))
        }
    }
}

/// A number with at most two decimals, trailing zeros dropped.
struct Trim(f64);

impl std::fmt::Display for Trim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = (self.0 * 100.0).round() / 100.0;
        if r.fract() == 0.0 {
            write!(f, "{r:.0}")
        } else if (r * 10.0).fract().abs() < 1e-9 {
            write!(f, "{r:.1}")
        } else {
            write!(f, "{r:.2}")
        }
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC, proleptic Gregorian).
struct Utc(u64);

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (days, secs) = (self.0 / 86_400, self.0 % 86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day): H. Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(Utc(0).to_string(), "1970-01-01 00:00:00");
        assert_eq!(Utc(951_782_400).to_string(), "2000-02-29 00:00:00");
        assert_eq!(Utc(1_798_761_599).to_string(), "2026-12-31 23:59:59");
    }

    #[test]
    fn shapes_the_simulator_can_write() {
        for (s, c, th) in [(2, 4, 2), (1, 4, 2), (2, 8, 1), (4, 1, 1)] {
            let shape = shape_of(&Topology::from_shape(s, c, th)).unwrap();
            assert_eq!((shape.sockets, shape.cores, shape.threads), (s, c, th));
        }
        let caps = |f: &str| {
            let path = format!("{}/tests/fixtures/caps/{f}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(path).unwrap()
        };
        // Siblings numbered p and p + 4, as Linux often numbers them: not expressible.
        let t = Topology::from_capabilities(&caps("2socket-smt.xml"), 8)
            .unwrap()
            .unwrap();
        assert_eq!(shape_of(&t), None);
        let about = About::new("qemu:///system", false, Duration::from_secs(10), Some(&t));
        assert_eq!(about.shape, None);
        let note = about.shape_note.as_deref().unwrap();
        assert!(
            note.starts_with("the host has 2 nodes and 8 pcpus in 4 cores"),
            "{note}"
        );
        assert_eq!(about.nodes(), 1, "written as a flat host");
        // The test driver: 2 cells of 8 pcpus.
        let t = Topology::from_capabilities(&caps("test-default.xml"), 16)
            .unwrap()
            .unwrap();
        assert_eq!(shape_of(&t).map(|s| s.to_string()), Some("2 8 1".into()));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(Secs(Duration::from_secs(1)).to_string(), "1 s");
        assert_eq!(Secs(Duration::from_millis(500)).to_string(), "0.5 s");
        assert_eq!(Secs(Duration::from_secs(900)).to_string(), "15 min");
        assert_eq!(Secs(Duration::from_secs(86_400)).to_string(), "24 h");
    }
}
