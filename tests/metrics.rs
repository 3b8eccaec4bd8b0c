//! `--metrics-file` end to end against libvirt's test driver, read by the real tools:
//! `promtool check metrics` finds nothing to complain about, and node_exporter's
//! textfile collector serves exactly the values we wrote, for domains whose names need
//! escaping (a double quote, a backslash) or are not ASCII. Also the failures: a
//! missing directory at start (exit 2, one line), and a write that fails later (one
//! line, the loop goes on, and the file comes back when it can).

mod common;

use common::prom::{self, value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn awkward_uri() -> String {
    format!(
        "test://{}/tests/fixtures/awkward.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vcs-metrics-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn daemon(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vcpu-scheduler"))
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vcpu-scheduler")
}

/// SIGTERM, then what it printed on stderr; it must exit 0.
fn stop(child: Child) -> String {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

/// Waits until `file` holds a tick with figures (not only the baseline).
fn wait_for_figures(file: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains("\nvcpu_scheduler_load_sigma_ratio ") {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited before writing figures"
        );
        assert!(
            Instant::now() < deadline,
            "no figures in {}",
            file.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Settings file (METRICS_FILE), awkward names, promtool, node_exporter: the file the
/// daemon leaves when stopped is served value for value.
#[test]
fn promtool_accepts_the_file_and_node_exporter_serves_our_values() {
    let dir = scratch("serve");
    let file = dir.join("vcpu-scheduler.prom");
    let settings = dir.join("settings");
    std::fs::write(
        &settings,
        format!("INTERVAL=0.1\nMETRICS_FILE={}\n", file.display()),
    )
    .unwrap();
    let uri = awkward_uri();
    let mut child = daemon(&["--connect", &uri, "--config", settings.to_str().unwrap()]);
    wait_for_figures(&file, &mut child);
    // Let a few ticks replace the file, then freeze it.
    thread::sleep(Duration::from_millis(350));
    let log = stop(child);
    assert!(log.contains(" is rewritten every tick"), "{log}");

    let served = prom::check_and_serve(&dir, &file);
    let uuid1 = "a0a0a0a0-0000-4000-8000-000000000001";
    let uuid3 = "a0a0a0a0-0000-4000-8000-000000000003";
    for vcpu in 0..2 {
        let key = format!(
            "vcpu_scheduler_vcpu_pinned_pcpu{{domain=\"web \\\"prod\\\"\",uuid=\"{uuid1}\",vcpu=\"{vcpu}\"}}"
        );
        let p = value(&served, &key);
        assert!(
            p == 0.0 || p == 1.0,
            "{key} = {p}: the scheduler pins every vCPU"
        );
    }
    value(
        &served,
        "vcpu_scheduler_vcpu_usage_ratio{domain=\"back\\\\slash\",\
         uuid=\"a0a0a0a0-0000-4000-8000-000000000002\",vcpu=\"0\"}",
    );
    value(
        &served,
        &format!(
            "vcpu_scheduler_vcpu_demand_ratio{{domain=\"café-東京\",uuid=\"{uuid3}\",vcpu=\"0\"}}"
        ),
    );
    // The owner pinned "pinned \ owner" to pCPU 0 in its configuration: left alone there.
    assert_eq!(
        value(
            &served,
            "vcpu_scheduler_vcpu_pinned_pcpu{domain=\"pinned \\\\ owner\",\
             uuid=\"a0a0a0a0-0000-4000-8000-000000000004\",vcpu=\"0\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&served, "vcpu_scheduler_domains{state=\"managed\"}"),
        3.0
    );
    assert_eq!(
        value(&served, "vcpu_scheduler_domains{state=\"left_alone\"}"),
        1.0
    );
    // Four vCPUs were spread over 2 pCPUs at the first tick, and none failed.
    assert!(value(&served, "vcpu_scheduler_migrations_total") >= 4.0);
    assert_eq!(value(&served, "vcpu_scheduler_pin_failures_total"), 0.0);
    assert_eq!(value(&served, "vcpu_scheduler_reconnects_total"), 0.0);
    // The test driver reports no run-queue delay: demand is estimated.
    assert_eq!(value(&served, "vcpu_scheduler_demand_measured"), 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(&served, "vcpu_scheduler_last_success_timestamp_seconds");
    assert!(
        now - last >= 0.0 && now - last < 30.0,
        "last success {last}, now {now}"
    );
    let took = value(&served, "vcpu_scheduler_last_tick_duration_seconds");
    assert!(took > 0.0 && took < 1.0, "{took}");
    for p in 0..2 {
        value(
            &served,
            &format!("vcpu_scheduler_pcpu_load_ratio{{pcpu=\"{p}\"}}"),
        );
        value(
            &served,
            &format!("vcpu_scheduler_pcpu_demand_ratio{{pcpu=\"{p}\"}}"),
        );
    }
    for g in [
        "load_sigma_ratio",
        "demand_sigma_ratio",
        "residual_imbalance_ratio",
    ] {
        value(&served, &format!("vcpu_scheduler_{g}"));
    }
    // Only the target: the temporary file was renamed away.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_metrics_directory_that_does_not_exist_is_a_usage_error() {
    let uri = awkward_uri();
    let out = Command::new(env!("CARGO_BIN_EXE_vcpu-scheduler"))
        .args([
            "--connect",
            &uri,
            "--metrics-file",
            "/nonexistent/vcpu.prom",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "invalid --metrics-file /nonexistent/vcpu.prom: directory /nonexistent does not exist"
        ),
        "{err}"
    );
}

/// The directory vanishes under the running daemon (as a full disk or a permission
/// change would make writes fail): one line, ticks go on, and when the directory is
/// back the file is written again (one more line).
#[test]
fn a_write_that_fails_later_is_one_line_and_the_loop_goes_on() {
    let dir = scratch("fail");
    let file = dir.join("vcpu-scheduler.prom");
    let uri = awkward_uri();
    let mut child = daemon(&[
        "--connect",
        &uri,
        "--metrics-file",
        file.to_str().unwrap(),
        "0.1",
    ]);
    wait_for_figures(&file, &mut child);
    std::fs::remove_dir_all(&dir).unwrap();
    // Ten ticks or so without a directory.
    thread::sleep(Duration::from_millis(1000));
    assert!(child.try_wait().unwrap().is_none(), "the daemon stopped");
    std::fs::create_dir_all(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !file.exists() {
        assert!(Instant::now() < deadline, "the file was not written again");
        thread::sleep(Duration::from_millis(50));
    }
    let err = stop(child);
    let failed: Vec<_> = err
        .lines()
        .filter(|l| l.contains("cannot write metrics file"))
        .collect();
    assert_eq!(failed.len(), 1, "one line for the whole outage:\n{err}");
    assert!(
        failed[0].contains("No such file or directory"),
        "{}",
        failed[0]
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("written again")).count(),
        1,
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's PromQL examples parse: each expression (joined across its lines) goes
/// into a rules file that `promtool check rules` must accept.
#[test]
fn the_readme_promql_examples_are_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```promql\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a promql block in the README");
    let mut exprs: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            if !current.is_empty() {
                exprs.push(std::mem::take(&mut current));
            }
            continue;
        }
        // A line starting with an operator continues the expression above.
        if !current.is_empty() && !line.starts_with("and ") && !line.starts_with("or ") {
            exprs.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push(' ');
    }
    if !current.is_empty() {
        exprs.push(current);
    }
    assert!(exprs.len() >= 5, "{exprs:?}");
    let mut rules = String::from("groups:\n- name: readme\n  rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules += &format!(
            "  - record: readme_{i}\n    expr: '{}'\n",
            e.trim().replace('\'', "''")
        );
    }
    let dir = scratch("promql");
    let file = dir.join("rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
