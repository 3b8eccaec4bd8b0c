//! Test support for the real hypervisor: guests that need no OS, started through
//! `virsh -c qemu:///system`, and measurements that do not use the scheduler at all
//! (each vCPU thread's affinity, CPU time and current pCPU from `/proc/<pid>/task/<tid>/`;
//! `virsh vcpupin` as a cross-check).
//!
//! Shared by `tests/real_guests.rs` and `examples/fleet.rs`; std only, so it shells out to
//! `virsh` instead of linking libvirt a second time. Facts it relies on (boot time, image
//! locking, readiness byte) are in `../shared/notes/host-facts.md`.

// Each includer uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The hypervisor every helper talks to; the tests and the demo use it too.
pub const URI: &str = "qemu:///system";

/// Prefix of every test run's domain names: `vcst-<pid>-<tag>-`. The pid lets a later run
/// recognise leftovers of a run that died (Ctrl-C skips `Drop`) and remove them.
pub const TEST_PREFIX: &str = "vcst-";

/// A `virsh` call that hangs (daemon wedged) must fail a test, not stall the suite.
const VIRSH_TIMEOUT_S: &str = "60";

/// What one vCPU of a guest does once its boot sector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `jmp $`: one full pCPU.
    Busy,
    /// `cli; hlt`: sleeps forever, ~0 % of a pCPU.
    Idle,
    /// Spins for this many ms out of every 100 ms (PIT at ~1 kHz), halts for the rest.
    /// Only vCPU 0 can run it: the PIC delivers the timer interrupt to vCPU 0 alone.
    Duty(u8),
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Busy => f.write_str("busy"),
            Load::Idle => f.write_str("idle"),
            Load::Duty(pct) => write!(f, "{pct}%"),
        }
    }
}

impl std::str::FromStr for Load {
    type Err = String;

    /// `busy`, `idle` or `NN%` (0 and 100 become idle and busy).
    fn from_str(s: &str) -> Result<Load, String> {
        match s {
            "busy" => Ok(Load::Busy),
            "idle" => Ok(Load::Idle),
            _ => {
                let pct = s
                    .strip_suffix('%')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|&n| n <= 100)
                    .ok_or_else(|| format!("bad load {s:?}: expected busy, idle or 0%..100%"))?;
                Ok(match pct {
                    0 => Load::Idle,
                    100 => Load::Busy,
                    n => Load::Duty(n),
                })
            }
        }
    }
}

/// One guest to start: the load of each vCPU, and the initial pin of every vCPU
/// (a cpulist such as `0` or `0-1`; `None` leaves them with affinity to all pCPUs).
#[derive(Clone, Debug)]
pub struct GuestSpec {
    pub vcpus: Vec<Load>,
    pub pin: Option<String>,
}

impl GuestSpec {
    /// One vCPU with `load`, affinity to all pCPUs.
    pub fn one(load: Load) -> GuestSpec {
        GuestSpec {
            vcpus: vec![load],
            pin: None,
        }
    }

    /// Checks everything `Fleet::start` needs from a guest called `name`, so a caller can
    /// reject a bad spec before starting anything; returns the boot sector.
    pub fn validate(&self, name: &str) -> Result<[u8; 512], String> {
        check_name(name)?;
        if let Some(list) = &self.pin {
            parse_cpulist(list).map_err(|e| format!("guest {name}: {e}"))?;
        }
        boot_sector(&self.vcpus).map_err(|e| format!("guest {name}: {e}"))
    }

    /// Pins every vCPU to `cpulist` at start.
    pub fn pinned(mut self, cpulist: &str) -> GuestSpec {
        self.pin = Some(cpulist.to_string());
        self
    }
}

// ---------------------------------------------------------------------------------------
// The boot sector
// ---------------------------------------------------------------------------------------

