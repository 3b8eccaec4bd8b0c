//! Scenario files for the simulator: parsed and checked whole before anything runs.
//!
//! One directive a line; blank lines and `#` comments (also at the end of a line) are
//! ignored:
//!
//! ```text
//! pcpus 4                       # number of pCPUs (this or topology, before any vm or at line)
//! topology 2 2 1                # optional: sockets cores threads (here 2 nodes of 2 cores)
//! ticks 30                      # how long to run (default 30)
//! noise 5                       # optional: ± % relative noise on measured usage
//! delay off                     # optional: the host reports no run-queue delay
//! seed 7                        # optional: RNG seed (default 1)
//! vm web 100,40 pin 0           # a domain: one demand % per vCPU; pin = cpulist for all its vCPUs
//! vm db 60,60,60,60             # no pin: affinity to every pCPU
//! vm cache 30,30 mem 1          # its memory is on NUMA node 1
//! at 10 load web 20,20          # from tick 10: new demands
//! at 12 start cache 90 pin 1    # a domain appears
//! at 15 stop db                 # a domain disappears
//! at 20 vcpus web 20,20,50      # vCPU hotplug: web now has three vCPUs
//! host 0 80                     # load from outside any domain: 80 % of pCPU 0
//! at 25 host 0 10               # from tick 25: 10 % of it
//! ```
//!
//! `host PCPU PCT` is load that no domain carries (a storage daemon, a backup job,
//! QEMU's I/O threads): the simulated host shows it as busy time of that pCPU that the
//! vCPUs did not use, and it competes for the pCPU like one more thread, so the vCPUs
//! there get less. One `host` line per pCPU; `at T host` changes it.
//!
//! Ticks count from 1; an event `at T` takes effect before the interval of tick `T` runs,
//! so tick `T`'s measurement already sees it. Events of one tick apply in file order.
//! Cpulists are written as virsh writes them: `0`, `0-3`, `0,2,5-7`, `all`.
//!
//! `topology SOCKETS CORES THREADS` gives the host a shape: SOCKETS × CORES × THREADS
//! pCPUs, pCPU `((socket × CORES) + core) × THREADS + thread`, one NUMA node per socket
//! ([`Topology::from_shape`]). It sets `pcpus` when there is no `pcpus` line, and must
//! agree with it when there is one, whichever comes first. Without it the host is flat:
//! one node (0), one thread per core. `mem NODE` on a `vm` or `at … start` line (after
//! the demands, before or after `pin`) names the node holding the domain's memory.
//!
//! Limits, so that no file can ask for unbounded time or memory: a file of at most
//! [`MAX_SCENARIO_BYTES`], at most [`MAX_TICKS`] ticks, [`MAX_PCPUS`] pCPUs,
//! [`MAX_DOMAIN_VCPUS`] vCPUs per domain and [`MAX_VCPUS`] vCPUs running at once.
//!
//! Any mistake rejects the file with a [`ScenarioError`] whose `Display` is one line,
//! `FILE:LINE: reason`. Nothing here runs the simulation; see [`crate::service::simulate`].

use std::fmt;
use std::path::Path;

mod parse;
pub mod random;

use parse::Parser;

use crate::cpumap::CpuMap;
use crate::files::{Shown, read_regular};
use crate::topology::Topology;

/// A scenario file larger than this is refused before it is read: 16 MiB is a few
/// hundred thousand lines, far beyond any hand-written or recorded host.
pub const MAX_SCENARIO_BYTES: u64 = 16 << 20;
/// Ticks run when the file has no `ticks` line.
pub const DEFAULT_TICKS: u64 = 30;
/// Seed of the noise generator when the file has no `seed` line.
pub const DEFAULT_SEED: u64 = 1;
/// Larger than any host libvirt runs on; stops a typo from sizing huge masks.
pub const MAX_PCPUS: usize = crate::cpumap::MAX_CPUS;
/// Most sockets (NUMA nodes) a `topology` line may give: as many as a live host may have.
pub const MAX_NODES: usize = crate::topology::MAX_NODES;
/// Most hardware threads per core a `topology` line may give (SMT8 is the widest shipped).
pub const MAX_THREADS: usize = 8;
/// Most ticks a file may ask for: 1,000,000 (11.6 days of virtual time at one tick a
/// second; the run's history is about 24 bytes a tick, 24 MB at most).
pub const MAX_TICKS: u64 = 1_000_000;
/// Most vCPUs of one domain: 4,096, KVM's limit (`KVM_MAX_VCPUS` on x86-64).
pub const MAX_DOMAIN_VCPUS: usize = 4096;
/// Most vCPUs running at once: 65,536, eight times the largest host of the bench (256
/// pCPUs × 32 vCPUs); a tick of the simulated host and the scheduler over that many
/// takes well under a second.
pub const MAX_VCPUS: usize = 65_536;

/// A checked scenario: every name, count and tick in it is consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub pcpus: usize,
    /// The host's shape from a `topology` line (`pcpus` agrees with it); `None`: flat.
    pub topology: Option<Shape>,
    pub ticks: u64,
    /// ± percent of relative noise on each interval's measured usage; 0 for none.
    pub noise_pct: f64,
    pub seed: u64,
    /// Whether the simulated host reports run-queue delay, so demand is measured (the
    /// default, as on QEMU) or must be estimated from usage (`delay off`).
    pub reports_delay: bool,
    /// Domains running from the start, in file order.
    pub domains: Vec<DomainSpec>,
    /// Load from outside any domain on some pCPUs from the start (`host` lines).
    pub host: Vec<HostLoad>,
    /// In the order they apply: by tick, then by line.
    pub events: Vec<Event>,
}

