//! The `vcpu-scheduler` program: parse, open the host, run, map the result to an exit
//! code. The only place that decides how the process ends.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use vcpu_scheduler::backoff::Backoff;
use vcpu_scheduler::cli::{self, Command, Config};
use vcpu_scheduler::libvirt::{Connection, LibvirtHost};
use vcpu_scheduler::policy::Params;
use vcpu_scheduler::report;
use vcpu_scheduler::scheduler::Scheduler;
use vcpu_scheduler::signal;
use vcpu_scheduler::sim::simulate::{SimError, SimOptions};

/// How the program failed, which decides the exit code.
enum Failure {
    /// Bad command line or configuration: exit 2, nothing was touched.
    Usage(String),
    /// Could not do the job (connect, list, lost connection): exit 1.
    Runtime(String),
    /// Whoever read our output stopped reading: exit 0, saying nothing.
    OutputClosed,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => f.write_str(m),
            Failure::OutputClosed => f.write_str("output closed"),
        }
    }
}

impl From<cli::UsageError> for Failure {
    fn from(e: cli::UsageError) -> Self {
        Failure::Usage(e.to_string())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("vcpu-scheduler: {f}");
            ExitCode::from(match f {
                Failure::Usage(_) => 2,
                Failure::Runtime(_) | Failure::OutputClosed => 1,
            })
        }
    }
}

fn run() -> Result<(), Failure> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                return Err(Failure::Usage(format!(
                    "argument {bad:?} is not valid UTF-8"
                )));
            }
        }
    }
    let env_uri = std::env::var("LIBVIRT_DEFAULT_URI").ok();
    match cli::parse(&args, env_uri.as_deref())? {
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Version => {
            println!("vcpu-scheduler {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(cfg) => daemon(*cfg),
        Command::Simulate(a) => simulate(a),
    }
}

/// Run a scenario file against the simulated host; a malformed file is a usage error.
fn simulate(a: cli::SimulateArgs) -> Result<(), Failure> {
    let opts = SimOptions {
        policy: a.policy,
        ticks: a.ticks,
        json: a.json,
        params: Params {
            threshold_pct: a.threshold_pct,
            ..Params::default()
        },
    };
    let stdout = io::stdout();
    match vcpu_scheduler::sim::simulate::run(&a.file, &opts, &mut stdout.lock()) {
        Ok(_) => Ok(()),
        Err(e @ SimError::Scenario(_)) => Err(Failure::Usage(e.to_string())),
        Err(SimError::Io(e)) => Err(io_failure(e)),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}

/// Output that cannot be written ends the program; a reader that went away (`| head`)
/// ends it quietly, as it does other command-line tools.
fn io_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::OutputClosed
    } else {
        Failure::Runtime(format!("cannot write output: {e}"))
    }
}

/// How often a lost connection is re-opened before giving up, and the first wait
/// (doubled each time: 1 + 2 + 4 + 8 + 16 s, about half a minute in all).
const RECONNECT_TRIES: u32 = 5;
const RECONNECT_FIRST_WAIT: Duration = Duration::from_secs(1);
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(16);

/// How one connected session ended.
enum SessionEnd {
    /// SIGINT/SIGTERM, or `--once` done.
    Stopped,
    /// The host could not be listed any more (libvirtd restarted, connection broken).
    Lost(String),
}

/// Connect, then tick every INTERVAL until SIGINT/SIGTERM (or once with `--once`).
///
/// A connection lost mid-run is re-opened with a growing wait, because libvirtd restarts
/// (package upgrades, for one) should not stop the daemon; the scheduler starts again
/// from fresh baselines. The first connection is not retried: a wrong URI or missing
/// rights are reported at once.
fn daemon(cfg: Config) -> Result<(), Failure> {
    signal::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    let uri = cfg.uri.as_str();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut backoff = Backoff::new(RECONNECT_FIRST_WAIT, RECONNECT_MAX_WAIT);
    let mut conn = Connection::open(uri)
        .map_err(|e| Failure::Runtime(format!("cannot connect to {uri}: {e}")))?;
    let mut reconnected = false;
    loop {
        match session(&cfg, &conn, &mut out, reconnected)? {
            SessionEnd::Stopped => {
                return conn
                    .close()
                    .map(drop)
                    .map_err(|e| Failure::Runtime(format!("closing {uri}: {e}")));
            }
            SessionEnd::Lost(msg) => {
                drop(conn);
                eprintln!("vcpu-scheduler: lost {uri}: {msg}");
                match reconnect(uri, &mut backoff)? {
                    Some(c) => conn = c,
                    None => return Ok(()),
                }
                reconnected = true;
            }
        }
    }
}

