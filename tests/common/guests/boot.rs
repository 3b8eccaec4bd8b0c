//! The boot sector: the machine code every guest runs (assembled from `guest.S` in this
//! directory) and the parameters patched into it per guest. Knows nothing of virsh.

use super::Load;

/// Offsets of the parameters patched into the image (the labels at the end of `guest.S`).
/// Modes are indexed by initial APIC id, which QEMU numbers like libvirt's vCPUs when the
/// domain gives no CPU topology (ours never does).
const MODES_AT: usize = 0x1D0; // one byte per vCPU
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

/// Machine code of the one boot sector every guest runs, linked at 0x7C00: what
/// `guest.S` in this directory assembles to (the build command is in its header), with
/// the source beside each instruction and offsets in hex. Kept as bytes so starting a
/// guest needs no assembler; `boot_code_matches_guest_s` in `tests/real_guests.rs`
/// assembles the source to check that the two agree.
/// Flow: if more than one vCPU, wake the others with INIT-SIPI-SIPI (a boot sector only
/// runs on vCPU 0) from protected mode and return to real mode; then COM1 <- 'R', the
/// readiness byte, written after the wake-up (its delay loops take ~0.4 s under nested
/// KVM) so that it means every vCPU runs its load; then vCPU 0 runs its mode (busy, idle
/// or duty) and each AP spins or halts by the mode byte of its APIC id.
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
