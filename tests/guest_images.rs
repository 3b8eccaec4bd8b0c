//! The test guests' images and helpers, checked without a hypervisor: the boot sector's
//! layout, its code against its assembly source, and the cpulist and load parsers.

mod common;

use common::guests::{self, Load};
use std::process::Command;

/// The image layout the boot code reads its parameters from (no hypervisor needed).
#[test]
fn boot_sector_layout() {
    let img = guests::boot_sector(&[Load::Duty(30), Load::Idle, Load::Busy]).expect("valid");
    assert_eq!(&img[510..], &[0x55, 0xAA], "boot signature");
    assert_eq!(&img[..5], &[0xEA, 0x05, 0x7C, 0x00, 0x00], "ljmp 0000:7C05");
    assert_eq!(
        &img[0x9A..0xA0],
        &[0xBA, 0xF8, 0x03, 0xB0, 0x52, 0xEE],
        "COM1 <- 'R'"
    );
    assert_eq!(
        &img[0x1D0..0x1D4],
        &[2, 1, 0, 0],
        "per-vCPU modes: duty, idle, busy"
    );
    assert_eq!(
        &img[0x1F0..0x1F6],
        &[0xA9, 0x04, 30, 0, 70, 0],
        "PIT divisor, busy, idle"
    );
    assert_eq!(img[0x1F8], 3, "vCPU count");
    assert!(
        guests::boot_sector(&[Load::Busy, Load::Duty(50)]).is_err(),
        "duty off vCPU 0"
    );
    assert!(guests::boot_sector(&[]).is_err());
    assert!(guests::boot_sector(&[Load::Busy; 33]).is_err());
}

/// `guest.S` assembles to exactly the code `boot_sector` writes, so the bytes the guests
/// run and the source a reader edits cannot drift apart. Needs `as` and `ld` (binutils,
/// which linking Rust on Linux already uses), not a hypervisor.
#[test]
fn boot_code_matches_guest_s() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/guests/guest.S");
    let dir = std::env::temp_dir().join(format!("vcpu-scheduler-guest-s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let (obj, bin) = (dir.join("guest.o"), dir.join("guest.bin"));
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (apt-get install binutils): {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("as").args(["--32", src, "-o"]).arg(&obj));
    run(Command::new("ld")
        .args(["-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary"])
        .arg(&obj)
        .arg("-o")
        .arg(&bin));
    let built = std::fs::read(&bin).expect("read the assembled boot sector");
    let _ = std::fs::remove_dir_all(&dir);

    // Everything but the parameters (0x1D0..0x1F9), which boot_sector patches per guest.
    let img = guests::boot_sector(&[Load::Busy]).expect("valid");
    assert_eq!(
        built.len(),
        img.len(),
        "guest.S must fill exactly 512 bytes"
    );
    let differs = |range: std::ops::Range<usize>| {
        range.clone().find(|&i| built[i] != img[i]).map(|i| {
            format!(
                "first difference at {i:#05x}: guest.S {:#04x}, boot.rs {:#04x}",
                built[i], img[i]
            )
        })
    };
    assert_eq!(differs(0..0x1D0), None, "code differs");
    assert_eq!(differs(0x1FE..512), None, "signature differs");
}

#[test]
fn cpulists_parse_as_virsh_prints_them() {
    assert_eq!(guests::parse_cpulist("0").unwrap(), [0]);
    assert_eq!(guests::parse_cpulist("0-1").unwrap(), [0, 1]);
    assert_eq!(guests::parse_cpulist("0,2-3").unwrap(), [0, 2, 3]);
    assert!(guests::parse_cpulist("3-1").is_err());
    assert!(guests::parse_cpulist("x").is_err());
    assert_eq!("busy".parse::<Load>(), Ok(Load::Busy));
    assert_eq!("30%".parse::<Load>(), Ok(Load::Duty(30)));
    assert_eq!("100%".parse::<Load>(), Ok(Load::Busy));
    assert!("101%".parse::<Load>().is_err());
}
