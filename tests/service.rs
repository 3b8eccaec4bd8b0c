//! The daemon as a service, end to end against libvirt's test driver: systemd's notify
//! protocol received on a socket of our own, log priorities when stderr is the journal,
//! the settings file, owners' configured pins, the summary line, and the faults each
//! must survive (an unreachable notify socket, unknown settings).

use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vcpu-scheduler"));
    c.env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM");
    c
}

fn fixture_uri() -> String {
    format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vcs-service-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// SIGTERM, then wait: the daemon must be gone within a second, with exit 0.
fn terminate(mut child: Child) -> Output {
    let asked = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    while child.try_wait().unwrap().is_none() {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = asked.elapsed();
    let o = child.wait_with_output().unwrap();
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Receive datagrams as they come, as systemd does (the socket queue holds only ten),
/// until `STOPPING=1`, or 10 s.
fn receiver(rx: UnixDatagram) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (mut got, end) = (Vec::new(), Instant::now() + Duration::from_secs(10));
        let mut buf = [0u8; 512];
        while Instant::now() < end && got.last().is_none_or(|m| m != "STOPPING=1") {
            if let Ok(n) = rx.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    })
}

#[test]
fn notify_protocol_ready_status_watchdog_stopping() {
    let dir = scratch("notify");
    let path = dir.join("notify.sock");
    let rx = receiver(UnixDatagram::bind(&path).unwrap());
    let child = bin()
        .args(["-c", &fixture_uri(), "--repin-configured", "0.2"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let o = terminate(child);
    let got = rx.join().unwrap();
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    assert_eq!(
        got.last().map(String::as_str),
        Some("STOPPING=1"),
        "{got:?}"
    );
    let status: Vec<&String> = got
        .iter()
        .filter(|m| m.starts_with("STATUS=tick "))
        .collect();
    assert!(status.len() >= 3, "a STATUS= per tick (0.2 s): {got:?}");
    assert!(status.iter().all(|m| !m.contains('\n')));
    // WATCHDOG_USEC 200 ms: pinged every 100 ms at least, and at every tick.
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 8, "{pings} watchdog pings in 1.2 s: {got:?}");
    assert!(o.stdout.is_empty(), "no tick lines without -v");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notify_reaches_an_abstract_socket() {
    let name = format!("vcs-service-test-{}", std::process::id());
    let rx = receiver(
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap(),
    );
    let child = bin()
        .args(["-c", "test:///default", "1"])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    terminate(child);
    let got = rx.join().unwrap();
    assert_eq!(
        got,
        ["READY=1", "STOPPING=1"],
        "no tick in 0.4 s at INTERVAL 1"
    );
}

#[test]
fn an_unreachable_notify_socket_is_one_line_and_the_loop_goes_on() {
    let child = bin()
        .args(["-c", &fixture_uri(), "-v", "--repin-configured", "0.1"])
        .env("NOTIFY_SOCKET", "/nonexistent/notify.sock")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let o = terminate(child);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("NOTIFY_SOCKET").count(), 1, "{err}");
    let ticks = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count();
    assert!(ticks >= 4, "the loop went on: {ticks} ticks");
}

#[test]
fn log_lines_carry_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch("journal");
    let log = dir.join("stderr");
    let file = std::fs::File::create(&log).unwrap();
    let m = file.metadata().unwrap();
    let stream = format!("{}:{}", m.dev(), m.ino());
    let child = bin()
        .args(["-c", "test:///default", "0.2"])
        .env("JOURNAL_STREAM", &stream)
        .stderr(file.try_clone().unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    terminate(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("<6>connected to test:///default"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
    // An error goes out as priority 3 (and a usage error still exits 2).
    let file = std::fs::File::create(&log).unwrap();
    let m = file.metadata().unwrap();
    let o = bin()
        .args(["--threshold", "x", "1"])
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .stderr(file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("<3>invalid --threshold"), "{text}");
    // Not the journal (another file's identity): the plain prefix.
    let o = bin()
        .args(["--threshold", "x", "1"])
        .env("JOURNAL_STREAM", &stream)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("vcpu-scheduler: invalid --threshold"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_file_gives_options_and_unknown_keys_are_one_line_each() {
    let dir = scratch("settings");
    let file = dir.join("vcpu-scheduler");
    std::fs::write(
        &file,
        format!(
            "# as in /etc/default\nINTERVAL=0.1\nCONNECT=\"{}\"\nCPUS=2-3\n\
             REPIN_CONFIGURED=yes\nFROBNICATE=1\n",
            fixture_uri()
        ),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let o = bin()
        .args(["--config", cfg, "--once", "-v"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("unknown setting"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "vcpu-scheduler: {cfg}:6: unknown setting \"FROBNICATE\" ignored"
        )]
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" vcpu ")).collect();
    assert_eq!(rows.len(), 7, "{out}");
    assert!(
        rows.iter()
            .all(|r| r.contains("pinned 2 ") || r.contains("pinned 3 ")),
        "CPUS=2-3 from the file: {out}"
    );
    // The command line wins over the file.
    let o = bin()
        .args(["--config", cfg, "--once", "-v", "--cpus", "1"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" vcpu ")).collect();
    assert_eq!(rows.len(), 7, "{out}");
    assert!(rows.iter().all(|r| r.contains("pinned 1 ")), "{out}");

    // A bad value: one line naming the file and line, exit 2, nothing run.
    std::fs::write(&file, "INTERVAL=1\nDRY_RUN=maybe\n").unwrap();
    let o = bin().args(["--config", cfg]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{cfg}:2: DRY_RUN must be yes or no")),
        "{err}"
    );
    // A file that is not there.
    let o = bin()
        .args(["--config", "/nonexistent/settings", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read settings file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn domains_pinned_in_their_configuration_are_left_alone_and_the_summary_says_so() {
    // The fixture's three domains all have <cputune><vcpupin>: none is touched, even
    // "four", whose vCPU 3 may run anywhere.
    let o = bin()
        .args([
            "-c",
            &fixture_uri(),
            "--once",
            "-v",
            "--summary",
            "0.01",
            "0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains(" moved "), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" vcpu ")).collect();
    assert_eq!(rows.len(), 7);
    assert!(
        rows.iter()
            .all(|r| r.ends_with("(not managed: pinned in its configuration)")),
        "{out}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let summary = err
        .lines()
        .find(|l| l.contains("summary: "))
        .unwrap_or_else(|| panic!("no summary line: {err}"));
    assert!(
        summary.contains("0 domains managed, 3 left alone (")
            && summary.contains("one: pinned in its configuration")
            && summary.contains("four: pinned in its configuration"),
        "{summary}"
    );
}

#[test]
fn sigterm_during_a_long_interval_stops_within_a_second() {
    let mut child = bin()
        .args(["-c", "test:///default", "3600"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut err = child.stderr.take().unwrap();
    let o = terminate(child);
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    assert!(text.contains("connected to test:///default"), "{text}");
    assert!(o.status.success());
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// SIGHUP re-reads the settings file: a valid one takes effect with one line saying
/// what changed (and RELOADING=1, then READY=1, for systemd), an invalid one is one line
/// naming FILE:LINE and the settings in use stay (the daemon goes on ticking with them).
/// SIGUSR1 logs the summary at once; neither signal ends the daemon.
#[test]
fn sighup_reloads_the_settings_and_sigusr1_logs_the_summary() {
    let dir = scratch("reload");
    let file = dir.join("vcpu-scheduler");
    let write = |text: String| std::fs::write(&file, text).unwrap();
    write(format!(
        "INTERVAL=0.2\nCONNECT=\"{}\"\nREPIN_CONFIGURED=yes\n",
        fixture_uri()
    ));
    let path = dir.join("notify.sock");
    let rx = receiver(UnixDatagram::bind(&path).unwrap());
    let child = bin()
        .args(["--config", file.to_str().unwrap(), "-v"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    write(format!(
        "INTERVAL=0.3\nCONNECT=\"{}\"\nREPIN_CONFIGURED=yes\nTHRESHOLD=3\nCPUS=1\n",
        fixture_uri()
    ));
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(900));
    write("INTERVAL=0.3\nTHRESHOLD=abc\n".to_owned());
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, "-USR1");
    std::thread::sleep(Duration::from_millis(700));
    let o = terminate(child);
    let got = rx.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let cfg = file.display();
    let reloads: Vec<&str> = err.lines().filter(|l| l.contains("reload")).collect();
    assert_eq!(
        reloads,
        [
            format!(
                "vcpu-scheduler: reloaded {cfg}: INTERVAL 200ms -> 300ms, THRESHOLD 5 -> 3, \
                 CPUS all -> 1"
            ),
            format!(
                "vcpu-scheduler: reload: {cfg}:2: invalid THRESHOLD \"abc\": expected a \
                 number from 0.01 to 100; keeping the settings in use"
            ),
        ],
        "{err}"
    );
    assert_eq!(err.matches("summary: ").count(), 1, "SIGUSR1: {err}");
    let reloading = got.iter().filter(|m| *m == "RELOADING=1").count();
    assert_eq!(reloading, 2, "{got:?}");
    let after = got.iter().rposition(|m| m == "RELOADING=1").unwrap();
    assert!(got[after..].iter().any(|m| m == "READY=1"), "{got:?}");
    // CPUS=1 took effect at the next tick and stayed through the bad reload: the last
    // table has every vCPU on pCPU 1.
    let out = String::from_utf8_lossy(&o.stdout);
    let last: Vec<&str> = out
        .lines()
        .rev()
        .filter(|l| l.contains(" vcpu "))
        .take(7)
        .collect();
    assert_eq!(last.len(), 7, "{out}");
    assert!(last.iter().all(|r| r.contains("pinned 1 ")), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
