//! The `vcpu-scheduler` program: parse, run the daemon or the simulator, map the result
//! to an exit code. The only place that decides how the process ends.

use std::io;
use std::process::ExitCode;

use vcpu_scheduler::policy::Params;
use vcpu_scheduler::service::cli::{self, Command, UsageError};
use vcpu_scheduler::service::simulate::{SimError, SimOptions};
use vcpu_scheduler::service::{daemon, record, signal};

/// How the program failed, which decides the exit code.
#[derive(Debug)]
enum Failure {
    /// Bad command line, settings or scenario: exit 2, nothing was touched.
    Usage(String),
    /// Could not do the job (the first connection, `--once`, a simulation): exit 1.
    Runtime(String),
    /// Whoever read our output stopped reading (`| head`): exit 0, saying nothing, as
    /// other command-line tools do.
    OutputClosed,
    /// A one-shot command (`simulate`) was interrupted by SIGINT or SIGTERM: exit 130,
    /// as a shell reports a command ended by Ctrl-C.
    Interrupted,
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::OutputClosed => ExitCode::SUCCESS,
            Failure::Interrupted => ExitCode::from(130),
            Failure::Usage(_) => ExitCode::from(2),
            Failure::Runtime(_) => ExitCode::from(1),
        }
    }
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::OutputClosed
        } else {
            Failure::Runtime(format!("cannot write output: {e}"))
        }
    }
}

impl From<daemon::Error> for Failure {
    fn from(e: daemon::Error) -> Self {
        match e {
            daemon::Error::Config(m) => Failure::Usage(m),
            daemon::Error::Runtime(m) => Failure::Runtime(m),
            daemon::Error::Output(e) => e.into(),
        }
    }
}

impl From<SimError> for Failure {
    fn from(e: SimError) -> Self {
        match e {
            e @ SimError::Scenario(_) => Failure::Usage(e.to_string()),
            SimError::Io(e) => e.into(),
            SimError::Interrupted => Failure::Interrupted,
            e => Failure::Runtime(e.to_string()),
        }
    }
}

/// The entry point, also of `vcpu_scheduler`, the course's name for this program
/// (`src/bin/vcpu_scheduler.rs`).
pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if let Failure::Usage(m) | Failure::Runtime(m) = &f {
                vcpu_scheduler::error!("{m}");
            }
            f.exit_code()
        }
    }
}

fn run() -> Result<(), Failure> {
    // Before anything else: a SIGTERM or SIGHUP in the first milliseconds must not end
    // the process by its default action, without a word (systemd may send one early).
    signal::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    vcpu_scheduler::log::init_from_env();
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
        Command::Run(cfg) => {
            for w in &cfg.warnings {
                vcpu_scheduler::warn!("{w}");
            }
            Ok(daemon::run(&cfg)?)
        }
        Command::Simulate(a) => simulate(a),
        Command::Record(a) => Ok(record::run(&a)?),
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
        hide_topology: a.ignore_topology,
    };
    let stdout = io::stdout();
    vcpu_scheduler::service::simulate::run(&a.file, &opts, &mut stdout.lock())?;
    Ok(())
}
