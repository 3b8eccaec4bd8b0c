// Compiled only under #[cfg(test)], from the parent module.
use super::*;

fn pinned(usage: f64, p: usize, group: u32) -> Item {
    Item {
        usage: Some(usage),
        pinned: Some(p),
        last_ran: Some(p),
        managed: true,
        cooling: false,
        group,
        known_demand: None,
        demand: None,
        usage_smoothed: None,
        left: None,
        fresh: false,
        home: 0,
        mem_nodes: 0,
    }
}

fn run(policy: Policy, items: &[Item], pcpus: usize) -> (Analysis, Vec<Planned>) {
    run_out(policy, items, pcpus).0
}

/// Also the outputs: measured loads and observed demand.
#[allow(clippy::type_complexity)]
fn run_out(
    policy: Policy,
    items: &[Item],
    pcpus: usize,
) -> ((Analysis, Vec<Planned>), Vec<f64>, Vec<Option<f64>>) {
    let mut s = Scratch::default();
    let mut moves = Vec::new();
    let mut loads = vec![f64::NAN; pcpus];
    let mut demand = vec![f64::NAN; pcpus];
    let mut observed = vec![Some(f64::NAN); items.len()];
    let mut item_demand = vec![f64::NAN; items.len()];
    let mut home = vec![0u64; items.len()];
    let out = Outputs {
        loads: &mut loads,
        demand: &mut demand,
        observed: &mut observed,
        item_demand: &mut item_demand,
        home: &mut home,
        moves: &mut moves,
    };
    let all: Vec<Pcpu> = (0..pcpus)
        .map(|p| Pcpu {
            busy: None,
            allowed: true,
            node: 0,
            core: p as u32,
        })
        .collect();
    let a = plan(policy, items, &all, &Params::default(), &mut s, out);
    ((a, moves), loads, observed)
}

/// Loads after applying `moves` with measured usage.
fn after(items: &[Item], moves: &[Planned], pcpus: usize) -> Vec<f64> {
    let mut at: Vec<Option<usize>> = items.iter().map(|i| i.pinned).collect();
    for m in moves {
        at[m.item] = Some(m.to);
    }
    let mut loads = vec![0.0; pcpus];
    for (i, it) in items.iter().enumerate() {
        if let (Some(p), Some(u)) = (at[i], it.usage) {
            loads[p] += u;
        }
    }
    loads
}

#[test]
fn sigma_is_population_std_dev_in_points() {
    assert_eq!(sigma_pct(&[0.5, 0.5]), 0.0);
    assert!((sigma_pct(&[1.0, 0.0]) - 50.0).abs() < 1e-9);
    assert_eq!(sigma_pct(&[]), 0.0);
}

#[test]
fn balanced_host_gets_no_moves() {
    let items: Vec<Item> = (0..8).map(|i| pinned(0.5, i % 4, i as u32)).collect();
    for policy in [Policy::Seed, Policy::Balance] {
        let (a, moves) = run(policy, &items, 4);
        assert!(a.balanced());
        assert!(moves.is_empty(), "{policy:?}: {moves:?}");
    }
}

#[test]
fn seed_makes_one_move_busiest_to_idlest() {
    let items: Vec<Item> = (0..4).map(|i| pinned(0.25, 0, i)).collect();
    let (a, moves) = run(Policy::Seed, &items, 4);
    assert!(!a.balanced());
    assert_eq!(moves.len(), 1);
    assert_ne!(moves[0].to, 0);
}

#[test]
fn balance_sees_hidden_demand_and_spreads_in_one_tick() {
    // Four busy vCPUs sharing pCPU 0 each measure 25 %; they want a pCPU each.
    let items: Vec<Item> = (0..4).map(|i| pinned(0.25, 0, i)).collect();
    let (_, moves) = run(Policy::Balance, &items, 4);
    assert_eq!(moves.len(), 3);
    let mut dst: Vec<usize> = moves.iter().map(|m| m.to).collect();
    dst.sort();
    assert_eq!(dst, vec![1, 2, 3]);
}

