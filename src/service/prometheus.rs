//! `--metrics-file`: what the host looks like, in the Prometheus text exposition format,
//! for node_exporter's textfile collector.
//!
//! Each tick [`Renderer::render`] writes the whole file into one reused `String`, and
//! [`MetricsFile::publish`] writes that to a temporary file beside the target and renames
//! it over the target, so a reader sees the previous file or the new one, never half of
//! one. Rendering and writing allocate nothing once the buffer has grown to the host's
//! size (`tests/alloc_per_tick.rs` counts it): numbers, UUIDs and escaped labels are
//! written straight into the buffer, and std passes short paths to the kernel through a
//! stack buffer.
//!
//! Naming follows Prometheus' conventions: the `vcpu_scheduler_` prefix, base units
//! (`_ratio` for a fraction of one pCPU, `_seconds`), `_total` on counters, and a HELP and
//! TYPE line for every family. A value that is not known yet (usage on the first tick)
//! is left out rather than written as NaN.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::Path;

use crate::files::{ReplacedFile, Shown};
use crate::host::DomainKey;
use crate::policy;
use crate::scheduler::report::Report;
use crate::scheduler::sample::DemandMode;

/// What the daemon counts across connections, beside what one tick reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Pins made since the daemon started (planned ones in a dry run).
    pub migrations: u64,
    /// Pins libvirt refused since the daemon started.
    pub pin_failures: u64,
    /// Connections re-opened after one was lost.
    pub reconnects: u64,
    /// How long the last tick took (measure, analyze, act), seconds.
    pub tick_seconds: f64,
    /// When the last tick completed, seconds since the Unix epoch.
    pub last_success_unix: f64,
}

/// What is left once the tick's pins are in place: the busiest pCPU's demand over the
/// best any placement could do, max(largest vCPU demand, total demand / pCPUs). 1.0
/// means nothing better exists; a host that stays well above it cannot fix its own load
/// by pinning (a domain's vCPUs are pinned by its owner, reserved pCPUs, a vCPU that
/// wants more than the others can absorb) and needs a VM moved elsewhere.
///
/// Each vCPU counts on the pCPU it is pinned to after this tick (or where it last ran,
/// when it may run on several), which `per_pcpu` (scratch, reused) sums. Only the pCPUs
/// the scheduler may use count (`--cpus`; all of them by default), with the vCPUs on
/// them: reserved pCPUs and what runs there are not this host's imbalance. `None`
/// before demand is known; 1.0 when nothing demands anything.
pub fn residual_imbalance(r: &Report<'_>, per_pcpu: &mut Vec<f64>) -> Option<f64> {
    r.analysis.sigma_pct?;
    let usable = |p: usize| r.cpus.is_none_or(|m| m.is_set(p));
    per_pcpu.clear();
    per_pcpu.resize(r.demand.len(), 0.0);
    let mut largest = 0.0_f64;
    for (u, &d) in r.units.iter().zip(r.unit_demand) {
        if let Some(p) = u.pinned_to.or(u.last_ran_on).map(|p| p.index())
            && p < per_pcpu.len()
            && usable(p)
        {
            per_pcpu[p] += d;
            largest = largest.max(d);
        }
    }
    let (mut busiest, mut total, mut n) = (0.0_f64, 0.0, 0usize);
    for (_, &d) in per_pcpu.iter().enumerate().filter(|&(p, _)| usable(p)) {
        busiest = busiest.max(d);
        total += d;
        n += 1;
    }
    let bound = policy::bound(largest, total, n);
    Some(if bound > 0.0 { busiest / bound } else { 1.0 })
}

/// One tick's metrics, rendered into a buffer reused from tick to tick.
#[derive(Default)]
pub struct Renderer {
    buf: String,
    per_pcpu: Vec<f64>,
}

impl Renderer {
    /// Every metric of one tick, in the text exposition format.
    pub fn render(&mut self, r: &Report<'_>, c: &Counters) -> &str {
        self.buf.clear();
        let residual = residual_imbalance(r, &mut self.per_pcpu);
        // Writing into a String cannot fail.
        let _ = write_all(&mut self.buf, r, residual, c);
        &self.buf
    }
}

