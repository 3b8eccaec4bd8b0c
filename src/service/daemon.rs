//! The service around the loop: one thread, driven by libvirt's event loop.
//!
//! What wakes the thread, and what it does then:
//! - the tick timer (every INTERVAL): one [`Scheduler::tick`], its report, a `STATUS=`;
//! - a domain lifecycle event: a domain that starts is taken into management at once
//!   (a tick now, whatever INTERVAL is), one that stops is forgotten at once;
//! - the connection closing (libvirtd gone, or silent: noticed within 15 s, by the
//!   keepalive while the thread idles, `libvirt::silence` while it waits in a call):
//!   reconnect, waiting 1, 2, 4 … 30 s between attempts, for as long as it takes;
//! - SIGINT/SIGTERM (a byte on the signal pipe): stop, within a fraction of a second;
//! - the watchdog timer, when systemd asks for one: `WATCHDOG=1`.
//!
//! By default the output is a log for a journal: one line per event that matters (a
//! move and why, a reconnect, an error) and a summary every 10 minutes. `-v` prints a
//! tick line and the per-vCPU table every tick instead of the move lines, `--monitor`
//! the live view.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use super::cli::{self, Config};
use super::duration::millis;
use super::notify::Notifier;
use super::prometheus::{Counters, MetricsFile};
use super::reconnect::reconnect;
use super::signal;
use crate::files::Shown;
use crate::host::{FailureKind, Host, HostError};
use crate::libvirt::events::{self, FLAGS, Timer, TimerKind, Watch};
use crate::libvirt::{Connection, LibvirtHost, silence};
use crate::scheduler::Scheduler;
use crate::scheduler::report::{self, Report};
use crate::scheduler::sample::DemandMode;

/// Why the daemon stopped, other than by being told to. `main` decides what each
/// means for the process (its exit code).
#[derive(Debug)]
pub enum Error {
    /// A setting that cannot work, found before anything was touched.
    Config(String),
    /// The job could not be done: the first connection, the event loop, `--once`.
    Runtime(String),
    /// The output could not be written (a reader that went away included).
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) | Error::Runtime(m) => f.write_str(m),
            Error::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

pub(crate) fn runtime(what: &str) -> impl Fn(crate::libvirt::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{what}: {e}"))
}

/// What the daemon and `record` run on: the watch for a silent libvirtd, libvirt's
/// default event loop, and the signal pipe watched in it (keep the returned watch).
pub(crate) fn event_loop() -> Result<Option<Watch>, Error> {
    // libvirt's keepalive cannot end a call this one thread is blocked in (see
    // src/libvirt/silence.rs): a timer does, 14 s after libvirtd last said anything.
    if let Err(e) = silence::enable() {
        crate::warn!("cannot watch for a silent libvirtd ({e}); a hung one will not be noticed");
    }
    events::register_default_impl().map_err(runtime("cannot start libvirt's event loop"))?;
    signal::wake_fd()
        .map(Watch::readable)
        .transpose()
        .map_err(runtime("cannot watch the signal pipe"))
}

/// Keepalive: a probe every 5 s, the connection given up after 2 unanswered ones, so a
/// libvirtd that dies or hangs is noticed within 15 s whatever INTERVAL is.
const KEEPALIVE_INTERVAL_S: i32 = 5;
const KEEPALIVE_COUNT: u32 = 2;

/// How one connected session ended.
enum SessionEnd {
    /// SIGINT/SIGTERM, or `--once` done.
    Stopped,
    /// The connection was lost (libvirtd restarted or hung).
    Lost(String),
    /// A reload named another URI: connect there.
    Moved,
}