#[test]
fn saturated_pair_is_not_moved_onto_a_busy_pcpu() {
    // Two 50 % vCPUs fill pCPU 0; pCPU 1 is 90 % used. Moving one would overload 1.
    let items = [pinned(0.5, 0, 0), pinned(0.5, 0, 1), pinned(0.9, 1, 2)];
    let (_, moves) = run(Policy::Balance, &items, 2);
    assert!(moves.is_empty(), "{moves:?}");
}

#[test]
fn three_busy_against_one_is_fixed_although_measured_sigma_is_zero() {
    let items = [
        pinned(0.33, 0, 0),
        pinned(0.33, 0, 1),
        pinned(0.34, 0, 2),
        pinned(1.0, 1, 3),
    ];
    let (a, moves) = run(Policy::Balance, &items, 2);
    assert!(a.sigma_pct.unwrap() < 5.0);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].to, 1);
}

#[test]
fn no_move_that_reverses_the_imbalance() {
    // 60 vs 40 with one 60 % vCPU: moving it gives 0 vs 100, worse.
    let items = [pinned(0.6, 0, 0), pinned(0.4, 1, 1)];
    for policy in [Policy::Seed, Policy::Balance] {
        let (_, moves) = run(policy, &items, 2);
        assert!(moves.is_empty(), "{policy:?}");
    }
}

#[test]
fn swap_when_no_single_move_helps() {
    // pCPU 0: 50+30, pCPU 1: 40+10. Gap 30; no single vCPU ≤ 15 on pCPU 0; swapping
    // 30 and 10 evens it to 60/60... 50+10 / 40+30 = 60/70, σ 5 → better than 80/50.
    let items = [
        pinned(0.5, 0, 0),
        pinned(0.3, 0, 1),
        pinned(0.4, 1, 2),
        pinned(0.1, 1, 3),
    ];
    let (_, moves) = run(Policy::Balance, &items, 2);
    assert_eq!(moves.len(), 2, "{moves:?}");
    let loads = after(&items, &moves, 2);
    assert!((loads[0] - loads[1]).abs() < 0.3 - 1e-9, "{loads:?}");
}

#[test]
fn new_vcpus_are_placed_largest_first_one_heavy_one_light_per_pcpu() {
    let mut items = Vec::new();
    for i in 0..8u32 {
        let u = if i % 2 == 0 { 0.9 } else { 0.2 };
        items.push(Item {
            usage: Some(u),
            pinned: None,
            // One heavy and one light last ran on each pCPU: 110 % of demand there.
            last_ran: Some(i as usize / 2),
            managed: true,
            cooling: false,
            known_demand: None,
            demand: None,
            usage_smoothed: None,
            left: None,
            fresh: false,
            home: 0,
            mem_nodes: 0,
            group: i,
        });
    }
    let (_, moves) = run(Policy::Balance, &items, 4);
    assert_eq!(moves.len(), 8);
    let loads = after(&items, &moves, 4);
    for l in loads {
        assert!((l - 1.1).abs() < 1e-9);
    }
}

#[test]
fn vcpus_of_one_domain_spread_on_ties() {
    let items: Vec<Item> = (0..2)
        .map(|_| Item {
            usage: Some(0.0),
            pinned: None,
            last_ran: None,
            managed: true,
            cooling: false,
            known_demand: None,
            demand: None,
            usage_smoothed: None,
            left: None,
            fresh: false,
            home: 0,
            mem_nodes: 0,
            group: 7,
        })
        .collect();
    let (_, moves) = run(Policy::Balance, &items, 2);
    assert_eq!(moves.len(), 2);
    assert_ne!(moves[0].to, moves[1].to);
}

#[test]
fn unmanaged_and_cooling_vcpus_stay_put() {
    let mut items: Vec<Item> = (0..4).map(|i| pinned(1.0 / 4.0, 0, i)).collect();
    items[0].managed = false;
    items[1].cooling = true;
    let (_, moves) = run(Policy::Balance, &items, 4);
    // Only the two free vCPUs move, one to each of two idle pCPUs; the unmanaged and
    // the cooling one stay on pCPU 0.
    let mut moved: Vec<(usize, usize)> = moves.iter().map(|m| (m.item, m.to)).collect();
    moved.sort();
    assert_eq!(moved.len(), 2, "{moves:?}");
    assert_eq!((moved[0].0, moved[1].0), (2, 3), "{moves:?}");
    assert!(moved.iter().all(|&(_, to)| to != 0), "{moves:?}");
    assert_ne!(moved[0].1, moved[1].1, "{moves:?}");
}

