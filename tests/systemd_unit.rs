//! The service as shipped: `systemd-analyze verify` accepts dist/vcpu-scheduler.service,
//! the unit and the example settings say what the design promises, and scripts/install.sh
//! installs, keeps the operator's settings, changes nothing on a second run and
//! uninstalls. The installer always runs under a temporary root (ROOT=), never on this
//! system, and installs the binary cargo built for the tests (VCPU_SCHEDULER_BIN=).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const UNIT: &str = "vcpu-scheduler.service";
const SHIPPED_EXEC: &str = "/usr/local/sbin/vcpu-scheduler";
const BIN: &str = "usr/local/sbin/vcpu-scheduler";
const UNIT_FILE: &str = "etc/systemd/system/vcpu-scheduler.service";
const CONFIG: &str = "etc/default/vcpu-scheduler";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn shipped_unit() -> String {
    read(&repo().join("dist").join(UNIT))
}

/// An empty directory of this test's own under cargo's scratch space (emptied first, so a
/// previous run leaves nothing behind that could make a check pass).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("systemd_unit")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- systemd-analyze verify ----

/// Writes the shipped unit, ExecStart pointed at `exec` (verify checks that the binary
/// exists and is executable) and then changed by `edit`, as `dir/vcpu-scheduler.service`.
fn unit_copy(dir: &Path, exec: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let shipped = shipped_unit();
    let from = format!("ExecStart={SHIPPED_EXEC} ");
    assert_eq!(
        shipped.matches(&from).count(),
        1,
        "one ExecStart of {SHIPPED_EXEC}"
    );
    let to = format!("ExecStart={} ", exec.display());
    let path = dir.join(UNIT);
    fs::write(&path, edit(shipped.replace(&from, &to))).expect("write the unit copy");
    path
}

/// `systemd-analyze verify UNIT`: exit code and every line it printed that mentions the
/// unit. Verify names the unit in each of its findings about it, either as
/// `/path/vcpu-scheduler.service:LINE: ...` (a line it could not parse, an unknown key: these
/// leave the exit code at 0) or `vcpu-scheduler.service: ...` (a missing binary: exit 1).
/// Lines about other units it loads (masked units, their missing man pages or binaries on
/// some hosts) do not name ours and are not this unit's problem.
fn verify(unit: &Path) -> (Option<i32>, Vec<String>, String) {
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze not found: install systemd (apt-get install systemd; \
             scripts/host-setup.sh does) to check dist/{UNIT}"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let ours = all
        .lines()
        .filter(|l| l.contains(UNIT))
        .map(str::to_owned)
        .collect();
    (out.status.code(), ours, all)
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let dir = scratch("verify-ok");
    let unit = unit_copy(&dir, Path::new(env!("CARGO_BIN_EXE_vcpu-scheduler")), |u| u);
    let (code, ours, all) = verify(&unit);
    assert_eq!(code, Some(0), "systemd-analyze verify failed:\n{all}");
    assert!(
        ours.is_empty(),
        "systemd-analyze verify about {UNIT}:\n{all}"
    );
}

/// The check above can fail: verify reports a bad value and an unknown key (still exiting
/// 0, hence the look at what it prints) and a missing binary (exit 1), each naming the unit.
#[test]
fn systemd_analyze_verify_reports_a_broken_copy() {
    let dir = scratch("verify-broken");
    let bin = Path::new(env!("CARGO_BIN_EXE_vcpu-scheduler"));
    let unit = unit_copy(&dir, bin, |u| {
        let u = u.replace("\nRestart=on-failure\n", "\nRestart=on-failur\n");
        u.replace("\n[Install]\n", "\nNoSuchKey=1\n\n[Install]\n")
    });
    let (code, ours, all) = verify(&unit);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        ours.iter().any(|l| l.contains("on-failur")),
        "bad Restart= not reported:\n{all}"
    );
    assert!(
        ours.iter().any(|l| l.contains("NoSuchKey")),
        "unknown key not reported:\n{all}"
    );

    let missing = dir.join("no-such-binary");
    let unit = unit_copy(&dir, &missing, |u| u);
    let (code, ours, all) = verify(&unit);
    assert_ne!(code, Some(0), "a missing binary passed verify:\n{all}");
    assert!(
        ours.iter().any(|l| l.contains("no-such-binary")),
        "missing binary not reported:\n{all}"
    );
}

// ---- what the unit and the settings say ----

/// (section, key, value) of every assignment, in order; comments and blank lines skipped.
/// Enough for the shipped unit, which continues no line with a backslash.
fn parse_unit(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for (n, line) in unit.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: continued: {line}", n + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", n + 1));
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

/// Every value of `section`/`key`, in order.
fn values<'a>(entries: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The words of every `section`/`key` line (list settings such as After= accumulate).
fn words<'a>(entries: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    values(entries, section, key)
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect()
}

