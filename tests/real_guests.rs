//! End-to-end: the scheduler binary against real QEMU/KVM guests on qemu:///system.
//!
//! Each test boots OS-less guests (`common::guests`), runs `vcpu-scheduler --domain
//! 'PREFIX*' 1` on them, and judges the outcome with its own measurements (each vCPU
//! thread's affinity and CPU time from /proc, pins cross-checked with `virsh vcpupin`),
//! never from what the scheduler prints; its output is echoed only to help read a failure. They need root and a running libvirtd
//! (`scripts/host-setup.sh`); without one they fail with the reason, never pass silently.
//!
//! Figures for the README are printed with `eprintln!`: run with `--nocapture` to see them:
//! `cargo test --test real_guests -- --nocapture`.

mod common;

use common::guests::{Load, Meter, PinWatch, Pins, pinned_per_pcpu};
use common::harness::*;
use std::time::Instant;
/// Course case 1: every vCPU pinned to pCPU 0, equal load. With 2 busy guests per pCPU
/// this also catches a scheduler that trusts saturated usage: 3+1 busy guests on 2 pCPUs
/// read 100 %/100 % (σ 0) yet one guest gets three times the others' share.
#[test]
fn all_on_pcpu0_spread_two_per_pcpu_then_hold() {
    let (_host, mut fleet, n) = setup("pin0");
    let t0 = Instant::now();
    let guests = 2 * n;
    for i in 0..guests {
        start(
            &mut fleet,
            &format!("b{i}"),
            &[Load::Busy],
            Some("0".into()),
        );
    }
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &[]);

    // 2n-2 guests must leave pCPU 0; allow more than 3 intervals only when that needs more.
    let limit = 3.max(2 * n as u32 - 1);
    let two_each = |p: &Pins| pinned_per_pcpu(p, n).is_some_and(|c| c.iter().all(|&k| k == 2));
    let balanced = poll_until(&mut sched, &mut watch, deadline(limit), two_each);
    let moves_to_balance = watch.changes;
    let placement = pinned_per_pcpu(&watch.last, n);
    let Some(balanced) = balanced else {
        // The scheduler still runs: its Drop prints its output.
        panic!(
            "not 2 guests per pCPU within {limit} intervals: pinned per pCPU {placement:?}, \
             pins {:?}",
            watch.last
        );
    };
    let later = changes_during(&mut sched, &mut watch, INTERVAL * 3);
    stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    eprintln!(
        "FIGURES all_on_pcpu0: {guests} busy guests on pCPU 0 of {n}: 2 per pCPU after {}, \
         {moves_to_balance} pin changes; {later} pin changes in the next 3 intervals; \
         test wall time {:.1} s",
        when(Some(balanced)),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        later, 0,
        "pins changed after balance was reached: {:?}",
        watch.last
    );
}

