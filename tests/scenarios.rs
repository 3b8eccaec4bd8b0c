//! The simulator and the scenario files, through the public API: the course's seven
//! graded cases under the default `balance` policy, the scenario format's errors, the
//! determinism of a run, and noise that must not cause moves. Then the host's shape:
//! the SMT work model, memory nodes, and the summary's topology measures on placements
//! built by hand (facts of the simulator, whatever the policy does with them).

use std::io;
use std::path::{Path, PathBuf};

use vcpu_scheduler::policy::Policy;
use vcpu_scheduler::service::simulate::{SimError, SimOptions, Summary, run, run_scenario};
use vcpu_scheduler::sim::scenario::Scenario;

const THRESHOLD: f64 = 5.0;

const COURSE: [&str; 8] = [
    "course-1-all-on-one",
    "course-2-half-half",
    "course-3-already-balanced",
    "course-4-all-affinity",
    "course-5-heavy-light",
    "course-6-no-load",
    "course-7-light-then-heavy",
    "course-7b-light-then-heavy-odd",
];

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.scn"))
}

fn simulate(name: &str, policy: Policy) -> Summary {
    simulate_mode(name, policy, true)
}

/// With `delay` false the simulated host reports no run-queue delay, as libvirt's test
/// driver does: demand is then estimated from usage.
fn simulate_mode(name: &str, policy: Policy, delay: bool) -> Summary {
    let opts = SimOptions {
        policy,
        ..SimOptions::default()
    };
    let mut sc = Scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"));
    sc.reports_delay &= delay;
    run_scenario(&sc, &opts, &mut io::sink()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// σ ≤ threshold from the `within`-th measured tick after the start and after every
/// event, up to the next event (the first measured tick after a change counts 1).
fn assert_settles(name: &str, s: &Summary, within: u64) {
    let mut starts = vec![1];
    starts.extend(&s.event_ticks);
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(s.ticks, |next| next - 1);
        for tick in start + within - 1..=end {
            let sigma = s.sigma_pct[(tick - 1) as usize];
            assert!(
                sigma.is_some_and(|x| x <= THRESHOLD),
                "{name}: sigma {sigma:?} at tick {tick}, more than {within} ticks after \
                 the change at tick {start}; sigmas {:?}",
                s.sigma_pct
            );
        }
    }
}

#[test]
fn course_cases_balance_within_two_ticks_of_start_and_of_every_load_change() {
    for name in COURSE {
        for delay in [true, false] {
            let s = simulate_mode(name, Policy::Balance, delay);
            assert_settles(name, &s, 2);
            assert!(s.ticks_to_balance.is_some_and(|k| k <= 2), "{name}: {s}");
        }
    }
}

#[test]
fn course_cases_already_balanced_or_idle_change_no_pin() {
    for name in ["course-3-already-balanced", "course-6-no-load"] {
        for (policy, delay) in [
            (Policy::Balance, true),
            (Policy::Balance, false),
            (Policy::Seed, true),
        ] {
            let s = simulate_mode(name, policy, delay);
            assert_eq!(
                s.migrations,
                0,
                "{name} with {} (delay {delay}): {s}",
                policy.name()
            );
        }
    }
}

/// With demand measured nothing is explored, so in scenarios without noise no vCPU is
/// ever sent back to a pCPU it left within 5 ticks.
#[test]
fn measured_demand_makes_no_reversal_without_noise() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Ok(sc) = Scenario::load(&path) else {
            continue;
        };
        if sc.noise_pct > 0.0 || !sc.reports_delay {
            continue;
        }
        let s = run_scenario(&sc, &SimOptions::default(), &mut io::sink()).unwrap();
        assert_eq!(s.reversals, 0, "{}: {s}", path.display());
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} noise-free scenarios");
}

