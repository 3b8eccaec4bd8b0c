// Compiled only under #[cfg(test)], from the parent module.
//! The host's shape in the simulator: the SMT work model, memory nodes, and the
//! measures of a placement (remote vCPUs, SMT conflicts, the bound within nodes) on
//! placements built by hand: facts of the simulator, whatever a policy does with them.

use std::path::Path;

use crate::cpumap::CpuMap;
use crate::host::{DomainKey, Host, PcpuId, VcpuId};
use crate::sim::SimHost;
use crate::sim::scenario::Scenario;
use crate::sim::test_support::{SEC, one, samples};
use crate::topology::Topology;

fn shaped(sockets: usize, cores: usize, threads: usize) -> SimHost {
    SimHost::with_topology(Topology::from_shape(sockets, cores, threads))
}

/// Pin every vCPU of `name`, vCPU i to `pcpus[i]`.
fn pin(h: &mut SimHost, name: &str, pcpus: &[u32]) {
    let key: DomainKey = h.key(name).unwrap();
    for (i, &p) in pcpus.iter().enumerate() {
        h.pin(key, VcpuId(i as u32), PcpuId(p)).unwrap();
    }
}

fn work(h: &SimHost, name: &str, vcpu: usize) -> f64 {
    h.vcpu(name, vcpu).unwrap().work
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_flat_host_reports_no_topology_and_a_shaped_one_does() {
    let flat = SimHost::new(4);
    assert!(flat.topology().is_none());
    let h = shaped(2, 2, 1);
    let t = h.topology().expect("a topology line is reported");
    assert_eq!((t.nodes(), t.cores(), t.smt(), h.pcpus()), (2, 4, false, 4));
    let h = shaped(1, 2, 2);
    assert!(h.topology().is_some_and(|t| t.smt()));
}

/// Two busy siblings: 1.3 pCPUs of work between them, 0.65 each, while each one's
/// CPU time reads a full second per second and its run-queue delay reads nothing.
/// Apart (one busy thread per core), each delivers 1.0.
#[test]
fn smt_siblings_both_busy_deliver_one_point_three_yet_read_fully_used() {
    let mut h = shaped(1, 2, 2); // core 0 = pCPUs 0-1, core 1 = pCPUs 2-3
    h.add_domain("a", &[1.0], &one(h.pcpus(), 0)).unwrap();
    h.add_domain("b", &[1.0], &one(h.pcpus(), 1)).unwrap();
    h.advance(SEC);
    assert!(close(work(&h, "a", 0), 0.65) && close(work(&h, "b", 0), 0.65));
    assert!(close(work(&h, "a", 0) + work(&h, "b", 0), 1.3));
    for s in samples(&mut h) {
        assert_eq!(s.cpu_time_ns, SEC, "CPU time reads fully used");
        let rq = s.run_queue.unwrap();
        assert_eq!(rq.delay_ns, 0, "and no wait: SMT contention is invisible");
    }
    assert_eq!(h.vcpu("a", 0).unwrap().usage, 1.0);
    assert_eq!(h.smt_conflicts(), 1, "core 0 doubled up, core 1 idle");

    // b to the other core: each busy thread alone on its core delivers 1.0.
    pin(&mut h, "b", &[2]);
    assert_eq!(
        h.smt_conflicts(),
        0,
        "measured on the next interval's placement"
    );
    h.advance(SEC);
    assert!(close(work(&h, "a", 0), 1.0) && close(work(&h, "b", 0), 1.0));
    assert!(
        close(h.vcpu("b", 0).unwrap().work_ns, 0.65e9 + 1e9),
        "cumulative"
    );
    // Two intervals: 0.65 + 0.65 + 1 + 1 of work for 4 wanted.
    assert!(close(h.work_pct(), 100.0 * 3.3 / 4.0), "{}", h.work_pct());
}

/// One busy thread alone on its core delivers a whole pCPU; with a half-busy
/// sibling the core delivers b1 + b2 − 0.7 × min = 1.15, shared in proportion to
/// busy time.
#[test]
fn smt_partial_busyness_follows_the_documented_formula() {
    let mut h = shaped(1, 1, 2);
    h.add_domain("a", &[1.0], &one(h.pcpus(), 0)).unwrap();
    h.advance(SEC);
    assert!(close(work(&h, "a", 0), 1.0), "alone: {}", work(&h, "a", 0));
    h.add_domain("b", &[0.5], &one(h.pcpus(), 1)).unwrap();
    h.advance(SEC);
    let (a, b) = (work(&h, "a", 0), work(&h, "b", 0));
    assert!(close(a + b, 1.0 + 0.5 - 0.7 * 0.5), "{a} + {b}");
    assert!(close(a / b, 2.0), "in proportion to busy time: {a} / {b}");
    // Two vCPUs sharing one thread make it busy 1.0: the sibling's work is judged
    // by the thread's busy time, not by how many vCPUs are on it.
    h.add_domain("c", &[1.0], &one(h.pcpus(), 1)).unwrap();
    h.advance(SEC);
    let total: f64 = ["a", "b", "c"].iter().map(|n| work(&h, n, 0)).sum();
    assert!(close(total, 1.3), "{total}");
}

/// Without a topology line every ratio is 1: work is exactly what the vCPUs got.
#[test]
fn on_a_flat_host_work_is_usage() {
    let mut h = SimHost::new(2);
    h.add_domain("a", &[1.0, 1.0, 0.4], &CpuMap::all(2))
        .unwrap();
    h.advance(SEC);
    for v in 0..3 {
        let view = h.vcpu("a", v).unwrap();
        assert_eq!(view.work, view.usage);
    }
    // 2 pCPUs for 2.4 wanted.
    assert!(close(h.work_pct(), 100.0 * 2.0 / 2.4), "{}", h.work_pct());
    assert_eq!(SimHost::new(1).work_pct(), 100.0, "nothing wanted");
}

#[test]
fn memory_nodes_reach_the_host_seam_as_a_mask() {
    let mut h = shaped(2, 2, 1);
    let all = CpuMap::all(4);
    h.add_domain_with_memory("near", &[0.5], &all, Some(1))
        .unwrap();
    h.add_domain("free", &[0.5], &all).unwrap();
    let e = h
        .add_domain_with_memory("far", &[0.5], &all, Some(2))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory node 2 of domain \"far\" does not exist (host has 2 nodes)"
    );
    h.refresh().unwrap();
    assert_eq!((h.domain(0).mem_nodes, h.domain(1).mem_nodes), (0b10, 0));
}

