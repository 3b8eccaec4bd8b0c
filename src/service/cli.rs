//! Command line: the getopts table, and `Matches` turned into a validated [`Command`].
//!
//! Everything is checked here, before a connection is opened or a pin is made: a bad
//! value is a [`UsageError`] naming the option and the value, and the program exits 2.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use getopts::Options;

use super::settings;
use crate::cpumap::{CpuMap, MAX_CPUS};
use crate::policy::{DEFAULT_THRESHOLD_PCT, Params, Policy};
use crate::scheduler::SchedConfig;
use crate::scheduler::select::Selection;

pub const DEFAULT_URI: &str = "qemu:///system";

/// A usage or configuration error: one line, shown with a pointer to `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (try --help)", self.0)
    }
}

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub uri: String,
    pub interval: Duration,
    pub once: bool,
    pub verbose: bool,
    pub monitor: bool,
    /// `--cpus`, checked for syntax; checked against the host once connected.
    pub cpus: Option<String>,
    /// How often the log gets a summary line.
    pub summary_every: Duration,
    /// Where to write Prometheus metrics each tick (`--metrics-file`).
    pub metrics_file: Option<PathBuf>,
    /// What the settings file said that was ignored (unknown keys), one line each.
    pub warnings: Vec<String>,
    pub sched: SchedConfig,
}

/// Summary lines in the log: every 10 minutes.
pub const DEFAULT_SUMMARY: Duration = Duration::from_secs(600);

/// The `simulate` subcommand's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateArgs {
    pub file: PathBuf,
    pub policy: Policy,
    pub ticks: Option<u64>,
    pub json: bool,
    pub threshold_pct: f64,
    /// Schedule as if the host had no topology (the model keeps it), for comparison.
    pub ignore_topology: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Boxed: a `Config` is much larger than the other commands.
    Run(Box<Config>),
    Simulate(SimulateArgs),
    Help(String),
    Version,
}

fn daemon_options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "c",
        "connect",
        "hypervisor URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system)",
        "URI",
    );
    o.optopt(
        "t",
        "threshold",
        &format!(
            "balanced when the std. deviation of pCPU loads is at most SIGMA percentage points (default {DEFAULT_THRESHOLD_PCT})"
        ),
        "SIGMA",
    );
    o.optopt(
        "p",
        "policy",
        "balance (default) or seed (the original one-move rule)",
        "NAME",
    );
    o.optmulti(
        "d",
        "domain",
        "manage only domains whose name matches GLOB (repeatable)",
        "GLOB",
    );
    o.optmulti(
        "x",
        "exclude-domain",
        "never pin domains whose name matches GLOB (repeatable)",
        "GLOB",
    );
    o.optopt(
        "",
        "cpus",
        "place vCPUs only on these pCPUs (virsh cpulist: 2-7, 1,3,5-7; default all)",
        "LIST",
    );
    o.optflag(
        "",
        "repin-configured",
        "also re-pin domains whose owner pinned them in their persistent configuration",
    );
    o.optopt(
        "",
        "config",
        "read settings from FILE (KEY=VALUE lines, e.g. /etc/default/vcpu-scheduler); options given here win",
        "FILE",
    );
    o.optopt(
        "",
        "summary",
        "log a summary line every SECONDS (default 600)",
        "SECONDS",
    );
    o.optopt(
        "",
        "metrics-file",
        "write Prometheus metrics to PATH each tick (for node_exporter's textfile collector)",
        "PATH",
    );
    o.optflag(
        "",
        "once",
        "sample, wait INTERVAL, decide and act once, then exit",
    );
    o.optflag("n", "dry-run", "decide and print, never pin");
    o.optflag("v", "verbose", "print a per-vCPU table every tick");
    o.optflag(
        "m",
        "monitor",
        "live view: one bar per pCPU with its vCPUs, redrawn in place",
    );
    o.optflag("h", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
    o
}

fn simulate_options() -> Options {
    let mut o = Options::new();
    o.optopt("p", "policy", "balance (default) or seed", "NAME");
    o.optopt(
        "",
        "ticks",
        "run N ticks instead of the scenario's own count",
        "N",
    );
    o.optopt(
        "t",
        "threshold",
        &format!("balance threshold, as for the daemon (default {DEFAULT_THRESHOLD_PCT})"),
        "SIGMA",
    );
    o.optflag("", "json", "one JSON object per tick, then the summary");
    o.optflag(
        "",
        "ignore-topology",
        "schedule as if the host had one node and no SMT (the model keeps its shape)",
    );
    o.optflag("h", "help", "print this help and exit");
    o
}

