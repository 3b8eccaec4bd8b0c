//! The `vcpu-scheduler` program: parse, open the host, run, map the result to an exit
//! code. The only place that decides how the process ends.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use vcpu_scheduler::cli::{self, Command, Config};
use vcpu_scheduler::libvirt::{Connection, LibvirtHost};
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
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => f.write_str(m),
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
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("vcpu-scheduler: {f}");
            ExitCode::from(match f {
                Failure::Usage(_) => 2,
                Failure::Runtime(_) => 1,
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
        Command::Run(cfg) => daemon(cfg),
        Command::Simulate(a) => simulate(a),
    }
}

/// Run a scenario file against the simulated host; a malformed file is a usage error.
fn simulate(a: cli::SimulateArgs) -> Result<(), Failure> {
    let opts = SimOptions {
        policy: a.policy,
        ticks: a.ticks,
        json: a.json,
        threshold_pct: a.threshold_pct,
    };
    let stdout = io::stdout();
    match vcpu_scheduler::sim::simulate::run(&a.file, &opts, &mut stdout.lock()) {
        Ok(_) => Ok(()),
        Err(e @ SimError::Scenario(_)) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}

fn io_failure(e: io::Error) -> Failure {
    Failure::Runtime(format!("cannot write output: {e}"))
}

/// How often a lost connection is re-opened before giving up, and the first wait
/// (doubled each time: 1 + 2 + 4 + 8 + 16 s, about half a minute in all).
const RECONNECT_TRIES: u32 = 5;
const RECONNECT_FIRST_WAIT: Duration = Duration::from_secs(1);

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
    let mut first = true;
    let (mut tries, mut wait) = (0, RECONNECT_FIRST_WAIT);
    loop {
        let conn = match Connection::open(uri) {
            Ok(c) => c,
            Err(e) if first => {
                return Err(Failure::Runtime(format!("cannot connect to {uri}: {e}")));
            }
            Err(e) => {
                if tries == RECONNECT_TRIES {
                    return Err(Failure::Runtime(format!(
                        "lost {uri} and could not reconnect: {e}"
                    )));
                }
                tries += 1;
                eprintln!("vcpu-scheduler: cannot reconnect to {uri}: {e}; retrying in {wait:?}");
                if !signal::sleep(wait) {
                    return Ok(());
                }
                wait *= 2;
                continue;
            }
        };
        let reconnected = !first;
        first = false;
        match session(&cfg, &conn, &mut out, reconnected)? {
            SessionEnd::Stopped => {
                return conn
                    .close()
                    .map(drop)
                    .map_err(|e| Failure::Runtime(format!("closing {uri}: {e}")));
            }
            SessionEnd::Lost(msg) => {
                if tries == RECONNECT_TRIES {
                    return Err(Failure::Runtime(format!("lost {uri}: {msg}")));
                }
                tries += 1;
                eprintln!("vcpu-scheduler: lost {uri}: {msg}; reconnecting in {wait:?}");
                drop(conn);
                if !signal::sleep(wait) {
                    return Ok(());
                }
                wait *= 2;
            }
        }
        // A session that ran is a fresh start for the back-off.
        if reconnected {
            (tries, wait) = (0, RECONNECT_FIRST_WAIT);
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
    let mut sched = Scheduler::new(host, cfg.sched.clone());
    let tty = io::stdout().is_terminal();
    if let Err(e) = sched.tick() {
        return Ok(SessionEnd::Lost(e.to_string()));
    }
    writeln!(
        out,
        "vcpu-scheduler: {}{uri}: {pcpus} pcpus, {} vcpus seen; interval {:?}, threshold {}, policy {}{}",
        if reconnected { "reconnected to " } else { "" },
        sched.report().units.len(),
        cfg.interval,
        cfg.sched.threshold_pct,
        cfg.sched.policy.name(),
        if cfg.sched.dry_run { ", dry run" } else { "" },
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
    if cfg.monitor {
        report::write_monitor(out, sched, tty)?;
    } else {
        report::write_tick_line(out, sched)?;
    }
    if cfg.verbose {
        report::write_vcpu_table(out, sched)?;
    }
    out.flush()
}