#[test]
fn nothing_measured_means_nothing_decided() {
    let items = [Item {
        usage: None,
        pinned: Some(0),
        last_ran: Some(0),
        managed: true,
        cooling: false,
        known_demand: None,
        demand: None,
        usage_smoothed: None,
        left: None,
        fresh: false,
        home: 0,
        mem_nodes: 0,
        group: 0,
    }];
    let (a, moves) = run(Policy::Balance, &items, 2);
    assert_eq!(a.sigma_pct, None);
    assert!(moves.is_empty());
}

#[test]
fn measured_demand_is_planned_as_is_and_guesses_nothing() {
    // Two busy and two half-busy vCPUs all on pCPU 0 of 2: each reads a quarter of it.
    // Measured, they want 1.0, 1.0, 0.5, 0.5: one busy and one half go to pCPU 1, in
    // one tick, and no move is a guess.
    let mut items: Vec<Item> = (0..4).map(|i| pinned(0.25, 0, i)).collect();
    for (it, d) in items.iter_mut().zip([1.0, 1.0, 0.5, 0.5]) {
        it.demand = Some(d);
    }
    let ((a, moves), _, _) = run_out(Policy::Balance, &items, 2);
    assert!(!a.demand_within);
    let mut moved: Vec<usize> = moves.iter().map(|m| m.item).collect();
    moved.sort();
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert!(moves.iter().all(|m| m.to == 1 && !m.guessed), "{moves:?}");
    assert!(
        moved[0] < 2 && moved[1] >= 2,
        "one busy and one half: {moved:?}"
    );
}

#[test]
fn no_vcpu_goes_back_where_it_just_left() {
    // Three vCPUs of 0.4 on pCPU 0, pCPU 1 empty: one would move to 1, but the only
    // candidates left pCPU 1 a tick ago; with nowhere else to go, nothing moves.
    let mut items: Vec<Item> = (0..3).map(|i| pinned(0.4, 0, i)).collect();
    for it in &mut items {
        it.demand = Some(0.4);
        it.left = Some(1);
    }
    let (_, moves) = run(Policy::Balance, &items, 2);
    assert!(moves.is_empty(), "{moves:?}");
    items[2].left = None;
    let (_, moves) = run(Policy::Balance, &items, 2);
    assert_eq!(
        moves.iter().map(|m| (m.item, m.to)).collect::<Vec<_>>(),
        [(2, 1)]
    );
}

#[test]
fn cpus_outside_the_set_are_left_and_their_vcpus_moved_in() {
    // pCPU 0 is reserved: its managed vCPU moves to the least loaded allowed pCPU, and
    // the unmanaged one stays.
    let mut items = vec![pinned(0.5, 0, 0), pinned(0.3, 0, 1), pinned(0.2, 1, 2)];
    items[1].managed = false;
    let mut s = Scratch::default();
    let (mut loads, mut demand) = (vec![0.0; 3], vec![0.0; 3]);
    let (mut observed, mut item_demand, mut home) = (vec![None; 3], vec![0.0; 3], vec![0; 3]);
    let mut moves = Vec::new();
    let pcpus: Vec<Pcpu> = [false, true, true]
        .into_iter()
        .enumerate()
        .map(|(p, allowed)| Pcpu {
            busy: None,
            allowed,
            node: 0,
            core: p as u32,
        })
        .collect();
    let out = Outputs {
        loads: &mut loads,
        demand: &mut demand,
        observed: &mut observed,
        item_demand: &mut item_demand,
        home: &mut home,
        moves: &mut moves,
    };
    let a = plan(
        Policy::Balance,
        &items,
        &pcpus,
        &Params::default(),
        &mut s,
        out,
    );
    assert_eq!(
        moves.iter().map(|m| (m.item, m.to)).collect::<Vec<_>>(),
        [(0, 2)]
    );
    // Measured σ is over the allowed pCPUs only: 0.2 and 0 (pCPU 0's 0.8 is left out).
    assert!((a.sigma_pct.unwrap() - 10.0).abs() < 1e-9, "{a:?}");
}

