//! The harness the real-guest tests share: one host at a time, a fleet of guests, the
//! scheduler binary in the background with its output kept for diagnostics, and polls
//! of the pins it makes (read from /proc, never from what the scheduler prints).

// Each test file uses a different subset.
#![allow(dead_code)]

use super::guests::{self, Fleet, GuestSpec, Load, PinWatch, Pins, pcpu_count};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The scheduler's interval in every test.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Process start and the connection precede the first tick, and our polls land between
/// ticks: deadlines counted in intervals get this much on top.
pub const GRACE: Duration = Duration::from_secs(1);
/// Pins are polled ten times per interval (a few /proc reads each, no process spawned),
/// so time-to-balance is measured to ~0.1 interval and a pin undone a tick later is seen.
pub const PIN_POLL: Duration = Duration::from_millis(100);
/// Guests pinned together share their pCPU during the ~2.8 s BIOS, so allow far more.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest any test lets the scheduler run is ~20 s; this only bounds an orphan's life.
pub const SCHEDULER_MAX_LIFE_S: &str = "240";

/// The tests share the host's pCPUs: two at once would disturb each other's loads.
/// (`Fleet::new` also takes a lock file, which keeps other test processes out.)
pub static HOST: Mutex<()> = Mutex::new(());

/// Takes the host, checks the hypervisor, and returns a fresh fleet and the pCPU count.
pub fn setup(tag: &str) -> (MutexGuard<'static, ()>, Fleet, usize) {
    // A test that failed while holding the lock poisons it; the host is still usable.
    let guard = HOST.lock().unwrap_or_else(PoisonError::into_inner);
    match guests::require_hypervisor_reviving(tag) {
        // The earlier tests' fleets could not remove their guests while libvirtd was
        // gone, and only this test holds the host now: whatever runs under our pid is theirs.
        Ok(true) => {
            let ours = format!("{}{}-", guests::TEST_PREFIX, std::process::id());
            if let Err(e) = guests::sweep(&ours) {
                eprintln!("note: leftovers of earlier tests: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => panic!("{e}"),
    }
    let fleet = Fleet::new(tag).expect("create the test fleet");
    let n = pcpu_count().expect("count pCPUs");
    // The scheduler counts every domain's load on a pCPU; strangers make results noisy.
    let others = guests::domains_with_prefix("", false).expect("list domains");
    if !others.is_empty() {
        eprintln!(
            "note: other running domains share the pCPUs: {}",
            others.join(" ")
        );
    }
    assert!(
        n >= 2,
        "these tests need at least 2 pCPUs, the host has {n}"
    );
    (guard, fleet, n)
}

pub fn start(fleet: &mut Fleet, name: &str, loads: &[Load], pin: Option<String>) {
    let spec = GuestSpec {
        vcpus: loads.to_vec(),
        pin,
        persistent: false,
        max_vcpus: None,
    };
    fleet
        .start(name, &spec)
        .unwrap_or_else(|e| panic!("start guest {name}: {e}"));
}

pub fn ready(fleet: &Fleet) {
    fleet
        .wait_ready(READY_TIMEOUT)
        .expect("guests reach their boot sector");
}

/// The scheduler binary running in the background; its output collected for diagnostics.
pub struct Scheduler {
    pub child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Scheduler {
    pub fn spawn(fleet: &Fleet, extra: &[&str]) -> Scheduler {
        Scheduler::spawn_every(fleet, extra, &INTERVAL.as_secs().to_string())
    }

    /// As [`Scheduler::spawn`], at another INTERVAL (seconds).
    pub fn spawn_every(fleet: &Fleet, extra: &[&str], interval: &str) -> Scheduler {
        let glob = fleet.glob();
        // Under coreutils' timeout: if this process dies without running Drop (SIGKILL),
        // the scheduler must not live on as an orphan. timeout forwards our SIGINT to it
        // and exits with its status.
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", SCHEDULER_MAX_LIFE_S])
            .arg(env!("CARGO_BIN_EXE_vcpu-scheduler"))
            .args(["--connect", guests::URI, "--domain", &glob])
            .args(extra)
            .arg(interval)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpu-scheduler");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout is piped")),
            Box::new(child.stderr.take().expect("stderr is piped")),
        ];
        for pipe in pipes {
            let out = Arc::clone(&output);
            // Drain both pipes so a chatty scheduler never blocks on a full pipe.
            readers.push(thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                    out.push_str(&line);
                    out.push('\n');
                }
            }));
        }
        Scheduler {
            child,
            output,
            readers,
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT, then waits: the scheduler must exit 0 within about a second. Returns the
    /// exit status, how long it took, and everything it printed.
    pub fn stop(mut self) -> (ExitStatus, Duration, String) {
        let asked = Instant::now();
        self.signal("-INT", &self.child.id().to_string());
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if asked.elapsed() > Duration::from_secs(5) {
                self.kill_group();
                panic!(
                    "vcpu-scheduler still running 5 s after SIGINT\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let took = asked.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, took, self.output())
    }

    /// Sends `sig` to `target` (a pid, or `-pgid` for a group) with kill(1): std cannot.
    pub fn signal(&self, sig: &str, target: &str) {
        let _ = Command::new("kill").args([sig, "--", target]).status();
    }

    /// SIGKILL to timeout's process group (timeout makes itself its leader): killing
    /// timeout alone would leave the scheduler running.
    pub fn kill_group(&mut self) {
        self.signal("-KILL", &format!("-{}", self.child.id()));
        let _ = self.child.wait();
    }

    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Reached with the child alive only when a test failed before `stop`.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            eprintln!(
                "scheduler output until the failure:\n{}",
                indent(&self.output())
            );
        }
    }
}

