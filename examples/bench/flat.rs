//! Random flat hosts: the final busiest pCPU against the best placement known and the
//! exact optimum, wasted moves, and whether the final placement came at once.

use std::fs;
use std::path::Path;
use std::time::Duration;

use vcpu_scheduler::sim::SplitMix64;
use vcpu_scheduler::sim::scenario::{Scenario, random};

use crate::refs::{self, EXACT_PCPUS};
use crate::{Run, VARIANTS, demands_and_pins, fraction};

const RANDOM_SCENARIOS: u64 = 1000;
const RANDOM_SEED: u64 = 0x5eed_2026;
const SMALL_SEED: u64 = 0x5a11_2026;
const FAILURES_KEPT: usize = 5;
const EPS: f64 = 1e-6;

/// Per variant, over the hosts of one section.
#[derive(Default)]
struct Tally {
    hosts: u64,
    /// Final busiest pCPU within 1.02 and 1.05 of the best known; the worst ratio.
    near_102: u64,
    near_105: u64,
    worst: f64,
    /// Hosts where the exact optimum is known, and where the final busiest equals it
    /// (and, of those, with no more migrations than the fewest that reach it).
    exact_known: u64,
    exact_equal: u64,
    exact_fewest: u64,
    /// Within 1.10 of the bound `max(largest, mean)` (the earlier releases' figure).
    bound_110: u64,
    migrations: u64,
    /// vCPUs whose final pCPU differs from their first (a vCPU with no single pin
    /// always does: it must be pinned).
    changed: u64,
    /// Hosts whose migrations equal the vCPUs changed: no move wasted.
    no_waste: u64,
    reversals: u64,
    /// Hosts with no move after the first measured tick.
    at_once: u64,
    elapsed: Duration,
    ticks: u64,
    failures: Vec<(u64, Scenario, f64)>,
}

pub fn random() -> Result<(), String> {
    let mut rng = SplitMix64::new(RANDOM_SEED);
    let hosts: Vec<Scenario> = (0..RANDOM_SCENARIOS)
        .map(|n| random::flat(&mut rng, n))
        .collect();
    let tallies = measure(&hosts)?;
    println!(
        "## {RANDOM_SCENARIOS} random flat hosts (seed {RANDOM_SEED:#x}): 2-64 pCPUs, \
         half to twice as many vCPUs, demands 0-100 %, 30 ticks, no noise"
    );
    println!();
    print(&tallies);
    save_failures("random", &tallies)
}

/// Hosts small enough that the exact optimum is known for every one: 2-4 pCPUs, the
/// domains of `random::domains` (at most 8 vCPUs).
pub fn small() -> Result<(), String> {
    let mut rng = SplitMix64::new(SMALL_SEED);
    let hosts: Vec<Scenario> = (0..RANDOM_SCENARIOS)
        .map(|n| {
            let mut sc = random::flat(&mut rng, n);
            let pcpus = rng.range(2, EXACT_PCPUS as u64) as usize;
            sc.pcpus = pcpus;
            sc.domains = random::domains(&mut rng, pcpus);
            sc
        })
        .collect();
    let tallies = measure(&hosts)?;
    println!(
        "## {RANDOM_SCENARIOS} small random hosts (seed {SMALL_SEED:#x}): 2-{EXACT_PCPUS} \
         pCPUs, 1-8 vCPUs, exact optimum known for each"
    );
    println!();
    print(&tallies);
    save_failures("small", &tallies)
}

