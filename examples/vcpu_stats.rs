//! Diagnostic for the bulk vCPU stats call: what `Connection::vcpu_stats` reports on a
//! live host, as rates over a window.
//!
//! ```text
//! vcpu_stats [URI] [SECONDS]     default qemu:///system, 2 s
//! ```
//!
//! Calls `vcpu_stats` twice, SECONDS apart, and prints per domain and vCPU: Δtime and
//! Δdelay as fractions of one pCPU over the window, and demand = (Δtime + Δdelay) / Δt,
//! what the vCPU would have used uncontended. Two busy vCPUs sharing one pCPU show about
//! 0.5 time, 0.5 delay and 1.0 demand each. A figure the driver did not report is `-`.
//! Read-only connection: it never pins.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vcpu_scheduler::libvirt::{Connection, VcpuStatsTable, rpc_calls};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let uri = args.first().map_or("qemu:///system", String::as_str);
    let seconds = match args.get(1).map(|s| s.parse::<f64>()) {
        None => 2.0,
        Some(Ok(s)) if (0.1..=600.0).contains(&s) => s,
        Some(_) => {
            eprintln!("vcpu_stats: bad SECONDS {:?}: expected 0.1 to 600", args[1]);
            return ExitCode::from(2);
        }
    };
    match run(uri, Duration::from_secs_f64(seconds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcpu_stats: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(uri: &str, window: Duration) -> Result<(), String> {
    let conn = Connection::open_read_only(uri).map_err(|e| format!("cannot open {uri}: {e}"))?;
    let names = domain_names(&conn).map_err(|e| format!("cannot list domains: {e}"))?;

    let mut before = VcpuStatsTable::new();
    let mut after = VcpuStatsTable::new();
    let calls_before = rpc_calls();
    let t0 = Instant::now();
    conn.vcpu_stats(&mut before)
        .map_err(|e| format!("{}: {e}", e.call()))?;
    std::thread::sleep(window);
    let t1 = Instant::now();
    conn.vcpu_stats(&mut after)
        .map_err(|e| format!("{}: {e}", e.call()))?;
    let dt_ns = (t1 - t0).as_nanos() as f64;

    println!(
        "{uri}: {} domains, delay reported: {}, {} calls for 2 samples, window {:.3} s",
        after.len(),
        after.any_delay(),
        rpc_calls() - calls_before,
        dt_ns / 1e9
    );
    println!(
        "{:<20} {:>4} {:>7} {:>7} {:>7}",
        "domain", "vcpu", "time", "delay", "demand"
    );
    for (uuid, now) in after.iter() {
        let name = names.get(uuid).map_or("?", String::as_str);
        let Some(then) = before.domain(uuid) else {
            println!("{name:<20} (started during the window)");
            continue;
        };
        if now.is_empty() {
            println!("{name:<20} (no vCPU fields)");
        }
        for (v, (n, t)) in now.iter().zip(then).enumerate() {
            let time = rate(n.time_ns, t.time_ns, dt_ns);
            let delay = rate(n.delay_ns, t.delay_ns, dt_ns);
            let demand = time.zip(delay).map(|(a, b)| a + b);
            println!(
                "{name:<20} {v:>4} {:>7} {:>7} {:>7}",
                show(time),
                show(delay),
                show(demand)
            );
        }
    }
    Ok(())
}

/// Δ of a cumulative counter over the window, as a fraction of one pCPU.
fn rate(now: Option<u64>, then: Option<u64>, dt_ns: f64) -> Option<f64> {
    Some(now?.checked_sub(then?)? as f64 / dt_ns)
}

fn show(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

/// UUID to name for the running domains (the table carries UUIDs only).
fn domain_names(
    conn: &Connection,
) -> Result<HashMap<[u8; 16], String>, vcpu_scheduler::libvirt::Error> {
    let mut ids = Vec::new();
    conn.running_domain_ids(&mut ids)?;
    let mut names = HashMap::new();
    for id in ids {
        // A domain that stopped since the listing is simply not named.
        if let Ok(dom) = conn.domain_by_id(id) {
            names.insert(dom.uuid()?, dom.name()?);
        }
    }
    Ok(names)
}
