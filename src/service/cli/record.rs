//! `vcpu-scheduler record`'s command line: its options and the checked [`RecordArgs`].
//! The names of `-c`, `-d` and `-x` come from the daemon's table ([`OPTIONS`]), so the
//! two commands cannot spell them differently.

use std::path::PathBuf;
use std::time::Duration;

use getopts::{Matches, Options};

use crate::service::duration::{duration, seconds};
use crate::service::options::{Id, OPTIONS};

/// What `record` is told to do, every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordArgs {
    pub uri: String,
    /// `--domain` globs: record only these (none: every domain).
    pub include: Vec<String>,
    /// `--exclude-domain` globs: never these. Their load shows as the host's own.
    pub exclude: Vec<String>,
    /// `--for`: stop by itself after this long; `None` until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    /// `--anonymize`: domains written as d1, d2, ..., and no URI in the header.
    pub anonymize: bool,
    pub interval: Duration,
    pub file: PathBuf,
}

/// The options `record` takes; getopts' table.
pub fn options() -> Options {
    let mut o = Options::new();
    let named = |id: Id| OPTIONS.iter().find(|opt| opt.id == id);
    for (id, help) in [
        (
            Id::Connect,
            "hypervisor URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); opened read-only",
        ),
        (
            Id::Domain,
            "record only domains whose name matches GLOB (repeatable)",
        ),
        (
            Id::ExcludeDomain,
            "do not record domains whose name matches GLOB (repeatable; their load counts as the host's)",
        ),
    ] {
        if let Some(opt) = named(id) {
            if opt.id == Id::Connect {
                o.optopt(opt.short, opt.long, help, opt.hint);
            } else {
                o.optmulti(opt.short, opt.long, help, opt.hint);
            }
        }
    }
    o.optopt(
        "",
        "for",
        "stop by itself after DURATION (90s, 15m, 24h, 7d); default: until SIGINT/SIGTERM",
        "DURATION",
    );
    o.optflag(
        "",
        "anonymize",
        "write domains as d1, d2, ... (consistently) and leave the URI out",
    );
    o.optflag("h", "help", "print this help and exit");
    o
}

/// Check what getopts matched. `default_uri` is `$LIBVIRT_DEFAULT_URI` or the built-in
/// default. The error is one line, without the `record:` prefix the caller adds.
pub fn from_matches(m: &Matches, default_uri: &str) -> Result<RecordArgs, String> {
    let uri = match m.opt_str("connect") {
        Some(u) if u.is_empty() || u.contains('\0') => {
            return Err(format!("invalid --connect {u:?}: not a URI"));
        }
        Some(u) => u,
        None => default_uri.to_owned(),
    };
    let globs = |long: &str| -> Result<Vec<String>, String> {
        let all = m.opt_strs(long);
        match all.iter().find(|g| g.is_empty()) {
            Some(_) => Err(format!("invalid --{long} \"\": empty pattern")),
            None => Ok(all),
        }
    };
    let include = globs("domain")?;
    let exclude = globs("exclude-domain")?;
    let duration = match m.opt_str("for") {
        None => None,
        Some(d) => Some(duration(&d).map_err(|why| format!("invalid --for {d:?}: {why}"))?),
    };
    let (interval, file) = match m.free.as_slice() {
        [interval, file] => (interval, file),
        [] => return Err("missing INTERVAL (seconds between ticks) and FILE".into()),
        [_] => return Err("missing FILE (where to write the recording)".into()),
        [_, _, extra, ..] => return Err(format!("unexpected argument {extra:?} after FILE")),
    };
    let interval =
        seconds(interval).map_err(|why| format!("invalid INTERVAL {interval:?}: {why}"))?;
    if file.is_empty() || file.contains('\0') {
        return Err(format!("invalid FILE {file:?}: not a file name"));
    }
    Ok(RecordArgs {
        uri,
        include,
        exclude,
        duration,
        anonymize: m.opt_present("anonymize"),
        interval,
        file: PathBuf::from(file),
    })
}