/// A host balanced on average (58, 55, 51, 52 %) read with ±10 % noise: the noise alone
/// pushes σ over 5 now and then, yet at most 4 migrations in 200 ticks (the bound on
/// every noise scenario), in both demand modes. The same host with a real change at
/// tick 100 (a vCPU from 20 to 60 %: σ 19.6) is answered by the tick that first
/// measures it (demand measured) or the next (estimated: the grown vCPU shares a
/// saturated pCPU), halving σ at least; closing the last points of σ under ±10 % noise
/// is not worth a migration.
#[test]
fn ten_percent_noise_moves_little_and_a_real_change_is_answered_at_once() {
    for delay in [true, false] {
        let s = simulate_mode("noise-10-balanced", Policy::Balance, delay);
        assert_eq!(s.ticks, 200);
        assert!(s.migrations <= 4, "delay {delay}: {s}; moves {:?}", s.moves);

        let s = simulate_mode("noise-10-change", Policy::Balance, delay);
        let answered = if delay { 100 } else { 101 };
        let before = s.sigma_pct[98].unwrap(); // tick 99
        let at = s.sigma_pct[99].unwrap(); // tick 100, measured with the change
        let after = s.sigma_pct[answered].unwrap();
        assert!(before <= THRESHOLD && at > 15.0, "delay {delay}: {s}");
        assert!(
            s.moves[99..answered].iter().sum::<u64>() > 0,
            "delay {delay}: no move by tick {answered}; {:?}",
            &s.moves[95..110]
        );
        assert!(
            after <= at / 2.0,
            "delay {delay}: σ {at:.1} then {after:.1}"
        );
        // The answer and whatever noise moves in 200 ticks: the bound of every noise
        // scenario.
        assert!(s.migrations <= 4, "delay {delay}: {s}; moves {:?}", s.moves);
    }
}

/// No more moves than `seed` wherever `seed` ends with a good placement. Where it does
/// not (course cases 1 and 2: it stops at 5 busy VMs sharing pCPU 0 and one VM on each
/// other pCPU, which reads σ 2.2 because every pCPU is saturated, max_over_bound 2.5),
/// fewer moves would mean the same bad placement, so there `balance` must instead end
/// strictly better placed. The README reports both numbers.
#[test]
fn course_cases_make_no_more_moves_than_seed() {
    let mut over = Vec::new();
    for name in COURSE {
        let balance = simulate(name, Policy::Balance);
        let seed = simulate(name, Policy::Seed);
        let seed_placed_well = seed.max_over_bound <= 1.10;
        let fine = if seed_placed_well {
            balance.migrations <= seed.migrations
        } else {
            balance.max_over_bound < seed.max_over_bound && balance.max_over_bound <= 1.10
        };
        if !fine {
            over.push(format!("{name}: balance {balance} / seed {seed}"));
        }
    }
    assert!(
        over.is_empty(),
        "more migrations than seed:\n{}",
        over.join("\n")
    );
}

#[test]
fn steady_load_with_five_percent_noise_makes_no_move_after_convergence() {
    // The course allows 25 ticks to balance; after that, 275 noisy ticks, not one move.
    const CONVERGE: usize = 25;
    let s = simulate("noise-steady-300", Policy::Balance);
    assert_eq!(s.ticks, 300);
    let late: u64 = s.moves[CONVERGE..].iter().sum();
    assert_eq!(late, 0, "moves after tick {CONVERGE}: {:?}", s.moves);
    assert_settles("noise-steady-300", &s, 2);
    assert!(s.max_over_bound <= 1.10, "{s}");

    let s = simulate("noise-all-on-one", Policy::Balance);
    let late: u64 = s.moves[CONVERGE..].iter().sum();
    assert_eq!(late, 0, "noise-all-on-one, moves: {:?}", s.moves);
}

#[test]
fn every_scenario_file_parses_and_runs_with_both_policies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "scn") {
            continue;
        }
        count += 1;
        for policy in [Policy::Seed, Policy::Balance] {
            let opts = SimOptions {
                policy,
                ..SimOptions::default()
            };
            let mut text = Vec::new();
            let s =
                run(&path, &opts, &mut text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(s.sigma_pct.len() as u64, s.ticks);
            assert!(s.max_over_bound >= 1.0 - 1e-9, "{}: {s}", path.display());
            let json_opts = SimOptions { json: true, ..opts };
            let mut json = Vec::new();
            run(&path, &json_opts, &mut json).unwrap();
            assert_text_and_json_agree(&path, &text, &json);
        }
    }
    assert!(count >= 16, "only {count} scenarios in {}", dir.display());
}

