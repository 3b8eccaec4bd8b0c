//! The guests of one run: starting them (image, domain XML, `virsh create`), waiting for
//! their readiness byte, and removing them again, also after a run that died. Also the
//! host lock that keeps two test runs off the same pCPUs.

use super::virsh::{domain_type, domains_with_prefix, virsh, virsh_command};
use super::{GuestSpec, TEST_PREFIX, check_name, file_stem};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// A started guest.
#[derive(Debug)]
pub struct Guest {
    pub name: String,
    pub vcpus: usize,
    serial: PathBuf,
    image: PathBuf,
    xml: PathBuf,
}

/// The guests of one test (or of the demo) under one name prefix, with their disk images in
/// one directory. Dropping it destroys and undefines every domain with the prefix and
/// removes the directory, also while a failing test unwinds.
pub struct Fleet {
    prefix: String,
    dir: PathBuf,
    guests: Vec<Guest>,
    keep: bool,
    /// Held by test fleets. A field, so it is released only after `drop` has swept.
    host_lock: Option<HostLock>,
}

impl Fleet {
    /// A fleet for one test: prefix `vcst-<pid>-<tag>-`. Waits for the host lock, so
    /// test fleets of different processes never share the pCPUs, then removes what runs
    /// that died left behind, so a Ctrl-C'd suite is cleaned up by the next one.
    pub fn new(tag: &str) -> Result<Fleet, String> {
        let lock = HostLock::acquire()?;
        sweep_dead_runs()?;
        let prefix = format!("{TEST_PREFIX}{}-{tag}-", std::process::id());
        // Ours by construction: anything under it is from a dead run that had our pid.
        sweep(&prefix)?;
        let mut fleet = Fleet::with_prefix(&prefix)?;
        fleet.host_lock = Some(lock);
        Ok(fleet)
    }