#[test]
fn the_unit_has_the_keys_the_design_promises() {
    let e = parse_unit(&shipped_unit());
    let one = |section: &str, key: &str| -> &str {
        let v = values(&e, section, key);
        assert_eq!(v.len(), 1, "[{section}] {key}= should be set once: {v:?}");
        v[0]
    };

    assert!(words(&e, "Unit", "After").contains(&"libvirtd.service"));
    assert!(words(&e, "Unit", "After").contains(&"virtqemud.service"));
    assert_eq!(words(&e, "Unit", "Wants"), ["libvirtd.service"]);

    assert_eq!(one("Service", "Type"), "notify");
    assert_eq!(one("Service", "NotifyAccess"), "main");
    assert_eq!(
        one("Service", "ExecStart"),
        "/usr/local/sbin/vcpu-scheduler --config /etc/default/vcpu-scheduler"
    );
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert!(!one("Service", "RestartSec").is_empty());
    // A config error (exit 2) must not restart in a loop.
    assert!(words(&e, "Service", "RestartPreventExitStatus").contains(&"2"));
    let watchdog = one("Service", "WatchdogSec");
    let secs: u64 = watchdog
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("WatchdogSec={watchdog}: expected whole seconds, e.g. 60s"));
    assert!(
        secs >= 10,
        "WatchdogSec={watchdog}: too short for a tick stuck in libvirt"
    );

    // The sandbox still lets the daemon reach libvirtd and write its metrics.
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    assert!(words(&e, "Service", "RestrictAddressFamilies").contains(&"AF_UNIX"));
    assert!(words(&e, "Service", "RestrictAddressFamilies").contains(&"AF_INET"));
    assert!(
        values(&e, "Service", "PrivateNetwork").is_empty(),
        "qemu+tcp URIs need the network"
    );
    assert!(words(&e, "Service", "ReadWritePaths").contains(&"-/var/lib/prometheus/node-exporter"));
    for key in ["InaccessiblePaths", "TemporaryFileSystem"] {
        assert!(
            !values(&e, "Service", key)
                .iter()
                .any(|v| v.contains("/run")),
            "{key}= hides /run/libvirt/libvirt-sock"
        );
    }

    assert_eq!(one("Install", "WantedBy"), "multi-user.target");
}

#[test]
fn the_example_settings_set_only_interval_and_list_every_key() {
    let config = read(&repo().join("dist/vcpu-scheduler.default"));
    let set: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(set, ["INTERVAL=2"]);
    for key in [
        "CONNECT",
        "THRESHOLD",
        "POLICY",
        "DOMAINS",
        "EXCLUDE_DOMAINS",
        "CPUS",
        "REPIN_CONFIGURED",
        "METRICS_FILE",
        "DRY_RUN",
    ] {
        let commented = format!("\n#{key}=");
        assert!(config.contains(&commented), "no commented {key}= line");
    }
    // The example metrics file lies where the unit lets the daemon write.
    let metrics = config
        .lines()
        .find_map(|l| l.strip_prefix("#METRICS_FILE="))
        .expect("a METRICS_FILE line");
    let dir = Path::new(metrics).parent().expect("a directory");
    let unit = parse_unit(&shipped_unit());
    let writable = words(&unit, "Service", "ReadWritePaths");
    assert!(
        writable
            .iter()
            .any(|w| Path::new(w.trim_start_matches('-')) == dir),
        "{} not in ReadWritePaths {writable:?}",
        dir.display()
    );
}

// ---- scripts/install.sh under a temporary root ----

fn install_with(root: &Path, binary: &Path, args: &[&str]) -> Output {
    Command::new(repo().join("scripts/install.sh"))
        .args(args)
        .env("ROOT", root)
        .env("VCPU_SCHEDULER_BIN", binary)
        .output()
        .expect("scripts/install.sh runs")
}

/// Runs the installer under `root` with the test binary; asserts exit 0 and a quiet stderr.
fn install(root: &Path, args: &[&str]) -> String {
    let out = install_with(root, Path::new(env!("CARGO_BIN_EXE_vcpu-scheduler")), args);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "install.sh {args:?}: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "install.sh {args:?}: {}",
        text(&out.stderr)
    );
    assert_says_why_systemctl_is_not_run(&stdout);
    stdout
}

/// Under a temporary root the installer never runs systemctl, and says why in one line:
/// here, with no systemd as PID 1, that systemd is not running.
fn assert_says_why_systemctl_is_not_run(stdout: &str) {
    let why = if Path::new("/run/systemd/system").is_dir() {
        "install.sh: working under "
    } else {
        "install.sh: systemd is not running here"
    };
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with("files only, systemctl not run"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].starts_with(why), "{stdout}");
}