/// Every tick's text line and JSON object give the same verdict: the word after the
/// loads is the JSON's `outcome`, and `balanced` is true exactly when the text says so.
fn assert_text_and_json_agree(path: &Path, text: &[u8], json: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let json = String::from_utf8_lossy(json);
    let ticks: Vec<&str> = text.lines().filter(|l| l.starts_with("tick ")).collect();
    let objects: Vec<&str> = json
        .lines()
        .filter(|l| l.starts_with("{\"tick\""))
        .collect();
    assert_eq!(ticks.len(), objects.len(), "{}", path.display());
    for (line, obj) in ticks.iter().zip(&objects) {
        let outcome = obj
            .split("\"outcome\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no outcome in {obj}"));
        let after_loads = line.split(" loads=").nth(1).unwrap_or("");
        let word = after_loads.split_once(' ').map_or("", |(_, rest)| rest);
        let text_outcome = match word {
            w if w.starts_with("would-move") || w.starts_with("moved") => "moved",
            w if w.starts_with("balanced") => "balanced",
            w if w.starts_with("no useful move") => "no useful move",
            w if w.starts_with("baseline") => "baseline",
            w => panic!("{}: unknown outcome in {line:?} ({w:?})", path.display()),
        };
        assert_eq!(text_outcome, outcome, "{}: {line} / {obj}", path.display());
        let balanced = obj.contains("\"balanced\":true");
        match text_outcome {
            "balanced" => assert!(balanced, "{}: {line} / {obj}", path.display()),
            "no useful move" => assert!(!balanced, "{}: {line} / {obj}", path.display()),
            _ => {}
        }
    }
}

#[test]
fn a_run_is_deterministic_for_a_seed() {
    let path = scenario_path("noise-all-on-one");
    let output = |sc: &Scenario| {
        let mut out = Vec::new();
        let s = run_scenario(sc, &SimOptions::default(), &mut out).unwrap();
        (s, out)
    };
    let sc = Scenario::load(&path).unwrap();
    let (a, out_a) = output(&sc);
    let (b, out_b) = output(&sc);
    assert_eq!(a, b);
    assert_eq!(out_a, out_b);
    let mut other = sc.clone();
    other.seed += 1;
    let (_, out_c) = output(&other);
    assert_ne!(out_a, out_c, "another seed, other noise");
}

#[test]
fn text_and_json_output() {
    let path = scenario_path("course-7-light-then-heavy");
    let mut out = Vec::new();
    let s = run(&path, &SimOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, s.ticks + 2, "baseline, ticks, summary");
    assert!(lines[0].starts_with("tick 0 "), "{}", lines[0]);
    assert!(lines[1].starts_with("tick 1 sigma="), "{}", lines[1]);
    let last = lines[lines.len() - 1];
    assert_eq!(last, format!("summary {s}"));
    assert!(last.starts_with("summary ticks_to_balance="), "{last}");
    assert_eq!(s.event_ticks, vec![15]);

    // Every vCPU on pCPU 0: any policy moves something at tick 1.
    let path = scenario_path("course-1-all-on-one");
    let opts = SimOptions {
        json: true,
        ticks: Some(20),
        ..SimOptions::default()
    };
    let mut out = Vec::new();
    let s = run(&path, &opts, &mut out).unwrap();
    assert_eq!(s.ticks, 20, "--ticks overrides the file");
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 22);
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "{l}");
    }
    assert!(
        lines[0].starts_with("{\"tick\":0,\"sigma\":null,\"loads\":["),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"moves\":[{\"domain\":\"vm"),
        "{}",
        lines[1]
    );
    assert!(lines[21].starts_with("{\"summary\":{\"ticks\":20,\"ticks_to_balance\":"));
}