/// Run the daemon until SIGINT/SIGTERM (or one tick with `--once`).
///
/// The first connection is not retried: a wrong URI or missing rights are reported at
/// once (exit 1). Later losses are retried for as long as it takes.
pub fn run(cfg: &Config) -> Result<(), Error> {
    // A reload (SIGHUP) may change any of it.
    let mut cfg = cfg.clone();
    let cfg = &mut cfg;
    // Checked before anything starts: a metrics directory that is not there is a typo.
    let mut metrics = Metrics {
        file: cfg
            .metrics_file
            .as_deref()
            .map(|p| MetricsFile::new(p, cfg.config_file.as_deref()))
            .transpose()
            .map_err(Error::Config)?,
        carried: Counters::default(),
        now: Counters::default(),
    };
    if let Some(file) = &metrics.file {
        private_tmp_warning(file.path());
    }
    signal::install()
        .map_err(|e| Error::Runtime(format!("cannot install signal handlers: {e}")))?;
    let _wake = event_loop()?;
    let mut notify = Notifier::from_env();
    let _watchdog = notify
        .watchdog_every()
        .map(|d| Timer::add(TimerKind::Watchdog, millis(d)))
        .transpose()
        .map_err(runtime("cannot start the watchdog timer"))?;
    let mut conn = match Connection::open(&cfg.uri) {
        Ok(c) => c,
        // SIGINT/SIGTERM ended an open that was waiting on a silent libvirtd.
        Err(_) if signal::stop_requested() => return Ok(()),
        Err(e) => {
            let e = unanswered_or(e);
            return Err(Error::Runtime(format!(
                "cannot connect to {}: {e}",
                cfg.uri
            )));
        }
    };
    notify.ready();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut reconnected_after = None;
    let result = loop {
        match session(
            cfg,
            &conn,
            &mut out,
            &mut notify,
            &mut metrics,
            reconnected_after,
        ) {
            Ok(SessionEnd::Stopped) => break Ok(()),
            // A call ended because a stop was requested while it waited: just stop.
            Ok(SessionEnd::Lost(_)) if signal::stop_requested() => break Ok(()),
            Ok(SessionEnd::Lost(msg)) if cfg.once => {
                let msg = unanswered_or(msg);
                break Err(Error::Runtime(format!("lost {}: {msg}", cfg.uri)));
            }
            Ok(end @ (SessionEnd::Lost(_) | SessionEnd::Moved)) => {
                if let SessionEnd::Lost(msg) = end {
                    let msg = unanswered_or(msg);
                    crate::error!("lost {}: {msg}; reconnecting", cfg.uri);
                }
                let lost_at = Instant::now();
                // The old connection goes before the new one is opened.
                drop(conn);
                match reconnect(&cfg.uri, &mut notify, Connection::open, None) {
                    Some(c) => conn = c,
                    None => {
                        notify.stopping();
                        return Ok(());
                    }
                }
                reconnected_after = Some(lost_at.elapsed());
                metrics.now.reconnects += 1;
            }
            Err(f) => break Err(f),
        }
    };
    notify.stopping();
    let closed = conn
        .close()
        .map(drop)
        .map_err(runtime("closing the connection"));
    result.and(closed)
}

/// Why a connection was lost, in one phrase: when the silence timer closed it, that
/// (libvirt's own message is then an end of file that libvirtd never sent), else `msg`.
pub(crate) fn unanswered_or(msg: impl fmt::Display) -> String {
    match silence::fired() {
        Some(d) => format!(
            "libvirtd did not answer for {} s: closing the connection",
            d.as_secs()
        ),
        None => msg.to_string(),
    }
}

/// The connection closed: in the event loop (libvirtd gone, the keepalive), or under a
/// call that did not fail the tick (a pin, which only ends the act step), which is then
/// a loss now, not after the next INTERVAL.
fn closed_meanwhile() -> Option<SessionEnd> {
    let why = events::close_reason(FLAGS.take_closed()?);
    Some(SessionEnd::Lost(format!("the connection closed ({why})")))
}

/// What the daemon tells about a run, beyond each tick.
struct Journal {
    /// When the last summary was logged, and the moves since.
    summary_at: Instant,
    moves: u64,
    mode: Option<DemandMode>,
}