pub fn usage() -> String {
    let brief = "\
Usage: vcpu-scheduler [OPTIONS] INTERVAL
       vcpu-scheduler simulate FILE [--policy NAME] [--ticks N] [--json] [--ignore-topology]

Keeps the pCPUs of a KVM host evenly loaded by re-pinning the vCPUs of running
libvirt domains. Every INTERVAL seconds (fractions allowed, e.g. 0.5) it measures
each vCPU's usage, computes the standard deviation of pCPU loads, and when that is
above the threshold moves vCPUs from busy to idle pCPUs.";
    let mut text = daemon_options().usage(brief);
    text.push_str(
        "
simulate FILE runs the same scheduler against a simulated host described by a
scenario file (see scenarios/ and the README).

Exit status: 0 stopped by SIGINT/SIGTERM or --once done; 1 runtime failure
(cannot connect, connection lost); 2 usage or configuration error.
",
    );
    text
}

/// Parse the arguments after the program name. `env_uri` is `$LIBVIRT_DEFAULT_URI`.
pub fn parse(args: &[String], env_uri: Option<&str>) -> Result<Command, UsageError> {
    if args.first().map(String::as_str) == Some("simulate") {
        return parse_simulate(&args[1..]);
    }
    let mut m = daemon_options().parse(args).map_err(getopts_error)?;
    if m.opt_present("help") {
        return Ok(Command::Help(usage()));
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }
    let mut warnings = Vec::new();
    if let Some(path) = m.opt_str("config") {
        let file = settings::load(Path::new(&path)).map_err(|e| UsageError(e.to_string()))?;
        // What the command line does not say, the file does.
        let mut all = args.to_vec();
        for (option, extra) in &file.args {
            let given = if option.is_empty() {
                !m.free.is_empty()
            } else {
                m.opt_present(option)
            };
            if !given {
                all.extend(extra.iter().cloned());
            }
        }
        m = daemon_options()
            .parse(&all)
            .map_err(|e| UsageError(format!("{path}: {}", getopts_error(e).0)))?;
        warnings = file.warnings;
    }
    let interval = match m.free.as_slice() {
        [one] => parse_interval(one)?,
        [] => {
            return Err(UsageError(
                "missing INTERVAL (seconds between ticks)".into(),
            ));
        }
        [_, extra, ..] => {
            return Err(UsageError(format!(
                "unexpected argument {extra:?} after INTERVAL"
            )));
        }
    };
    let uri = m
        .opt_str("connect")
        .or_else(|| env_uri.filter(|u| !u.is_empty()).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_URI.to_owned());
    if uri.is_empty() || uri.contains('\0') {
        return Err(UsageError(format!("invalid --connect URI {uri:?}")));
    }
    let sched = SchedConfig {
        params: Params {
            threshold_pct: parse_threshold(m.opt_str("threshold"))?,
            ..Params::default()
        },
        policy: parse_policy(m.opt_str("policy"))?,
        dry_run: m.opt_present("dry-run"),
        select: Selection::new(
            parse_globs(&m, "domain")?,
            parse_globs(&m, "exclude-domain")?,
        )
        .repin_configured(m.opt_present("repin-configured")),
        ..SchedConfig::default()
    };
    Ok(Command::Run(Box::new(Config {
        uri,
        interval,
        once: m.opt_present("once"),
        verbose: m.opt_present("verbose"),
        monitor: m.opt_present("monitor"),
        cpus: parse_cpus(m.opt_str("cpus"))?,
        summary_every: match m.opt_str("summary") {
            None => DEFAULT_SUMMARY,
            Some(s) => parse_seconds(&s, "--summary")?,
        },
        metrics_file: m.opt_str("metrics-file").map(PathBuf::from),
        warnings,
        sched,
    })))
}

