//! Every call to `virsh`, under a timeout, and parsing of what it prints (node info,
//! domain lists, cpulists, pins). Knows nothing of boot sectors or measurement.

use super::URI;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// A `virsh` call that hangs (daemon wedged) must fail a test, not stall the suite.
const VIRSH_TIMEOUT_S: &str = "60";

/// `virsh -c URI ARGS` under coreutils' timeout: std has no wait-with-deadline, and a
/// wedged libvirtd must not hang us.
pub(super) fn virsh_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args([VIRSH_TIMEOUT_S, "virsh", "-c", URI]).args(args);
    cmd
}

/// Runs `virsh -c URI ARGS`, returning stdout, or one line naming the call and virsh's error.
pub fn virsh(args: &[&str]) -> Result<String, String> {
    let out = virsh_command(args)
        .output()
        .map_err(|e| format!("cannot run virsh (apt-get install libvirt-clients): {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err
        .lines()
        .map(|l| l.trim_start_matches("error: ").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let why = match out.status.code() {
        Some(124) => format!("timed out after {VIRSH_TIMEOUT_S} s"),
        _ => err,
    };
    Err(format!("virsh {}: {why}", args.join(" ")))
}

/// Fails with the reason when the hypervisor cannot be used, so the real-guest tests fail
/// loudly instead of passing on a host where nothing ran.
pub fn require_hypervisor() -> Result<(), String> {
    virsh(&["version"]).map(drop).map_err(|e| {
        format!("{URI} is not reachable ({e}); run scripts/host-setup.sh as root first")
    })
}

/// Where a test that found libvirtd gone records it; `scripts/test.sh` prints this file
/// after the tests, so a run that passed still shows that libvirtd had to be restarted.
pub const LIBVIRTD_RESTARTS: &str = "/var/tmp/vcpu-scheduler-tests/libvirtd-restarts.log";

/// `require_hypervisor`, except that a libvirtd with no process left (it exited or
/// crashed after an earlier test) is started again first, as systemd's
/// `Restart=on-failure` does on a real host. Without this one death fails every later
/// real-guest test at its set-up (CI saw 8 fail so once, on libvirt 9.0.0, with no
/// scheduler assertion failing). The restart is recorded in [`LIBVIRTD_RESTARTS`] with
/// libvirtd's last log lines and the kernel's. A libvirtd that runs but does not answer
/// (wedged, stopped) is not touched: that still fails. Never under systemd, which
/// restarts its own units. True when it restarted libvirtd.
pub fn require_hypervisor_reviving(test: &str) -> Result<bool, String> {
    let first = require_hypervisor();
    if first.is_ok() || Path::new("/run/systemd/system").is_dir() {
        return first.map(|()| false);
    }
    // A process of that name that is not a zombie (a dead daemon stays one where PID 1
    // does not reap, as in this container).
    let alive = |name: &str| {
        fs::read_dir("/proc").is_ok_and(|dir| {
            dir.flatten().any(|e| {
                let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                    return false;
                };
                &stat[open + 1..close] == name && !stat[close + 1..].trim_start().starts_with('Z')
            })
        })
    };
    if alive("libvirtd") {
        return first.map(|()| false);
    }
    let shell = |line: &str| {
        Command::new("sh")
            .args(["-c", line])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let evidence = shell(
        "tail -n 15 /var/log/libvirt/libvirtd.log 2>/dev/null; \
         dmesg 2>/dev/null | grep -iE 'libvirtd|segfault|oom' | tail -n 5",
    );
    if !alive("virtlogd") {
        shell("virtlogd -d");
    }
    shell("libvirtd -d");
    let up = Instant::now();
    while require_hypervisor().is_err() && up.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(100));
    }
    let outcome = match require_hypervisor() {
        Ok(()) => format!("answering {:.1} s later", up.elapsed().as_secs_f64()),
        Err(e) => format!("still not answering after 30 s: {e}"),
    };
    let record = format!(
        "before test {test}: libvirtd had no process; started it again, {outcome}\n\
         libvirtd's log and the kernel's last lines:\n{evidence}\n"
    );
    eprintln!("note: {record}");
    if let Some(dir) = Path::new(LIBVIRTD_RESTARTS).parent() {
        let _ = fs::create_dir_all(dir);
    }
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LIBVIRTD_RESTARTS)
    {
        let _ = f.write_all(record.as_bytes());
    }
    require_hypervisor().map(|()| true)
}

/// `kvm` when libvirt can use KVM, else `qemu` (TCG): asked once per process.
pub fn domain_type() -> &'static str {
    static TYPE: OnceLock<&'static str> = OnceLock::new();
    TYPE.get_or_init(|| {
        // libvirt's view decides (QEMU's user must be able to open /dev/kvm), not ours.
        match virsh(&["domcapabilities", "--virttype", "kvm"]) {
            Ok(_) => "kvm",
            Err(_) => "qemu",
        }
    })
}

/// Number of pCPUs as libvirt counts them (`virsh nodeinfo`), as the scheduler sees them.
pub fn pcpu_count() -> Result<usize, String> {
    let info = virsh(&["nodeinfo"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("CPU(s):"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no CPU(s) line in virsh nodeinfo: {info:?}"))
}

/// Names of the domains whose name starts with `prefix`; only running ones unless `all`.
pub fn domains_with_prefix(prefix: &str, all: bool) -> Result<Vec<String>, String> {
    let args: &[&str] = if all {
        &["list", "--all", "--name"]
    } else {
        &["list", "--name"]
    };
    Ok(virsh(args)?
        .lines()
        .map(str::trim)
        // virsh ends the list with a blank line.
        .filter(|n| !n.is_empty() && n.starts_with(prefix))
        .map(String::from)
        .collect())
}

/// Parses a cpulist as virsh prints it (`0`, `0-3`, `0,2-3`).
pub fn parse_cpulist(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("bad cpulist {s:?}");
    let mut cpus = Vec::new();
    for part in s.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo.trim().parse().map_err(|_| bad())?;
        let hi: usize = hi.trim().parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The pCPUs each vCPU of `name` may run on, from `virsh vcpupin` (index = vCPU).
pub fn vcpu_pins(name: &str) -> Result<Vec<Vec<usize>>, String> {
    let out = virsh(&["vcpupin", name])?;
    let mut pins = Vec::new();
    for line in out.lines() {
        // Rows are "  <vcpu>   <cpulist>"; the header and the dashes do not parse.
        let mut cols = line.split_whitespace();
        let (Some(vcpu), Some(list)) = (cols.next(), cols.next()) else {
            continue;
        };
        let Ok(vcpu) = vcpu.parse::<usize>() else {
            continue;
        };
        if vcpu != pins.len() {
            return Err(format!("virsh vcpupin {name}: vCPU {vcpu} out of order"));
        }
        pins.push(parse_cpulist(list)?);
    }
    Ok(pins)
}
