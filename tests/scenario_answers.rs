//! The scenario files that state a right answer in their header (the topology cases
//! and those of issue 15), each run under `balance` and held to that answer.

use std::io;
use std::path::{Path, PathBuf};

use vcpu_scheduler::service::simulate::SimOptions;
use vcpu_scheduler::sim::scenario::Scenario;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.scn"))
}

/// The topology scenarios under the `balance` policy, demand measured and estimated:
/// each reaches the right answer its header states, and without the topology
/// (`--ignore-topology`) it does not, so each rule is what gets it there.
#[test]
fn the_policy_reaches_each_topology_scenarios_right_answer() {
    use vcpu_scheduler::service::simulate::run_scenario_then;
    let run = |name: &str, delay: bool, hide: bool| {
        let mut sc = Scenario::load(&scenario_path(name)).unwrap();
        sc.reports_delay &= delay;
        let opts = SimOptions {
            hide_topology: hide,
            ..SimOptions::default()
        };
        // Where each vCPU of `big` and `b` runs at the end (numa-overflow's answer).
        run_scenario_then(&sc, &opts, &mut io::sink(), |h| {
            let on = |d: &str, v: usize| h.vcpu(d, v).map(|x| x.ran_on.0);
            [on("big", 0), on("big", 1), on("b", 0)]
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for delay in [true, false] {
        for name in ["smt-spread", "smt-half"] {
            let (s, _) = run(name, delay, false);
            assert_eq!((s.smt_conflicts, s.remote_vcpus), (0, 0), "{name}: {s}");
            assert_eq!(s.reversals, 0, "{name}: {s}");
            let (blind, _) = run(name, delay, true);
            assert!(blind.smt_conflicts > 0, "{name} without topology: {blind}");
            assert!(s.work_pct > blind.work_pct + 10.0, "{name}: {s} vs {blind}");
        }
        for name in ["numa-two-nodes", "numa-nomem"] {
            let (s, _) = run(name, delay, false);
            assert_eq!(s.remote_vcpus, 0, "{name}: {s}");
            let (blind, _) = run(name, delay, true);
            assert!(blind.remote_vcpus > 0, "{name} without topology: {blind}");
        }
        // numa-overflow: b, the one-vCPU domain, moves to node 1 whole; big stays home
        // on node 0 (pCPUs 0-1), one vCPU per pCPU, and nothing comes back.
        let (s, [big0, big1, b]) = run("numa-overflow", delay, false);
        let (big0, big1, b) = (big0.unwrap(), big1.unwrap(), b.unwrap());
        assert!(
            big0 < 2 && big1 < 2 && big0 != big1,
            "big on {big0}, {big1}: {s}"
        );
        assert!(b >= 2, "b on {b}: {s}");
        assert_eq!((s.remote_vcpus, s.reversals), (1, 0), "{s}");
        assert!(s.work_pct >= 95.0, "{s}");
    }
}

/// The cases of issue 15, each reaching the answer its file's header states, with
/// demand measured (and, where the figures allow it without run-queue delay, estimated).
#[test]
fn the_plateau_full_node_host_load_smt_and_noise_cases_reach_their_answers() {
    use vcpu_scheduler::service::simulate::run_scenario_then;
    // Where each vCPU of the scenario runs at the end, and what it got last interval.
    let run = |name: &str, delay: bool| {
        let mut sc = Scenario::load(&scenario_path(name)).unwrap();
        sc.reports_delay &= delay;
        let names: Vec<(String, usize)> = sc
            .domains
            .iter()
            .map(|d| (d.name.clone(), d.demands_pct.len()))
            .collect();
        run_scenario_then(&sc, &SimOptions::default(), &mut io::sink(), |h| {
            let mut at = Vec::new();
            for (n, k) in &names {
                for v in 0..*k {
                    let x = h.vcpu(n, v).unwrap();
                    at.push((n.clone(), x.ran_on.0, x.usage));
                }
            }
            at
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };

    // Plateau: one busy and one half on each pCPU; 6 of the 8 had to leave pCPU 0.
    let (s, at) = run("plateau-busy-half", true);
    assert!((s.max_over_bound - 1.0).abs() < 1e-9, "{s}");
    assert_eq!((s.migrations, s.reversals), (6, 0), "{s}");
    for p in 0..4 {
        let on: Vec<&String> = at.iter().filter(|x| x.1 == p).map(|x| &x.0).collect();
        assert_eq!(on.len(), 2, "pcpu {p}: {on:?}");
        assert!(on.iter().any(|n| n.starts_with('b')) && on.iter().any(|n| n.starts_with('h')));
    }

    // A full node, memory bound or not: two domains go to node 1, one per pCPU.
    for (name, remote) in [("numa-full-node", 0), ("numa-full-node-bound", 2)] {
        for delay in [true, false] {
            let (s, at) = run(name, delay);
            let mut per = [0; 4];
            for x in &at {
                per[x.1 as usize] += 1;
            }
            assert_eq!(per, [1, 1, 1, 1], "{name} delay {delay}: {s}");
            assert_eq!((s.migrations, s.remote_vcpus), (2, remote), "{name}: {s}");
        }
    }

    // Domains given a node again: d0 whole on node 0 (pCPUs 0-4), one vCPU per pCPU,
    // the others on node 1; nothing off its node, every pCPU within 1.02 of the bound.
    for delay in [true, false] {
        let (s, at) = run("numa-rehome", delay);
        let mut d0: Vec<u32> = at.iter().filter(|x| x.0 == "d0").map(|x| x.1).collect();
        d0.sort();
        assert_eq!(d0, [0, 1, 2, 3, 4], "delay {delay}: {s}");
        assert!(at.iter().all(|x| x.0 == "d0" || x.1 >= 5), "{at:?}");
        assert_eq!(s.remote_vcpus, 0, "delay {delay}: {s}");
        assert!(s.max_over_bound <= 1.02, "delay {delay}: {s}");
    }

    // Host load: the busy guest leaves the host's 80 % for pCPU 1, where it gets all of
    // it; the 10 % guest takes its place.
    for delay in [true, false] {
        let (s, at) = run("host-load", delay);
        let on = |n: &str| at.iter().find(|x| x.0 == n).unwrap();
        assert_eq!((on("busy").1, on("light").1), (1, 0), "delay {delay}: {s}");
        assert!((on("busy").2 - 1.0).abs() < 1e-9, "{:?}", on("busy"));
        assert_eq!((s.migrations, s.reversals), (2, 0), "{s}");
    }

    // SMT across sockets: one busy vCPU per core, two of them on node 1.
    for delay in [true, false] {
        let (s, at) = run("smt-two-sockets", delay);
        let mut cores: Vec<u32> = at.iter().map(|x| x.1 / 2).collect();
        cores.sort();
        assert_eq!(cores, [0, 1, 2, 3], "delay {delay}: {s}");
        assert_eq!(
            (s.smt_conflicts, s.remote_vcpus, s.reversals),
            (0, 0, 0),
            "{s}"
        );
    }

    // Noise on a nearly balanced host: next to nothing moves in 200 ticks.
    for delay in [true, false] {
        let (s, _) = run("noise-10-nearly", delay);
        assert_eq!(s.ticks, 200);
        assert!(s.migrations <= 4, "delay {delay}: {s}; moves {:?}", s.moves);
    }
}
