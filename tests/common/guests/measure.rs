//! Measurement, independent of the scheduler: what each vCPU thread did, read from
//! `/proc`, and which pins changed; `virsh vcpupin` only as a cross-check.
//!
//! Everything read while the scheduler runs comes from /proc: each vCPU thread's CPU time
//! (schedstat), the pCPU it is on (stat) and its affinity (status, Cpus_allowed_list: the
//! kernel's view of the pin). virsh runs only to find the vCPU threads of a new domain: a
//! virsh process per domain per poll cost ~15-25 % of one pCPU of a 2-pCPU host, enough
//! noise to push σ over 5 by itself.

use super::virsh::{domains_with_prefix, parse_cpulist, pcpu_count, vcpu_pins, virsh};
use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// How often `Meter::measure` reads the vCPU threads. A vCPU with affinity to several
/// pCPUs is charged, slice by slice, to the pCPU it was on; CFS rarely migrates a thread
/// more often than this, and ~50 reads a second per vCPU cost little.
const POLL: Duration = Duration::from_millis(20);

/// One vCPU thread of a running domain.
#[derive(Clone, Copy, Debug)]
struct VcpuThread {
    tgid: u32,
    tid: u32,
}

impl VcpuThread {
    fn path(&self, file: &str) -> String {
        format!("/proc/{}/task/{}/{file}", self.tgid, self.tid)
    }

    /// Nanoseconds the thread has run: schedstat's first field (ns resolution); if the
    /// kernel lacks schedstat, utime + stime from stat (10 ms ticks, USER_HZ = 100).
    fn cpu_ns(&self) -> Option<u64> {
        if let Ok(s) = fs::read_to_string(self.path("schedstat"))
            && let Some(ns) = s.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            return Some(ns);
        }
        let f = self.stat_fields()?;
        let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
        Some((tick(11)? + tick(12)?) * 10_000_000)
    }

    /// The pCPU the thread is on or last ran on (stat field 39).
    fn on_pcpu(&self) -> Option<usize> {
        self.stat_fields()?.get(36)?.parse().ok()
    }

    /// The pCPUs the thread may run on: what a pin sets (libvirt writes the vCPU's cpuset
    /// cgroup and the thread's affinity; `virsh vcpupin` reads back the same).
    fn pins(&self) -> Option<Vec<usize>> {
        let status = fs::read_to_string(self.path("status")).ok()?;
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        parse_cpulist(list).ok()
    }

    /// Fields of stat after the command name, which holds spaces ("CPU 0/KVM"): index 0
    /// is field 3 (state).
    fn stat_fields(&self) -> Option<Vec<String>> {
        let s = fs::read_to_string(self.path("stat")).ok()?;
        let (_, rest) = s.rsplit_once(')')?;
        Some(rest.split_whitespace().map(String::from).collect())
    }
}

/// vCPU threads of a running domain, in vCPU order, from QEMU's `info cpus`
/// (`* CPU #0: thread_id=8295`).
fn vcpu_threads(name: &str) -> Result<Vec<VcpuThread>, String> {
    let out = virsh(&["qemu-monitor-command", "--hmp", name, "info cpus"])?;
    let mut threads = Vec::new();
    for line in out.lines().filter(|l| l.contains("CPU #")) {
        let tid = line
            .split("thread_id=")
            .nth(1)
            .and_then(|t| t.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("{name}: no thread_id in {line:?}"))?;
        // /proc/<tid>/stat would be the whole process's; the thread's is under its tgid.
        let status = fs::read_to_string(format!("/proc/{tid}/status"))
            .map_err(|e| format!("{name}: vCPU thread {tid}: {e}"))?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("{name}: no Tgid for thread {tid}"))?;
        threads.push(VcpuThread { tgid, tid });
    }
    if threads.is_empty() {
        return Err(format!("{name}: no vCPU in `info cpus`: {out:?}"));
    }
    Ok(threads)
}

/// The running domains named `prefix*` and their vCPU threads.
struct Tracked {
    prefix: String,
    domains: BTreeMap<String, Vec<VcpuThread>>,
}

impl Tracked {
    fn new(prefix: &str) -> Result<Tracked, String> {
        let mut t = Tracked {
            prefix: prefix.to_string(),
            domains: BTreeMap::new(),
        };
        t.refresh()?;
        Ok(t)
    }

    /// Asks virsh which domains run now; finds the threads of new ones (one HMP call each).
    fn refresh(&mut self) -> Result<(), String> {
        let names = domains_with_prefix(&self.prefix, false)?;
        self.domains.retain(|d, _| names.contains(d));
        for name in names {
            if self.domains.contains_key(&name) {
                continue;
            }
            match vcpu_threads(&name) {
                Ok(threads) => {
                    self.domains.insert(name, threads);
                }
                Err(e) if still_running(&name) => return Err(e),
                Err(_) => {} // destroyed since the listing
            }
        }
        Ok(())
    }

