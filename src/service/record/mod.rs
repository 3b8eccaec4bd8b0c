//! `vcpu-scheduler record INTERVAL FILE`: the Measure phase alone, every INTERVAL, and
//! what the host's vCPUs wanted written to FILE as a scenario file that `simulate`
//! replays under any policy, one tick per interval.
//!
//! It never pins and makes no plan: the connection is opened read-only, and the only
//! calls are the sampler's, the same the daemon makes per tick (listing, the bulk vCPU
//! stats, one `virDomainGetVcpus` per domain, and per-pCPU times only where demand must
//! be estimated), plus, for each domain when it first appears, the lookups the daemon
//! makes too. No event subscription: domains that come and go are found by the
//! listing each tick, and a lost connection by the next call that fails.
//!
//! The file is always complete: it is written whole to a temporary file and renamed
//! over FILE ([`ReplacedFile`], as the metrics file is) after the first tick, about
//! once a minute, and at the end (SIGINT/SIGTERM, `--for`, an error). A lost
//! connection is re-opened as the daemon does (1, 2, 4 ... 30 s), and the recording
//! goes on at the tick the clock has reached; domains that stopped meanwhile stop there.
//!
//! [`Recorder`] is the part that knows no libvirt (the sampler, the [`Trace`] of lines,
//! the header), driven here by the live host and by the tests by a simulated one.

mod head;
mod names;
#[cfg(test)]
mod tests;
mod trace;

use std::io::{self, Write as _};
use std::time::{Duration, Instant};

pub use head::{About, Status, shape_of};
pub use trace::Trace;

use super::cli::RecordArgs;
use super::daemon::{self, Error};
use super::notify::Notifier;
use super::reconnect;
use super::signal;
use crate::files::{ReplacedFile, Shown};
use crate::host::{FailureKind, Host, HostError};
use crate::libvirt::events::{self, FLAGS, Timer, TimerKind};
use crate::libvirt::{Connection, LibvirtHost, rpc_calls};
use crate::scheduler::sample::{DemandMode, Sampler, Unit};
use crate::scheduler::select::Selection;
use crate::sim::scenario::MAX_SCENARIO_BYTES;

/// The sampler, this tick's units and the trace they feed: a recording, whatever host
/// it measures.
pub struct Recorder {
    about: About,
    sampler: Sampler,
    select: Selection,
    units: Vec<Unit>,
    trace: Trace,
    head: String,
}

impl Recorder {
    /// A recording of a host of `pcpus` pCPUs; `about` says what the header tells.
    pub fn new(select: Selection, about: About, pcpus: usize) -> Recorder {
        Recorder {
            sampler: Sampler::default(),
            trace: Trace::new(select.clone(), about.anonymize, pcpus, about.nodes()),
            about,
            select,
            units: Vec::with_capacity(64),
            head: String::with_capacity(4096),
        }
    }

    /// A new connection: the next [`Recorder::measure`] takes fresh baselines.
    pub fn reconnected(&mut self) {
        self.sampler = Sampler::default();
    }

    /// Measure the host at the end of interval `tick` (0, or a tick already measured,
    /// for a baseline) and write what changed.
    pub fn measure<H: Host>(&mut self, host: &mut H, tick: u64) -> Result<(), H::Error> {
        self.sampler.measure(host, &self.select, &mut self.units)?;
        let s = &self.sampler;
        self.trace
            .observe(tick, host, &self.units, &s.pcpu_busy, s.mode);
        self.sampler.commit(&mut self.units);
        Ok(())
    }

    /// Where the last measurement's demand came from.
    pub fn mode(&self) -> DemandMode {
        self.sampler.mode
    }

    pub fn about(&self) -> &About {
        &self.about
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }

    /// The file as it stands: its header (for `status`) and the lines after it.
    pub fn text(&mut self, status: Status) -> (&str, &str) {
        head::write_head(&mut self.head, &self.about, &self.trace, status);
        (&self.head, &self.trace.body)
    }

    /// Bytes of the file as it stands (the header as last written).
    pub fn bytes(&self) -> usize {
        self.head.len() + self.trace.body.len()
    }

    /// Replace `file` with the recording as it stands. Allocation-free once the header's
    /// buffer has grown.
    pub fn write(&mut self, status: Status, file: &mut ReplacedFile) -> io::Result<()> {
        let (head, body) = self.text(status);
        file.replace(|f| {
            f.write_all(head.as_bytes())?;
            f.write_all(body.as_bytes())
        })
    }
}

/// A copy of the file is written every this many seconds of recording (and after the
/// first tick, and at the end): what a `kill -9` or a power cut can lose.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// Room kept below [`MAX_SCENARIO_BYTES`] for the header, which grows with notes.
const HEAD_ROOM: usize = 64 * 1024;
/// Keepalive as the daemon's: a libvirtd that dies or hangs is noticed within 15 s.
const KEEPALIVE_INTERVAL_S: i32 = 5;
const KEEPALIVE_COUNT: u32 = 2;

/// How a session (one connection) ended.
enum End {
    Stopped,
    Done,
    Lost(String),
    /// The file reached what `simulate` reads.
    Full,
}

