//! Command line: the getopts table, and `Matches` turned into a validated [`Command`].
//!
//! Everything is checked here, before a connection is opened or a pin is made: a bad
//! value is a [`UsageError`] naming the option and the value, and the program exits 2.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

mod record;
pub use record::RecordArgs;

use super::duration::{positive, seconds};
use super::options::{INTERVAL_KEY, Id, Kind, OPTIONS, daemon_options};
use super::settings;
use crate::cpumap::{CpuMap, MAX_CPUS};
use crate::files::Shown;
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
    /// The settings file (`--config`), re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// The arguments this was parsed from, to parse again on SIGHUP.
    pub argv: Vec<String>,
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
    Record(RecordArgs),
    Help(String),
    Version,
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
       vcpu-scheduler record [-c URI] [-d GLOB] [-x GLOB] [--for DURATION] [--anonymize] INTERVAL FILE

Keeps the pCPUs of a KVM host evenly loaded by re-pinning the vCPUs of running
libvirt domains. Every INTERVAL seconds (fractions allowed, e.g. 0.5) it measures
each vCPU's usage, computes the standard deviation of pCPU loads, and when that is
above the threshold moves vCPUs from busy to idle pCPUs.";
    let mut text = daemon_options().usage(brief);
    text.push_str(
        "
simulate FILE runs the same scheduler against a simulated host described by a
scenario file (see scenarios/ and the README).

record INTERVAL FILE measures the host every INTERVAL seconds, never pins, and writes
what its vCPUs wanted to FILE as a scenario file, for simulate to replay under any
policy. `vcpu-scheduler record --help` lists its options.

Exit status: 0 stopped by SIGINT/SIGTERM or --once done; 1 runtime failure
(cannot connect, connection lost); 2 usage or configuration error.
",
    );
    text
}

/// Parse the arguments after the program name. `env_uri` is `$LIBVIRT_DEFAULT_URI`.
///
/// With `--config FILE`, the file's settings are read as values (never as options, so
/// `INTERVAL=--once` is a bad INTERVAL, not a flag) for what the command line does not
/// say; each is checked as its option is, and an error names `FILE:LINE`.
pub fn parse(args: &[String], env_uri: Option<&str>) -> Result<Command, UsageError> {
    match args.first().map(String::as_str) {
        Some("simulate") => return parse_simulate(&args[1..]),
        Some("record") => return parse_record(&args[1..], env_uri),
        _ => {}
    }
    let m = daemon_options()
        .parse(args)
        .map_err(|e| getopts_error(e, args))?;
    if m.opt_present("help") {
        return Ok(Command::Help(usage()));
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }
    let mut given = Given::from_matches(&m);
    let mut warnings = Vec::new();
    let config_file = m.opt_str("config").map(PathBuf::from);
    if let Some(path) = &config_file {
        let lines = settings::load(path).map_err(|e| UsageError(e.0))?;
        given.file = Shown(path).to_string();
        warnings = given.add_file(&lines)?;
    }
    let mut c = given.config(env_uri)?;
    c.warnings = warnings;
    c.config_file = config_file;
    c.argv = args.to_vec();
    Ok(Command::Run(Box::new(c)))
}

/// One value given for an option: its text, and its line in the settings file (`None`
/// when it came from the command line), so an error can say where it is.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    line: Option<usize>,
}

/// What the command line and the settings file said, per entry of [`OPTIONS`] and one
/// more for INTERVAL, the command line winning option by option.
struct Given {
    values: Vec<Vec<Value>>,
    /// The settings file as messages show it.
    file: String,
}

/// Where INTERVAL sits in [`Given::values`].
const INTERVAL_SLOT: usize = OPTIONS.len();

impl Given {
    fn from_matches(m: &getopts::Matches) -> Given {
        let arg = |text: String| Value { text, line: None };
        let mut values = vec![Vec::new(); INTERVAL_SLOT + 1];
        for o in OPTIONS {
            values[o.id as usize] = match o.kind {
                Kind::Flag => (0..m.opt_count(o.long))
                    .map(|_| arg(String::new()))
                    .collect(),
                Kind::Value | Kind::Multi => m.opt_strs(o.long).into_iter().map(arg).collect(),
            };
        }
        values[INTERVAL_SLOT] = m.free.iter().cloned().map(arg).collect();
        Given {
            values,
            file: String::new(),
        }
    }

