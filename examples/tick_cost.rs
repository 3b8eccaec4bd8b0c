//! Prints what one scheduler tick costs against a libvirt URI: time per tick and the
//! libvirt calls behind it (round trips to the hypervisor, counted by the library).
//!
//! ```text
//! cargo run --release --example tick_cost [URI | large] [TICKS]
//! ```
//!
//! On a real hypervisor the ticks are 1 s apart, as the daemon would run them (back to
//! back, the 10 ms steps of QEMU's vCPU times turn into noise); only the ticks are
//! timed.
//!
//! - no URI: the 4-pCPU test-driver fixture (`tests/fixtures/node4.xml`), 10,000 ticks;
//! - `large`: a test-driver node written to `target/tick_cost/`: 500 domains of 4 vCPUs
//!   on 64 pCPUs, every domain pinned to one of pCPUs 0-7, 1,000 ticks;
//! - any other URI, e.g. `qemu:///system` with guests running: the real daemon's round
//!   trips.
//!
//! After the steady ticks, one more figure: writing the `--metrics-file` for that host
//! (render, write a temporary file, rename), timed over as many writes as ticks.
//!
//! Two figures each: a dry run (it decides every tick and pins nothing, so an
//! unbalanced host is planned again and again), and steady ticks (it pins; timed once
//! nothing moved for 5 ticks in a row). libvirt's test driver reports no run-queue
//! delay and a fake, near-zero cpu time, so there it measures the plumbing, not the
//! planning: the planning's cost at scale is measured in the simulator (`bench`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vcpu_scheduler::host::Host;
use vcpu_scheduler::libvirt::{self, Connection, LibvirtHost};
use vcpu_scheduler::scheduler::select::Selection;
use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};
use vcpu_scheduler::service::prometheus::{Counters, MetricsFile};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("tick_cost: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run() -> Result<(), (u8, String)> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    let (uri, default_ticks) = match first.as_deref() {
        None => (
            format!(
                "test://{}/tests/fixtures/node4.xml",
                env!("CARGO_MANIFEST_DIR")
            ),
            10_000,
        ),
        Some("large") => (large_node().map_err(|e| (1, e))?, 1_000),
        Some(uri) => (uri.to_owned(), 20),
    };
    let ticks: u32 = match args.next().map(|t| t.parse()) {
        None => default_ticks,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return Err((2, "TICKS must be a positive whole number".into())),
    };
    let pause = if uri.starts_with("test:") {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    let conn = Connection::open(&uri).map_err(|e| (1, format!("cannot connect to {uri}: {e}")))?;
    for dry_run in [true, false] {
        let host = LibvirtHost::new(&conn).map_err(|e| (1, format!("{uri}: {e}")))?;
        // Test-driver nodes pin their domains in the configuration: manage them anyway.
        let cfg = SchedConfig {
            dry_run,
            select: Selection::default().repin_configured(true),
            ..SchedConfig::default()
        };
        let mut sched = Scheduler::new(host, cfg);
        let tick =
            |s: &mut Scheduler<LibvirtHost<'_>>| s.tick().map(drop).map_err(|e| (1, e.to_string()));
        tick(&mut sched)?;
        if !dry_run {
            // Let it settle: the first ticks take new vCPUs in and balance.
            let mut quiet = 0;
            for _ in 0..100 {
                std::thread::sleep(pause);
                let before = sched.migrations();
                tick(&mut sched)?;
                quiet = if sched.migrations() == before {
                    quiet + 1
                } else {
                    0
                };
                if quiet == 5 {
                    break;
                }
            }
        }
        let (vcpus, domains) = (sched.report().units.len(), sched.host().domain_count());
        let (calls, pins) = (libvirt::rpc_calls(), sched.migrations());
        let (mut total, mut worst) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ticks {
            std::thread::sleep(pause);
            let t = Instant::now();
            tick(&mut sched)?;
            let took = t.elapsed();
            total += took;
            worst = worst.max(took);
        }
        let per_tick = total / ticks;
        let calls = (libvirt::rpc_calls() - calls) as f64 / f64::from(ticks);
        let pins = (sched.migrations() - pins) as f64 / f64::from(ticks);
        println!(
            "{uri}: {domains} domains, {vcpus} vcpus, {} pcpus; {} ticks: {per_tick:?} per tick \
             (worst {worst:?}), {calls:.1} libvirt calls per tick ({pins:.1} pins), demand {}",
            sched.host().pcpus(),
            if dry_run { "dry-run" } else { "steady" },
            sched.report().mode.describe(),
        );
        if !dry_run {
            metrics_cost(&sched, ticks)?;
            pcpu_stats_cost(&mut sched, ticks)?;
        }
    }
    Ok(())
}

