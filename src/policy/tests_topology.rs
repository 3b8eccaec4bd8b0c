// Compiled only under #[cfg(test)], from the parent module: the plan on hosts with NUMA
// nodes and SMT siblings (helpers shared with `tests.rs`).
use super::tests::{plan_with, shaped, wants};
use super::*;

fn plan_on(pcpus: &[Pcpu], items: &[Item]) -> super::tests::Run {
    plan_with(Policy::Balance, items, pcpus, &Params::default())
}

#[test]
fn a_vcpu_off_its_domains_memory_node_goes_home() {
    // 2 nodes × 2 pCPUs; domain 0's memory is on node 0, its vCPU runs on pCPU 2.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![wants(0.6, 2, 0), wants(0.3, 0, 1)];
    items[0].mem_nodes = 1;
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.moves.len(), 1, "{:?}", r.moves);
    assert_eq!(
        (r.moves[0].item, r.moves[0].to, r.moves[0].why),
        (0, 1, Why::Numa)
    );
    assert!(r.moves[0].gain > 0.0);
    assert_eq!(r.home[0], 1);
}

#[test]
fn a_domain_without_bound_memory_is_at_home_where_its_vcpus_run() {
    // Two vCPUs of one domain on node 1 and a third, unpinned, last ran on node 0: the
    // domain belongs to node 1, and the third joins it there.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![wants(0.3, 2, 7), wants(0.3, 3, 7), wants(0.3, 0, 7)];
    items[2].pinned = None;
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.home, [2, 2, 2], "node 1 for all");
    assert_eq!(r.moves.len(), 1, "{:?}", r.moves);
    assert!(r.moves[0].to >= 2, "placed on node 1: {:?}", r.moves);
}

#[test]
fn a_whole_domain_changes_node_when_its_node_is_over_and_the_other_has_room() {
    // Node 0 (pCPUs 0-1): domains 0 (2 × 0.9) and 1 (2 × 0.5): 2.8 wanted of 2.0.
    // Node 1 (pCPUs 2-3): 0.4 used. Domain 1 moves, whole; domain 0 stays.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![
        wants(0.9, 0, 0),
        wants(0.9, 1, 0),
        wants(0.5, 0, 1),
        wants(0.5, 1, 1),
        wants(0.4, 2, 2),
    ];
    let r = plan_on(&pcpus, &items);
    let node: Vec<_> = r.moves.iter().filter(|m| m.why == Why::Node).collect();
    assert_eq!(node.len(), 2, "{:?}", r.moves);
    assert!(
        node.iter()
            .all(|m| (m.item == 2 || m.item == 3) && m.to >= 2)
    );
    assert_eq!((r.home[2], r.home[3], r.home[0]), (2, 2, 1));
    assert!(r.moves.iter().all(|m| m.item >= 2), "{:?}", r.moves);

    // With node 1 nearly full, nothing leaves node 0.
    items[4] = wants(1.0, 2, 2);
    items.push(wants(0.9, 3, 3));
    let r = plan_on(&pcpus, &items);
    assert!(r.moves.iter().all(|m| m.why != Why::Node), "{:?}", r.moves);
}

#[test]
fn a_full_node_sends_two_busy_domains_to_the_idle_one_bound_or_not() {
    // Four busy 1-vCPU domains on node 0 (2 pCPUs) of 2 nodes × 2 pCPUs, node 1 idle:
    // two move there, with their memory bound to node 0 or not (they lose half their
    // pCPU at home; away from their memory they lose far less).
    let pcpus = shaped(2, 2, 1);
    for bound in [false, true] {
        let mut items: Vec<Item> = (0..4).map(|g| wants(1.0, g % 2, g as u32)).collect();
        for it in &mut items {
            it.mem_nodes = u64::from(bound);
        }
        let r = plan_on(&pcpus, &items);
        let mut on = [0, 0, 0, 0];
        for (i, it) in items.iter().enumerate() {
            let to = r.moves.iter().find(|m| m.item == i).map(|m| m.to);
            on[to.or(it.pinned).unwrap()] += 1;
        }
        assert_eq!(on, [1, 1, 1, 1], "bound {bound}: {:?}", r.moves);
        assert_eq!(r.moves.len(), 2);
    }
}