#[test]
fn outputs_are_measured_loads_and_unheld_usage() {
    // pCPU 0: two busy vCPUs sharing it (capped: usage says nothing of demand);
    // pCPU 1: a 30 % vCPU alone (its usage is its demand).
    let items = [pinned(0.5, 0, 0), pinned(0.5, 0, 1), pinned(0.3, 1, 2)];
    let (_, loads, observed) = run_out(Policy::Balance, &items, 3);
    assert_eq!(loads, vec![1.0, 0.3, 0.0]);
    assert_eq!(observed, vec![None, None, Some(0.3)]);
}

#[test]
fn the_verdict_needs_both_measured_and_demand_sigma_within() {
    // Three busy vCPUs on pCPU 0 and one on pCPU 1: both read 100 % (measured σ 0),
    // but the three want a pCPU each (demand σ 100).
    let items = [
        pinned(0.33, 0, 0),
        pinned(0.33, 0, 1),
        pinned(0.34, 0, 2),
        pinned(1.0, 1, 3),
    ];
    let (a, _) = run(Policy::Balance, &items, 2);
    assert!(a.sigma_within);
    assert!(!a.demand_within);
    assert!(!a.balanced());
    assert!(a.demand_sigma_pct.unwrap() > 50.0, "{a:?}");
}

#[test]
fn no_swap_of_two_vcpus_that_want_about_the_same() {
    // Seen on a real host: three busy vCPUs and a half-busy one on 2 pCPUs. Whatever
    // goes where, one pCPU holds two busy ones; exchanging a busy vCPU for another
    // that measures 1 % less gains nothing but a migration.
    let mut items = vec![
        pinned(1.0, 1, 0),
        pinned(1.0, 1, 1),
        pinned(0.99, 0, 2),
        pinned(0.55, 0, 3),
    ];
    for it in &mut items {
        it.demand = it.usage;
    }
    let (a, moves) = run(Policy::Balance, &items, 2);
    assert!(!a.demand_within, "{a:?}");
    assert!(moves.is_empty(), "{moves:?}");
}

/// A host of `nodes` × `cores` × `threads`, as the simulator numbers it.
fn shaped(nodes: usize, cores: usize, threads: usize) -> Vec<Pcpu> {
    let t = crate::topology::Topology::from_shape(nodes, cores, threads);
    (0..t.pcpus())
        .map(|p| Pcpu {
            busy: None,
            allowed: true,
            node: t.place(p).node,
            core: t.place(p).core,
        })
        .collect()
}

/// Plan on a shaped host with measured demand (demand = usage given).
fn plan_on(pcpus: &[Pcpu], items: &mut [Item]) -> (Analysis, Vec<Planned>, Vec<u64>) {
    for it in items.iter_mut() {
        it.demand = it.usage;
    }
    let n = pcpus.len();
    let mut s = Scratch::default();
    let (mut loads, mut demand) = (vec![0.0; n], vec![0.0; n]);
    let (mut observed, mut item_demand, mut home) = (
        vec![None; items.len()],
        vec![0.0; items.len()],
        vec![0; items.len()],
    );
    let mut moves = Vec::new();
    let out = Outputs {
        loads: &mut loads,
        demand: &mut demand,
        observed: &mut observed,
        item_demand: &mut item_demand,
        home: &mut home,
        moves: &mut moves,
    };
    let a = plan(
        Policy::Balance,
        items,
        pcpus,
        &Params::default(),
        &mut s,
        out,
    );
    (a, moves, home)
}

