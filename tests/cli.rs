//! The binary end to end against libvirt's test driver, and every kind of bad input:
//! one line on stderr naming the problem, exit 2 (usage) or 1 (runtime), no panic.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vcpu-scheduler"));
    c.env_remove("LIBVIRT_DEFAULT_URI");
    c
}

fn fixture_uri() -> String {
    format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One line on stderr containing `needle`, the given exit code, no panic.
fn assert_one_line_error(args: &[&str], code: i32, needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
    assert!(err.starts_with("vcpu-scheduler: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        o.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn once_against_the_test_driver_prints_its_decision_and_exits_0() {
    let o = run(&["--connect", "test:///default", "--once", "0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let tick = out
        .lines()
        .find(|l| l.starts_with("tick 1 "))
        .expect("a tick line");
    assert!(tick.contains("sigma="), "{tick}");
    // test:///default's one domain starts with its vCPUs on every pCPU: both get pinned,
    // to different pCPUs (vCPUs of one domain are spread).
    assert!(
        tick.contains(" moved test/0:*->") && tick.contains(" test/1:*->"),
        "{tick}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("tick")).count(),
        1,
        "{out}"
    );
    // The log (stderr): where it connected, and one line per move with its reason.
    let log = stderr(&o);
    assert!(
        log.starts_with("vcpu-scheduler: connected to test:///default: "),
        "{log}"
    );
    assert_eq!(log.matches(": taken into management").count(), 2, "{log}");
    assert!(
        log.lines().all(|l| l.starts_with("vcpu-scheduler: ")),
        "{log}"
    );
}

/// The course's name for the program (`./vcpu_scheduler 2`) runs the same program: the
/// same help, and the same tick against the test driver.
#[test]
fn the_course_name_runs_the_same_program() {
    let course = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vcpu_scheduler"))
            .env_remove("LIBVIRT_DEFAULT_URI")
            .args(args)
            .output()
            .expect("vcpu_scheduler runs")
    };
    let (ours, theirs) = (run(&["--help"]), course(&["--help"]));
    assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
    assert_eq!(ours.stdout, theirs.stdout);
    let args = ["--connect", "test:///default", "--once", "0.2"];
    let (ours, theirs) = (run(&args), course(&args));
    assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
    // The moves of the first tick (its σ depends on when the fake counters were read).
    let moves = |o: &Output| {
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = out.lines().find(|l| l.starts_with("tick 1 ")).unwrap_or("");
        let moved = line.split_once(" moved ").map(|(_, m)| m.to_owned());
        moved.unwrap_or_else(|| panic!("no moves in the first tick: {out:?}"))
    };
    assert_eq!(moves(&ours), moves(&theirs));
    let bad = course(&["--", "abc"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
}

#[test]
fn once_on_the_fixture_takes_the_unpinned_vcpu_into_management() {
    let uri = fixture_uri();
    // The fixture's domains are pinned in their configuration: --repin-configured.
    let o = run(&["-c", &uri, "--once", "-v", "--repin-configured", "0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(" moved four/3:*->"), "{out}");
    let row = out
        .lines()
        .find(|l| l.contains("four") && l.contains("vcpu   3"))
        .expect("table row");
    assert!(
        !row.contains("pinned *"),
        "vcpu 3 is pinned after the tick: {row}"
    );
}

#[test]
fn dry_run_plans_but_never_pins() {
    // Several ticks in one process (the driver's state is per process): the same plan
    // comes back every tick because nothing was pinned.
    let uri = fixture_uri();
    let child = bin()
        .args(["-c", &uri, "--dry-run", "-v", "--repin-configured", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    // SIGINT ends the loop cleanly with exit 0.
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let plans = out
        .lines()
        .filter(|l| l.contains(" would-move four/3:*->"))
        .count();
    assert!(plans >= 2, "expected the plan on every tick: {out}");
    assert!(!out.contains(" moved "), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("four") && l.contains("vcpu   3"))
        .collect();
    assert!(
        rows.len() >= 2 && rows.iter().all(|r| r.contains("pinned *")),
        "{rows:?}"
    );
}

#[test]
fn sigterm_ends_a_long_interval_within_a_second() {
    let mut child = bin()
        .args(["-c", "test:///default", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn help_and_version_go_to_stdout_with_exit_0() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Usage: vcpu-scheduler [OPTIONS] INTERVAL") && out.contains("--dry-run"));
    assert!(out.contains("Exit status"));
    let o = run(&["-V"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("vcpu-scheduler "));
}

#[test]
fn bad_interval_values_are_usage_errors() {
    for bad in ["abc", "0", "-1", "NaN", "inf", "-inf", "1e999", "2s"] {
        assert_one_line_error(&["-c", "test:///default", "--", bad], 2, "INTERVAL");
    }
}

#[test]
fn bad_threshold_values_are_usage_errors() {
    for bad in ["abc", "0", "-5", "NaN", "inf"] {
        assert_one_line_error(&["-c", "test:///default", "-t", bad, "1"], 2, "--threshold");
    }
}

#[test]
fn bad_cpus_lists_are_usage_errors_before_anything_is_touched() {
    // Syntax: refused before connecting.
    for bad in ["", "x", "1-", "3-1", "0,,2"] {
        assert_one_line_error(&["-c", "test:///default", "--cpus", bad, "1"], 2, "--cpus");
    }
    // A pCPU the 4-pCPU fixture lacks: refused once connected, before the first tick,
    // so the unpinned vCPU of "four" stays unpinned (nothing printed, no tick line).
    assert_one_line_error(
        &["-c", &fixture_uri(), "--cpus", "2-5", "--once", "0.1"],
        2,
        "4 pcpus",
    );
}

#[test]
fn cpus_keeps_managed_vcpus_inside_the_set() {
    // The fixture pins "one" and "two" to pCPU 0 and spreads "four"; with --cpus 2-3
    // every managed vCPU ends on pCPU 2 or 3.
    let o = bin()
        .args(["-c", &fixture_uri(), "--cpus", "2-3", "--once", "-v"])
        .args(["--repin-configured", "0.1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" vcpu ")).collect();
    assert_eq!(rows.len(), 7, "{out}");
    for row in rows {
        assert!(
            row.contains("pinned 2 ") || row.contains("pinned 3 "),
            "outside --cpus 2-3: {row}\n{out}"
        );
    }
}

#[test]
fn missing_extra_and_unknown_arguments_are_usage_errors() {
    assert_one_line_error(&[], 2, "missing INTERVAL");
    assert_one_line_error(&["1", "2"], 2, "unexpected argument \"2\"");
    assert_one_line_error(&["--frobnicate", "1"], 2, "frobnicate");
    assert_one_line_error(&["-c"], 2, "connect");
    assert_one_line_error(&["--policy", "fast", "1"], 2, "--policy");
    assert_one_line_error(&["--domain", "", "1"], 2, "--domain");
}

#[test]
fn a_uri_that_cannot_be_opened_is_a_runtime_error_with_libvirts_message() {
    assert_one_line_error(
        &["-c", "nosuchdriver:///x", "--once", "1"],
        1,
        "cannot connect to nosuchdriver:///x",
    );
    let missing = "test:///nonexistent/dir/node.xml";
    assert_one_line_error(
        &["-c", missing, "--once", "1"],
        1,
        "cannot connect to test:///nonexistent",
    );
}

#[test]
fn permission_denied_is_a_runtime_error_with_libvirts_message() {
    // An unprivileged user cannot reach a daemon socket in a directory only root may
    // enter: the same failure a user meets on qemu:///system without rights. No daemon
    // is needed for the check, the connect() itself is refused.
    let dir = std::env::temp_dir().join(format!("vcs-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        Command::new("chmod")
            .args(["700", dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let uri = format!("qemu+unix:///system?socket={}/libvirt-sock", dir.display());
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_vcpu-scheduler"),
        ])
        .args(["-c", &uri, "--once", "1"])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("HOME", "/tmp")
        .output()
        .expect("setpriv (util-linux) runs");
    let _ = std::fs::remove_dir_all(&dir);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("cannot connect to") && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn unselected_domains_are_never_pinned() {
    // "four" has a vCPU allowed on every pCPU; only "one" and "two" are managed, so it
    // stays unpinned, while an unrestricted run takes it into management.
    let uri = fixture_uri();
    for args in [&["-d", "one", "-d", "tw?"][..], &["-x", "fo*"][..]] {
        let o = bin()
            .args(["-c", &uri, "--once", "-v", "--repin-configured"])
            .args(args)
            .arg("0.2")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("four/3:"), "{args:?}: {out}");
        let row = out
            .lines()
            .find(|l| l.contains("four") && l.contains("vcpu   3"))
            .expect("row");
        assert!(
            row.contains("pinned *") && row.contains("(not managed: not selected by --domain"),
            "{args:?}: {row}"
        );
    }
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    let scenario = format!("{}/scenarios/large-64x300.scn", env!("CARGO_MANIFEST_DIR"));
    let mut child = bin()
        .args(["simulate", &scenario, "--ticks", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The pipe closes here, as `| head -1` closes it.
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with("tick 0 "), "{first:?}");
    assert_eq!(stderr(&o), "", "nothing to say about a closed pipe");
    assert_eq!(o.status.code(), Some(0));
}