    /// Take the settings file's lines for what the command line left unsaid. Returns
    /// one warning per key the program does not know.
    fn add_file(&mut self, lines: &[settings::Line]) -> Result<Vec<String>, UsageError> {
        let mut from_file: Vec<Option<Vec<Value>>> = vec![None; self.values.len()];
        let mut warnings = Vec::new();
        for l in lines {
            let at = |msg: String| UsageError(format!("{}:{}: {msg}", self.file, l.line));
            let slot = if l.key == INTERVAL_KEY {
                Some(INTERVAL_SLOT)
            } else {
                OPTIONS
                    .iter()
                    .find(|o| o.key == Some(l.key.as_str()))
                    .map(|o| o.id as usize)
            };
            let Some(slot) = slot else {
                let known = OPTIONS.iter().filter_map(|o| o.key).chain([INTERVAL_KEY]);
                if let Some(k) = known.clone().find(|k| k.eq_ignore_ascii_case(&l.key)) {
                    return Err(at(format!(
                        "unknown setting {:?}: keys are upper case, as in {k}",
                        l.key
                    )));
                }
                warnings.push(format!(
                    "{}:{}: unknown setting {:?} ignored",
                    self.file, l.line, l.key
                ));
                continue;
            };
            let value = |text: &str| Value {
                text: text.to_owned(),
                line: Some(l.line),
            };
            let kind = OPTIONS.get(slot).map_or(Kind::Value, |o| o.kind);
            // A key given twice: the later line wins, as in a shell; empty is unset.
            from_file[slot] = match kind {
                _ if l.value.is_empty() => None,
                Kind::Value => Some(vec![value(&l.value)]),
                Kind::Multi => Some(l.value.split_whitespace().map(value).collect()),
                Kind::Flag => match l.value.as_str() {
                    "yes" | "true" | "1" => Some(vec![value("")]),
                    "no" | "false" | "0" => None,
                    v => return Err(at(format!("{} must be yes or no, not {v:?}", l.key))),
                },
            };
        }
        for (given, file) in self.values.iter_mut().zip(from_file) {
            if given.is_empty() {
                *given = file.unwrap_or_default();
            }
        }
        Ok(warnings)
    }

    fn all(&self, id: Id) -> &[Value] {
        &self.values[id as usize]
    }

    fn one(&self, id: Id) -> Option<&Value> {
        self.values[id as usize].last()
    }

    fn flag(&self, id: Id) -> bool {
        !self.values[id as usize].is_empty()
    }

    /// `invalid --threshold "abc": why`, or `FILE:LINE: invalid THRESHOLD "abc": why`.
    fn invalid(&self, slot: usize, v: &Value, why: impl fmt::Display) -> UsageError {
        let (long, key) = match OPTIONS.get(slot) {
            Some(o) => (format!("--{}", o.long), o.key.unwrap_or(o.long)),
            None => ("INTERVAL".to_owned(), INTERVAL_KEY),
        };
        UsageError(match v.line {
            None => format!("invalid {long} {:?}: {why}", v.text),
            Some(n) => format!("{}:{n}: invalid {key} {:?}: {why}", self.file, v.text),
        })
    }