/// The metrics file, and the counters it shows across connections: each connection
/// gets a fresh [`Scheduler`], whose counts add to what earlier ones `carried`.
struct Metrics {
    file: Option<MetricsFile>,
    carried: Counters,
    now: Counters,
}

impl Metrics {
    /// After each tick: update the counters and, with `--metrics-file`, write them.
    fn tick_done(&mut self, r: &Report<'_>, took: Duration) {
        let now = &mut self.now;
        now.migrations = self.carried.migrations + r.migrations;
        now.pin_failures = self.carried.pin_failures + r.failed_pins;
        now.tick_seconds = took.as_secs_f64();
        now.last_success_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Some(file) = &mut self.file {
            file.publish(r, now);
        }
    }
}

/// Under systemd (`INVOCATION_ID` set) the unit's `PrivateTmp=yes` gives the daemon a
/// /tmp and /var/tmp of its own: a metrics file there is written where node_exporter
/// never looks. Say so once; the operator may mean it (a test, a drop-in without it).
fn private_tmp_warning(path: &std::path::Path) {
    let private = path.starts_with("/tmp") || path.starts_with("/var/tmp");
    if private && std::env::var_os("INVOCATION_ID").is_some() {
        crate::warn!(
            "metrics: {} is under /tmp or /var/tmp, which the unit's PrivateTmp=yes makes \
             private to this service: node_exporter will not see it",
            Shown(path)
        );
    }
}

/// One tick, timed for the metrics and published there; its report for the other
/// readers.
fn timed_tick<'s>(
    sched: &'s mut Scheduler<LibvirtHost<'_>>,
    metrics: &mut Metrics,
) -> Result<Report<'s>, crate::libvirt::Error> {
    let started = Instant::now();
    let r = sched.tick()?;
    metrics.tick_done(&r, started.elapsed());
    Ok(r)
}

