//! Zero heap allocation per tick over the simulated host: the same loop, the other
//! `Host`, flat and with a topology (2 nodes × 4 cores × 2 threads, some domains'
//! memory bound to a node, so node moves and the SMT rule run). Loads change and vCPUs
//! move while the allocator counts; only `advance` and `tick` run inside the counted
//! region. The only test in its file (the harness allocates on other threads).

mod counting_alloc;

use counting_alloc::allocations;
use vcpu_scheduler::cpumap::CpuMap;
use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};
use vcpu_scheduler::sim::SimHost;
use vcpu_scheduler::topology::Topology;

const SECOND_NS: u64 = 1_000_000_000;

#[test]
fn steady_state_ticks_over_the_simulator_allocate_nothing() {
    for shaped in [false, true] {
        let mut host = if shaped {
            SimHost::with_topology(Topology::from_shape(2, 4, 2))
        } else {
            SimHost::new(16)
        };
        host.set_noise(5.0, 3);
        for i in 0..40 {
            let pin = CpuMap::parse_list(if i % 2 == 0 { "0" } else { "all" }, 16).unwrap();
            let mem = (shaped && i % 3 == 0).then_some((i % 2) as u16);
            host.add_domain_with_memory(&format!("d{i}"), &[0.3, 0.9, 0.1], &pin, mem)
                .unwrap();
        }
        ticks_allocate_nothing(host, shaped);
    }
}

fn ticks_allocate_nothing(host: SimHost, shaped: bool) {
    let mut sched = Scheduler::new(host, SchedConfig::default());
    for _ in 0..10 {
        sched.host_mut().advance(SECOND_NS);
        sched.tick().unwrap();
    }
    let heavy = [1.0, 1.0, 1.0];
    let light = [0.05, 0.05, 0.05];

    let (mut allocs, start_migrations) = (0, sched.migrations());
    for t in 0..1_000u32 {
        // Changing demands is the test's doing, not the loop's: outside the count.
        if t % 50 == 0 {
            let (up, down) = if t % 100 == 0 {
                (&heavy, &light)
            } else {
                (&light, &heavy)
            };
            for name in ["d1", "d4", "d7"] {
                sched.host_mut().set_demands(name, up).unwrap();
            }
            for name in ["d2", "d5", "d8"] {
                sched.host_mut().set_demands(name, down).unwrap();
            }
        }
        let before = allocations();
        sched.host_mut().advance(SECOND_NS);
        sched.tick().unwrap();
        allocs += allocations() - before;
    }
    let moves = sched.migrations() - start_migrations;
    assert!(
        moves > 0,
        "the load changes must make the scheduler move vCPUs"
    );
    eprintln!("shaped {shaped}: {moves} migrations and {allocs} allocations in 1,000 ticks");
    assert_eq!(
        allocs, 0,
        "heap allocations in 1,000 ticks ({moves} migrations, shaped {shaped})"
    );
}