fn mode(path: &Path) -> u32 {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

#[test]
fn install_twice_then_uninstall_keeps_the_settings() {
    let root = scratch("install");
    let out = install(&root, &[]);
    for (file, want) in [(BIN, 0o755), (UNIT_FILE, 0o644), (CONFIG, 0o644)] {
        let path = root.join(file);
        assert_eq!(
            mode(&path),
            want,
            "{}: mode {:o}",
            path.display(),
            mode(&path)
        );
        assert!(
            out.contains(&format!("installed {}", path.display())),
            "{out}"
        );
    }
    let built = fs::read(env!("CARGO_BIN_EXE_vcpu-scheduler")).expect("read the test binary");
    assert!(fs::read(root.join(BIN)).expect("installed binary") == built);
    assert_eq!(read(&root.join(UNIT_FILE)), shipped_unit());
    assert_eq!(
        read(&root.join(CONFIG)),
        read(&repo().join("dist/vcpu-scheduler.default"))
    );

    // Backdate the files: a second run that rewrote any of them would give it a new mtime,
    // however coarse the file system's clock.
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for file in [BIN, UNIT_FILE, CONFIG] {
        let f = File::options()
            .write(true)
            .open(root.join(file))
            .expect("open");
        f.set_modified(then).expect("set mtime");
    }
    let again = install(&root, &[]);
    assert!(again.contains("nothing changed"), "{again}");
    assert!(
        !again.contains(": installed ") && !again.contains(": updated "),
        "{again}"
    );
    for file in [BIN, UNIT_FILE, CONFIG] {
        assert_eq!(
            mtime(&root.join(file)),
            then,
            "{file} was rewritten:\n{again}"
        );
    }

    let out = install(&root, &["--uninstall"]);
    assert!(!root.join(BIN).exists(), "{out}");
    assert!(!root.join(UNIT_FILE).exists(), "{out}");
    assert!(root.join(CONFIG).exists(), "{out}");
    assert!(
        out.contains(&format!("kept {}", root.join(CONFIG).display())),
        "{out}"
    );

    let out = install(&root, &["--uninstall"]);
    assert!(out.contains("nothing to remove"), "{out}");
}

#[test]
fn an_existing_config_is_never_overwritten() {
    let root = scratch("keep-config");
    let config = root.join(CONFIG);
    fs::create_dir_all(config.parent().expect("parent")).expect("mkdir");
    fs::write(&config, "INTERVAL=7\nCPUS=2-3\n").expect("write config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");

    let out = install(&root, &[]);
    assert_eq!(read(&config), "INTERVAL=7\nCPUS=2-3\n", "{out}");
    assert_eq!(mode(&config), 0o600, "{out}");
    assert!(out.contains(&format!("kept {}", config.display())), "{out}");
    assert!(
        root.join(BIN).exists() && root.join(UNIT_FILE).exists(),
        "{out}"
    );
}

#[test]
fn a_changed_binary_is_updated_and_nothing_else() {
    let root = scratch("update");
    install(&root, &[]);

    let newer = root.join("newer-vcpu-scheduler");
    let mut bytes = fs::read(env!("CARGO_BIN_EXE_vcpu-scheduler")).expect("read binary");
    bytes.extend_from_slice(b"\0another build");
    File::create(&newer)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write newer binary");
    fs::set_permissions(&newer, fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = install_with(&root, &newer, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("updated {}", root.join(BIN).display())),
        "{stdout}"
    );
    assert!(!stdout.contains("vcpu-scheduler.service") && !stdout.contains("etc/default"));
    assert!(fs::read(root.join(BIN)).expect("installed binary") == bytes);
    assert_eq!(mode(&root.join(BIN)), 0o755);
}

/// Where libvirt's modular daemons are enabled, the installed unit wants virtqemud: they
/// carry Conflicts=libvirtd.service, so wanting libvirtd would stop them.
#[test]
fn where_virtqemud_is_enabled_the_unit_wants_it_instead_of_libvirtd() {
    let root = scratch("modular");
    let wants = root.join("etc/systemd/system/sockets.target.wants");
    fs::create_dir_all(&wants).expect("mkdir");
    // Dangling in this tree, as links made by `systemctl enable` are under any --root.
    symlink(
        "/usr/lib/systemd/system/virtqemud.socket",
        wants.join("virtqemud.socket"),
    )
    .expect("symlink");

    let out = install(&root, &[]);
    assert!(out.contains("virtqemud is enabled here"), "{out}");
    let installed = read(&root.join(UNIT_FILE));
    let e = parse_unit(&installed);
    assert_eq!(
        words(&e, "Unit", "Wants"),
        ["virtqemud.service"],
        "{installed}"
    );
    let expected =
        shipped_unit().replace("\nWants=libvirtd.service\n", "\nWants=virtqemud.service\n");
    assert_eq!(installed, expected);
}

#[test]
fn bad_usage_and_a_missing_binary_are_one_line_errors() {
    let root = scratch("errors");
    let bin = Path::new(env!("CARGO_BIN_EXE_vcpu-scheduler"));
    let missing = root.join("no-such-binary");
    for (args, binary, code, needle) in [
        (&["--bogus"][..], bin, 2, "unknown argument '--bogus'"),
        (&["--root"][..], bin, 2, "--root needs a directory"),
        (
            &[][..],
            missing.as_path(),
            1,
            "no-such-binary: no such file",
        ),
    ] {
        let out = install_with(&root, binary, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("install.sh: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
    assert!(!root.join("usr").exists() && !root.join("etc").exists());

    let out = install_with(&root, bin, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Usage: scripts/install.sh"));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}