fn write_all(out: &mut String, r: &Report<'_>, residual: Option<f64>, c: &Counters) -> fmt::Result {
    let known = r.analysis.sigma_pct.is_some();

    family(
        out,
        "pcpu_load_ratio",
        "gauge",
        "Time the vCPUs on this pCPU ran over the last interval, plus the host's own load there, as a fraction of the pCPU.",
    )?;
    for (p, &l) in r.loads.iter().enumerate().filter(|_| known) {
        writeln!(
            out,
            "vcpu_scheduler_pcpu_load_ratio{{pcpu=\"{p}\"}} {}",
            Num(l)
        )?;
    }
    family(
        out,
        "pcpu_demand_ratio",
        "gauge",
        "What the vCPUs on this pCPU wanted (ran plus waited to run) plus the host's own load there, as a fraction of the pCPU.",
    )?;
    for (p, &d) in r.demand.iter().enumerate().filter(|_| known) {
        writeln!(
            out,
            "vcpu_scheduler_pcpu_demand_ratio{{pcpu=\"{p}\"}} {}",
            Num(d)
        )?;
    }

    family(
        out,
        "vcpu_usage_ratio",
        "gauge",
        "Time this vCPU ran over the last interval, as a fraction of one pCPU.",
    )?;
    for u in r.units {
        if let Some(x) = u.usage {
            vcpu_sample(out, "vcpu_usage_ratio", r, u.domain, u.vcpu.0)?;
            writeln!(out, " {}", Num(x))?;
        }
    }
    family(
        out,
        "vcpu_demand_ratio",
        "gauge",
        "What this vCPU wanted over the last interval (ran plus waited), as a fraction of one pCPU.",
    )?;
    for (u, &d) in r.units.iter().zip(r.unit_demand) {
        if u.usage.is_some() {
            vcpu_sample(out, "vcpu_demand_ratio", r, u.domain, u.vcpu.0)?;
            writeln!(out, " {}", Num(d))?;
        }
    }
    family(
        out,
        "vcpu_pinned_pcpu",
        "gauge",
        "The pCPU this vCPU is pinned to; -1 when it may run on several.",
    )?;
    for u in r.units {
        vcpu_sample(out, "vcpu_pinned_pcpu", r, u.domain, u.vcpu.0)?;
        match u.pinned_to {
            Some(p) => writeln!(out, " {}", p.0)?,
            None => out.write_str(" -1\n")?,
        }
    }

    let a = &r.analysis;
    gauge(
        out,
        "load_sigma_ratio",
        "Standard deviation of the pCPU loads, as a fraction of one pCPU.",
        a.sigma_pct.map(|s| s / 100.0),
    )?;
    gauge(
        out,
        "demand_sigma_ratio",
        "Standard deviation of the pCPU demands, as a fraction of one pCPU.",
        a.demand_sigma_pct.map(|s| s / 100.0),
    )?;
    gauge(
        out,
        "threshold_ratio",
        "Balanced when both standard deviations are at most this, as a fraction of one pCPU.",
        Some(r.threshold_pct / 100.0),
    )?;
    gauge(
        out,
        "balanced",
        "1 when the last tick found the loads balanced (sigma within the threshold in every NUMA node), else 0.",
        known.then_some(f64::from(u8::from(a.balanced()))),
    )?;
    gauge(
        out,
        "settled",
        "1 when no move was worth its price at the last tick (the host is as even as its vCPUs allow), else 0.",
        known.then_some(f64::from(u8::from(a.settled))),
    )?;
    gauge(
        out,
        "residual_imbalance_ratio",
        "After this tick's pins, the busiest pCPU's demand over max(largest vCPU demand, \
         total demand / pCPUs); staying above 1 means pinning cannot even out this host.",
        residual,
    )?;

    counter(
        out,
        "migrations_total",
        "vCPU pins made since the daemon started (planned ones in a dry run).",
        c.migrations,
    )?;
    counter(
        out,
        "pin_failures_total",
        "vCPU pins libvirt refused since the daemon started.",
        c.pin_failures,
    )?;
    counter(
        out,
        "reconnects_total",
        "Connections to the hypervisor re-opened after one was lost.",
        c.reconnects,
    )?;
    gauge(
        out,
        "last_tick_duration_seconds",
        "How long the last tick took: measure, analyze and act.",
        Some(c.tick_seconds),
    )?;
    gauge(
        out,
        "last_success_timestamp_seconds",
        "When the last tick completed, in seconds since the Unix epoch.",
        Some(c.last_success_unix),
    )?;

    let (managed, alone) = r.domain_counts();
    family(
        out,
        "domains",
        "gauge",
        "Running domains, by whether the scheduler may pin them (managed) or not (left_alone).",
    )?;
    writeln!(out, "vcpu_scheduler_domains{{state=\"managed\"}} {managed}")?;
    writeln!(
        out,
        "vcpu_scheduler_domains{{state=\"left_alone\"}} {alone}"
    )?;
    gauge(
        out,
        "demand_measured",
        "1 when demand is measured from run-queue delay, 0 when estimated from usage.",
        Some(f64::from(u8::from(r.mode == DemandMode::Measured))),
    )?;
    gauge(
        out,
        "dry_run",
        "1 when the daemon decides but never pins (--dry-run), else 0.",
        Some(f64::from(u8::from(r.dry_run))),
    )
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP vcpu_scheduler_{name} {help}")?;
    writeln!(out, "# TYPE vcpu_scheduler_{name} {kind}")
}

