//! Prints what one scheduler tick costs against a libvirt URI: wall time per tick and
//! the libvirt calls behind it. Run it as
//! `cargo run --release --example tick_cost [URI] [TICKS]`
//! (default: the 4-pCPU test-driver fixture, 10,000 ticks). Against `qemu:///system`
//! with guests running it measures the real daemon's round trips.

use std::process::ExitCode;
use std::time::Instant;

use vcpu_scheduler::libvirt::{Connection, LibvirtHost};
use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let uri = args.next().unwrap_or_else(|| {
        format!(
            "test://{}/tests/fixtures/node4.xml",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let ticks: u32 = match args.next().map(|t| t.parse()) {
        None => 10_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("tick_cost: TICKS must be a positive whole number");
            return ExitCode::from(2);
        }
    };
    let conn = match Connection::open(&uri) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tick_cost: cannot connect to {uri}: {e}");
            return ExitCode::from(1);
        }
    };
    let host = match LibvirtHost::new(&conn) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tick_cost: {uri}: {e}");
            return ExitCode::from(1);
        }
    };
    // Dry run: measure the cost of deciding without disturbing a live host.
    let cfg = SchedConfig {
        dry_run: true,
        ..SchedConfig::default()
    };
    let mut sched = Scheduler::new(host, cfg);
    if let Err(e) = sched.tick() {
        eprintln!("tick_cost: {e}");
        return ExitCode::from(1);
    }
    let vcpus = sched.report().units.len();
    let start = Instant::now();
    for _ in 0..ticks {
        if let Err(e) = sched.tick() {
            eprintln!("tick_cost: {e}");
            return ExitCode::from(1);
        }
    }
    let per_tick = start.elapsed() / ticks;
    println!("uri {uri}: {vcpus} vcpus, {ticks} ticks, {per_tick:?} per tick (dry run)");
    ExitCode::SUCCESS
}
