//! The host's own load on real QEMU/KVM guests: a host process (not a VM) pinned to
//! pCPU 0 with `taskset` takes half of it from the busy guest there. In vCPU terms the
//! host is even (a busy vCPU on pCPU 0, a light one on pCPU 1: exchanging them moves
//! nothing), so only a scheduler that counts the pCPU's busy time the vCPUs did not
//! use sees that the busy guest belongs on pCPU 1, where it gets all of it.
//!
//! Judged from /proc (the vCPU threads' affinity and CPU time, and /proc/stat), never
//! from the scheduler's output. Needs root and a running libvirtd
//! (`scripts/host-setup.sh`); on a host of more than two pCPUs the scheduler is held to
//! pCPUs 0-1 (`--cpus`) so the expected outcome is the same everywhere.

mod common;

use common::guests::{Load, Meter, PinWatch, Pins, pcpu_of};
use common::harness::*;
use std::process::{Child, Command};
use std::time::Instant;

/// A busy loop pinned to one pCPU: load from outside any domain. Killed when dropped,
/// so on every exit path of the test (a failed assertion unwinds through it); under
/// coreutils' `timeout` too, so it cannot outlive a test process that is SIGKILLed.
struct Spinner(Child);

impl Spinner {
    fn on(pcpu: usize) -> Spinner {
        let child = Command::new("timeout")
            .args(["--kill-after=5", SCHEDULER_MAX_LIFE_S, "taskset", "-c"])
            .arg(pcpu.to_string())
            .args(["sh", "-c", "while :; do :; done"])
            .spawn()
            .expect("spawn the host load (timeout taskset sh)");
        Spinner(child)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // timeout makes itself a process group leader: end the whole group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The busy guest and the host process share pCPU 0, a 10 % guest has pCPU 1: the busy
/// and the light guest exchange places by the second measured tick (the first that has
/// the host's load of pCPU 0 over an interval), with two pin changes and none after,
/// and the busy guest then runs about twice as much.
#[test]
fn a_busy_guest_beside_a_host_process_is_swapped_where_it_gets_a_whole_pcpu() {
    let (_host, mut fleet, _n) = setup("hload");
    let t0 = Instant::now();
    start(&mut fleet, "busy", &[Load::Busy], Some("0".into()));
    start(&mut fleet, "light", &[Load::Duty(10)], Some("1".into()));
    ready(&fleet);
    let _spinner = Spinner::on(0);
    let prefix = fleet.prefix().to_string();
    let (busy, light) = (format!("{prefix}busy"), format!("{prefix}light"));
    let mut meter = Meter::new(&prefix).expect("meter");
    let before = meter.measure(INTERVAL * 2).expect("measure");
    let got = |s: &common::guests::Sample, name: &str| {
        s.vcpus
            .iter()
            .find(|v| v.domain == name)
            .map_or(f64::NAN, |v| v.usage)
    };

    let mut watch = PinWatch::new(&prefix).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["--cpus", "0-1", "-v"]);
    let swapped = |p: &Pins| pcpu_of(p, &busy) == Some(1) && pcpu_of(p, &light) == Some(0);
    let done = poll_until(&mut sched, &mut watch, deadline(4), swapped);
    let moves = watch.changes;
    let later = changes_during(&mut sched, &mut watch, INTERVAL * 3);
    let after = meter.measure(INTERVAL * 2).expect("measure");
    let output = stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    eprintln!(
        "FIGURES host_load: a host busy loop on pCPU 0 beside a busy guest, a 10% guest on \
         pCPU 1: exchanged after {}, {moves} pin changes, {later} in the next 3 intervals; \
         the busy guest ran {:.0} % of a pCPU before, {:.0} % after (host {:.0} % / {:.0} % \
         busy on pCPUs 0 / 1 before); test wall time {:.1} s\nbefore:\n{}\nafter:\n{}",
        when(done),
        100.0 * got(&before, &busy),
        100.0 * got(&after, &busy),
        before.host_pct.first().copied().unwrap_or(f64::NAN),
        before.host_pct.get(1).copied().unwrap_or(f64::NAN),
        t0.elapsed().as_secs_f64(),
        before.table(),
        after.table()
    );
    assert!(
        got(&before, &busy) < 0.75,
        "the host load did not compete with the busy guest:\n{}",
        before.table()
    );
    assert!(
        done.is_some(),
        "busy and light guests not exchanged within 4 intervals: {:?}\n{output}",
        watch.last
    );
    assert_eq!(
        moves, 2,
        "{moves} pin changes to get there (an exchange is 2)"
    );
    assert_eq!(later, 0, "pins changed after the exchange");
    assert!(
        got(&after, &busy) >= 0.85 && got(&after, &busy) > got(&before, &busy) + 0.2,
        "the busy guest does not get a whole pCPU after the exchange:\n{}",
        after.table()
    );
}