    /// A fleet under a fixed prefix (the demo's `vcsdemo-`). Refuses a prefix that names
    /// existing domains: they may be someone's running fleet, and `sweep` removes them.
    pub fn with_prefix(prefix: &str) -> Result<Fleet, String> {
        check_name(prefix)?;
        let existing = domains_with_prefix(prefix, true)?;
        if !existing.is_empty() {
            return Err(format!(
                "domains named {prefix}* exist ({}); remove them first (fleet down {prefix})",
                existing.join(" ")
            ));
        }
        let dir = image_dir(prefix);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Fleet {
            prefix: prefix.to_string(),
            dir,
            guests: Vec::new(),
            keep: false,
            host_lock: None,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The `--domain` glob that matches this fleet and nothing else.
    pub fn glob(&self) -> String {
        format!("{}*", self.prefix)
    }

    pub fn guests(&self) -> &[Guest] {
        &self.guests
    }

    /// Starts guest `prefix + name` (transient: nothing stays defined once it is destroyed)
    /// and returns its full name. It runs its load only after `wait_ready`.
    pub fn start(&mut self, name: &str, spec: &GuestSpec) -> Result<String, String> {
        let img = spec.validate(name)?;
        let full = format!("{}{name}", self.prefix);
        // Two awkward names may sanitize alike: the index keeps their files apart.
        let stem = format!("{}-{}", self.guests.len(), file_stem(name));
        let guest = Guest {
            serial: self.dir.join(format!("{stem}.serial")),
            image: self.dir.join(format!("{stem}.img")),
            xml: self.dir.join(format!("{stem}.xml")),
            name: full,
            vcpus: spec.vcpus.len(),
        };
        // Each domain gets its own image: QEMU takes a write lock on it.
        let write = |p: &Path, bytes: &[u8]| {
            fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        write(&guest.image, &img)?;
        let _ = fs::remove_file(&guest.serial); // a stale 'R' would fake readiness
        write(&guest.xml, domain_xml(&guest, spec).as_bytes())?;
        let xml = guest.xml.to_string_lossy().into_owned();
        let started = if spec.persistent {
            virsh(&["define", &xml]).and_then(|_| virsh(&["start", &guest.name]))
        } else {
            virsh(&["create", &xml])
        };
        if let Err(e) = started {
            let _ = virsh(&["undefine", &guest.name]);
            guest.remove_files();
            return Err(e);
        }
        let full = guest.name.clone();
        self.guests.push(guest);
        Ok(full)
    }

    /// Waits until every started guest has written its readiness byte, i.e. the BIOS is
    /// done (~2.8 s of vCPU time under nested KVM) and the load is what runs.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let waiting: Vec<&str> = self
                .guests
                .iter()
                .filter(|g| !fs::read(&g.serial).is_ok_and(|b| b.first() == Some(&b'R')))
                .map(|g| g.name.as_str())
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {:.0} s (no 'R' on COM1): {}; see /var/log/libvirt/qemu/",
                    timeout.as_secs_f64(),
                    waiting.join(" ")
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Destroys guest `prefix + name` (or the full name) and removes its files.
    pub fn destroy(&mut self, name: &str) -> Result<(), String> {
        let full = if name.starts_with(&self.prefix) {
            name.to_string()
        } else {
            format!("{}{name}", self.prefix)
        };
        let at = self
            .guests
            .iter()
            .position(|g| g.name == full)
            .ok_or_else(|| format!("no guest {full} in this fleet"))?;
        let guest = self.guests.remove(at);
        virsh(&["destroy", &guest.name])?;
        guest.remove_files();
        Ok(())
    }

    /// Leaves the guests running when the fleet is dropped (the example's `up`);
    /// `sweep(prefix)` removes them later.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Sweep by prefix, not by our list, so a guest whose start half-failed goes too.
        // Drop must not panic (it may run during a panic): report and go on.
        if let Err(e) = sweep(&self.prefix) {
            eprintln!("guests: cleanup of {}*: {e}", self.prefix);
        }
    }
}

impl Guest {
    fn remove_files(&self) {
        for p in [&self.image, &self.serial, &self.xml] {
            let _ = fs::remove_file(p);
        }
    }
}

/// Destroys and undefines every domain named `prefix*`, removes its image directory, and
/// returns how many domains it found. Errors from domains that vanish meanwhile are ignored.
pub fn sweep(prefix: &str) -> Result<usize, String> {
    let names = domains_with_prefix(prefix, true)?;
    // A destroy waits ~1.7 s for QEMU to go: run them all at once, not one after another.
    let destroys: Vec<_> = names
        .iter()
        .filter_map(|name| {
            virsh_command(&["destroy", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for mut d in destroys {
        let _ = d.wait();
    }
    for name in &names {
        // Transient domains vanish at destroy, so undefine usually fails: that is fine.
        let _ = virsh(&["undefine", name]);
    }
    let left = domains_with_prefix(prefix, true)?;
    let dir = image_dir(prefix);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    if left.is_empty() {
        Ok(names.len())
    } else {
        Err(format!("could not remove {}", left.join(" ")))
    }
}

/// An exclusive lock on the host's pCPUs for test runs: a second `cargo test` (debug and
/// release suites, two developers) would otherwise load the same pCPUs and each run's
/// scheduler would see the other's guests. flock(2) through `std::fs::File::lock`: the
/// kernel drops it when the process dies, so a killed run never leaves it held.
pub struct HostLock(fs::File);

impl HostLock {
    pub fn acquire() -> Result<HostLock, String> {
        let path = std::env::temp_dir().join("vcpu-scheduler-real-guests.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "guests: waiting for another test run to release {}",
                    path.display()
                );
                file.lock()
                    .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        Ok(HostLock(file))
    }
}

/// Removes domains and image directories of test runs (`vcst-<pid>-`) whose process is gone.
pub fn sweep_dead_runs() -> Result<(), String> {
    let dead = |name: &str| -> Option<String> {
        let pid = name.strip_prefix(TEST_PREFIX)?.split('-').next()?;
        pid.parse::<u32>().ok()?;
        let gone = !Path::new("/proc").join(pid).exists();
        gone.then(|| format!("{TEST_PREFIX}{pid}-"))
    };
    let mut prefixes: Vec<String> = domains_with_prefix(TEST_PREFIX, true)?
        .iter()
        .filter_map(|n| dead(n))
        .collect();
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        prefixes.extend(
            entries
                .flatten()
                .filter_map(|e| dead(&e.file_name().to_string_lossy())),
        );
    }
    prefixes.sort();
    prefixes.dedup();
    for prefix in prefixes {
        eprintln!("guests: removing leftovers of dead run {prefix}*");
        sweep(&prefix)?;
        // Image directories are per test tag: remove every `<prefix><tag>-img`.
        for entry in fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

fn image_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}img"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// Domain XML: 16 MiB, no network, no graphics, one IDE raw disk, COM1 into a file
/// (the readiness byte), initial pins in `<cputune>`, room for hotplugged vCPUs.
fn domain_xml(guest: &Guest, spec: &GuestSpec) -> String {
    let max = spec.max_vcpus.unwrap_or(guest.vcpus).max(guest.vcpus);
    let cputune = match spec.pin.as_deref() {
        None => String::new(),
        Some(list) => {
            let pins: String = (0..guest.vcpus)
                .map(|v| format!("<vcpupin vcpu='{v}' cpuset='{list}'/>"))
                .collect();
            format!("  <cputune>{pins}</cputune>\n")
        }
    };
    let vcpu = if max > guest.vcpus {
        format!(
            "<vcpu placement='static' current='{}'>{max}</vcpu>",
            guest.vcpus
        )
    } else {
        format!("<vcpu placement='static'>{max}</vcpu>")
    };
    format!(
        "<domain type='{kind}'>
  <name>{name}</name>
  <memory unit='MiB'>16</memory>
  {vcpu}
{cputune}  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{image}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
",
        kind = domain_type(),
        name = xml_escape(&guest.name),
        image = xml_escape(&guest.image.to_string_lossy()),
        serial = xml_escape(&guest.serial.to_string_lossy()),
    )
}