/// Course case 5: affinity to all pCPUs, half heavy (busy) and half light (50 %): 1.5
/// pCPUs wanted per pCPU, so every pCPU stays full whatever the placement.
///
/// Judged on the placement, from /proc: all four taken into management and two guests
/// pinned to each pCPU by the third tick after the first measurement; then at most one
/// exchange and no pin change in the last 3 intervals of 11. Which guests pair up is not
/// asserted: measured on this host, a
/// duty-cycle guest that shares its pCPU (with a busy guest or with the other 50 %
/// guest) keeps being runnable while it waits and reads about 100 % demand, so {busy,
/// busy} / {50 %, 50 %} measures as {busy, 50 %} twice does, and delivers the same (a
/// busy guest beside a 50 % one gets the half it leaves). Runs here saw the right
/// pairing at once, and the other one exchanged into it five ticks later. σ of per-pCPU
/// usage and each guest's usage from /proc over the last intervals are reported, not
/// asserted: what a full pCPU gives each of two guests (a 50 % guest beside a busy one
/// measured 28-48 % over a second) is the host scheduler's to decide, not ours.
#[test]
fn mixed_loads_with_full_affinity_end_two_per_pcpu_and_hold() {
    let (_host, mut fleet, n) = setup("mix");
    let t0 = Instant::now();
    for i in 0..n {
        start(&mut fleet, &format!("busy{i}"), &[Load::Busy], None);
        start(&mut fleet, &format!("half{i}"), &[Load::Duty(50)], None);
    }
    ready(&fleet);
    let mut meter = Meter::new(fleet.prefix()).expect("meter");
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["-v"]);
    let prefix = fleet.prefix().to_string();
    // Guests per pCPU as (busy, half), while each is pinned to exactly one pCPU.
    let kinds = |p: &Pins| -> Option<Vec<(u32, u32)>> {
        let mut kinds = vec![(0, 0); n];
        for (name, vcpus) in p {
            let [only] = vcpus.as_slice() else {
                return None;
            };
            let [pcpu] = only.as_slice() else {
                return None;
            };
            let k = kinds.get_mut(*pcpu)?;
            match name.strip_prefix(&prefix) {
                Some(s) if s.starts_with("busy") => k.0 += 1,
                Some(s) if s.starts_with("half") => k.1 += 1,
                _ => return None,
            }
        }
        Some(kinds)
    };
    let split = |p: &Pins| kinds(p).is_some_and(|k| k.iter().all(|&(b, h)| b + h == 2));
    let done = poll_until(&mut sched, &mut watch, deadline(3), split);
    let at_split = watch.changes;
    let more = changes_during(&mut sched, &mut watch, INTERVAL * 8);
    let before = watch.changes;
    let mut judged = Vec::new();
    let mut tables = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let s = meter.measure(INTERVAL).expect("measure");
        watch.poll();
        assert!(
            sched.alive(),
            "vcpu-scheduler exited early\n{}",
            sched.output()
        );
        judged.push(s.sigma());
        tables.push(s.table());
        last = Some(s);
    }
    let later = watch.changes - before;
    let output = stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    for t in &tables {
        eprintln!("{t}");
    }
    let least = last.as_ref().map_or(f64::NAN, |s| {
        s.vcpus
            .iter()
            .map(|v| v.usage)
            .fold(f64::INFINITY, f64::min)
    });
    let paired = kinds(&watch.last).is_some_and(|k| k.iter().all(|&k| k == (1, 1)));
    eprintln!(
        "FIGURES mixed_affinity: {n} busy + {n} 50% guests with affinity to all {n} pCPUs: \
         two per pCPU after {}, {at_split} pin changes, {more} in the next 8 intervals, \
         {later} in the 3 after; a busy and a 50% guest on each pCPU at the end: {paired}; \
         least usage {:.0} %; σ measured then {judged:.1?}; test wall time {:.1} s",
        when(done),
        100.0 * least,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        done.is_some(),
        "not two guests pinned to each pCPU by tick 3: {:?}\n{output}",
        watch.last
    );
    assert!(
        more <= 2,
        "{more} pin changes after the split (at most one exchange)\n{output}"
    );
    assert_eq!(
        later, 0,
        "pins still changing at the end: {:?}\n{output}",
        watch.last
    );
}

/// Course case 3: already balanced (round robin, equal load): no pin may change.
#[test]
fn balanced_fleet_gets_no_pin_changes() {
    let (_host, mut fleet, n) = setup("bal");
    let t0 = Instant::now();
    for i in 0..2 * n {
        start(
            &mut fleet,
            &format!("b{i}"),
            &[Load::Busy],
            Some((i % n).to_string()),
        );
    }
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &[]);
    let changes = changes_during(&mut sched, &mut watch, INTERVAL * 6);
    stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    eprintln!(
        "FIGURES balanced: {} busy guests round robin on {n} pCPUs: {changes} pin changes \
         in 6 intervals; test wall time {:.1} s",
        2 * n,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        changes, 0,
        "a balanced fleet was re-pinned: {:?}",
        watch.last
    );
}

/// A domain with several vCPUs is several loads, not one: both busy vCPUs of one guest,
/// pinned to pCPU 0, must end on different pCPUs (common course bug: only vCPU 0 handled).
#[test]
fn two_vcpu_guest_is_split_across_pcpus() {
    let (_host, mut fleet, n) = setup("smp");
    let t0 = Instant::now();
    start(
        &mut fleet,
        "duo",
        &[Load::Busy, Load::Busy],
        Some("0".into()),
    );
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &[]);
    let split = |p: &Pins| pinned_per_pcpu(p, n).is_some_and(|c| c.iter().all(|&k| k <= 1));
    let done = poll_until(&mut sched, &mut watch, deadline(3), split);
    let later = match done {
        Some(_) => changes_during(&mut sched, &mut watch, INTERVAL * 3),
        None => 0,
    };
    stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    eprintln!(
        "FIGURES two_vcpus: 2 busy vCPUs of one guest on pCPU 0: split after {}, \
         {} pin changes, {later} more in the next 3 intervals; test wall time {:.1} s",
        when(done),
        watch.changes - later,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        done.is_some(),
        "vCPUs not on different pCPUs within 3 intervals: {:?}",
        watch.last
    );
    assert_eq!(later, 0, "pins changed after the split: {:?}", watch.last);
}