/// What lasts across connections.
struct Run<'a> {
    a: &'a RecordArgs,
    file: ReplacedFile,
    rec: Option<Recorder>,
    /// When tick 0 was measured: tick `k` is due `k` intervals later.
    t0: Instant,
    /// The last tick measured.
    tick: u64,
    /// `--for` in ticks.
    last_tick: Option<u64>,
    checkpoint_ticks: u64,
    /// The last checkpoint failed: say so once, and once when it works again.
    failing: bool,
    /// Ticks measured and libvirt calls made by them, for the last line.
    measured: u64,
    calls: u64,
}

/// Record until SIGINT/SIGTERM or `--for`. FILE is checked before connecting (a usage
/// error, exit 2); the first connection failing is a runtime error (exit 1), as for
/// the daemon.
pub fn run(a: &RecordArgs) -> Result<(), Error> {
    let file = ReplacedFile::new(&a.file, "FILE", None)
        .map_err(|e| Error::Config(format!("record: {e}")))?;
    // As the daemon's: a libvirtd silent for 15 s during a call is noticed, not waited on.
    let _wake = daemon::event_loop()?;
    let mut notify = Notifier::from_env();
    let mut conn = Some(
        Connection::open_read_only(&a.uri)
            .map_err(|e| Error::Runtime(format!("cannot connect to {}: {e}", a.uri)))?,
    );
    // Whole ticks, rounded up, in integer nanoseconds (0.2 / 0.1 is not 2 in floats).
    let ticks_in = |d: Duration| {
        let i = a.interval.as_nanos().max(1);
        u64::try_from(d.as_nanos().div_ceil(i))
            .unwrap_or(u64::MAX)
            .max(1)
    };
    let mut run = Run {
        a,
        file,
        rec: None,
        t0: Instant::now(),
        tick: 0,
        last_tick: a.duration.map(ticks_in),
        checkpoint_ticks: ticks_in(CHECKPOINT_EVERY),
        failing: false,
        measured: 0,
        calls: 0,
    };
    let (status, failure) = loop {
        let Some(c) = &conn else {
            break (Status::Stopped, None);
        };
        match run.session(c) {
            Ok(End::Stopped) => break (Status::Stopped, None),
            Ok(End::Done) => break (Status::Done, None),
            Ok(End::Full) => {
                let why = format!(
                    "record: {} reached {} MiB, the most simulate reads; stopped at tick {}",
                    Shown(&a.file),
                    MAX_SCENARIO_BYTES >> 20,
                    run.tick
                );
                break (Status::Failed, Some(Error::Runtime(why)));
            }
            Ok(End::Lost(msg)) => {
                let msg = daemon::unanswered_or(msg);
                crate::error!("lost {}: {msg}; reconnecting, the recording goes on", a.uri);
                let at = run.tick;
                if let Some(rec) = &mut run.rec {
                    rec.trace_mut()
                        .note(format!("connection lost after tick {at}"));
                }
                // The old connection goes before the new one is opened.
                drop(conn.take());
                let until = run.last_tick.map(|t| run.due(t));
                conn = reconnect::reconnect(&a.uri, &mut notify, Connection::open_read_only, until);
                if conn.is_none() && !signal::stop_requested() {
                    break (Status::Done, None);
                }
            }
            Err(e) => break (Status::Failed, Some(e)),
        }
    };
    let written = run.finish(status);
    if let Some(c) = conn {
        let _ = c.close();
    }
    match (failure, written) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(()),
    }
}

