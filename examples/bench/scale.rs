//! The cost of the scheduler's own tick on large simulated hosts: each
//! `Scheduler::tick` timed alone (the host model's interval is not counted), demand
//! measured, 30 ticks, from a start with every domain pinned to one of the first eighth
//! of the pCPUs. Timed in CPU time of the thread (`CLOCK_THREAD_CPUTIME_ID`), so other
//! work on the machine does not count; the wall time of the worst tick beside it.
//!
//! Counted in instructions, which do not depend on the machine's speed: one host
//! (`BENCH_SCALE_HOST`, 1-3 in the table's order) for a number of ticks
//! (`BENCH_SCALE_TICKS`) under callgrind, collecting only inside the tick; the
//! difference of 130 and 30 ticks over 100 is one steady tick:
//!
//! ```text
//! BENCH_ONLY=scale BENCH_SCALE_HOST=3 BENCH_SCALE_TICKS=130 valgrind --tool=callgrind \
//!     --toggle-collect='*Scheduler*tick*' target/release/examples/bench
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use vcpu_scheduler::cpumap::CpuMap;
use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};
use vcpu_scheduler::service::simulate::INTERVAL_NS;
use vcpu_scheduler::sim::scenario::{DomainSpec, Scenario, Shape};
use vcpu_scheduler::sim::{SimHost, SplitMix64};

pub fn run(dir: &Path) -> Result<(), String> {
    println!("## Scale (scheduler tick alone, demand measured)");
    println!();
    println!(
        "| host | ticks | total CPU | worst tick CPU | steady tick CPU (last 10) | migrations | max_over_bound |"
    );
    println!("|---|---|---|---|---|---|---|");
    let large = Scenario::load(&dir.join("large-500x4.scn")).map_err(|e| e.to_string())?;
    // 2,000 domains of 4 vCPUs on 256 pCPUs, each domain pinned to one of pCPUs 0-31,
    // demands uniform in 0-5 % (about 78 % of the host).
    let mut rng = SplitMix64::new(0x256_8000);
    let huge = Scenario {
        pcpus: 256,
        topology: None,
        ticks: 30,
        noise_pct: 0.0,
        seed: 1,
        reports_delay: true,
        domains: (0..2000)
            .map(|d| DomainSpec {
                name: format!("d{d:04}"),
                demands_pct: (0..4).map(|_| rng.range(0, 5) as f64).collect(),
                affinity: CpuMap::parse_list(&(d % 32).to_string(), 256)
                    .unwrap_or_else(|_| CpuMap::all(256)),
                mem_node: None,
            })
            .collect(),
        host: Vec::new(),
        events: Vec::new(),
    };
    // The same on 4 nodes of 64 pCPUs (all the domains start on node 0, memory not
    // bound): only the local search runs at this size, so whole domains leave node 0
    // one move at a time.
    let numa = Scenario {
        topology: Some(Shape {
            sockets: 4,
            cores: 64,
            threads: 1,
        }),
        ..huge.clone()
    };
    let only: Option<usize> = env_number("BENCH_SCALE_HOST")?;
    let hosts = [
        (
            "500 domains x 4 vCPUs on 64 pCPUs (large-500x4.scn)",
            &large,
        ),
        ("2,000 domains x 4 vCPUs on 256 pCPUs", &huge),
        ("the same on 4 nodes of 64 pCPUs", &numa),
    ];
    for (h, (label, sc)) in hosts.into_iter().enumerate() {
        if only.is_some_and(|n| n != h + 1) {
            continue;
        }
        let mut sc = sc.clone();
        sc.ticks = env_number("BENCH_SCALE_TICKS")?.unwrap_or(sc.ticks);
        let sc = &sc;
        let host = SimHost::from_scenario(sc).map_err(|e| e.to_string())?;
        let cfg = SchedConfig {
            params: crate::params(),
            ..SchedConfig::default()
        };
        let mut sched = Scheduler::new(host, cfg);
        sched.tick().map_err(|e| e.to_string())?;
        let (mut total, mut worst, mut last10) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut worst_wall = Duration::ZERO;
        for k in 0..sc.ticks {
            sched.host_mut().advance(INTERVAL_NS);
            let (t, wall) = (thread_cpu(), Instant::now());
            sched.tick().map_err(|e| e.to_string())?;
            let took = thread_cpu().saturating_sub(t);
            worst_wall = worst_wall.max(wall.elapsed());
            total += took;
            worst = worst.max(took);
            if k + 10 >= sc.ticks {
                last10 += took;
            }
        }
        println!(
            "| {label} | {} | {:.1} ms | {:.2} ms ({:.2} ms wall) | {:.3} ms | {} | {:.3} |",
            sc.ticks,
            total.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            worst_wall.as_secs_f64() * 1e3,
            last10.as_secs_f64() * 1e3 / 10.0,
            sched.migrations(),
            sched.host().max_over_bound(),
        );
    }
    Ok(())
}

/// A number from the environment variable `name`, if it is set.
fn env_number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: not a number: {v:?}")),
    }
}

/// CPU time this thread has used. The bench's one `unsafe`: std has no thread clock.
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
