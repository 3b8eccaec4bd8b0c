//! The daemon's options, once: names, settings-file keys, kinds and help. getopts'
//! table, the names in error messages and the settings file's keys all come from
//! [`OPTIONS`], so an option and its key cannot drift apart.

use getopts::Options;

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--option VALUE`; in the settings file `KEY=VALUE`.
    Value,
    /// `--option VALUE`, repeatable; in the settings file one value per word.
    Multi,
    /// `--option`; in the settings file `KEY=yes` or `KEY=no`.
    Flag,
}

/// The options by name, in [`OPTIONS`]' order (a test checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Connect,
    Threshold,
    Policy,
    Domain,
    ExcludeDomain,
    Cpus,
    RepinConfigured,
    Config,
    Summary,
    MetricsFile,
    Once,
    DryRun,
    Verbose,
    Monitor,
    Help,
    Version,
}

/// One option of the daemon: its names, its settings-file key if it has one, and its
/// help. The one table behind the getopts parser, the names in error messages and the
/// settings file's keys.
pub struct Opt {
    pub id: Id,
    pub short: &'static str,
    pub long: &'static str,
    pub key: Option<&'static str>,
    pub kind: Kind,
    pub hint: &'static str,
    pub help: &'static str,
}

/// The settings file's key for the free argument, INTERVAL.
pub const INTERVAL_KEY: &str = "INTERVAL";

pub const OPTIONS: &[Opt] = &[
    Opt {
        id: Id::Connect,
        short: "c",
        long: "connect",
        key: Some("CONNECT"),
        kind: Kind::Value,
        hint: "URI",
        help: "hypervisor URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system)",
    },
    Opt {
        id: Id::Threshold,
        short: "t",
        long: "threshold",
        key: Some("THRESHOLD"),
        kind: Kind::Value,
        hint: "SIGMA",
        help: "balanced when the std. deviation of pCPU loads is at most SIGMA percentage points (default 5)",
    },
    Opt {
        id: Id::Policy,
        short: "p",
        long: "policy",
        key: Some("POLICY"),
        kind: Kind::Value,
        hint: "NAME",
        help: "balance (default) or seed (the original one-move rule)",
    },
    Opt {
        id: Id::Domain,
        short: "d",
        long: "domain",
        key: Some("DOMAINS"),
        kind: Kind::Multi,
        hint: "GLOB",
        help: "manage only domains whose name matches GLOB (repeatable)",
    },
    Opt {
        id: Id::ExcludeDomain,
        short: "x",
        long: "exclude-domain",
        key: Some("EXCLUDE_DOMAINS"),
        kind: Kind::Multi,
        hint: "GLOB",
        help: "never pin domains whose name matches GLOB (repeatable)",
    },
    Opt {
        id: Id::Cpus,
        short: "",
        long: "cpus",
        key: Some("CPUS"),
        kind: Kind::Value,
        hint: "LIST",
        help: "place vCPUs only on these pCPUs (virsh cpulist: 2-7, 1,3,5-7; default all)",
    },
    Opt {
        id: Id::RepinConfigured,
        short: "",
        long: "repin-configured",
        key: Some("REPIN_CONFIGURED"),
        kind: Kind::Flag,
        hint: "",
        help: "also re-pin domains whose owner pinned them in their persistent configuration",
    },
    Opt {
        id: Id::Config,
        short: "",
        long: "config",
        key: None,
        kind: Kind::Value,
        hint: "FILE",
        help: "read settings from FILE (KEY=VALUE lines, e.g. /etc/default/vcpu-scheduler); options given here win",
    },
    Opt {
        id: Id::Summary,
        short: "",
        long: "summary",
        key: Some("SUMMARY"),
        kind: Kind::Value,
        hint: "SECONDS",
        help: "log a summary line every SECONDS (default 600)",
    },
    Opt {
        id: Id::MetricsFile,
        short: "",
        long: "metrics-file",
        key: Some("METRICS_FILE"),
        kind: Kind::Value,
        hint: "PATH",
        help: "write Prometheus metrics to PATH each tick (for node_exporter's textfile collector)",
    },
    Opt {
        id: Id::Once,
        short: "",
        long: "once",
        key: None,
        kind: Kind::Flag,
        hint: "",
        help: "sample, wait INTERVAL, decide and act once, then exit",
    },
    Opt {
        id: Id::DryRun,
        short: "n",
        long: "dry-run",
        key: Some("DRY_RUN"),
        kind: Kind::Flag,
        hint: "",
        help: "decide and print, never pin",
    },
    Opt {
        id: Id::Verbose,
        short: "v",
        long: "verbose",
        key: None,
        kind: Kind::Flag,
        hint: "",
        help: "print a per-vCPU table every tick",
    },
    Opt {
        id: Id::Monitor,
        short: "m",
        long: "monitor",
        key: None,
        kind: Kind::Flag,
        hint: "",
        help: "live view: one bar per pCPU with its vCPUs, redrawn in place",
    },
    Opt {
        id: Id::Help,
        short: "h",
        long: "help",
        key: None,
        kind: Kind::Flag,
        hint: "",
        help: "print this help and exit",
    },
    Opt {
        id: Id::Version,
        short: "V",
        long: "version",
        key: None,
        kind: Kind::Flag,
        hint: "",
        help: "print the version and exit",
    },
];

pub fn daemon_options() -> Options {
    let mut o = Options::new();
    for opt in OPTIONS {
        match opt.kind {
            Kind::Value => o.optopt(opt.short, opt.long, opt.help, opt.hint),
            Kind::Multi => o.optmulti(opt.short, opt.long, opt.help, opt.hint),
            Kind::Flag => o.optflag(opt.short, opt.long, opt.help),
        };
    }
    o
}