#[test]
fn malformed_files_are_rejected_with_file_line_reason() {
    let dir = std::env::temp_dir().join(format!("vcpu-scheduler-scn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The messages themselves are tested with the parser (src/sim/scenario/parse.rs);
    // here, that `run` names the file it was given, the line, and exits as a scenario
    // error.
    let cases = [
        (
            "keyword.scn",
            "pcpus 4\nvm a 50\nfrobnicate 3\n",
            ":3: unknown keyword \"frobnicate\"",
        ),
        (
            "range.scn",
            "pcpus 4\nticks 5\nvm a 5\nat 6 stop a\n",
            ":4: at 6 is past the last",
        ),
        (
            "topology.scn",
            "pcpus 8\nvm a 50\ntopology 2 2 1\n",
            ":3: topology 2 2 1 makes 4 pcpus, but pcpus is 8 (line 1)",
        ),
        (
            "threads.scn",
            "topology 1 2 9\n",
            ":1: topology threads 9 is over 8",
        ),
        (
            "mem.scn",
            "topology 2 2 1\nvm a 50\nat 4 start b 50 mem 2\n",
            ":3: mem 2: no such node (the host has nodes 0-1)",
        ),
        (
            "mem-flat.scn",
            "pcpus 2\nvm a 50 mem 1\n",
            ":2: mem 1: no such node",
        ),
    ];
    for (file, text, want) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let err = run(&path, &SimOptions::default(), &mut io::sink()).unwrap_err();
        assert!(matches!(err, SimError::Scenario(_)));
        let msg = err.to_string();
        let want = format!("{}{want}", path.display());
        assert!(msg.starts_with(&want), "got {msg}\nwant {want}");
        assert!(!msg.contains('\n'));
    }
    let err = run(
        &dir.join("absent.scn"),
        &SimOptions::default(),
        &mut io::sink(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("absent.scn: cannot read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// vCPU hotplug: vCPUs added while the scheduler runs are pinned the tick they appear;
/// removed ones are forgotten (no error, no stale figures).
#[test]
fn hotplugged_vcpus_are_taken_in_at_once_and_unplugged_ones_forgotten() {
    use vcpu_scheduler::cpumap::CpuMap;
    use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};
    use vcpu_scheduler::service::simulate::INTERVAL_NS;
    use vcpu_scheduler::sim::SimHost;

    let mut host = SimHost::new(4);
    let pin0 = CpuMap::parse_list("0", 4).unwrap();
    host.add_domain("web", &[0.8, 0.8], &pin0).unwrap();
    let mut sched = Scheduler::new(host, SchedConfig::default());
    for _ in 0..3 {
        sched.host_mut().advance(INTERVAL_NS);
        sched.tick().unwrap();
    }
    assert_eq!(sched.report().units.len(), 2);

    sched.host_mut().set_vcpus("web", &[0.8; 4]).unwrap();
    sched.host_mut().advance(INTERVAL_NS);
    sched.tick().unwrap();
    let r = sched.report();
    assert_eq!(r.units.len(), 4);
    let mut added: Vec<u32> = r
        .moves
        .iter()
        .filter(|m| m.from.is_none() && m.counts())
        .map(|m| m.vcpu.0)
        .collect();
    added.sort();
    assert_eq!(
        added,
        [2, 3],
        "the new vCPUs are pinned the tick they appear"
    );
    assert!(r.units.iter().all(|u| u.pinned_to.is_some()));

    sched.host_mut().set_vcpus("web", &[0.8]).unwrap();
    for _ in 0..2 {
        sched.host_mut().advance(INTERVAL_NS);
        sched.tick().unwrap();
    }
    let r = sched.report();
    assert_eq!(r.units.len(), 1, "removed vCPUs are forgotten");
    assert!(r.units[0].usage.is_some_and(|u| (u - 0.8).abs() < 1e-9));
}

mod topology {
    use super::*;

    /// The summary carries the three measures, after the existing fields, in text and
    /// JSON; a file without a topology line reads 0 remote and 0 conflicts.
    #[test]
    fn the_summary_line_ends_with_the_topology_measures() {
        let s = simulate("course-1-all-on-one", Policy::Balance);
        assert_eq!((s.remote_vcpus, s.smt_conflicts), (0, 0));
        // 8 vCPUs wanting 95 % on 4 pCPUs: at most 400 / 760 of it can be delivered.
        assert!(s.work_pct <= 100.0 * 4.0 / 7.6 + 1e-9, "{s}");
        let line = s.to_string();
        let tail = line.split(" max_over_bound=").nth(1).unwrap();
        assert!(
            tail.ends_with(&format!(
                " remote_vcpus=0 smt_conflicts=0 work={:.1}",
                s.work_pct
            )),
            "{line}"
        );
        let opts = SimOptions {
            json: true,
            ..SimOptions::default()
        };
        let mut out = Vec::new();
        run(&scenario_path("numa-two-nodes"), &opts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            last.contains(",\"max_over_bound\":") && last.ends_with("}}"),
            "{last}"
        );
        let after = last.split("\"max_over_bound\":").nth(1).unwrap();
        assert!(after.contains(",\"remote_vcpus\":"), "{last}");
        assert!(after.contains(",\"smt_conflicts\":0,\"work\":"), "{last}");
    }
}