#[test]
fn a_vcpu_off_its_domains_memory_node_goes_home() {
    // 2 nodes × 2 pCPUs; domain 0's memory is on node 0, its vCPU runs on pCPU 2 (node 1).
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![pinned(0.6, 2, 0), pinned(0.3, 0, 1)];
    items[0].home = 1 << 0;
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0].item, moves[0].to, moves[0].why),
        (0, 1, Why::Remote)
    );
    assert_eq!(home[0], 1);
}

#[test]
fn a_domain_without_bound_memory_is_at_home_where_its_vcpus_run() {
    // Two vCPUs of one domain on node 1 and a third, unpinned, last ran on node 0: the
    // domain belongs to node 1, and the third joins it there.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![pinned(0.3, 2, 7), pinned(0.3, 3, 7), pinned(0.3, 0, 7)];
    items[2].pinned = None;
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    assert_eq!(home, [2, 2, 2], "node 1 for all");
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert!(moves[0].to >= 2, "placed on node 1: {moves:?}");
}

#[test]
fn a_whole_domain_changes_node_only_when_its_node_is_over_and_the_other_has_room() {
    // Node 0 (pCPUs 0-1): domains 0 (2 × 0.9) and 1 (2 × 0.5): 2.8 wanted of 2.0.
    // Node 1 (pCPUs 2-3): 0.4 used. Domain 1 (1.0) is the smallest enough: it moves, whole.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![
        pinned(0.9, 0, 0),
        pinned(0.9, 1, 0),
        pinned(0.5, 0, 1),
        pinned(0.5, 1, 1),
        pinned(0.4, 2, 2),
    ];
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    let node_moves: Vec<_> = moves.iter().filter(|m| m.why == Why::Node).collect();
    assert_eq!(node_moves.len(), 2, "{moves:?}");
    assert!(
        node_moves
            .iter()
            .all(|m| (m.item == 2 || m.item == 3) && m.to >= 2)
    );
    assert_eq!((home[2], home[3], home[0]), (2, 2, 1));
    assert!(
        moves.iter().all(|m| m.item != 0 && m.item != 1),
        "{moves:?}"
    );

    // With node 1 nearly full, nothing leaves node 0.
    items[4].usage = Some(1.0);
    let mut more = items.clone();
    more.push(pinned(0.9, 3, 3));
    let (_, moves, _) = plan_on(&pcpus, &mut more);
    assert!(moves.iter().all(|m| m.why != Why::Node), "{moves:?}");
}

#[test]
fn busy_vcpus_leave_a_shared_core_for_a_free_one() {
    // 1 node, 2 cores × 2 threads: pCPUs 0, 1 are core 0; 2, 3 are core 1. Two busy
    // vCPUs on the two threads of core 0 (each reads a whole pCPU), core 1 empty.
    let pcpus = shaped(1, 2, 2);
    let mut items = vec![pinned(0.9, 0, 0), pinned(0.8, 1, 1)];
    let (a, moves, _) = plan_on(&pcpus, &mut items);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0].item, moves[0].why),
        (1, Why::Smt),
        "the smaller busy one"
    );
    assert!(moves[0].to >= 2, "{moves:?}");
    let _ = a;
    // A light vCPU beside a busy one is no conflict.
    let mut items = vec![pinned(0.9, 0, 0), pinned(0.3, 1, 1)];
    let (_, moves, _) = plan_on(&pcpus, &mut items);
    assert!(moves.is_empty(), "{moves:?}");
}

#[test]
fn new_vcpus_spread_over_cores_before_sibling_threads() {
    let pcpus = shaped(1, 2, 2);
    let mut items: Vec<Item> = (0..2)
        .map(|g| Item {
            pinned: None,
            last_ran: Some(0),
            ..pinned(0.9, 0, g)
        })
        .collect();
    let (_, moves, _) = plan_on(&pcpus, &mut items);
    assert_eq!(moves.len(), 2, "{moves:?}");
    let core = |p: usize| pcpus[p].core;
    assert_ne!(core(moves[0].to), core(moves[1].to), "{moves:?}");
}

