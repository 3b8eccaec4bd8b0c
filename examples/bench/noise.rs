//! Noise: balanced hosts read with ±10 % noise must not be re-pinned for it. 200 random
//! hosts, and every noise scenario file, 200 ticks each.

use std::path::Path;

use vcpu_scheduler::cpumap::CpuMap;
use vcpu_scheduler::sim::SplitMix64;
use vcpu_scheduler::sim::scenario::{DomainSpec, Scenario};

use crate::{VARIANTS, fraction};

const HOSTS: u64 = 200;
const SEED: u64 = 0x0015_2026;
/// At most this many migrations in 200 ticks, on every host.
const BOUND: u64 = 4;

/// A balanced host: 2-16 pCPUs, each at a common level (30-90 %) give or take 3
/// points, made of 1-3 vCPUs pinned to it; ±10 % noise, 200 ticks.
fn balanced(rng: &mut SplitMix64, seed: u64) -> Scenario {
    let pcpus = rng.range(2, 16) as usize;
    let level = rng.range(30, 90) as f64;
    let mut domains = Vec::new();
    for p in 0..pcpus {
        let total = level + rng.range(0, 6) as f64 - 3.0;
        let k = rng.range(1, 3) as usize;
        // Cut points in 0..total, sorted: k parts of at least 2 %.
        let mut cuts: Vec<f64> = (1..k)
            .map(|_| rng.range(2, total as u64 - 2) as f64)
            .collect();
        cuts.sort_by(f64::total_cmp);
        let mut last = 0.0;
        for c in cuts.iter().copied().chain([total]) {
            let pct = (c - last).max(2.0);
            last = c;
            domains.push(DomainSpec {
                name: format!("d{p}x{}", domains.len()),
                demands_pct: vec![pct.min(100.0)],
                affinity: CpuMap::parse_list(&p.to_string(), pcpus).expect("in range"),
                mem_node: None,
            });
        }
    }
    Scenario {
        pcpus,
        topology: None,
        ticks: 200,
        noise_pct: 10.0,
        seed,
        reports_delay: true,
        domains,
        host: Vec::new(),
        events: Vec::new(),
    }
}

pub fn run() -> Result<(), String> {
    let mut rng = SplitMix64::new(SEED);
    let hosts: Vec<Scenario> = (0..HOSTS).map(|n| balanced(&mut rng, n)).collect();
    println!(
        "## Noise: {HOSTS} random balanced hosts (seed {SEED:#x}) read with ±10 % noise, \
         200 ticks: at most {BOUND} migrations per host"
    );
    println!();
    println!(
        "| variant | hosts within {BOUND} migrations | most on one host | migrations | of them at the first tick | reversals |"
    );
    println!("|---|---|---|---|---|---|");
    for v in VARIANTS {
        let (mut good, mut most, mut total, mut reversals, mut first) = (0, 0, 0, 0, 0);
        for sc in &hosts {
            let r = crate::run(sc, v, false)?;
            good += u64::from(r.s.migrations <= BOUND);
            if r.s.migrations > most && v.label != "seed" {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
                let _ = std::fs::create_dir_all(&dir);
                let tag = v.label.replace(", ", "-");
                let _ = std::fs::write(dir.join(format!("noise-worst-{tag}.scn")), sc.to_string());
            }
            most = most.max(r.s.migrations);
            total += r.s.migrations;
            first += r.s.moves.first().copied().unwrap_or(0);
            reversals += r.s.reversals;
        }
        println!(
            "| {} | {} | {most} | {total} | {first} | {reversals} |",
            v.label,
            fraction(good, HOSTS)
        );
    }
    println!();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("noise") && n.ends_with(".scn"))
        })
        .collect();
    files.sort();
    println!(
        "| noise scenario | migrations in 200 ticks (seed / balance estimated / balance measured) |"
    );
    println!("|---|---|");
    for path in files {
        let mut sc = Scenario::load(&path).map_err(|e| e.to_string())?;
        sc.ticks = 200;
        sc.events.retain(|e| e.tick <= 200);
        let cells: Vec<String> = VARIANTS
            .iter()
            .map(|&v| crate::run(&sc, v, false).map(|r| r.s.migrations.to_string()))
            .collect::<Result<_, _>>()?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        println!("| {} | {} |", name.unwrap_or_default(), cells.join(" / "));
    }
    Ok(())
}