#[test]
fn busy_vcpus_leave_a_shared_core_for_a_free_one() {
    // 1 node, 2 cores × 2 threads: pCPUs 0, 1 are core 0; 2, 3 are core 1. Two busy
    // vCPUs on the two threads of core 0 (each reads a whole pCPU), core 1 empty.
    let pcpus = shaped(1, 2, 2);
    let items = vec![wants(0.9, 0, 0), wants(0.8, 1, 1)];
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.moves.len(), 1, "{:?}", r.moves);
    assert_eq!(r.moves[0].why, Why::Smt);
    assert!(r.moves[0].to >= 2, "{:?}", r.moves);
    // Even a light vCPU beside a busy one leaves for the free core: sibling threads
    // deliver 1.3 between them, so it takes 0.7 × 30 % from its neighbour.
    let items = vec![wants(0.9, 0, 0), wants(0.3, 1, 1)];
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.moves.len(), 1, "{:?}", r.moves);
    assert!(r.moves[0].to >= 2, "{:?}", r.moves);
}

#[test]
fn four_busy_vcpus_on_one_thread_end_one_per_core_using_the_other_node() {
    // 2 sockets × 2 cores × 2 threads, four busy 1-vCPU domains on pCPU 0: one per
    // core, two of them on node 1 (its domains' memory is not bound).
    let pcpus = shaped(2, 2, 2);
    let items: Vec<Item> = (0..4).map(|g| wants(1.0, 0, g)).collect();
    let r = plan_on(&pcpus, &items);
    let mut cores: Vec<u32> = (0..4)
        .map(|i| {
            let p = r.moves.iter().find(|m| m.item == i).map_or(0, |m| m.to);
            pcpus[p].core
        })
        .collect();
    cores.sort();
    assert_eq!(cores, [0, 1, 2, 3], "{:?}", r.moves);
}

#[test]
fn a_bound_domain_with_smt_stays_on_its_node_while_it_fits_and_leaves_only_when_over() {
    // 2 sockets × 2 cores × 2 threads (node 0: pCPUs 0-3). One domain, memory on node
    // 0, eight vCPUs of 0.45: two per thread (0.9), 1.8 per core. One of them on an
    // idle core of node 1 would lower the load term by about 0.97; 0.45 away from its
    // memory costs 2 × (1 + 0.7) × 0.45 = 1.53, so all stay (at a NUMA price of 2, as
    // on a host without SMT, one left: 0.9 < 0.97).
    let pcpus = shaped(2, 2, 2);
    let bound = |v: usize| Item {
        mem_nodes: 1,
        ..wants(0.45, v % 4, 0)
    };
    let mut items: Vec<Item> = (0..8).map(bound).collect();
    let r = plan_on(&pcpus, &items);
    assert!(r.moves.is_empty(), "{:?}", r.moves);
    // Two more: 4.5 wanted of node 0's 4 threads. What no pCPU can serve pays for
    // going away from the memory, and node 0 ends within its capacity.
    items.extend((0..2).map(bound));
    let r = plan_on(&pcpus, &items);
    let mut load = [0.0; 8];
    for (i, it) in items.iter().enumerate() {
        let to = r.moves.iter().find(|m| m.item == i).map(|m| m.to);
        load[to.or(it.pinned).unwrap()] += 0.45;
    }
    assert!(load[4..].iter().sum::<f64>() > 0.0, "{:?}", r.moves);
    assert!(load[..4].iter().all(|&l| l <= 1.0 + TIE), "{load:?}");
}

#[test]
fn new_vcpus_spread_over_cores_before_sibling_threads() {
    let pcpus = shaped(1, 2, 2);
    let items: Vec<Item> = (0..2)
        .map(|g| Item {
            pinned: None,
            last_ran: Some(0),
            ..wants(0.9, 0, g)
        })
        .collect();
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.moves.len(), 2, "{:?}", r.moves);
    assert_ne!(pcpus[r.moves[0].to].core, pcpus[r.moves[1].to].core);
}

#[test]
fn a_domain_whose_memory_is_not_bound_moves_node_before_one_whose_memory_is() {
    // Node 0 wants 2.6 of 2.0: domains 1 (bound to node 0) and 2 (not bound) are 0.7
    // each, either enough. Domain 2 goes: its memory can follow it.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![
        wants(0.6, 0, 0),
        wants(0.6, 1, 0),
        wants(0.7, 0, 1),
        wants(0.7, 1, 2),
    ];
    for it in &mut items[..3] {
        it.mem_nodes = 1;
    }
    let r = plan_on(&pcpus, &items);
    let away: Vec<_> = r.moves.iter().filter(|m| m.to >= 2).collect();
    assert_eq!(away.len(), 1, "{:?}", r.moves);
    assert_eq!((away[0].item, away[0].why), (3, Why::Node));
    assert_eq!((r.home[2], r.home[3]), (1, 2));
}