    /// Pins of every vCPU from /proc; a domain whose threads are gone was destroyed and is
    /// dropped.
    fn pins(&mut self) -> Pins {
        let mut pins = Pins::new();
        self.domains.retain(|name, threads| {
            let p: Option<Vec<_>> = threads.iter().map(VcpuThread::pins).collect();
            p.map(|p| pins.insert(name.clone(), p)).is_some()
        });
        pins
    }
}

fn still_running(name: &str) -> bool {
    domains_with_prefix(name, false).is_ok_and(|n| n.iter().any(|d| d == name))
}

/// What one vCPU did during a window.
#[derive(Clone, Debug)]
pub struct VcpuReading {
    pub domain: String,
    pub vcpu: usize,
    /// Time on a pCPU / wall time: a fraction of one pCPU.
    pub usage: f64,
    /// Its pins at the end of the window.
    pub pins: Vec<usize>,
    /// The pCPU it ran on most during the window; its pin if it did not run at all.
    pub pcpu: usize,
}

/// One window of measurement over the domains of a prefix.
#[derive(Clone, Debug)]
pub struct Sample {
    pub wall_s: f64,
    pub vcpus: Vec<VcpuReading>,
    /// Per pCPU, the time the vCPUs spent on it / wall time, in percent.
    pub pcpu_pct: Vec<f64>,
    /// Per pCPU, everything the host ran there (/proc/stat, not idle or iowait), in
    /// percent: far above `pcpu_pct` means other work competed with the guests.
    pub host_pct: Vec<f64>,
}

impl Sample {
    /// Population standard deviation of `pcpu_pct`, the scheduler's balance measure.
    pub fn sigma(&self) -> f64 {
        sigma(&self.pcpu_pct)
    }

    /// Multi-line table: per pCPU, its usage and the vCPUs that ran mostly there.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for (p, pct) in self.pcpu_pct.iter().enumerate() {
            let on: Vec<String> = self
                .vcpus
                .iter()
                .filter(|v| v.pcpu == p)
                .map(|v| {
                    let pin = if v.pins.len() == 1 { "" } else { "(unpinned)" };
                    format!("{}/{}={:.0}%{pin}", v.domain, v.vcpu, v.usage * 100.0)
                })
                .collect();
            let host = self.host_pct.get(p).copied().unwrap_or(f64::NAN);
            s += &format!(
                "  pcpu {p}: {pct:5.1}% (host {host:3.0}%)  {}\n",
                on.join(" ")
            );
        }
        s += &format!("  sigma {:.1} over {:.1} s", self.sigma(), self.wall_s);
        s
    }
}

/// Population standard deviation.
pub fn sigma(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Measures the running domains named `prefix*` without the scheduler. Each `measure` is
/// one window; domains that appear or vanish between windows are picked up or dropped.
pub struct Meter {
    tracked: Tracked,
    npcpu: usize,
}

impl Meter {
    pub fn new(prefix: &str) -> Result<Meter, String> {
        Ok(Meter {
            tracked: Tracked::new(prefix)?,
            npcpu: pcpu_count()?,
        })
    }

    /// Blocks for `window`, reading every vCPU thread each `POLL`.
    pub fn measure(&mut self, window: Duration) -> Result<Sample, String> {
        self.tracked.refresh()?;
        let vcpus: Vec<(&String, usize, VcpuThread)> = self
            .tracked
            .domains
            .iter()
            .flat_map(|(d, ts)| ts.iter().enumerate().map(move |(v, t)| (d, v, *t)))
            .collect();
        let read = |t: &VcpuThread| Some((t.cpu_ns()?, t.on_pcpu()?));
        let mut last: Vec<Option<(u64, usize)>> = vcpus.iter().map(|v| read(&v.2)).collect();
        // ns each vCPU spent on each pCPU: the slice since the last read is charged to the
        // pCPU the thread is on now.
        let mut on = vec![vec![0u64; self.npcpu]; vcpus.len()];
        let host0 = host_busy_ticks();
        let start = Instant::now();
        loop {
            thread::sleep(POLL.min(window.saturating_sub(start.elapsed())));
            for (i, v) in vcpus.iter().enumerate() {
                let Some((ns0, _)) = last[i] else { continue }; // thread gone
                last[i] = read(&v.2);
                if let Some((ns, pcpu)) = last[i]
                    && let Some(slot) = on[i].get_mut(pcpu)
                {
                    *slot += ns.saturating_sub(ns0);
                }
            }
            if start.elapsed() >= window {
                break;
            }
        }
        let wall_s = start.elapsed().as_secs_f64();
        let host_pct = match (host0, host_busy_ticks()) {
            // USER_HZ is 100 on Linux: a tick is 10 ms, so ticks per second = percent.
            (Some(a), Some(b)) => a
                .iter()
                .zip(b)
                .map(|(a, b)| (b - a) as f64 / wall_s)
                .collect(),
            _ => Vec::new(),
        };

        let mut sample = Sample {
            wall_s,
            vcpus: Vec::new(),
            pcpu_pct: vec![0.0; self.npcpu],
            host_pct,
        };
        for (i, (domain, vcpu, thread)) in vcpus.iter().enumerate() {
            // Pins last: they are the placement the window ended with. None: destroyed.
            let Some(pins) = thread.pins() else { continue };
            for (p, ns) in on[i].iter().enumerate() {
                sample.pcpu_pct[p] += *ns as f64 / 1e9 / wall_s * 100.0;
            }
            let usage = on[i].iter().sum::<u64>() as f64 / 1e9 / wall_s;
            let pcpu = match pins[..] {
                // A halted vCPU ran nowhere: list it where it is pinned, not on a tie.
                [p] if usage == 0.0 => p,
                _ => (0..self.npcpu).max_by_key(|&p| on[i][p]).unwrap_or(0),
            };
            sample.vcpus.push(VcpuReading {
                domain: domain.to_string(),
                vcpu: *vcpu,
                usage,
                pins,
                pcpu,
            });
        }
        Ok(sample)
    }
}

/// Per pCPU, the non-idle ticks of /proc/stat (everything but idle and iowait).
fn host_busy_ticks() -> Option<Vec<u64>> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let mut busy = Vec::new();
    for line in stat.lines() {
        // "cpuN user nice system idle iowait irq softirq steal ..." (skip the "cpu " total)
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // guest and guest_nice (fields 9, 10) are already inside user and nice.
        let all: u64 = ticks.iter().take(8).sum();
        busy.push(all - ticks.get(3).unwrap_or(&0) - ticks.get(4).unwrap_or(&0));
    }
    Some(busy)
}