#[test]
fn remote_vcpus_count_what_is_off_the_home_node() {
    let mut h = shaped(2, 2, 1); // node 0 = pCPUs 0-1, node 1 = pCPUs 2-3
    let all = CpuMap::all(4);
    h.add_domain_with_memory("m", &[0.3, 0.3], &all, Some(1))
        .unwrap();
    h.add_domain("x", &[0.2, 0.2, 0.2], &all).unwrap();
    pin(&mut h, "m", &[0, 0]);
    pin(&mut h, "x", &[0, 1, 2]);
    // m: both off its memory node; x: home is node 0 (two of three), one remote.
    assert_eq!(h.remote_vcpus(), 3);
    pin(&mut h, "m", &[2, 0]);
    assert_eq!(h.remote_vcpus(), 2);
    pin(&mut h, "m", &[2, 3]);
    pin(&mut h, "x", &[3, 3, 2]);
    assert_eq!(h.remote_vcpus(), 0, "x wholly on node 1 is at home there");
    // A tie (one vCPU per node) makes the lower node home: the other is remote.
    h.stop_domain("x").unwrap();
    h.add_domain("y", &[0.2, 0.2], &all).unwrap();
    pin(&mut h, "y", &[3, 0]);
    assert_eq!(h.remote_vcpus(), 1);
    // A flat host has one node: nothing is ever remote.
    let mut flat = SimHost::new(4);
    flat.add_domain("x", &[0.2, 0.2], &all).unwrap();
    pin(&mut flat, "x", &[0, 3]);
    assert_eq!(flat.remote_vcpus(), 0);
}

#[test]
fn smt_conflicts_are_cores_doubled_up_beside_an_idle_core_of_their_node() {
    let mut h = shaped(1, 4, 2); // core c = pCPUs 2c, 2c+1
    for name in ["a", "b", "c", "d"] {
        h.add_domain(name, &[1.0], &one(h.pcpus(), 0)).unwrap();
    }
    // All four on pCPU 0: one core holds four busy vCPUs, three cores idle.
    assert_eq!(h.smt_conflicts(), 1);
    for (name, p) in [("a", 0), ("b", 1), ("c", 2), ("d", 3)] {
        pin(&mut h, name, &[p]);
    }
    assert_eq!(h.smt_conflicts(), 2, "cores 0 and 1 doubled, 2 and 3 idle");
    for (name, p) in [("a", 0), ("b", 2), ("c", 4), ("d", 6)] {
        pin(&mut h, name, &[p]);
    }
    assert_eq!(h.smt_conflicts(), 0, "one per core");
    // Light vCPUs are not busy: a light sibling is no conflict, nor is a core
    // holding only light ones counted as taken.
    h.add_domain("light", &[0.4, 0.4], &one(h.pcpus(), 1))
        .unwrap();
    assert_eq!(h.smt_conflicts(), 0);
    h.stop_domain("d").unwrap();
    pin(&mut h, "c", &[1]);
    pin(&mut h, "light", &[6, 7]);
    assert_eq!(
        h.smt_conflicts(),
        1,
        "a and c on core 0; cores 2-3 hold no busy vCPU"
    );

    // Only an idle core of the same node counts.
    let mut h = shaped(2, 2, 2); // node 0 = cores 0-1 (pCPUs 0-3), node 1 = 4-7
    for name in ["a", "b", "c"] {
        h.add_domain(name, &[0.9], &one(h.pcpus(), 0)).unwrap();
    }
    pin(&mut h, "b", &[1]);
    pin(&mut h, "c", &[2]);
    assert_eq!(
        h.smt_conflicts(),
        0,
        "node 0 has no idle core; node 1's do not count"
    );
    pin(&mut h, "c", &[0]);
    assert_eq!(h.smt_conflicts(), 1, "core 1 of node 0 is idle now");

    // Without SMT, two busy vCPUs on one pCPU are not an SMT conflict.
    let mut flat = SimHost::new(4);
    flat.add_domain("x", &[1.0, 1.0], &CpuMap::all(4)).unwrap();
    pin(&mut flat, "x", &[0, 0]);
    assert_eq!(flat.smt_conflicts(), 0);
}