/// One connected run of the loop: baseline, then a tick at every timer or event.
fn session(
    cfg: &mut Config,
    conn: &Connection,
    out: &mut dyn Write,
    notify: &mut Notifier,
    metrics: &mut Metrics,
    reconnected_after: Option<Duration>,
) -> Result<SessionEnd, Error> {
    let uri = cfg.uri.clone();
    FLAGS.clear();
    let host = match LibvirtHost::new(conn) {
        Ok(h) => h,
        // libvirtd went away (or silent) right after the open: reconnect, as in a tick.
        Err(e) if e.kind() == FailureKind::ConnectionLost => {
            return Ok(SessionEnd::Lost(e.to_string()));
        }
        Err(e) => {
            return Err(Error::Runtime(format!(
                "cannot read the node info of {uri}: {e}"
            )));
        }
    };
    // 1 to 8192: the connection refused any other count.
    let pcpus = host.pcpus();
    // Checked before the first tick, so a bad --cpus touches nothing.
    let mut sched_cfg = cfg.sched.clone();
    if let Some(list) = &cfg.cpus {
        sched_cfg.cpus =
            Some(cli::cpus_for_host(list, pcpus).map_err(|e| Error::Config(e.to_string()))?);
    }
    // A driver without keepalive (test://, in-process) cannot hang either.
    let _ = conn.set_keepalive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
    let subscriptions = conn.subscribe();
    let mut sched = Scheduler::new(host, sched_cfg);
    metrics.carried = metrics.now;
    let r = match timed_tick(&mut sched, metrics) {
        Ok(r) => r,
        Err(e) => return Ok(SessionEnd::Lost(e.to_string())),
    };
    if let Some(end) = closed_meanwhile() {
        return Ok(end);
    }
    let mut journal = Journal {
        summary_at: Instant::now(),
        moves: 0,
        mode: Some(r.mode),
    };
    log_start(cfg, &r, pcpus, reconnected_after, subscriptions.lifecycle());
    // After the first write: a file that could not be written has had its warning.
    if let Some(file) = metrics.file.as_ref().filter(|f| !f.failing()) {
        crate::info!("metrics: {} is rewritten every tick", Shown(file.path()));
    }
    if cfg.verbose {
        match sched.host().topology() {
            Some(t) => crate::info!("topology: {t}"),
            None => crate::info!("topology: one node, no SMT (the host describes no other)"),
        }
    }
    let tty = io::stdout().is_terminal();
    let mut interval_ms = millis(cfg.interval);
    let timer =
        Timer::add(TimerKind::Tick, interval_ms).map_err(runtime("cannot start the tick timer"))?;
    let mut due_at = Instant::now() + cfg.interval;
    loop {
        events::run_once().map_err(runtime("libvirt's event loop failed"))?;
        if FLAGS.take_wake() {
            signal::drain();
        }
        if signal::stop_requested() {
            return Ok(SessionEnd::Stopped);
        }
        if signal::take_reload() {
            notify.reloading();
            let moved = reload(cfg, &mut sched, metrics, pcpus);
            notify.ready();
            if moved {
                return Ok(SessionEnd::Moved);
            }
            // A new INTERVAL counts from now.
            interval_ms = millis(cfg.interval);
            timer.reset(interval_ms);
            due_at = Instant::now() + cfg.interval;
        }
        if signal::take_summary() {
            journal.summary(&sched.report());
        }
        if FLAGS.take_watchdog() {
            notify.watchdog();
        }
        if let Some(end) = closed_meanwhile() {
            return Ok(end);
        }
        let config = FLAGS.take_config();
        if FLAGS.take_domains() || config {
            sched.host_mut().domains_changed(config);
        }
        // A domain started or stopped: take it in, or forget it, now. Not in --once,
        // whose one tick comes after INTERVAL.
        let now_please = FLAGS.take_started_or_stopped() && !cfg.once;
        // Timers longer than libvirt's int of milliseconds fire early: check the clock.
        let due = FLAGS.take_tick() && Instant::now() + Duration::from_millis(5) >= due_at;
        if !(due || now_please) {
            continue;
        }
        let r = match timed_tick(&mut sched, metrics) {
            Ok(r) => r,
            Err(e) => return Ok(SessionEnd::Lost(e.to_string())),
        };
        if let Some(end) = closed_meanwhile() {
            return Ok(end);
        }
        timer.reset(interval_ms);
        due_at = Instant::now() + cfg.interval;
        tell(cfg, &r, out, tty, &mut journal).map_err(Error::Output)?;
        notify.status(format_args!("{}", Status(&r)));
        notify.watchdog();
        if cfg.once && due {
            return Ok(SessionEnd::Stopped);
        }
    }
}

/// The line that says what the daemon found when it connected.
fn log_start(
    cfg: &Config,
    r: &Report<'_>,
    pcpus: usize,
    reconnected_after: Option<Duration>,
    events: bool,
) {
    let verb = match reconnected_after {
        Some(d) => format!("reconnected to {} after {:.0} s", cfg.uri, d.as_secs_f64()),
        None => format!("connected to {}", cfg.uri),
    };
    crate::info!(
        "{verb}: {pcpus} pcpus, {} vcpus seen; interval {:?}, threshold {}, policy {}{}{}; demand: {}",
        r.units.len(),
        cfg.interval,
        cfg.sched.params.threshold_pct,
        cfg.sched.policy.name(),
        if cfg.sched.dry_run { ", dry run" } else { "" },
        if events {
            ""
        } else {
            "; no domain events from this driver"
        },
        r.mode.describe(),
    );
}