/// Pins of every vCPU of a set of domains: domain -> (vCPU -> cpulist).
pub type Pins = BTreeMap<String, Vec<Vec<usize>>>;

/// The pCPU every vCPU of domain `name` is pinned to alone, if there is one such pCPU
/// and the domain has exactly one vCPU.
pub fn pcpu_of(pins: &Pins, name: &str) -> Option<usize> {
    match pins.get(name)?.as_slice() {
        [only] => match only.as_slice() {
            [p] => Some(*p),
            _ => None,
        },
        _ => None,
    }
}

/// Per pCPU, how many vCPUs are pinned to it alone; `None` while any vCPU still has a
/// wider affinity. This is placement, which saturated usage figures can hide.
pub fn pinned_per_pcpu(pins: &Pins, npcpu: usize) -> Option<Vec<usize>> {
    let mut counts = vec![0; npcpu];
    for list in pins.values().flatten() {
        match list[..] {
            [p] if p < npcpu => counts[p] += 1,
            _ => return None,
        }
    }
    Some(counts)
}

/// Counts pin changes by polling the vCPU threads' affinity in /proc, independently of
/// what the scheduler says it did. A change undone before the next poll goes unseen, so
/// poll more often than the scheduler's interval. Destroyed domains drop out by
/// themselves; call `refresh` after starting new ones.
pub struct PinWatch {
    tracked: Tracked,
    pub last: Pins,
    /// vCPUs whose pins differed between two consecutive polls (domains in both).
    pub changes: usize,
}

impl PinWatch {
    pub fn new(prefix: &str) -> Result<PinWatch, String> {
        let mut tracked = Tracked::new(prefix)?;
        let last = tracked.pins();
        Ok(PinWatch {
            tracked,
            last,
            changes: 0,
        })
    }

    /// Picks up domains started since (through virsh), recording their current pins.
    pub fn refresh(&mut self) -> Result<(), String> {
        self.tracked.refresh()?;
        self.poll();
        Ok(())
    }

    /// Finds every domain's vCPU threads again: after a vCPU hotplug, the new thread.
    pub fn rescan(&mut self) -> Result<(), String> {
        self.tracked.domains.clear();
        self.tracked.refresh()?;
        self.last = self.tracked.pins();
        Ok(())
    }

    /// Reads the pins again; returns the changes this poll saw.
    pub fn poll(&mut self) -> usize {
        let now = self.tracked.pins();
        let mut changed = 0;
        for (name, pins) in &now {
            if let Some(old) = self.last.get(name) {
                changed += old.iter().zip(pins).filter(|(a, b)| a != b).count();
            }
        }
        self.changes += changed;
        self.last = now;
        changed
    }

    /// Checks that libvirt's view (`virsh vcpupin`) matches the kernel's affinity that
    /// the polls read: called once, it keeps the cheap /proc reading honest.
    pub fn cross_check(&mut self) -> Result<(), String> {
        self.poll();
        for (name, pins) in &self.last {
            let virsh_pins = vcpu_pins(name)?;
            if &virsh_pins != pins {
                return Err(format!(
                    "{name}: virsh vcpupin says {virsh_pins:?}, /proc affinity {pins:?}"
                ));
            }
        }
        Ok(())
    }
}
