//! Measures the `seed` and `balance` policies on the simulator, against references that
//! do not come from either (see `refs.rs`).
//!
//! ```text
//! cargo run --release --example bench                 # every section
//! BENCH_ONLY=flat,small cargo run --release --example bench
//! BENCH_PARAMS=price=0.002,noise_sigmas=1.5 cargo run --release --example bench
//! ```
//!
//! Sections (`BENCH_ONLY` names): `files` every `scenarios/*.scn`; `recorded` every
//! `scenarios/recorded/*.scn` (traces of real guests); `flat` 1,000 random
//! flat hosts; `small` 1,000 hosts small enough for the exact optimum; `topo` 1,000
//! random topologies; `noise` 200 random balanced hosts read with ±10 % noise; `scale`
//! the cost of a tick on large hosts. Every run is seeded: the same figures each time.

mod flat;
mod noise;
mod refs;
mod scale;
mod table;
mod topo;

use std::io;
use std::time::{Duration, Instant};

use vcpu_scheduler::policy::{Params, Policy};
use vcpu_scheduler::service::simulate::{SimOptions, Summary, run_scenario_then};
use vcpu_scheduler::sim::scenario::Scenario;

/// What is compared: a policy, and whether the simulated host reports run-queue delay
/// (demand measured) or not (demand estimated from usage). `seed` plans on usage alone,
/// so delay makes no difference to it.
#[derive(Clone, Copy)]
pub struct Variant {
    pub label: &'static str,
    pub policy: Policy,
    pub delay: bool,
}

pub const VARIANTS: [Variant; 3] = [
    Variant {
        label: "seed",
        policy: Policy::Seed,
        delay: true,
    },
    Variant {
        label: "balance, estimated",
        policy: Policy::Balance,
        delay: false,
    },
    Variant {
        label: "balance, measured",
        policy: Policy::Balance,
        delay: true,
    },
];

/// One run of a scenario, and the final placement as the references need it.
pub struct Run {
    pub s: Summary,
    /// Each vCPU's pCPU at the end (pinned, else where it runs), in scenario order.
    pub at: Vec<usize>,
    /// The busiest pCPU's demand at the end, and the bound.
    pub busiest: f64,
    pub bound: f64,
    /// max_over_bound within nodes, and largest-first within the same nodes.
    pub within_nodes: f64,
    pub lpt_nodes: f64,
    pub elapsed: Duration,
}

/// Run `sc` as variant `v` sees it (a scenario's own `delay off` still holds);
/// `hide` keeps the topology from the scheduler.
pub fn run(sc: &Scenario, v: Variant, hide: bool) -> Result<Run, String> {
    let opts = SimOptions {
        policy: v.policy,
        params: params(),
        hide_topology: hide,
        ..SimOptions::default()
    };
    let mut sc = sc.clone();
    sc.reports_delay &= v.delay;
    let start = Instant::now();
    let (s, (at, (busiest, bound), within_nodes, lpt_nodes)) =
        run_scenario_then(&sc, &opts, &mut io::sink(), |h| {
            let mut at = Vec::new();
            for d in &sc.domains {
                for k in 0..d.demands_pct.len() {
                    let v = h.vcpu(&d.name, k);
                    at.push(v.map_or(0, |v| v.affinity.only().unwrap_or(v.ran_on.index())));
                }
            }
            (
                at,
                h.demand_placement_stats(),
                h.max_over_bound_within_nodes(),
                h.largest_first_within_nodes(),
            )
        })
        .map_err(|e| e.to_string())?;
    Ok(Run {
        s,
        at,
        busiest,
        bound,
        within_nodes,
        lpt_nodes,
        elapsed: start.elapsed(),
    })
}

/// The demands (fractions) and initial single pins of a scenario's vCPUs, in order.
pub fn demands_and_pins(sc: &Scenario) -> (Vec<f64>, Vec<Option<usize>>) {
    let mut d = Vec::new();
    let mut pins = Vec::new();
    for dom in &sc.domains {
        for &p in &dom.demands_pct {
            d.push(p / 100.0);
            pins.push(dom.affinity.only());
        }
    }
    (d, pins)
}

/// The policy's tuning: the defaults, or as `BENCH_PARAMS=name=value,...` says (to try
/// a change before making it the default).
pub fn params() -> Params {
    let mut p = Params::default();
    let Ok(spec) = std::env::var("BENCH_PARAMS") else {
        return p;
    };
    for kv in spec.split(',').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let Ok(v) = v.parse::<f64>() else {
            eprintln!("bench: BENCH_PARAMS: bad value in {kv:?}");
            std::process::exit(2);
        };
        match k {
            "threshold_pct" => p.threshold_pct = v,
            "price" => p.price = v,
            "noise_sigmas" => p.noise_sigmas = v,
            "recent_ticks" => p.recent_ticks = v as u64,
            "guess_prices" => p.guess_prices = v,
            _ => {
                eprintln!("bench: BENCH_PARAMS: unknown parameter {k:?}");
                std::process::exit(2);
            }
        }
    }
    p
}

/// `12.3 % (123/1000)`.
pub fn fraction(good: u64, total: u64) -> String {
    if total == 0 {
        return "-".to_owned();
    }
    format!(
        "{:.1} % ({good}/{total})",
        100.0 * good as f64 / total as f64
    )
}

/// One section of the bench.
type Section<'a> = dyn Fn() -> Result<(), String> + 'a;

fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s == section))
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let recorded = dir.join("recorded");
    let sections: [(&str, &Section<'_>); 7] = [
        ("files", &|| table::run(&dir, "scenarios/*.scn")),
        ("recorded", &|| {
            table::run(
                &recorded,
                "scenarios/recorded/*.scn: recorded from real guests by `vcpu-scheduler record`",
            )
        }),
        ("flat", &flat::random),
        ("small", &flat::small),
        ("topo", &topo::run),
        ("noise", &noise::run),
        ("scale", &|| scale::run(&dir)),
    ];
    for (name, section) in sections {
        if wanted(name) {
            if let Err(e) = section() {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
            println!();
        }
    }
}