/// A domain as a `vm` or `at … start` line describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSpec {
    pub name: String,
    /// One demand per vCPU, percent of one pCPU (0–100).
    pub demands_pct: Vec<f64>,
    /// Affinity of every vCPU (every pCPU when the line has no `pin`).
    pub affinity: CpuMap,
    /// The NUMA node holding its memory (`mem NODE`), below the scenario's node count.
    pub mem_node: Option<u16>,
}

/// A host's shape as a `topology` line gives it: `sockets` × `cores` × `threads` pCPUs,
/// one NUMA node per socket. Each is at least 1, `sockets` at most [`MAX_NODES`] and
/// `threads` at most [`MAX_THREADS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub sockets: usize,
    /// Cores per socket.
    pub cores: usize,
    /// Hardware threads per core.
    pub threads: usize,
}

impl Shape {
    pub fn pcpus(&self) -> usize {
        self.sockets * self.cores * self.threads
    }

    pub fn topology(&self) -> Topology {
        Topology::from_shape(self.sockets, self.cores, self.threads)
    }
}

/// `SOCKETS CORES THREADS`, as the `topology` line writes it.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.sockets, self.cores, self.threads)
    }
}

/// `host PCPU PCT`: load from outside any domain on one pCPU, percent of it (0–100).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLoad {
    pub pcpu: usize,
    pub pct: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Applies before the interval of this tick (1-based).
    pub tick: u64,
    /// Where it was written, for messages.
    pub line: usize,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// New demands for every vCPU of a running domain.
    Load {
        name: String,
        demands_pct: Vec<f64>,
    },
    /// vCPU hotplug: the domain now has one vCPU per demand. vCPUs added get an
    /// affinity of every pCPU; removed ones are the highest numbered.
    Vcpus {
        name: String,
        demands_pct: Vec<f64>,
    },
    Start(DomainSpec),
    Stop {
        name: String,
    },
    /// The host's own load on one pCPU changes.
    Host(HostLoad),
}

/// Why a scenario file was rejected. `Display`: `FILE:LINE: reason` (`FILE: reason` when
/// the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// NUMA nodes of the simulated host: one per socket, 1 without a `topology` line.
    pub fn nodes(&self) -> usize {
        self.topology.map_or(1, |t| t.sockets)
    }

    /// Read and parse a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = Shown(path).to_string();
        let fail = |reason: String| ScenarioError {
            file: file.clone(),
            line: None,
            reason,
        };
        let bytes = read_regular(path, MAX_SCENARIO_BYTES)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to() + 1
            ))
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parse the text of a scenario; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let err = |line: usize, reason: String| ScenarioError {
            file: file.to_owned(),
            line: Some(line),
            reason,
        };
        let mut p = Parser::default();
        let mut last_line = 1;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            last_line = line;
            let content = raw.split('#').next().unwrap_or("");
            let words: Vec<&str> = content.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            p.directive(line, &words).map_err(|r| err(line, r))?;
        }
        p.finish()
            .map_err(|(line, r)| err(line.unwrap_or(last_line), r))
    }
}

/// Writes the scenario back in the file format (`parse` of the output gives it back),
/// so a generated scenario can be saved and replayed.
impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pcpus {}", self.pcpus)?;
        if let Some(shape) = self.topology {
            writeln!(f, "topology {shape}")?;
        }
        writeln!(f, "ticks {}", self.ticks)?;
        if self.noise_pct > 0.0 {
            writeln!(f, "noise {}", self.noise_pct)?;
        }
        if !self.reports_delay {
            writeln!(f, "delay off")?;
        }
        writeln!(f, "seed {}", self.seed)?;
        for d in &self.domains {
            writeln!(f, "vm {}", DomainLine(d))?;
        }
        for h in &self.host {
            writeln!(f, "host {} {}", h.pcpu, h.pct)?;
        }
        for e in &self.events {
            write!(f, "at {} ", e.tick)?;
            match &e.action {
                Action::Load { name, demands_pct } => {
                    writeln!(f, "load {name} {}", Demands(demands_pct))?
                }
                Action::Vcpus { name, demands_pct } => {
                    writeln!(f, "vcpus {name} {}", Demands(demands_pct))?
                }
                Action::Start(d) => writeln!(f, "start {}", DomainLine(d))?,
                Action::Stop { name } => writeln!(f, "stop {name}")?,
                Action::Host(h) => writeln!(f, "host {} {}", h.pcpu, h.pct)?,
            }
        }
        Ok(())
    }
}

struct DomainLine<'a>(&'a DomainSpec);

impl fmt::Display for DomainLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{} {}", d.name, Demands(&d.demands_pct))?;
        if d.affinity.count() < d.affinity.ncpus() {
            write!(f, " pin {}", d.affinity)?;
        }
        if let Some(node) = d.mem_node {
            write!(f, " mem {node}")?;
        }
        Ok(())
    }
}

struct Demands<'a>(&'a [f64]);

impl fmt::Display for Demands<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