fn measure(hosts: &[Scenario]) -> Result<Vec<Tally>, String> {
    let mut tallies: Vec<Tally> = VARIANTS.iter().map(|_| Tally::default()).collect();
    for (n, sc) in hosts.iter().enumerate() {
        let (demands, pins) = demands_and_pins(sc);
        let m = sc.pcpus;
        let runs: Vec<Run> = VARIANTS
            .iter()
            .map(|&v| crate::run(sc, v, false))
            .collect::<Result<_, _>>()?;
        let start = refs::lpt(&demands, m);
        let exact = refs::exact(&demands, &pins, m);
        let mut best =
            refs::busiest(&demands, &start, m).min(refs::long_search(&demands, m, &start));
        for r in &runs {
            best = best
                .min(r.busiest)
                .min(refs::long_search(&demands, m, &r.at));
        }
        if let Some((opt, _)) = exact {
            best = best.min(opt);
        }
        for (t, r) in tallies.iter_mut().zip(&runs) {
            t.hosts += 1;
            let ratio = if best > 0.0 { r.busiest / best } else { 1.0 };
            t.worst = t.worst.max(ratio);
            t.near_102 += u64::from(ratio <= 1.02 + EPS);
            t.near_105 += u64::from(ratio <= 1.05 + EPS);
            if ratio > 1.02 + EPS && t.failures.len() < super::flat::FAILURES_KEPT {
                t.failures.push((n as u64, sc.clone(), ratio));
            }
            let changed = pins
                .iter()
                .zip(&r.at)
                .filter(|&(p, &at)| *p != Some(at))
                .count() as u64;
            if let Some((opt, fewest)) = exact {
                t.exact_known += 1;
                if r.busiest <= opt + EPS {
                    t.exact_equal += 1;
                    t.exact_fewest += u64::from(r.s.migrations <= fewest);
                }
            }
            t.bound_110 += u64::from(r.busiest <= 1.10 * r.bound + EPS);
            t.migrations += r.s.migrations;
            t.changed += changed;
            t.no_waste += u64::from(r.s.migrations <= changed);
            t.reversals += r.s.reversals;
            t.at_once += u64::from(r.s.moves.iter().skip(1).all(|&k| k == 0));
            t.elapsed += r.elapsed;
            t.ticks += r.s.ticks + 1;
        }
    }
    Ok(tallies)
}

fn print(tallies: &[Tally]) {
    println!(
        "| variant | busiest ≤ 1.02 × best known | ≤ 1.05 × | worst | = exact optimum (where known) | … with the fewest moves | ≤ 1.10 × bound | migrations / vCPUs changed | hosts with no wasted move | reversals | final at the first measured tick | time per tick |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (v, t) in VARIANTS.iter().zip(tallies) {
        println!(
            "| {} | {} | {} | {:.3} | {} | {} | {} | {} / {} = {:.3} | {} | {} | {} | {:.1} µs |",
            v.label,
            fraction(t.near_102, t.hosts),
            fraction(t.near_105, t.hosts),
            t.worst,
            fraction(t.exact_equal, t.exact_known),
            fraction(t.exact_fewest, t.exact_equal),
            fraction(t.bound_110, t.hosts),
            t.migrations,
            t.changed,
            t.migrations as f64 / t.changed.max(1) as f64,
            fraction(t.no_waste, t.hosts),
            t.reversals,
            fraction(t.at_once, t.hosts),
            t.elapsed.as_secs_f64() * 1e6 / t.ticks.max(1) as f64,
        );
    }
    println!();
    println!(
        "Best known: the lowest busiest pCPU of largest-first from scratch, a long min-max \
         search (moves, exchanges, and optimal re-partitions of the busiest pCPU with \
         another) from it and from every variant's result, every variant's result, and \
         the exact optimum where known (at most {EXACT_PCPUS} pCPUs and {} vCPUs). \
         Time per tick: the simulated host's interval, the scheduler's tick and the \
         summary, over the whole run.",
        refs::EXACT_VCPUS
    );
}

/// The first hosts each variant ended more than 1.02 over the best known on, written to
/// `target/bench/` to replay with `vcpu-scheduler simulate FILE`.
fn save_failures(section: &str, tallies: &[Tally]) -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    for (v, t) in VARIANTS.iter().zip(tallies) {
        if t.failures.is_empty() || v.label == "seed" {
            continue;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tag = v.label.replace(", ", "-");
        println!();
        println!("First over 1.02 of the best known with {}:", v.label);
        for (n, sc, ratio) in &t.failures {
            let path = dir.join(format!("{section}-{n:04}-{tag}.scn"));
            fs::write(&path, sc.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("- {} ({} pcpus): {ratio:.3}", path.display(), sc.pcpus);
        }
    }
    Ok(())
}