/// Offsets of the parameters patched into the image (see the source in `BOOT_CODE`).
const MODES_AT: usize = 0x1D0; // one byte per vCPU, indexed by initial APIC id
const MAX_VCPUS: usize = 0x1F0 - MODES_AT;
const DIVISOR_AT: usize = 0x1F0; // u16 PIT divisor
const BUSY_TICKS_AT: usize = 0x1F2; // u16
const IDLE_TICKS_AT: usize = 0x1F4; // u16
const NCPUS_AT: usize = 0x1F8; // u8: APs are woken only when > 1
const MODE_BUSY: u8 = 0;
const MODE_IDLE: u8 = 1;
const MODE_DUTY: u8 = 2;
/// 1193182 Hz / 1193 = ~1 kHz, so one tick is ~1 ms and a 100-tick period is ~100 ms:
/// short against the 1 s samples, long against a tick.
const PIT_DIVISOR: u16 = 1193;
const DUTY_PERIOD_TICKS: u16 = 100;

/// Machine code of the one boot sector every guest runs, linked at 0x7C00. It merges
/// `../shared/notes/guests/{busy,idle,duty,smp}.S`; the source is beside each instruction,
/// offsets in hex. Built once with
/// `as --32 guest.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary`, so tests need no
/// binutils. Flow: if more than one vCPU, copy the AP trampoline to 0x8000, enter
/// protected mode to reach the xAPIC, send INIT-SIPI-SIPI to all others, and return to
/// real mode; then COM1 <- 'R' (readiness: the BIOS is done and every vCPU runs its load;
/// written after the wake-up, whose delay loops take ~0.4 s under nested KVM) and vCPU 0
/// runs its mode (busy, idle or duty). Each AP reads its APIC id with CPUID and spins or halts according
/// to its mode byte (QEMU numbers APIC ids like libvirt's vCPUs when no topology is given).
#[rustfmt::skip]
const BOOT_CODE: &[u8] = &[
    // vCPU 0 (BSP): normalise CS:IP, flat real-mode segments
    0xEA, 0x05, 0x7C, 0x00, 0x00,                    // 000  _start: ljmp $0, $s2
    0xFA,                                            // 005  s2: cli
    0x31, 0xC0,                                      // 006  xor %ax, %ax
    0x8E, 0xD8,                                      // 008  mov %ax, %ds
    0x8E, 0xC0,                                      // 00A  mov %ax, %es
    0x8E, 0xD0,                                      // 00C  mov %ax, %ss
    0xBC, 0x00, 0x7C,                                // 00E  mov $0x7c00, %sp
    // more than one vCPU? copy the AP trampoline and go to protected mode
    0x80, 0x3E, 0xF8, 0x7D, 0x01,                    // 011  cmpb $1, ncpus
    0x0F, 0x86, 0x80, 0x00,                          // 016  jbe bsp
    0xBE, 0x00, 0x7D,                                // 01A  mov $ap_start, %si
    0xBF, 0x00, 0x80,                                // 01D  mov $0x8000, %di
    0xB9, 0x1D, 0x00,                                // 020  mov $(ap_end - ap_start), %cx
    0xF3, 0xA4,                                      // 023  rep movsb
    0x66, 0x0F, 0x01, 0x16, 0x48, 0x7D,              // 025  lgdtl gdtr
    0x0F, 0x20, 0xC0,                                // 02B  mov %cr0, %eax
    0x66, 0x83, 0xC8, 0x01,                          // 02E  or $1, %eax
    0x0F, 0x22, 0xC0,                                // 032  mov %eax, %cr0
    0x66, 0xEA, 0x3D, 0x7C, 0x00, 0x00, 0x08, 0x00,  // 035  ljmpl $0x08, $pm
    // 32-bit: INIT, wait, SIPI (vector 8 = 0x8000), wait, SIPI, to all but self
    0x66, 0xB8, 0x10, 0x00,                          // 03D  pm: mov $0x10, %ax
    0x8E, 0xD8,                                      // 041  mov %ax, %ds
    0x8E, 0xC0,                                      // 043  mov %ax, %es
    0x8E, 0xD0,                                      // 045  mov %ax, %ss
    0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x00, 0x45, 0x0C, 0x00, // 047  movl $0x000C4500, 0xFEE00300
    0xB9, 0x00, 0x00, 0x10, 0x00,                    // 051  mov $0x100000, %ecx
    0xE2, 0xFE,                                      // 056  1: loop 1b
    0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x08, 0x46, 0x0C, 0x00, // 058  movl $0x000C4608, 0xFEE00300
    0xB9, 0x00, 0x00, 0x10, 0x00,                    // 062  mov $0x100000, %ecx
    0xE2, 0xFE,                                      // 067  2: loop 2b
    0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x08, 0x46, 0x0C, 0x00, // 069  movl $0x000C4608, 0xFEE00300
    0xEA, 0x7A, 0x7C, 0x00, 0x00, 0x18, 0x00,        // 073  ljmp $0x18, $pm16
    // back to real mode through a 16-bit segment so the BIOS IVT works again
    0xB8, 0x20, 0x00,                                // 07A  pm16: mov $0x20, %ax
    0x8E, 0xD8,                                      // 07D  mov %ax, %ds
    0x8E, 0xC0,                                      // 07F  mov %ax, %es
    0x8E, 0xD0,                                      // 081  mov %ax, %ss
    0x0F, 0x20, 0xC0,                                // 083  mov %cr0, %eax
    0x66, 0x83, 0xE0, 0xFE,                          // 086  and $0xFFFFFFFE, %eax
    0x0F, 0x22, 0xC0,                                // 08A  mov %eax, %cr0
    0xEA, 0x92, 0x7C, 0x00, 0x00,                    // 08D  ljmp $0, $rm
    0x31, 0xC0,                                      // 092  rm: xor %ax, %ax
    0x8E, 0xD8,                                      // 094  mov %ax, %ds
    0x8E, 0xC0,                                      // 096  mov %ax, %es
    0x8E, 0xD0,                                      // 098  mov %ax, %ss
    // every vCPU now runs: readiness byte on COM1, then vCPU 0 runs its own mode
    0xBA, 0xF8, 0x03,                                // 09A  bsp: mov $0x3f8, %dx
    0xB0, 0x52,                                      // 09D  mov $'R', %al
    0xEE,                                            // 09F  out %al, %dx
    0xA0, 0xD0, 0x7D,                                // 0A0  mov modes, %al
    0x3C, 0x01,                                      // 0A3  cmp $1, %al
    0x74, 0x06,                                      // 0A5  je idle
    0x3C, 0x02,                                      // 0A7  cmp $2, %al
    0x74, 0x06,                                      // 0A9  je duty
    0xEB, 0xFE,                                      // 0AB  busy: jmp busy
    0xFA,                                            // 0AD  idle: cli
    0xF4,                                            // 0AE  hlt
    0xEB, 0xFC,                                      // 0AF  jmp idle
    // duty cycle: PIT IRQ0 counts ticks; spin busy_ticks, hlt idle_ticks
    0xC7, 0x06, 0x20, 0x00, 0xF4, 0x7C,              // 0B1  duty: movw $isr, 0x20
    0xC7, 0x06, 0x22, 0x00, 0x00, 0x00,              // 0B7  movw $0, 0x22
    0xB0, 0x34,                                      // 0BD  mov $0x34, %al
    0xE6, 0x43,                                      // 0BF  out %al, $0x43
    0xA1, 0xF0, 0x7D,                                // 0C1  mov divisor, %ax
    0xE6, 0x40,                                      // 0C4  out %al, $0x40
    0x88, 0xE0,                                      // 0C6  mov %ah, %al
    0xE6, 0x40,                                      // 0C8  out %al, $0x40
    0xB0, 0xFE,                                      // 0CA  mov $0xFE, %al
    0xE6, 0x21,                                      // 0CC  out %al, $0x21
    0xB0, 0xFF,                                      // 0CE  mov $0xFF, %al
    0xE6, 0xA1,                                      // 0D0  out %al, $0xA1
    0xFB,                                            // 0D2  sti
    0x8B, 0x1E, 0xF6, 0x7D,                          // 0D3  dmain: mov ticks, %bx
    0xA1, 0xF6, 0x7D,                                // 0D7  dbusy: mov ticks, %ax
    0x29, 0xD8,                                      // 0DA  sub %bx, %ax
    0x3B, 0x06, 0xF2, 0x7D,                          // 0DC  cmp busy_ticks, %ax
    0x72, 0xF5,                                      // 0E0  jb dbusy
    0x8B, 0x1E, 0xF6, 0x7D,                          // 0E2  mov ticks, %bx
    0xF4,                                            // 0E6  didle: hlt
    0xA1, 0xF6, 0x7D,                                // 0E7  mov ticks, %ax
    0x29, 0xD8,                                      // 0EA  sub %bx, %ax
    0x3B, 0x06, 0xF4, 0x7D,                          // 0EC  cmp idle_ticks, %ax
    0x72, 0xF4,                                      // 0F0  jb didle
    0xEB, 0xDF,                                      // 0F2  jmp dmain
    // IRQ0 handler
    0x2E, 0xFF, 0x06, 0xF6, 0x7D,                    // 0F4  isr: incw %cs:ticks
    0x50,                                            // 0F9  push %ax
    0xB0, 0x20,                                      // 0FA  mov $0x20, %al
    0xE6, 0x20,                                      // 0FC  out %al, $0x20
    0x58,                                            // 0FE  pop %ax
    0xCF,                                            // 0FF  iret
    // AP trampoline (copied to 0x8000, runs at 0800:0000): mode by APIC id
    0xFA,                                            // 100  cli
    0x31, 0xC0,                                      // 101  xor %ax, %ax
    0x8E, 0xD8,                                      // 103  mov %ax, %ds
    0x66, 0xB8, 0x01, 0x00, 0x00, 0x00,              // 105  mov $1, %eax
    0x0F, 0xA2,                                      // 10B  cpuid
    0x66, 0xC1, 0xEB, 0x18,                          // 10D  shr $24, %ebx
    0x80, 0xBF, 0xD0, 0x7D, 0x01,                    // 111  cmpb $1, modes(%bx)
    0x74, 0x02,                                      // 116  je ap_idle
    0xEB, 0xFE,                                      // 118  ap_busy: jmp ap_busy
    0xF4,                                            // 11A  ap_idle: hlt
    0xEB, 0xFD,                                      // 11B  jmp ap_idle
    // GDT: flat 32-bit code 0x08 and data 0x10, 16-bit code 0x18 and data 0x20
    0x8D, 0x74, 0x00,                                // 11D  .p2align 3
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 120  gdt: .quad 0
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xCF, 0x00,  // 128  .quad 0x00CF9A000000FFFF
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00,  // 130  .quad 0x00CF92000000FFFF
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0x00, 0x00,  // 138  .quad 0x00009A000000FFFF
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0x00, 0x00,  // 140  .quad 0x000092000000FFFF
    0x27, 0x00,                                      // 148  gdtr: .word gdtr - gdt - 1
    0x20, 0x7D, 0x00, 0x00,                          // 14A  .long gdt
];