/// A family of one unlabelled gauge; only its HELP and TYPE while the value is unknown.
fn gauge(out: &mut String, name: &str, help: &str, value: Option<f64>) -> fmt::Result {
    family(out, name, "gauge", help)?;
    match value {
        Some(x) if x.is_finite() => writeln!(out, "vcpu_scheduler_{name} {}", Num(x)),
        _ => Ok(()),
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) -> fmt::Result {
    family(out, name, "counter", help)?;
    writeln!(out, "vcpu_scheduler_{name} {value}")
}

/// `vcpu_scheduler_NAME{domain="web",uuid="…",vcpu="0"}`, without the value.
fn vcpu_sample(
    out: &mut String,
    name: &str,
    r: &Report<'_>,
    domain: DomainKey,
    vcpu: u32,
) -> fmt::Result {
    write!(out, "vcpu_scheduler_{name}{{domain=\"")?;
    escape_label(out, r.name(domain))?;
    write!(out, "\",uuid=\"{}\",vcpu=\"{vcpu}\"}}", Uuid(&domain.uuid))
}

/// A label value as the text format wants it: backslash, double quote and line feed
/// escaped; everything else, UTF-8 included, as it is.
pub fn escape_label(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// A sample value: finite, at most 6 decimals, no exponent (`0.25`, `1.5`, `-1`).
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = (self.0 * 1e6).round() / 1e6;
        // -0 reads oddly and means 0.
        write!(f, "{}", if x == 0.0 { 0.0 } else { x })
    }
}

/// The canonical 8-4-4-4-12 form, lower case, as `virsh domuuid` prints it.
pub struct Uuid<'a>(pub &'a [u8; 16]);

impl fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_char('-')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The file node_exporter reads, and the buffer it is rendered into.
///
/// The file is replaced whole each tick through a fresh temporary file
/// ([`ReplacedFile`]): the textfile collector reads only `*.prom`, so it never picks the
/// temporary `.NAME.RANDOM.tmp` up, and never sees half a file.
pub struct MetricsFile {
    file: ReplacedFile,
    renderer: Renderer,
    /// The last write failed: say so once, and once more when it works again.
    failing: bool,
}

impl MetricsFile {
    /// Checks `path` before anything starts (see [`ReplacedFile::new`]): its directory
    /// must exist, and where it exists it must be a regular file that is neither the
    /// settings file (`config_file`) nor this program. The error is one line for the
    /// usage message.
    pub fn new(path: &Path, config_file: Option<&Path>) -> Result<Self, String> {
        Ok(MetricsFile {
            file: ReplacedFile::new(path, "--metrics-file", config_file)?,
            renderer: Renderer {
                buf: String::with_capacity(16 * 1024),
                per_pcpu: Vec::new(),
            },
            failing: false,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The last write failed (and was logged).
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// Render the tick and replace the file with it. A failure is logged (once until the
    /// file can be written again) and otherwise ignored: metrics never stop the loop.
    pub fn publish(&mut self, r: &Report<'_>, c: &Counters) {
        let text = self.renderer.render(r, c);
        match self.file.replace(|f| f.write_all(text.as_bytes())) {
            Ok(()) if self.failing => {
                self.failing = false;
                crate::info!("metrics file {} written again", Shown(self.file.path()));
            }
            Ok(()) => {}
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    crate::warn!("cannot write metrics file {}: {e}", Shown(self.file.path()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