#[test]
fn a_domain_whose_memory_is_not_bound_moves_node_before_one_whose_memory_is() {
    // Node 0 wants 2.6 of 2.0: domains 1 (bound to node 0) and 2 (not bound) are 0.7
    // each, either enough. Domain 2 goes: its memory can follow it.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![
        pinned(0.6, 0, 0),
        pinned(0.6, 1, 0),
        pinned(0.7, 0, 1),
        pinned(0.7, 1, 2),
    ];
    for it in &mut items[..3] {
        it.mem_nodes = 1;
        it.home = 1;
    }
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    let node_moves: Vec<_> = moves.iter().filter(|m| m.why == Why::Node).collect();
    assert_eq!(node_moves.len(), 1, "{moves:?}");
    assert_eq!(node_moves[0].item, 3);
    assert!(node_moves[0].to >= 2);
    assert_eq!((home[2], home[3]), (1, 2));
}

#[test]
fn a_bound_domain_sent_away_returns_once_its_memory_node_has_room() {
    // Domain 0's memory is on node 0, but an earlier tick sent it to node 1 (home 2).
    // Node 0 now carries 0.5 of 2.0: room for its 2 × 0.6, so it comes back, whole.
    let pcpus = shaped(2, 2, 1);
    let mut items = vec![pinned(0.6, 2, 0), pinned(0.6, 3, 0), pinned(0.5, 0, 1)];
    for it in &mut items[..2] {
        it.mem_nodes = 1;
        it.home = 2;
    }
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    let back: Vec<_> = moves.iter().filter(|m| m.why == Why::Home).collect();
    assert_eq!(back.len(), 2, "{moves:?}");
    assert!(back.iter().all(|m| m.to < 2), "{moves:?}");
    assert_eq!((home[0], home[1]), (1, 1));
    // Without room there (node 0 at 1.8), it stays away: no ping-pong.
    items[2].usage = Some(0.9);
    items.push(pinned(0.9, 1, 3));
    let (_, moves, _) = plan_on(&pcpus, &mut items);
    assert!(moves.iter().all(|m| m.why != Why::Home), "{moves:?}");
}

#[test]
fn a_busy_vcpu_exchanges_places_with_a_light_one_on_a_core_without_busy_vcpus() {
    // Core 0 (pCPUs 0, 1): two busy vCPUs, one per thread. Core 1 (2, 3): two light
    // ones. Loads read 1, 1, 0.2, 0.2 whichever way: only the cores tell them apart.
    let pcpus = shaped(1, 2, 2);
    let mut items = vec![
        pinned(1.0, 0, 0),
        pinned(1.0, 1, 1),
        pinned(0.2, 2, 2),
        pinned(0.2, 3, 3),
    ];
    let (_, moves, _) = plan_on(&pcpus, &mut items);
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert!(moves.iter().all(|m| m.why == Why::Smt), "{moves:?}");
    let busy_to = moves.iter().find(|m| m.item < 2).unwrap().to;
    let light_to = moves.iter().find(|m| m.item >= 2).unwrap().to;
    assert!(busy_to >= 2 && light_to < 2, "{moves:?}");
}

#[test]
fn allowed_pcpus_apply_within_each_node() {
    // 2 nodes × 2 pCPUs, only pCPUs 1 and 3 allowed. A new vCPU of a domain at home on
    // node 1 goes to pCPU 3, never to node 0's allowed pCPU 1.
    let mut pcpus = shaped(2, 2, 1);
    for p in [0, 2] {
        pcpus[p].allowed = false;
    }
    let mut items = vec![pinned(0.5, 3, 0), pinned(0.5, 3, 0)];
    items[1].pinned = None;
    items[1].last_ran = Some(2);
    items[0].mem_nodes = 2;
    items[1].mem_nodes = 2;
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    assert_eq!(home, [2, 2]);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].to, 3, "{moves:?}");

    // With none of node 1 allowed, its domain is placed on node 0 rather than nowhere.
    pcpus[3].allowed = false;
    pcpus[0].allowed = true;
    let (_, moves, home) = plan_on(&pcpus, &mut items);
    assert_eq!(home, [1, 1]);
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert!(moves.iter().all(|m| m.to < 2), "{moves:?}");
}