/// Times `--metrics-file` writes of the scheduler's last tick into `target/tick_cost/`.
fn metrics_cost(sched: &Scheduler<LibvirtHost<'_>>, writes: u32) -> Result<(), (u8, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tick_cost");
    std::fs::create_dir_all(&dir).map_err(|e| (1, format!("{}: {e}", dir.display())))?;
    let path = dir.join("vcpu-scheduler.prom");
    let mut file = MetricsFile::new(&path, None).map_err(|e| (1, e))?;
    let counters = Counters::default();
    let report = sched.report();
    let t = Instant::now();
    for _ in 0..writes {
        file.publish(&report, &counters);
    }
    let per_write = t.elapsed() / writes;
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!("  metrics file: {per_write:?} per write, {bytes} bytes");
    Ok(())
}

/// Times reading every pCPU's busy time (`Host::sample_pcpu`: one `virNodeGetCPUStats`
/// per pCPU), what the host's own load would cost if every pCPU were read every tick
/// (the scheduler reads at most `PCPU_READS_PER_TICK` of them while demand is measured).
fn pcpu_stats_cost(sched: &mut Scheduler<LibvirtHost<'_>>, reads: u32) -> Result<(), (u8, String)> {
    let pcpus = sched.host().pcpus();
    let mut times = vcpu_scheduler::host::PcpuTimes::default();
    let calls = libvirt::rpc_calls();
    let t = Instant::now();
    let mut known = false;
    for _ in 0..reads {
        for p in 0..pcpus {
            known = sched
                .host_mut()
                .sample_pcpu(p, &mut times)
                .map_err(|e| (1, e.to_string()))?;
        }
    }
    let took = t.elapsed();
    let calls = libvirt::rpc_calls() - calls;
    println!(
        "  pcpu stats: {:?} per read of all {pcpus} pcpus ({:?} per call, {calls} calls){}",
        took / reads,
        took / u32::try_from(calls.max(1)).unwrap_or(u32::MAX),
        if known {
            ""
        } else {
            "; the driver cannot tell"
        }
    );
    Ok(())
}

/// Writes the `large` test-driver node and returns its URI.
fn large_node() -> Result<String, String> {
    const PCPUS: usize = 64;
    const DOMAINS: usize = 500;
    const VCPUS: usize = 4;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tick_cost");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut xml = format!(
        "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{PCPUS}</active>\
         <nodes>1</nodes><sockets>1</sockets><cores>{PCPUS}</cores><threads>1</threads>\
         </cpu><memory>67108864</memory>\n"
    );
    for d in 0..DOMAINS {
        xml.push_str(&format!(
            "<domain type='test'><name>d{d:03}</name>\
             <uuid>00000000-0000-4000-8000-{d:012}</uuid><memory>65536</memory>\
             <vcpu placement='static'>{VCPUS}</vcpu><cputune>"
        ));
        for v in 0..VCPUS {
            xml.push_str(&format!("<vcpupin vcpu='{v}' cpuset='{}'/>", d % 8));
        }
        xml.push_str("</cputune><os><type>hvm</type></os></domain>\n");
    }
    xml.push_str("</node>\n");
    let path = dir.join("node-500x4.xml");
    std::fs::write(&path, xml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("test://{}", path.display()))
}