impl Run<'_> {
    /// When tick `k` is due.
    fn due(&self, k: u64) -> Instant {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        self.t0 + self.a.interval.saturating_mul(k)
    }

    /// The last tick whose time has come.
    fn tick_at(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.t0).as_nanos();
        u64::try_from(ns / self.a.interval.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// One connection: a baseline, then a measurement at every tick's time.
    fn session(&mut self, conn: &Connection) -> Result<End, Error> {
        FLAGS.clear();
        let uri = &self.a.uri;
        let lost = |e: crate::libvirt::Error| match e.kind() {
            FailureKind::ConnectionLost => Ok(End::Lost(e.to_string())),
            _ => Err(Error::Runtime(format!(
                "cannot read the node info of {uri}: {e}"
            ))),
        };
        let mut host = match LibvirtHost::new(conn) {
            Ok(h) => h,
            Err(e) => return lost(e),
        };
        let reconnect = self.rec.is_some();
        let baseline = if reconnect {
            self.tick_at(Instant::now())
        } else {
            0
        };
        let rec = match &mut self.rec {
            Some(rec) if rec.trace().pcpus() != host.pcpus() => {
                return Err(Error::Runtime(format!(
                    "record: {uri} now has {} pcpus, the recording started with {}; stopped at \
                     tick {}",
                    host.pcpus(),
                    rec.trace().pcpus(),
                    self.tick
                )));
            }
            Some(rec) => {
                rec.reconnected();
                rec
            }
            None => {
                let about = About::new(uri, self.a.anonymize, self.a.interval, host.topology());
                let select = Selection::new(self.a.include.clone(), self.a.exclude.clone());
                self.rec.insert(Recorder::new(select, about, host.pcpus()))
            }
        };
        let _ = conn.set_keepalive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
        if let Err(e) = rec.measure(&mut host, baseline) {
            return Ok(End::Lost(e.to_string()));
        }
        if !reconnect {
            // Tick k is due k intervals after the baseline was read.
            self.t0 = Instant::now();
        }
        self.tick = self.tick.max(baseline);
        let r = &*rec;
        if reconnect {
            crate::info!(
                "reconnected to {uri}: the recording goes on at tick {}",
                baseline + 1
            );
        } else {
            let shape = match &r.about().shape {
                Some(s) => format!("topology {s}"),
                None => format!("{} pcpus", host.pcpus()),
            };
            let until = match (self.a.duration, self.last_tick) {
                (Some(d), Some(t)) => format!("for {d:?} ({t} ticks)"),
                _ => "until SIGINT/SIGTERM".to_owned(),
            };
            crate::info!(
                "recording {uri} every {:?} into {}: {shape}; running domains: {}, {} of them \
                 recorded; demand: {}; {until}",
                self.a.interval,
                Shown(&self.a.file),
                host.domain_count(),
                r.trace().domains(),
                r.mode().describe(),
            );
        }
        // The next tick, at least half an interval after the baseline.
        let mut next = baseline + 1;
        let half = self.a.interval / 2;
        if self.due(next).saturating_duration_since(Instant::now()) < half {
            next += 1;
        }
        let timer = Timer::add(TimerKind::Tick, self.millis_until(next))
            .map_err(|e| Error::Runtime(format!("cannot start the tick timer: {e}")))?;
        loop {
            events::run_once()
                .map_err(|e| Error::Runtime(format!("libvirt's event loop failed: {e}")))?;
            if FLAGS.take_wake() {
                signal::drain();
            }
            if signal::stop_requested() {
                return Ok(End::Stopped);
            }
            // Settings are the command line's: nothing to reload.
            let _ = signal::take_reload();
            if signal::take_summary() {
                self.progress();
            }
            if !FLAGS.take_tick() {
                continue;
            }
            // Timers longer than libvirt's int of milliseconds fire early: check.
            let now = Instant::now();
            if now + Duration::from_millis(5) < self.due(next) {
                timer.reset(self.millis_until(next));
                continue;
            }
            let calls = rpc_calls();
            let rec = self.rec.as_mut().expect("set at the session's start");
            if let Err(e) = rec.measure(&mut host, next) {
                return Ok(End::Lost(e.to_string()));
            }
            self.calls += rpc_calls() - calls;
            self.measured += 1;
            self.tick = next;
            if rec.bytes() + HEAD_ROOM > MAX_SCENARIO_BYTES as usize {
                return Ok(End::Full);
            }
            if self.last_tick.is_some_and(|t| next >= t) {
                return Ok(End::Done);
            }
            if next == 1 || next % self.checkpoint_ticks == 0 {
                self.checkpoint();
            }
            // A tick that ran late skips the ticks whose time has passed, but not the
            // last one `--for` asks for.
            next = (next + 1).max(self.tick_at(Instant::now()) + 1);
            if let Some(t) = self.last_tick {
                next = next.min(t);
            }
            timer.reset(self.millis_until(next));
        }
    }

    fn millis_until(&self, k: u64) -> u64 {
        let left = self.due(k).saturating_duration_since(Instant::now());
        u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// A complete copy of the file as it stands; a failure is one line, and the
    /// recording goes on.
    fn checkpoint(&mut self) {
        let Some(rec) = &mut self.rec else { return };
        match rec.write(Status::Recording, &mut self.file) {
            Ok(()) if self.failing => {
                self.failing = false;
                crate::info!("{} written again", Shown(&self.a.file));
            }
            Ok(()) => {}
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    crate::warn!(
                        "cannot write {}: {e}; recording goes on",
                        Shown(&self.a.file)
                    );
                }
            }
        }
    }

    /// SIGUSR1/SIGUSR2: where the recording stands.
    fn progress(&self) {
        if let Some(rec) = &self.rec {
            crate::info!(
                "recording: tick {}, {} domains recorded, {} bytes so far",
                self.tick,
                rec.trace().domains(),
                rec.bytes()
            );
        }
    }

    /// The last write, and the line that sums the recording up.
    fn finish(&mut self, status: Status) -> Result<(), Error> {
        let Some(rec) = &mut self.rec else {
            return Ok(());
        };
        rec.write(status, &mut self.file).map_err(|e| {
            Error::Runtime(format!("record: cannot write {}: {e}", Shown(&self.a.file)))
        })?;
        let per_tick = if self.measured > 0 {
            self.calls as f64 / self.measured as f64
        } else {
            0.0
        };
        crate::info!(
            "recorded {} ticks into {}: {} bytes; {per_tick:.1} libvirt calls per tick",
            self.tick,
            Shown(&self.a.file),
            rec.bytes()
        );
        Ok(())
    }
}