/// Re-open `uri`, waiting between attempts as `backoff` says. `Ok(None)` when a stop was
/// requested while waiting; an error once the attempts are used up.
fn reconnect(uri: &str, backoff: &mut Backoff) -> Result<Option<Connection>, Failure> {
    backoff.reset();
    loop {
        let wait = backoff.next_wait();
        eprintln!("vcpu-scheduler: reconnecting to {uri} in {wait:?}");
        if !signal::sleep(wait) {
            return Ok(None);
        }
        match Connection::open(uri) {
            Ok(c) => return Ok(Some(c)),
            Err(e) if backoff.attempts() == RECONNECT_TRIES => {
                return Err(Failure::Runtime(format!(
                    "lost {uri} and could not reconnect: {e}"
                )));
            }
            Err(e) => eprintln!("vcpu-scheduler: cannot reconnect to {uri}: {e}"),
        }
    }
}

/// One connected run of the loop: baseline, then a tick every INTERVAL.
fn session(
    cfg: &Config,
    conn: &Connection,
    out: &mut dyn Write,
    reconnected: bool,
) -> Result<SessionEnd, Failure> {
    let uri = cfg.uri.as_str();
    let host = LibvirtHost::new(conn)
        .map_err(|e| Failure::Runtime(format!("cannot read the node info of {uri}: {e}")))?;
    let pcpus = host
        .pcpus_checked()
        .map_err(|m| Failure::Runtime(format!("{uri}: {m}")))?;
    // Checked before the first tick, so a bad --cpus touches nothing.
    let mut sched_cfg = cfg.sched.clone();
    if let Some(list) = &cfg.cpus {
        sched_cfg.cpus = Some(cli::cpus_for_host(list, pcpus)?);
    }
    let mut sched = Scheduler::new(host, sched_cfg);
    let tty = io::stdout().is_terminal();
    if let Err(e) = sched.tick() {
        return Ok(SessionEnd::Lost(e.to_string()));
    }
    writeln!(
        out,
        "vcpu-scheduler: {}{uri}: {pcpus} pcpus, {} vcpus seen; interval {:?}, threshold {}, policy {}{}; demand: {}",
        if reconnected { "reconnected to " } else { "" },
        sched.report().units.len(),
        cfg.interval,
        cfg.sched.params.threshold_pct,
        cfg.sched.policy.name(),
        if cfg.sched.dry_run { ", dry run" } else { "" },
        sched.report().mode.describe(),
    )
    .map_err(io_failure)?;
    out.flush().map_err(io_failure)?;

    while signal::sleep(cfg.interval) {
        if let Err(e) = sched.tick() {
            return Ok(SessionEnd::Lost(e.to_string()));
        }
        print_tick(out, &sched, cfg, tty).map_err(io_failure)?;
        if cfg.once {
            break;
        }
    }
    Ok(SessionEnd::Stopped)
}

fn print_tick<H: vcpu_scheduler::host::Host>(
    out: &mut dyn Write,
    sched: &Scheduler<H>,
    cfg: &Config,
    tty: bool,
) -> io::Result<()> {
    let r = sched.report();
    if cfg.monitor {
        report::write_monitor(out, &r, tty)?;
    } else {
        report::write_tick_line(out, &r)?;
    }
    if cfg.verbose {
        report::write_vcpu_table(out, &r)?;
    }
    out.flush()
}