/// Everything said after a tick: the requested view, and the journal's lines.
fn tell(
    cfg: &Config,
    r: &Report<'_>,
    out: &mut dyn Write,
    tty: bool,
    journal: &mut Journal,
) -> io::Result<()> {
    if cfg.monitor {
        report::write_monitor(out, r, tty)?;
    } else if cfg.verbose || cfg.once {
        report::write_tick_line(out, r)?;
    }
    if cfg.verbose {
        report::write_vcpu_table(out, r)?;
    }
    out.flush()?;
    // Move lines are the default view; -v and the monitor already show the moves.
    if !cfg.verbose && !cfg.monitor {
        for m in r.moves.iter().filter(|m| m.counts()) {
            crate::info!("{}", report::MoveLine(r, m));
        }
    }
    journal.moves += r.moves.iter().filter(|m| m.counts()).count() as u64;
    if journal.mode != Some(r.mode) {
        crate::info!("demand: {}", r.mode.describe());
        journal.mode = Some(r.mode);
    }
    if journal.summary_at.elapsed() >= cfg.summary_every {
        journal.summary(r);
    }
    Ok(())
}

impl Journal {
    /// The summary line, now, and a new period for the next one.
    fn summary(&mut self, r: &Report<'_>) {
        let minutes = self.summary_at.elapsed().as_secs_f64() / 60.0;
        crate::info!("{}", report::Summary(r, self.moves, minutes));
        self.summary_at = Instant::now();
        self.moves = 0;
    }
}

/// SIGHUP: read the command line and the settings file again. A valid result takes
/// effect at once (the next tick plans with it), with one line saying what changed;
/// an invalid one is one line naming `FILE:LINE`, and the settings in use stay.
/// `true` when the URI changed: the caller connects there.
fn reload(
    cfg: &mut Config,
    sched: &mut Scheduler<LibvirtHost<'_>>,
    metrics: &mut Metrics,
    pcpus: usize,
) -> bool {
    let env_uri = std::env::var("LIBVIRT_DEFAULT_URI").ok();
    let fail = |why: &str| crate::error!("reload: {why}; keeping the settings in use");
    let new = match cli::parse(&cfg.argv, env_uri.as_deref()) {
        Ok(cli::Command::Run(new)) => *new,
        Ok(_) => {
            fail("the command line no longer runs the daemon");
            return false;
        }
        Err(e) => {
            fail(&e.0);
            return false;
        }
    };
    let mut sched_cfg = new.sched.clone();
    if let Some(list) = &new.cpus {
        match cli::cpus_for_host(list, pcpus) {
            Ok(m) => sched_cfg.cpus = Some(m),
            Err(e) => {
                fail(&e.0);
                return false;
            }
        }
    }
    let file = if new.metrics_file == cfg.metrics_file {
        None
    } else {
        let settings = new.config_file.as_deref();
        match new
            .metrics_file
            .as_deref()
            .map(|p| MetricsFile::new(p, settings))
            .transpose()
        {
            Ok(f) => Some(f),
            Err(e) => {
                fail(&e);
                return false;
            }
        }
    };
    for w in &new.warnings {
        crate::warn!("{w}");
    }
    let from = match &cfg.config_file {
        Some(p) => format!(" {}", Shown(p)),
        None => String::new(),
    };
    crate::info!("reloaded{from}: {}", cli::changes(cfg, &new));
    if let Some(f) = file {
        metrics.file = f;
    }
    sched.reconfigure(sched_cfg);
    let moved = new.uri != cfg.uri;
    *cfg = new;
    moved
}

/// The one-line `STATUS=` for systemd: `tick 12: sigma 1.3, demand 2.0; 5 domains`.
struct Status<'a>(&'a Report<'a>);

impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "tick {}: ", r.tick)?;
        match (r.analysis.sigma_pct, r.analysis.demand_sigma_pct) {
            (Some(s), Some(d)) => write!(f, "sigma {s:.1}, demand sigma {d:.1}")?,
            _ => f.write_str("baseline")?,
        }
        write!(f, "; {}; {} vcpus", r.outcome().as_str(), r.units.len())
    }
}