fn parse_simulate(args: &[String]) -> Result<Command, UsageError> {
    let m = simulate_options()
        .parse(args)
        .map_err(|e| UsageError(format!("simulate: {}", getopts_error(e).0)))?;
    if m.opt_present("help") {
        return Ok(Command::Help(usage()));
    }
    let file = match m.free.as_slice() {
        [one] => PathBuf::from(one),
        [] => return Err(UsageError("simulate: missing scenario FILE".into())),
        [_, extra, ..] => {
            return Err(UsageError(format!(
                "simulate: unexpected argument {extra:?}"
            )));
        }
    };
    let ticks = match m.opt_str("ticks") {
        None => None,
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(UsageError(format!(
                    "invalid --ticks {s:?}: expected a positive whole number"
                )));
            }
        },
    };
    Ok(Command::Simulate(SimulateArgs {
        file,
        policy: parse_policy(m.opt_str("policy"))?,
        ticks,
        json: m.opt_present("json"),
        threshold_pct: parse_threshold(m.opt_str("threshold"))?,
        ignore_topology: m.opt_present("ignore-topology"),
    }))
}

/// Short and long names of the options, to name them the way users type them.
const NAMES: &[(&str, &str)] = &[
    ("c", "connect"),
    ("t", "threshold"),
    ("p", "policy"),
    ("d", "domain"),
    ("x", "exclude-domain"),
    ("n", "dry-run"),
    ("v", "verbose"),
    ("m", "monitor"),
    ("h", "help"),
    ("V", "version"),
];

/// getopts names an option by whichever name was typed, without dashes ("c"); say
/// `-c/--connect` instead, and keep the message to one line.
fn getopts_error(e: getopts::Fail) -> UsageError {
    let name = |n: &str| match NAMES.iter().find(|(s, l)| *s == n || *l == n) {
        Some((s, l)) => format!("-{s}/--{l}"),
        None if n.len() == 1 => format!("-{n}"),
        None => format!("--{n}"),
    };
    UsageError(match e {
        getopts::Fail::ArgumentMissing(n) => format!("option {} needs a value", name(&n)),
        getopts::Fail::UnrecognizedOption(n) => format!("unknown option {}", name(&n)),
        getopts::Fail::OptionDuplicated(n) => format!("option {} given more than once", name(&n)),
        getopts::Fail::UnexpectedArgument(n) => format!("option {} takes no value", name(&n)),
        other => other.to_string(),
    })
}

/// A finite number > 0, or `None`.
fn positive(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// INTERVAL bounds. Below 10 ms there is nothing to measure (QEMU's vCPU times move in
/// 10 ms steps) and the loop would only spin; above a year is surely a typo.
const MIN_INTERVAL: f64 = 0.01;
const MAX_INTERVAL: f64 = 365.0 * 86_400.0;

/// Threshold bounds, percentage points: a σ finer than a hundredth of a percent is below
/// any measurement's resolution; above 100 nothing could ever be unbalanced.
const MIN_THRESHOLD: f64 = 0.01;
const MAX_THRESHOLD: f64 = 100.0;

fn parse_interval(s: &str) -> Result<Duration, UsageError> {
    positive(s)
        .filter(|x| (MIN_INTERVAL..=MAX_INTERVAL).contains(x))
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| {
            UsageError(format!(
                "invalid INTERVAL {s:?}: expected seconds from {MIN_INTERVAL} to {MAX_INTERVAL}"
            ))
        })
}

/// A duration in seconds within the INTERVAL range, for `option`.
fn parse_seconds(s: &str, option: &str) -> Result<Duration, UsageError> {
    positive(s)
        .filter(|x| (MIN_INTERVAL..=MAX_INTERVAL).contains(x))
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| {
            UsageError(format!(
                "invalid {option} {s:?}: expected seconds from {MIN_INTERVAL} to {MAX_INTERVAL}"
            ))
        })
}

/// `--cpus` must be a cpulist; whether its pCPUs exist is known only once connected.
fn parse_cpus(s: Option<String>) -> Result<Option<String>, UsageError> {
    let Some(s) = s else { return Ok(None) };
    match CpuMap::parse_list(&s, MAX_CPUS) {
        Ok(m) if m.count() > 0 => Ok(Some(s)),
        Ok(_) => Err(UsageError(format!("invalid --cpus {s:?}: no pCPU in it"))),
        Err(e) => Err(UsageError(format!("invalid --cpus {s:?}: {e}"))),
    }
}

/// `--cpus` against a host of `pcpus` pCPUs: every pCPU named must exist.
pub fn cpus_for_host(list: &str, pcpus: usize) -> Result<CpuMap, UsageError> {
    CpuMap::parse_list(list, pcpus).map_err(|e| {
        UsageError(format!(
            "invalid --cpus {list:?} for this host of {pcpus} pcpus (0-{}): {e}",
            pcpus.saturating_sub(1)
        ))
    })
}

