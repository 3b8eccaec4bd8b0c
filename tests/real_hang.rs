//! A libvirtd that hangs (SIGSTOP for 40 s) under the daemon, on real QEMU/KVM guests:
//! noticed within 15 s with one log line, the daemon stays up, reconnects once
//! libvirtd answers again (SIGCONT), and balances again.
//!
//! SIGINT still stops it within a second while a call waits on the stopped libvirtd.
//!
//! The other half of the promise: a libvirtd that is slow but alive (a pin that waits
//! 30 s for a domain's job lock) keeps its connection, because it keeps sending its
//! keepalive pings while the call waits.
//!
//! Judged from pins read in /proc, never from the scheduler's output (the output is
//! only read for the log line and its timing). Needs root and a running libvirtd
//! (`scripts/host-setup.sh`). Holds the host lock (`setup`), and continues libvirtd on
//! every way out of the test, a panic included (`StoppedLibvirtd`'s drop).

mod common;

use common::guests::{self, GuestSpec, Load, PinWatch, Pins};
use common::harness::*;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// How long libvirtd is stopped, and the promise: noticed within this of going silent.
const STOP: Duration = Duration::from_secs(40);
const NOTICE_MAX: Duration = Duration::from_secs(15);
/// After SIGCONT: reconnected and the guests split again within this.
const REBALANCE_MAX: Duration = Duration::from_secs(15);

/// libvirtd's pid: the pid file without systemd, the unit's main pid with it.
fn libvirtd_pid() -> String {
    if std::path::Path::new("/run/systemd/system").is_dir() {
        let out = Command::new("systemctl")
            .args(["show", "-p", "MainPID", "--value", "libvirtd.service"])
            .output()
            .expect("run systemctl");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            pid != "0" && !pid.is_empty(),
            "libvirtd.service is not running"
        );
        pid
    } else {
        std::fs::read_to_string("/run/libvirtd.pid")
            .expect("libvirtd's pid file")
            .trim()
            .to_string()
    }
}

fn kill(sig: &str, pid: &str) -> bool {
    Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success())
}

/// libvirtd stopped with SIGSTOP; continued by [`StoppedLibvirtd::resume`] or, on any
/// other way out (a failed assertion), on drop. Declared after the fleet, so it drops
/// first: removing the guests needs libvirtd.
struct StoppedLibvirtd {
    pid: String,
    running: bool,
}

impl StoppedLibvirtd {
    fn stop() -> StoppedLibvirtd {
        let pid = libvirtd_pid();
        assert!(kill("-STOP", &pid), "cannot stop libvirtd {pid}");
        StoppedLibvirtd {
            pid,
            running: false,
        }
    }

    fn resume(&mut self) {
        if !self.running {
            self.running = kill("-CONT", &self.pid);
            assert!(self.running, "cannot continue libvirtd {}", self.pid);
        }
    }
}

impl Drop for StoppedLibvirtd {
    fn drop(&mut self) {
        if !self.running {
            // Never leave the host with a stopped libvirtd, whatever failed.
            let _ = kill("-CONT", &self.pid);
        }
    }
}

fn pins_of<'a>(pins: &'a Pins, full: &str) -> Option<&'a Vec<Vec<usize>>> {
    pins.get(full)
}

fn lines_with(output: &str, needle: &str) -> usize {
    output.lines().filter(|l| l.contains(needle)).count()
}