/// Domains come and go while the scheduler runs: it must keep running and balance the
/// new set. After a first balance (one busy guest per pCPU), one guest is destroyed and
/// two new ones start on the pCPU of another, so that pCPU holds three and one pCPU none.
#[test]
fn survives_destroy_and_start_and_rebalances() {
    let (_host, mut fleet, n) = setup("churn");
    let t0 = Instant::now();
    for i in 0..n {
        start(
            &mut fleet,
            &format!("a{i}"),
            &[Load::Busy],
            Some("0".into()),
        );
    }
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &[]);
    let even = move |p: &Pins| {
        pinned_per_pcpu(p, n)
            .is_some_and(|c| c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) <= 1)
    };
    let first = poll_until(&mut sched, &mut watch, deadline(3.max(n as u32)), even);
    assert!(
        first.is_some(),
        "first fleet not one per pCPU: {:?}",
        watch.last
    );

    let a1 = format!("{}a1", fleet.prefix());
    let crowded = watch.last[&a1][0][0];
    fleet.destroy("a0").expect("destroy a0");
    let churn_at = sched.elapsed();
    let changes_before = watch.changes;
    start(&mut fleet, "c0", &[Load::Busy], Some(crowded.to_string()));
    start(&mut fleet, "c1", &[Load::Busy], Some(crowded.to_string()));
    // Record the new guests' initial pins now: the scheduler may move them while they boot.
    watch.refresh().expect("find the new guests");
    ready(&fleet);
    let booted = sched.elapsed();
    let second = poll_until(&mut sched, &mut watch, booted + deadline(3), even);
    let alive = sched.alive();
    stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    eprintln!(
        "FIGURES churn: {n} busy guests on pCPU 0 even after {}; a0 destroyed and 2 \
         started on pCPU {crowded}: they booted in {:.1} s, even again {} after the churn \
         ({} pin changes after the churn); test wall time {:.1} s",
        when(first),
        (booted - churn_at).as_secs_f64(),
        when(second.map(|d| d - churn_at)),
        watch.changes - changes_before,
        t0.elapsed().as_secs_f64()
    );
    assert!(alive, "vcpu-scheduler died after domains changed");
    assert!(
        second.is_some(),
        "not rebalanced within 3 intervals of the new guests being ready: {:?}",
        watch.last
    );
}

/// `--dry-run` decides and prints but never pins.
#[test]
fn dry_run_changes_no_pin() {
    let (_host, mut fleet, _n) = setup("dry");
    let t0 = Instant::now();
    for i in 0..2 {
        start(
            &mut fleet,
            &format!("b{i}"),
            &[Load::Busy],
            Some("0".into()),
        );
    }
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["--dry-run", "-v"]);
    let changes = changes_during(&mut sched, &mut watch, INTERVAL * 4);
    let output = stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    let ticks = output
        .lines()
        .filter(|l| l.starts_with("tick") && l.contains("sigma="))
        .count();
    let plans = output
        .lines()
        .filter(|l| l.starts_with("tick") && l.contains("would-move"))
        .count();
    eprintln!(
        "FIGURES dry_run: 2 busy guests on pCPU 0, 4 intervals of --dry-run: {changes} pin \
         changes, {ticks} ticks printed, {plans} with a planned move; test wall time {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(changes, 0, "--dry-run changed pins: {:?}", watch.last);
    let vcpus: Vec<&Vec<usize>> = watch.last.values().flatten().collect();
    assert_eq!(
        vcpus.len(),
        2,
        "both guests' vCPUs watched: {:?}",
        watch.last
    );
    assert!(
        vcpus.iter().all(|p| *p == &[0]),
        "pins moved off pCPU 0: {:?}",
        watch.last
    );
    assert!(
        ticks >= 3,
        "expected a `tick N ... sigma=` line per interval, got {ticks}"
    );
    assert!(
        plans >= 1,
        "no tick printed a planned move (`would-move`) for an unbalanced fleet"
    );
}