/// The 512-byte boot sector for a guest whose vCPU `i` runs `loads[i]`.
pub fn boot_sector(loads: &[Load]) -> Result<[u8; 512], String> {
    if loads.is_empty() || loads.len() > MAX_VCPUS {
        return Err(format!(
            "a guest needs 1..={MAX_VCPUS} vCPUs, got {}",
            loads.len()
        ));
    }
    let mut img = [0u8; 512];
    img[..BOOT_CODE.len()].copy_from_slice(BOOT_CODE);
    let mut busy_ticks = 0u16;
    for (i, load) in loads.iter().enumerate() {
        img[MODES_AT + i] = match *load {
            Load::Busy => MODE_BUSY,
            Load::Idle => MODE_IDLE,
            Load::Duty(pct) if i == 0 && (1..=99).contains(&pct) => {
                busy_ticks = u16::from(pct);
                MODE_DUTY
            }
            Load::Duty(pct) if i == 0 => return Err(format!("duty {pct}% not in 1..=99")),
            Load::Duty(_) => return Err(format!("vCPU {i}: only vCPU 0 can run a duty cycle")),
        };
    }
    img[DIVISOR_AT..DIVISOR_AT + 2].copy_from_slice(&PIT_DIVISOR.to_le_bytes());
    img[BUSY_TICKS_AT..BUSY_TICKS_AT + 2].copy_from_slice(&busy_ticks.to_le_bytes());
    let idle_ticks = DUTY_PERIOD_TICKS - busy_ticks;
    img[IDLE_TICKS_AT..IDLE_TICKS_AT + 2].copy_from_slice(&idle_ticks.to_le_bytes());
    img[NCPUS_AT] = u8::try_from(loads.len()).expect("checked against MAX_VCPUS above");
    img[510] = 0x55;
    img[511] = 0xAA;
    Ok(img)
}