    /// Check every value and build the daemon's settings.
    fn config(&self, env_uri: Option<&str>) -> Result<Config, UsageError> {
        let check = |id: Id, parse: &dyn Fn(&str) -> Result<(), String>| {
            for v in self.all(id) {
                parse(&v.text).map_err(|why| self.invalid(id as usize, v, why))?;
            }
            Ok::<(), UsageError>(())
        };
        let uri = match self.one(Id::Connect) {
            Some(v) => {
                if v.text.is_empty() || v.text.contains('\0') {
                    return Err(self.invalid(Id::Connect as usize, v, "not a URI"));
                }
                v.text.clone()
            }
            None => env_uri
                .filter(|u| !u.is_empty() && !u.contains('\0'))
                .unwrap_or(DEFAULT_URI)
                .to_owned(),
        };
        let text = |id: Id| self.one(id).map(|v| v.text.as_str());
        let value_of = |id: Id, parse: fn(&str) -> Result<f64, String>, default: f64| {
            self.one(id).map_or(Ok(default), |v| {
                parse(&v.text).map_err(|why| self.invalid(id as usize, v, why))
            })
        };
        let threshold_pct = value_of(Id::Threshold, threshold, DEFAULT_THRESHOLD_PCT)?;
        let policy = match self.one(Id::Policy) {
            None => Policy::Balance,
            Some(v) => policy(&v.text).map_err(|why| self.invalid(Id::Policy as usize, v, why))?,
        };
        check(Id::Domain, &glob)?;
        check(Id::ExcludeDomain, &glob)?;
        check(Id::Cpus, &|s| cpulist(s).map(drop))?;
        check(Id::MetricsFile, &|s| metrics_path(s).map(drop))?;
        let summary_every = match self.one(Id::Summary) {
            None => DEFAULT_SUMMARY,
            Some(v) => {
                seconds(&v.text).map_err(|why| self.invalid(Id::Summary as usize, v, why))?
            }
        };
        // Every value is checked before INTERVAL is missed: the first thing wrong in a
        // settings file is what its author should hear about.
        let intervals = &self.values[INTERVAL_SLOT];
        let interval = match intervals.as_slice() {
            [one] => seconds(&one.text).map_err(|why| self.invalid(INTERVAL_SLOT, one, why))?,
            [] if self.file.is_empty() => {
                return Err(UsageError(
                    "missing INTERVAL (seconds between ticks)".into(),
                ));
            }
            [] => {
                return Err(UsageError(format!(
                    "missing INTERVAL (seconds between ticks), on the command line or as INTERVAL= in {}",
                    self.file
                )));
            }
            [_, extra, ..] => {
                return Err(UsageError(format!(
                    "unexpected argument {:?} after INTERVAL",
                    extra.text
                )));
            }
        };
        let words = |id: Id| self.all(id).iter().map(|v| v.text.clone()).collect();
        let sched = SchedConfig {
            params: Params {
                threshold_pct,
                ..Params::default()
            },
            policy,
            dry_run: self.flag(Id::DryRun),
            select: Selection::new(words(Id::Domain), words(Id::ExcludeDomain))
                .repin_configured(self.flag(Id::RepinConfigured)),
            ..SchedConfig::default()
        };
        Ok(Config {
            uri,
            interval,
            once: self.flag(Id::Once),
            verbose: self.flag(Id::Verbose),
            monitor: self.flag(Id::Monitor),
            cpus: text(Id::Cpus).map(str::to_owned),
            summary_every,
            metrics_file: text(Id::MetricsFile).map(PathBuf::from),
            warnings: Vec::new(),
            config_file: None,
            argv: Vec::new(),
            sched,
        })
    }
}

fn parse_simulate(args: &[String]) -> Result<Command, UsageError> {
    let m = simulate_options()
        .parse(args)
        .map_err(|e| UsageError(format!("simulate: {}", getopts_error(e, args).0)))?;
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
        policy: match m.opt_str("policy") {
            None => Policy::Balance,
            Some(p) => {
                policy(&p).map_err(|why| UsageError(format!("invalid --policy {p:?}: {why}")))?
            }
        },
        ticks,
        json: m.opt_present("json"),
        threshold_pct: match m.opt_str("threshold") {
            None => DEFAULT_THRESHOLD_PCT,
            Some(t) => threshold(&t)
                .map_err(|why| UsageError(format!("invalid --threshold {t:?}: {why}")))?,
        },
        ignore_topology: m.opt_present("ignore-topology"),
    }))
}

fn parse_record(args: &[String], env_uri: Option<&str>) -> Result<Command, UsageError> {
    let m = record::options()
        .parse(args)
        .map_err(|e| UsageError(format!("record: {}", getopts_error(e, args).0)))?;
    if m.opt_present("help") {
        let brief = "Usage: vcpu-scheduler record [OPTIONS] INTERVAL FILE\n\n\
Measures the host every INTERVAL seconds (never pins, makes no plan) and writes what\n\
its vCPUs wanted to FILE, a scenario file `vcpu-scheduler simulate FILE` replays under\n\
any policy, one tick per INTERVAL. FILE is replaced whole at the end and every minute\n\
or so, so it is always complete. SIGINT/SIGTERM end it; so does --for.";
        return Ok(Command::Help(record::options().usage(brief)));
    }
    let default_uri = env_uri
        .filter(|u| !u.is_empty() && !u.contains('\0'))
        .unwrap_or(DEFAULT_URI);
    record::from_matches(&m, default_uri)
        .map(Command::Record)
        .map_err(|e| UsageError(format!("record: {e}")))
}