#[test]
fn max_over_bound_within_nodes_judges_each_node_by_what_it_holds() {
    let mut h = shaped(2, 2, 1);
    for name in ["a", "b", "c"] {
        h.add_domain(name, &[1.0], &one(h.pcpus(), 0)).unwrap();
    }
    pin(&mut h, "b", &[1]);
    // Node 0 holds 3.0 on 2 pCPUs, busiest 2.0: 2.0 / 1.5. The host's bound is 1.0.
    assert!(close(h.max_over_bound_within_nodes(), 2.0 / 1.5));
    assert!(close(h.max_over_bound(), 2.0));
    pin(&mut h, "c", &[2]);
    assert!(close(h.max_over_bound_within_nodes(), 1.0));
    assert!(close(h.max_over_bound(), 1.0));
    // With one node it is max_over_bound.
    let mut flat = SimHost::new(3);
    flat.add_domain("x", &[0.9, 0.6, 0.3, 0.2], &CpuMap::all(3))
        .unwrap();
    pin(&mut flat, "x", &[0, 0, 1, 2]);
    assert_eq!(flat.max_over_bound_within_nodes(), flat.max_over_bound());
    let empty = shaped(2, 1, 1);
    assert_eq!(empty.max_over_bound_within_nodes(), 1.0);
}

/// The right answers the new scenario files' headers give, built by hand: their
/// measures are what the headers say (so a policy that finds them scores so).
#[test]
fn the_topology_scenarios_right_answers_score_as_their_headers_say() {
    let start = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(format!("{name}.scn"));
        SimHost::from_scenario(&Scenario::load(&path).unwrap()).unwrap()
    };
    let mut h = start("smt-spread");
    assert_eq!((h.smt_conflicts(), h.max_over_bound()), (1, 4.0));
    for (name, p) in [("a", 0), ("b", 2), ("c", 4), ("d", 6)] {
        pin(&mut h, name, &[p]);
    }
    h.advance(SEC);
    assert_eq!(h.smt_conflicts(), 0);
    assert!(
        ["a", "b", "c", "d"]
            .iter()
            .all(|n| close(work(&h, n, 0), 1.0))
    );

    let mut h = start("smt-half");
    assert_eq!(h.smt_conflicts(), 1);
    h.advance(SEC);
    assert!(close(h.work_pct(), 65.0), "{}", h.work_pct());
    pin(&mut h, "busy2", &[2]);
    pin(&mut h, "light1", &[1]);
    let mut h2 = h.clone();
    h2.advance(SEC);
    assert_eq!(h2.smt_conflicts(), 0);
    let tick: f64 = ["busy1", "busy2", "light1", "light2"]
        .iter()
        .map(|n| work(&h2, n, 0))
        .sum();
    assert!(close(tick / 2.4, 2.12 / 2.4), "88.3 %: {}", tick / 2.4);

    let mut h = start("numa-two-nodes");
    assert_eq!(h.remote_vcpus(), 4);
    for (name, p) in [("a", 0), ("b", 1), ("c", 2), ("d", 3)] {
        pin(&mut h, name, &[p]);
    }
    assert_eq!((h.remote_vcpus(), h.max_over_bound()), (0, 1.0));

    let mut h = start("numa-overflow");
    pin(&mut h, "big", &[0, 1]);
    pin(&mut h, "b", &[3]);
    h.advance(SEC);
    assert_eq!(h.remote_vcpus(), 1);
    assert!(close(h.work_pct(), 100.0), "every vCPU gets its demand");
    assert!(close(h.max_over_bound_within_nodes(), 1.0));
    // Keeping everything home overloads node 0; moving big overloads node 1.
    let mut home = start("numa-overflow");
    pin(&mut home, "big", &[0, 1]);
    pin(&mut home, "b", &[1]);
    assert_eq!(home.remote_vcpus(), 0);
    assert!(home.max_over_bound() > 1.0);
    let mut moved = start("numa-overflow");
    pin(&mut moved, "big", &[2, 3]);
    pin(&mut moved, "b", &[0]);
    assert_eq!(moved.remote_vcpus(), 2);
    assert!(moved.max_over_bound() > 1.0);

    let mut h = start("numa-nomem");
    h.advance(SEC);
    assert_eq!(h.remote_vcpus(), 2, "the host's own placement splits b 2/2");
    assert_eq!(h.max_over_bound(), 1.0, "yet the loads are even");
    pin(&mut h, "b", &[0, 1, 2, 3]);
    pin(&mut h, "a", &[4, 5]);
    pin(&mut h, "c", &[6, 7]);
    assert_eq!((h.remote_vcpus(), h.max_over_bound()), (0, 1.0));
}