fn parse_threshold(s: Option<String>) -> Result<f64, UsageError> {
    match s {
        None => Ok(DEFAULT_THRESHOLD_PCT),
        Some(s) => positive(&s)
            .filter(|x| (MIN_THRESHOLD..=MAX_THRESHOLD).contains(x))
            .ok_or_else(|| {
                UsageError(format!(
                    "invalid --threshold {s:?}: expected a number from {MIN_THRESHOLD} to {MAX_THRESHOLD}"
                ))
            }),
    }
}

fn parse_policy(s: Option<String>) -> Result<Policy, UsageError> {
    match s {
        None => Ok(Policy::Balance),
        Some(s) => Policy::parse(&s).ok_or_else(|| {
            UsageError(format!(
                "invalid --policy {s:?}: expected \"balance\" or \"seed\""
            ))
        }),
    }
}

fn parse_globs(m: &getopts::Matches, name: &str) -> Result<Vec<String>, UsageError> {
    let globs = m.opt_strs(name);
    if let Some(bad) = globs.iter().find(|g| g.is_empty()) {
        return Err(UsageError(format!(
            "invalid --{name} {bad:?}: empty pattern"
        )));
    }
    Ok(globs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(v: &[&str]) -> Config {
        match parse(&args(v), None) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_course_habit_works() {
        let c = run(&["2"]);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.uri, DEFAULT_URI);
        assert_eq!(c.sched.params.threshold_pct, 5.0);
        assert_eq!(c.sched.policy, Policy::Balance);
    }

    #[test]
    fn options_are_read() {
        let c = run(&[
            "-c",
            "test:///default",
            "-t",
            "2.5",
            "--once",
            "-n",
            "-d",
            "aos_*",
            "-x",
            "aos_k",
            "0.5",
        ]);
        assert_eq!(c.uri, "test:///default");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.sched.params.threshold_pct, 2.5);
        assert!(c.once && c.sched.dry_run);
        assert!(c.sched.select.manages("aos_1") && !c.sched.select.manages("aos_k"));
    }

    #[test]
    fn env_uri_is_the_default_and_connect_overrides_it() {
        let Ok(Command::Run(c)) = parse(&args(&["1"]), Some("test:///default")) else {
            panic!()
        };
        assert_eq!(c.uri, "test:///default");
        let Ok(Command::Run(c)) = parse(
            &args(&["-c", "qemu:///session", "1"]),
            Some("test:///default"),
        ) else {
            panic!()
        };
        assert_eq!(c.uri, "qemu:///session");
    }

    #[test]
    fn bad_numbers_are_usage_errors_naming_the_value() {
        for bad in [
            "abc", "0", "-1", "NaN", "inf", "", "1e300", "0.001", "1e-10",
        ] {
            let e = parse(&args(&["--", bad]), None).unwrap_err();
            assert!(e.0.contains("INTERVAL"), "{bad}: {e}");
        }
        for bad in ["x", "0", "-3", "nan", "inf", "101", "1e-320"] {
            let e = parse(&args(&["-t", bad, "1"]), None).unwrap_err();
            assert!(e.0.contains("--threshold"), "{bad}: {e}");
        }
        assert!(
            parse(&args(&[]), None)
                .unwrap_err()
                .0
                .contains("missing INTERVAL")
        );
        assert!(
            parse(&args(&["1", "2"]), None)
                .unwrap_err()
                .0
                .contains("unexpected")
        );
        assert!(
            parse(&args(&["--bogus", "1"]), None)
                .unwrap_err()
                .0
                .contains("bogus")
        );
        assert!(
            parse(&args(&["-p", "fastest", "1"]), None)
                .unwrap_err()
                .0
                .contains("--policy")
        );
    }

    #[test]
    fn simulate_subcommand() {
        let Ok(Command::Simulate(s)) = parse(
            &args(&[
                "simulate", "x.scn", "--policy", "seed", "--ticks", "9", "--json",
            ]),
            None,
        ) else {
            panic!()
        };
        assert_eq!(s.file, PathBuf::from("x.scn"));
        assert_eq!((s.policy, s.ticks, s.json), (Policy::Seed, Some(9), true));
        assert!(parse(&args(&["simulate"]), None).is_err());
        assert!(parse(&args(&["simulate", "f", "--ticks", "0"]), None).is_err());
    }
}