// ---------------------------------------------------------------------------------------
// virsh
// ---------------------------------------------------------------------------------------

/// `virsh -c URI ARGS` under coreutils' timeout: std has no wait-with-deadline, and a
/// wedged libvirtd must not hang us.
fn virsh_command(args: &[&str]) -> Command {
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

// ---------------------------------------------------------------------------------------
// Fleet: the guests of one run
// ---------------------------------------------------------------------------------------

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
        let guest = Guest {
            serial: self.dir.join(format!("{name}.serial")),
            image: self.dir.join(format!("{name}.img")),
            xml: self.dir.join(format!("{name}.xml")),
            name: full,
            vcpus: spec.vcpus.len(),
        };
        // Each domain gets its own image: QEMU takes a write lock on it.
        let write = |p: &Path, bytes: &[u8]| {
            fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        write(&guest.image, &img)?;
        let _ = fs::remove_file(&guest.serial); // a stale 'R' would fake readiness
        write(
            &guest.xml,
            domain_xml(&guest, spec.pin.as_deref()).as_bytes(),
        )?;
        let xml = guest.xml.to_string_lossy().into_owned();
        if let Err(e) = virsh(&["create", &xml]) {
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

/// Names go into XML, file names and shell globs unescaped: allow only a safe alphabet.
fn check_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if name.is_empty() || !name.chars().all(ok) {
        return Err(format!(
            "bad guest name {name:?}: use letters, digits, '-', '_', '.'"
        ));
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// Domain XML: 16 MiB, no network, no graphics, one IDE raw disk, COM1 into a file
/// (the readiness byte), initial pins in `<cputune>`.
fn domain_xml(guest: &Guest, pin: Option<&str>) -> String {
    let cputune = match pin {
        None => String::new(),
        Some(list) => {
            let pins: String = (0..guest.vcpus)
                .map(|v| format!("<vcpupin vcpu='{v}' cpuset='{list}'/>"))
                .collect();
            format!("  <cputune>{pins}</cputune>\n")
        }
    };
    format!(
        "<domain type='{kind}'>
  <name>{name}</name>
  <memory unit='MiB'>16</memory>
  <vcpu placement='static'>{vcpus}</vcpu>
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
        name = guest.name,
        vcpus = guest.vcpus,
        image = xml_escape(&guest.image.to_string_lossy()),
        serial = xml_escape(&guest.serial.to_string_lossy()),
    )
}

// ---------------------------------------------------------------------------------------
// Measurement, independent of the scheduler
// ---------------------------------------------------------------------------------------
//
// Everything read while the scheduler runs comes from /proc: each vCPU thread's CPU time
// (schedstat), the pCPU it is on (stat) and its affinity (status, Cpus_allowed_list: the
// kernel's view of the pin). virsh runs only to find the vCPU threads of a new domain: a
// virsh process per domain per poll cost ~15-25 % of one pCPU of a 2-pCPU host, enough
// noise to push σ over 5 by itself.

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
