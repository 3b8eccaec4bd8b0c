//! A fleet of OS-less test guests on qemu:///system, for `scripts/demo.sh`:
//!
//! ```text
//! fleet up PREFIX NAME=LOAD[,LOAD...][@CPULIST]...   start guests, wait until they run
//! fleet status PREFIX [SECONDS]                      per-pCPU usage measured from /proc
//! fleet down PREFIX                                  destroy and undefine PREFIX*
//! ```
//!
//! LOAD is `busy`, `idle` or `NN%` (one per vCPU; a duty cycle only on the first vCPU).
//! The measurements do not use the scheduler: each vCPU thread's affinity, CPU time and
//! current pCPU come from /proc.

#[path = "../tests/common/guests/mod.rs"]
mod guests;

use guests::{Fleet, GuestSpec, Load, Meter};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: fleet up PREFIX NAME=LOAD[,LOAD...][@CPULIST]...
       fleet status PREFIX [SECONDS]
       fleet down PREFIX
LOAD: busy | idle | NN%  (one per vCPU; NN% only for the first vCPU)";

/// BIOS time under nested KVM is ~2.8 s of vCPU time per guest; several guests booting on
/// one pinned pCPU share it, so allow well beyond that.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        ["up", prefix, ref specs @ ..] if !specs.is_empty() => up(prefix, specs),
        ["status", prefix] => status(prefix, "3"),
        ["status", prefix, seconds] => status(prefix, seconds),
        ["down", prefix] => down(prefix),
        ["-h" | "--help"] => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME=busy,idle@0` -> ("NAME", spec).
fn parse_spec(arg: &str) -> Result<(&str, GuestSpec), String> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("bad guest {arg:?}: expected NAME=LOAD[,LOAD...][@CPULIST]"))?;
    let (loads, pin) = match rest.split_once('@') {
        Some((loads, pin)) => (loads, Some(pin.to_string())),
        None => (rest, None),
    };
    let vcpus = loads
        .split(',')
        .map(str::parse::<Load>)
        .collect::<Result<Vec<_>, _>>()?;
    let spec = GuestSpec {
        vcpus,
        pin,
        persistent: false,
        max_vcpus: None,
    };
    spec.validate(name)?;
    Ok((name, spec))
}

fn up(prefix: &str, specs: &[&str]) -> Result<(), String> {
    guests::require_hypervisor()?;
    // Parse everything before starting anything, so a typo starts no guest.
    let specs = specs
        .iter()
        .map(|s| parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    // On any error the fleet drops here and removes what it started.
    let mut fleet = Fleet::with_prefix(prefix)?;
    for (name, spec) in &specs {
        let full = fleet.start(name, spec)?;
        let loads: Vec<String> = spec.vcpus.iter().map(Load::to_string).collect();
        let pin = spec.pin.as_deref().unwrap_or("all");
        say(&format!(
            "started {full}: vcpus {} pinned to {pin}",
            loads.join(",")
        ));
    }
    fleet.wait_ready(READY_TIMEOUT)?;
    say(&format!(
        "{} guests running their load ({})",
        specs.len(),
        guests::domain_type()
    ));
    fleet.keep();
    Ok(())
}

fn status(prefix: &str, seconds: &str) -> Result<(), String> {
    let seconds: f64 = seconds
        .parse()
        .ok()
        .filter(|s: &f64| (0.5..=600.0).contains(s))
        .ok_or_else(|| format!("bad SECONDS {seconds:?}: expected 0.5 to 600"))?;
    let s = Meter::new(prefix)?.measure(Duration::from_secs_f64(seconds))?;
    if s.vcpus.is_empty() {
        return Err(format!("no running domain named {prefix}*"));
    }
    say(&s.table());
    let busiest = s.pcpu_pct.iter().copied().fold(0.0, f64::max);
    let idlest = s.pcpu_pct.iter().copied().fold(f64::INFINITY, f64::min);
    let total: f64 = s.pcpu_pct.iter().sum();
    // One grep-able line for scripts (demo.sh's before/after summary).
    say(&format!(
        "summary sigma={:.1} busiest={busiest:.1} idlest={idlest:.1} total={total:.1}",
        s.sigma()
    ));
    Ok(())
}

/// Prints a line. `fleet status | head` closes the pipe early: that must not panic as
/// `println!` would, and there is nobody left to tell, so write errors are dropped.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn down(prefix: &str) -> Result<(), String> {
    let n = guests::sweep(prefix)?;
    say(&format!("removed {n} guests named {prefix}*"));
    Ok(())
}