#[test]
fn a_bound_domain_sent_away_returns_once_its_memory_node_has_room() {
    // Domain 0's memory is on node 0, but it runs on node 1. Node 0 carries 0.5 of
    // 2.0: room for its 2 × 0.6, so it comes back.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![wants(0.6, 2, 0), wants(0.6, 3, 0), wants(0.5, 0, 1)];
    for it in &mut items[..2] {
        it.mem_nodes = 1;
        it.home = 2;
    }
    let r = plan_on(&pcpus, &items);
    let back: Vec<_> = r.moves.iter().filter(|m| m.why == Why::Numa).collect();
    assert_eq!(back.len(), 2, "{:?}", r.moves);
    assert!(back.iter().all(|m| m.to < 2), "{:?}", r.moves);
    assert_eq!((r.home[0], r.home[1]), (1, 1));
    // Without room there (node 0 at 2 × 0.9, bound there too), it stays away.
    items[2] = wants(0.9, 0, 1);
    items.push(wants(0.9, 1, 3));
    items[2].mem_nodes = 1;
    items[3].mem_nodes = 1;
    let r = plan_on(&pcpus, &items);
    assert!(r.moves.is_empty(), "{:?}", r.moves);
}

#[test]
fn a_busy_vcpu_exchanges_places_with_a_light_one_on_a_core_without_busy_vcpus() {
    // Core 0 (pCPUs 0, 1): two busy vCPUs, one per thread. Core 1 (2, 3): two light
    // ones. Loads read 1, 1, 0.2, 0.2 whichever way: only the cores tell them apart.
    let pcpus = shaped(1, 2, 2);
    let items = vec![
        wants(1.0, 0, 0),
        wants(1.0, 1, 1),
        wants(0.2, 2, 2),
        wants(0.2, 3, 3),
    ];
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.moves.len(), 2, "{:?}", r.moves);
    let busy = r.moves.iter().find(|m| m.item < 2).unwrap();
    assert_eq!(busy.why, Why::Smt, "{:?}", r.moves);
    let busy_to = r.moves.iter().find(|m| m.item < 2).unwrap().to;
    let light_to = r.moves.iter().find(|m| m.item >= 2).unwrap().to;
    assert!(busy_to >= 2 && light_to < 2, "{:?}", r.moves);
}

#[test]
fn allowed_pcpus_apply_within_each_node() {
    // 2 nodes × 2 pCPUs, only pCPUs 1 and 3 allowed. A new vCPU of a domain at home on
    // node 1 goes to pCPU 3, never to node 0's allowed pCPU 1.
    let mut pcpus = shaped(2, 2, 1);
    for p in [0, 2] {
        pcpus[p].allowed = false;
    }
    let mut items = vec![wants(0.5, 3, 0), wants(0.5, 3, 0)];
    items[1].pinned = None;
    items[1].last_ran = Some(2);
    items[0].mem_nodes = 2;
    items[1].mem_nodes = 2;
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.home, [2, 2]);
    assert_eq!(r.moves.len(), 1, "{:?}", r.moves);
    assert_eq!(r.moves[0].to, 3, "{:?}", r.moves);

    // With none of node 1 allowed, its domain is placed on node 0 rather than nowhere.
    pcpus[3].allowed = false;
    pcpus[0].allowed = true;
    let r = plan_on(&pcpus, &items);
    assert_eq!(r.home, [1, 1]);
    assert_eq!(r.moves.len(), 2, "{:?}", r.moves);
    assert!(r.moves.iter().all(|m| m.to < 2), "{:?}", r.moves);
}

#[test]
fn a_large_host_with_a_node_over_capacity_sends_whole_domains_away_in_one_plan() {
    // 2 nodes × 8 pCPUs; 300 domains of 4 vCPUs at 1 % (12 pCPUs of demand, 1,200 vCPUs:
    // more than a placement from scratch is tried for on every tick), all on node 0.
    // One plan leaves node 0 within its 8 pCPUs, every domain whole on one node.
    let pcpus = shaped(2, 8, 1);
    let items: Vec<Item> = (0..1200)
        .map(|i| wants(0.01, i % 8, (i / 4) as u32))
        .collect();
    let r = plan_on(&pcpus, &items);
    let mut at: Vec<usize> = items.iter().map(|it| it.pinned.unwrap()).collect();
    for m in &r.moves {
        at[m.item] = m.to;
    }
    let node0: f64 = at.iter().filter(|&&p| p < 8).count() as f64 * 0.01;
    assert!(
        (4.0 - 1e-9..=8.0 + 1e-9).contains(&node0),
        "node 0 holds {node0}"
    );
    for d in at.chunks(4) {
        assert!(d.iter().all(|&p| (p < 8) == (d[0] < 8)), "split: {d:?}");
    }
}