/// libvirtd stopped for 40 s: one line within 15 s saying it did not answer, the
/// daemon alive throughout, reconnected after SIGCONT, and two busy guests that the
/// test pins back onto pCPU 0 then are split again.
#[test]
fn a_hung_libvirtd_is_noticed_within_15_s_and_balancing_resumes() {
    let (_host, mut fleet, _n) = setup("hang");
    let t0 = Instant::now();
    let spec = GuestSpec::one(Load::Busy).pinned("0");
    let a = fleet.start("a", &spec).expect("start guest a");
    let b = fleet.start("b", &spec).expect("start guest b");
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["--cpus", "0-1", "-v"]);
    let split = |p: &Pins| {
        let (pa, pb) = (pins_of(p, &a), pins_of(p, &b));
        pa.zip(pb).is_some_and(|(x, y)| {
            x.len() == 1 && y.len() == 1 && x[0].len() == 1 && y[0].len() == 1 && x[0] != y[0]
        })
    };
    assert!(
        poll_until(&mut sched, &mut watch, deadline(3), split).is_some(),
        "guests born on pCPU 0 not split before libvirtd was stopped: {:?}",
        watch.last
    );
    // A couple of steady ticks, so the stop lands between or inside ordinary ones.
    thread::sleep(INTERVAL * 2 + Duration::from_millis(300));

    let lost_line = "lost qemu:///system: libvirtd did not answer for";
    let stopped_at = Instant::now();
    let mut libvirtd = StoppedLibvirtd::stop();
    let mut noticed = None;
    while stopped_at.elapsed() < STOP {
        assert!(
            sched.alive(),
            "the scheduler exited while libvirtd was stopped\n{}",
            sched.output()
        );
        if noticed.is_none() && sched.output().contains(lost_line) {
            noticed = Some(stopped_at.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let during_stop = sched.output();
    libvirtd.resume();
    let continued = Instant::now();

    // libvirtd answers again: it reconnects; the test then pins both guests back onto
    // pCPU 0 and the daemon must split them again.
    let mut reconnected = None;
    while continued.elapsed() < REBALANCE_MAX && reconnected.is_none() {
        if sched.output().contains("reconnected to") {
            reconnected = Some(continued.elapsed());
        }
        assert!(sched.alive(), "the scheduler exited\n{}", sched.output());
        thread::sleep(Duration::from_millis(20));
    }
    for name in [&a, &b] {
        let out = Command::new("virsh")
            .args(["-c", guests::URI, "vcpupin", name, "0", "0", "--live"])
            .output()
            .expect("run virsh");
        assert!(
            out.status.success(),
            "virsh vcpupin after SIGCONT: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut balanced = None;
    while continued.elapsed() < REBALANCE_MAX + Duration::from_secs(5) {
        watch.poll();
        if split(&watch.last) {
            balanced = Some(continued.elapsed());
            break;
        }
        assert!(sched.alive(), "the scheduler exited\n{}", sched.output());
        thread::sleep(PIN_POLL);
    }
    let output = stop_and_check(sched);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    eprintln!(
        "FIGURES hang: libvirtd stopped {} s; noticed {:.2} s after SIGSTOP; reconnected \
         {:.2} s and split again {:.2} s after SIGCONT; test wall time {:.1} s",
        STOP.as_secs(),
        secs(noticed),
        secs(reconnected),
        secs(balanced),
        t0.elapsed().as_secs_f64()
    );
    let noticed = noticed
        .unwrap_or_else(|| panic!("no \"{lost_line}\" line in {STOP:?} of silence\n{during_stop}"));
    assert!(
        noticed <= NOTICE_MAX,
        "noticed only {noticed:?} after SIGSTOP (promised: within {NOTICE_MAX:?})"
    );
    assert_eq!(
        lines_with(&during_stop, "lost qemu:///system"),
        1,
        "one line when the silence is noticed, no other loss\n{during_stop}"
    );
    assert!(
        reconnected.is_some(),
        "not reconnected {REBALANCE_MAX:?} after SIGCONT\n{output}"
    );
    let balanced = balanced
        .unwrap_or_else(|| panic!("not split again after SIGCONT: {:?}\n{output}", watch.last));
    assert!(
        balanced <= REBALANCE_MAX + Duration::from_secs(5),
        "split again only {balanced:?} after SIGCONT"
    );
}

/// A guest's QEMU stopped with SIGSTOP (its monitor then never answers); continued on
/// drop, before the fleet removes the guest.
struct StoppedQemu {
    pid: String,
}

impl StoppedQemu {
    fn stop(full: &str) -> StoppedQemu {
        let path = format!("/run/libvirt/qemu/{full}.pid");
        let pid = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string();
        assert!(kill("-STOP", &pid), "cannot stop QEMU {pid}");
        StoppedQemu { pid }
    }
}

impl Drop for StoppedQemu {
    fn drop(&mut self) {
        let _ = kill("-CONT", &self.pid);
    }
}

/// libvirtd alive, one call slow: a monitor command on a guest whose QEMU is stopped
/// holds that domain's job, so the daemon's pin of it waits 30 s for the job lock
/// (libvirt's limit) while libvirtd keeps answering keepalives. The connection must
/// not be given up: no "did not answer" line, no reconnect; the pin fails with
/// libvirt's own time-out, and succeeds once QEMU runs again.
#[test]
fn a_slow_but_alive_libvirtd_keeps_its_connection() {
    let (_host, mut fleet, _n) = setup("slow");
    let t0 = Instant::now();
    let spec = GuestSpec::one(Load::Busy).pinned("0");
    let stuck = fleet.start("stuck", &spec).expect("start guest stuck");
    ready(&fleet);
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let qemu = StoppedQemu::stop(&stuck);
    // Takes the domain's job and waits for a monitor that cannot answer.
    let mut monitor = Command::new("virsh")
        .args([
            "-c",
            guests::URI,
            "qemu-monitor-command",
            &stuck,
            "--hmp",
            "info status",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run virsh qemu-monitor-command");
    thread::sleep(Duration::from_secs(1));
    // --cpus 1: the daemon must move the guest's vCPU to pCPU 1, so it pins it.
    let mut sched = Scheduler::spawn(&fleet, &["--cpus", "1"]);
    let started = Instant::now();
    let mut pin_failed = None;
    while started.elapsed() < Duration::from_secs(40) && pin_failed.is_none() {
        if sched.output().contains("cannot pin vcpu 0") {
            pin_failed = Some(started.elapsed());
        }
        assert!(sched.alive(), "the scheduler exited\n{}", sched.output());
        thread::sleep(Duration::from_millis(50));
    }
    drop(qemu);
    let _ = monitor.wait();
    let on_1 = |p: &Pins| pins_of(p, &stuck).is_some_and(|v| v.iter().all(|c| c == &[1]));
    let mut pinned = None;
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(10) {
        watch.poll();
        if on_1(&watch.last) {
            pinned = Some(resumed.elapsed());
            break;
        }
        thread::sleep(PIN_POLL);
    }
    let output = stop_and_check(sched);
    eprintln!(
        "FIGURES slow: the pin of a guest whose job was held failed after {:.1} s \
         (libvirt's job wait), connection kept; pinned {:.1} s after QEMU continued; test \
         wall time {:.1} s",
        pin_failed.map_or(f64::NAN, |d| d.as_secs_f64()),
        pinned.map_or(f64::NAN, |d| d.as_secs_f64()),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        lines_with(&output, "did not answer"),
        0,
        "a slow but alive libvirtd was given up\n{output}"
    );
    assert_eq!(lines_with(&output, "reconnect"), 0, "{output}");
    let failed = pin_failed.unwrap_or_else(|| panic!("the pin never failed\n{output}"));
    assert!(
        failed > Duration::from_secs(20),
        "the pin failed after {failed:?}: not the slow call this test needs\n{output}"
    );
    assert!(
        pinned.is_some(),
        "not pinned to pCPU 1 once QEMU ran again: {:?}\n{output}",
        watch.last
    );
}

/// SIGINT while a tick is blocked on a stopped libvirtd: the daemon exits 0 within a
/// second, as at any other time, without waiting for the 15 s and without a "did not
/// answer" line.
#[test]
fn it_stops_within_a_second_while_libvirtd_is_silent() {
    let (_host, fleet, _n) = setup("stop");
    let t0 = Instant::now();
    let sched = Scheduler::spawn(&fleet, &["-v"]);
    let up = Instant::now();
    while !sched.output().contains("tick 2") {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "not ticking\n{}",
            sched.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut libvirtd = StoppedLibvirtd::stop();
    // The next tick's first call is now waiting for an answer that cannot come.
    thread::sleep(INTERVAL * 3);
    let (status, took, output) = sched.stop();
    libvirtd.resume();
    eprintln!(
        "FIGURES stop: SIGINT while a call waited on a stopped libvirtd: {status} after \
         {:.2} s; test wall time {:.1} s",
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(status.success(), "exit {status}\n{output}");
    assert!(
        took <= Duration::from_secs(1),
        "stopped only {took:?} after SIGINT\n{output}"
    );
    assert_eq!(lines_with(&output, "did not answer"), 0, "{output}");
}

/// Under systemd the daemon's stderr is a socket (the journal's stream). The silence
/// timer, ending an open that waits on a stopped libvirtd, shuts down the sockets that
/// open created, and must not take the duplicate of stderr kept while the open runs
/// for one of them: the lab host's libvirtd-hang case saw every line after the first
/// "did not answer" lost that way. Here stderr is one end of a socket pair, libvirtd
/// is stopped long enough for a reconnect attempt to be ended too (35 s), and the
/// lines of that attempt and of the reconnect after SIGCONT must arrive.
#[test]
fn log_lines_on_a_socket_survive_an_ended_open() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    let (_host, fleet, _n) = setup("sock");
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", SCHEDULER_MAX_LIFE_S])
        .arg(env!("CARGO_BIN_EXE_vcpu-scheduler"))
        .args(["--connect", guests::URI, "--domain", &fleet.glob(), "1"])
        .stdout(Stdio::null())
        .stderr(std::os::fd::OwnedFd::from(theirs))
        .spawn()
        .expect("spawn vcpu-scheduler");
    let lines = Arc::new(Mutex::new(String::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        thread::spawn(move || {
            for l in BufReader::new(ours).lines().map_while(Result::ok) {
                let mut s = lines.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        })
    };
    let output = || lines.lock().unwrap().clone();
    let up = Instant::now();
    while !output().contains("connected to") {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "not connected\n{}",
            output()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut libvirtd = StoppedLibvirtd::stop();
    thread::sleep(Duration::from_secs(35));
    libvirtd.resume();
    let continued = Instant::now();
    while continued.elapsed() < REBALANCE_MAX && !output().contains("reconnected to") {
        thread::sleep(Duration::from_millis(50));
    }
    // timeout(1) forwards SIGINT to the daemon.
    let _ = kill("-INT", &child.id().to_string());
    let status = child.wait().expect("wait for the scheduler");
    let _ = reader.join();
    let output = output();
    eprintln!("FIGURES socket: stderr on a socket, libvirtd stopped 35 s:\n{output}");
    assert!(status.success(), "exit {status}\n{output}");
    assert_eq!(lines_with(&output, "did not answer"), 1, "{output}");
    assert!(
        output.contains("cannot reconnect to qemu:///system: no answer within 14 s"),
        "the ended reconnect attempt's line is missing\n{output}"
    );
    assert!(
        output.contains("reconnected to"),
        "no reconnect line {REBALANCE_MAX:?} after SIGCONT\n{output}"
    );
}
