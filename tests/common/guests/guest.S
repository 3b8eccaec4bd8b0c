# The boot sector every test guest runs: a 512-byte raw disk, no OS. boot.rs carries the
# bytes this assembles to (BOOT_CODE), so starting a guest needs no assembler; after
# editing this file, build it and copy the new bytes there (the boot_code_matches_guest_s
# test in tests/real_guests.rs fails until they agree):
#
#   as --32 guest.S -o guest.o && ld -m elf_i386 -Ttext 0x7c00 --oformat binary guest.o -o guest.bin
#
# Flow: if more than one vCPU, copy the AP trampoline to 0x8000, enter protected mode to
# reach the xAPIC, send INIT-SIPI-SIPI to all other vCPUs, return to real mode. Then write
# 'R' to COM1 (readiness: the BIOS is done and every vCPU runs its load; written after the
# wake-up, whose delay loops take ~0.4 s under nested KVM) and vCPU 0 runs its mode. Each
# AP reads its APIC id with CPUID and spins or halts by its mode byte (QEMU numbers APIC
# ids like libvirt's vCPUs when the domain gives no topology).
#
# Parameters sit at fixed offsets from 0x1D0 so boot.rs can patch one image per guest;
# here they are zero.

        .code16
        .globl _start

# vCPU 0 (BSP): normalise CS:IP to 0000:7Cxx, flat real-mode segments
_start: ljmp  $0, $s2
s2:     cli
        xor   %ax, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss
        mov   $0x7c00, %sp

# more than one vCPU? copy the AP trampoline and go to protected mode
        cmpb  $1, ncpus
        jbe   bsp
        mov   $ap_start, %si           # SIPI vector 0x08 starts APs at 0x8000
        mov   $0x8000, %di
        mov   $(ap_end - ap_start), %cx
        rep movsb
        lgdtl gdtr
        mov   %cr0, %eax
        or    $1, %eax
        mov   %eax, %cr0
        ljmpl $0x08, $pm

# 32-bit: the xAPIC's ICR is MMIO at 0xFEE00300, out of real mode's reach.
# INIT, wait, SIPI (vector 8 = 0x8000), wait, SIPI, each to all but self.
        .code32
pm:     mov   $0x10, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss
        movl  $0x000C4500, 0xFEE00300  # INIT IPI, all excluding self
        mov   $0x100000, %ecx
1:      loop  1b
        movl  $0x000C4608, 0xFEE00300  # STARTUP IPI, vector 0x08
        mov   $0x100000, %ecx
2:      loop  2b
        movl  $0x000C4608, 0xFEE00300  # second SIPI, as the MP spec asks
        ljmp  $0x18, $pm16

# back to real mode through a 16-bit segment, so the BIOS IVT works again
        .code16
pm16:   mov   $0x20, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss
        mov   %cr0, %eax
        and   $0xFFFFFFFE, %eax
        mov   %eax, %cr0
        ljmp  $0, $rm
rm:     xor   %ax, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss

# every vCPU now runs: readiness byte on COM1, then vCPU 0 runs its own mode
bsp:    mov   $0x3f8, %dx              # COM1 <- 'R' (BA F8 03 B0 52 EE)
        mov   $'R', %al
        out   %al, %dx
        mov   modes, %al
        cmp   $1, %al
        je    idle
        cmp   $2, %al
        je    duty
busy:   jmp   busy                     # one full pCPU
idle:   cli                            # halt with IRQs off: sleeps forever
        hlt
        jmp   idle

# duty cycle: PIT channel 0 at `divisor` (1193 -> ~1 kHz) raises IRQ0 (vector 8 in the
# BIOS's PIC map); spin for busy_ticks, hlt for idle_ticks, forever
duty:   movw  $isr, 0x20               # IVT[8].offset
        movw  $0, 0x22                 # IVT[8].segment
        mov   $0x34, %al               # PIT ch0, lo/hi byte, mode 2 (rate generator)
        out   %al, $0x43
        mov   divisor, %ax
        out   %al, $0x40
        mov   %ah, %al
        out   %al, $0x40
        mov   $0xFE, %al               # master PIC: unmask IRQ0 only
        out   %al, $0x21
        mov   $0xFF, %al               # slave PIC: mask all
        out   %al, $0xA1
        sti
dmain:  mov   ticks, %bx
dbusy:  mov   ticks, %ax               # busy phase: spin reading the tick counter
        sub   %bx, %ax
        cmp   busy_ticks, %ax
        jb    dbusy
        mov   ticks, %bx
didle:  hlt                            # idle phase: sleep until the next IRQ0
        mov   ticks, %ax
        sub   %bx, %ax
        cmp   idle_ticks, %ax
        jb    didle
        jmp   dmain

# IRQ0 handler
isr:    incw  %cs:ticks
        push  %ax
        mov   $0x20, %al               # EOI to the master PIC
        out   %al, $0x20
        pop   %ax
        iret

# AP trampoline, copied to 0x8000 and run at 0800:0000: mode by APIC id.
# Position-independent: only relative jumps, and data through %ds = 0.
ap_start:
        cli
        xor   %ax, %ax
        mov   %ax, %ds
        mov   $1, %eax
        cpuid
        shr   $24, %ebx                # initial APIC id
        cmpb  $1, modes(%bx)
        je    ap_idle
ap_busy:
        jmp   ap_busy
ap_idle:
        hlt
        jmp   ap_idle
ap_end:

# GDT: flat 32-bit code 0x08 and data 0x10, 16-bit code 0x18 and data 0x20
        .p2align 3
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
        .quad 0x00009A000000FFFF
        .quad 0x000092000000FFFF
gdtr:   .word gdtr - gdt - 1
        .long gdt

# Parameters, patched per guest by boot_sector() in boot.rs
        .org  0x1D0
modes:      .fill 32, 1, 0             # one byte per vCPU by APIC id: 0 busy, 1 idle, 2 duty
divisor:    .word 0                    # 0x1F0 u16 PIT divisor
busy_ticks: .word 0                    # 0x1F2 u16
idle_ticks: .word 0                    # 0x1F4 u16
ticks:      .word 0                    # 0x1F6 u16, counted by isr
ncpus:      .byte 0                    # 0x1F8 u8: APs are woken only when > 1
        .org  510
        .byte 0x55, 0xAA