/// Stops the scheduler, echoes its output, and checks it ended as documented.
pub fn stop_and_check(sched: Scheduler) -> String {
    let (status, took, output) = sched.stop();
    eprintln!(
        "scheduler output ({status}, {:.2} s after SIGINT):\n{}",
        took.as_secs_f64(),
        indent(&output)
    );
    assert!(
        status.success(),
        "vcpu-scheduler exited with {status} after SIGINT\n{output}"
    );
    assert!(
        took <= Duration::from_secs(2),
        "vcpu-scheduler took {took:.1?} to stop after SIGINT (promised: within 1 s)"
    );
    output
}

pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  | {l}\n")).collect()
}

/// Polls pins until `done` holds on two polls in a row or `deadline` (since the scheduler
/// started) passes. Returns when it first held, or `None`. One poll is not enough: it can
/// land between two pins of the same tick and see a half-applied plan.
pub fn poll_until(
    sched: &mut Scheduler,
    watch: &mut PinWatch,
    deadline: Duration,
    done: impl Fn(&Pins) -> bool,
) -> Option<Duration> {
    let mut held_since = None;
    loop {
        watch.poll();
        if !done(&watch.last) {
            held_since = None;
        } else if held_since.is_some() {
            return held_since;
        } else {
            held_since = Some(sched.elapsed());
        }
        assert!(
            sched.alive(),
            "vcpu-scheduler exited early\n{}",
            sched.output()
        );
        if sched.elapsed() >= deadline && held_since.is_none() {
            return None;
        }
        thread::sleep(PIN_POLL);
    }
}

/// Polls pins for `span` and returns the number of changes seen.
pub fn changes_during(sched: &mut Scheduler, watch: &mut PinWatch, span: Duration) -> usize {
    let before = watch.changes;
    let end = Instant::now() + span;
    while Instant::now() < end {
        thread::sleep(PIN_POLL);
        watch.poll();
        assert!(
            sched.alive(),
            "vcpu-scheduler exited early\n{}",
            sched.output()
        );
    }
    watch.changes - before
}

/// "1.4 s (1.4 intervals)" for a time since the scheduler started, "never" for none.
pub fn when(d: Option<Duration>) -> String {
    match d {
        Some(d) => {
            let ticks = d.as_secs_f64() / INTERVAL.as_secs_f64();
            format!("{:.1} s ({ticks:.1} intervals)", d.as_secs_f64())
        }
        None => "never".to_string(),
    }
}

pub fn deadline(n_intervals: u32) -> Duration {
    INTERVAL * n_intervals + GRACE
}
