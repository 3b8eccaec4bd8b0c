//! The `vcpu-scheduler` program: parse, run the daemon or the simulator, map the result
//! to an exit code. The only place that decides how the process ends.

use std::io;
use std::process::ExitCode;

use vcpu_scheduler::cli::{self, Command};
use vcpu_scheduler::daemon::{self, Failure, io_failure};
use vcpu_scheduler::policy::Params;
use vcpu_scheduler::sim::simulate::{SimError, SimOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(f) => {
            vcpu_scheduler::error!("{f}");
            ExitCode::from(match f {
                Failure::Usage(_) => 2,
                Failure::Runtime(_) | Failure::OutputClosed => 1,
            })
        }
    }
}

fn run() -> Result<(), Failure> {
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
            daemon::run(&cfg)
        }
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
        hide_topology: a.ignore_topology,
    };
    let stdout = io::stdout();
    match vcpu_scheduler::sim::simulate::run(&a.file, &opts, &mut stdout.lock()) {
        Ok(_) => Ok(()),
        Err(e @ SimError::Scenario(_)) => Err(Failure::Usage(e.to_string())),
        Err(SimError::Io(e)) => Err(io_failure(e)),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}