/// getopts names an option by whichever name was typed, without dashes ("c"); say
/// `-c/--connect` instead, and keep the message to one line. A negative number is no
/// option but a bad INTERVAL (`-1`, `-inf`): say so.
fn getopts_error(e: getopts::Fail, args: &[String]) -> UsageError {
    let name = |n: &str| match OPTIONS.iter().find(|o| o.short == n || o.long == n) {
        Some(o) if !o.short.is_empty() => format!("-{}/--{}", o.short, o.long),
        Some(o) => format!("--{}", o.long),
        None if n.len() == 1 => format!("-{n}"),
        None => format!("--{n}"),
    };
    UsageError(match e {
        getopts::Fail::UnrecognizedOption(n) => {
            let negative = args.iter().find(|a| {
                a.strip_prefix('-')
                    .is_some_and(|rest| rest.starts_with(&n) && rest.parse::<f64>().is_ok())
            });
            match negative {
                Some(a) => match seconds(a) {
                    Err(why) => format!("invalid INTERVAL {a:?}: {why}"),
                    Ok(_) => format!("unknown option {}", name(&n)),
                },
                None => format!("unknown option {}", name(&n)),
            }
        }
        getopts::Fail::ArgumentMissing(n) => format!("option {} needs a value", name(&n)),
        getopts::Fail::OptionDuplicated(n) => format!("option {} given more than once", name(&n)),
        getopts::Fail::UnexpectedArgument(n) => format!("option {} takes no value", name(&n)),
        other => other.to_string(),
    })
}

/// Threshold bounds, percentage points: a σ finer than a hundredth of a percent is below
/// any measurement's resolution; above 100 nothing could ever be unbalanced.
const MIN_THRESHOLD: f64 = 0.01;
const MAX_THRESHOLD: f64 = 100.0;

fn threshold(s: &str) -> Result<f64, String> {
    positive(s)
        .filter(|x| (MIN_THRESHOLD..=MAX_THRESHOLD).contains(x))
        .ok_or_else(|| format!("expected a number from {MIN_THRESHOLD} to {MAX_THRESHOLD}"))
}

fn policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| "expected \"balance\" or \"seed\"".to_owned())
}

fn glob(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("empty pattern".into())
    } else {
        Ok(())
    }
}

/// `--cpus` must be a cpulist of pCPUs this program can address; whether they exist is
/// known only once connected ([`cpus_for_host`]).
fn cpulist(s: &str) -> Result<CpuMap, String> {
    match CpuMap::parse_list(s, MAX_CPUS) {
        Ok(m) if m.count() > 0 => Ok(m),
        Ok(_) => Err("no pCPU in it".into()),
        Err(e) => Err(e),
    }
}

/// What differs between two settings, as a reload's log line says it: `THRESHOLD 5 ->
/// 3, CPUS all -> 2-7`, or `nothing changed`. Named by their settings-file keys.
pub fn changes(old: &Config, new: &Config) -> String {
    let mut out = Vec::new();
    let mut note = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key} {a} -> {b}"));
        }
    };
    let or = |x: &Option<String>, none: &str| x.clone().unwrap_or_else(|| none.to_owned());
    note("CONNECT", old.uri.clone(), new.uri.clone());
    note(
        INTERVAL_KEY,
        format!("{:?}", old.interval),
        format!("{:?}", new.interval),
    );
    let (o, n) = (&old.sched, &new.sched);
    note(
        "THRESHOLD",
        o.params.threshold_pct.to_string(),
        n.params.threshold_pct.to_string(),
    );
    note("POLICY", o.policy.name().into(), n.policy.name().into());
    let (oi, oe, or_) = o.select.parts();
    let (ni, ne, nr) = n.select.parts();
    let words = |w: &[String]| {
        if w.is_empty() {
            "none".to_owned()
        } else {
            w.join(" ")
        }
    };
    note("DOMAINS", words(oi), words(ni));
    note("EXCLUDE_DOMAINS", words(oe), words(ne));
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    note("REPIN_CONFIGURED", yes(or_), yes(nr));
    note("DRY_RUN", yes(o.dry_run), yes(n.dry_run));
    note("CPUS", or(&old.cpus, "all"), or(&new.cpus, "all"));
    note(
        "SUMMARY",
        format!("{:?}", old.summary_every),
        format!("{:?}", new.summary_every),
    );
    let path = |p: &Option<PathBuf>| {
        p.as_deref()
            .map_or("none".to_owned(), |p| Shown(p).to_string())
    };
    note(
        "METRICS_FILE",
        path(&old.metrics_file),
        path(&new.metrics_file),
    );
    if out.is_empty() {
        "nothing changed".to_owned()
    } else {
        out.join(", ")
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

/// The metrics file's path, as far as it can be judged without touching the disk.
fn metrics_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("not a file name".into());
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests;
