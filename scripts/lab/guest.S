# The boot sector of the lab host's guests (scripts/lab/): a 512-byte raw disk, no OS.
# scripts/lab-host.sh assembles it on the outer host and passes the image through the
# share (the lab host has no binutils):
#
#   as --32 guest.S -o guest.o && ld -m elf_i386 -Ttext 0x7c00 --oformat binary guest.o -o guest.bin
#
# Unlike tests/common/guests/guest.S it does not start its load at once: under TCG inside
# the TCG lab host, SeaBIOS of a guest that starts while others spin is very slow (five
# started one after another took 440 s). So it first waits, halted:
#   1. COM1 <- 'R': the BIOS is done, the guest waits (halted, ~0 CPU);
#   2. it halts on PIT ticks (~18 Hz) until a key reaches the keyboard controller
#      (`virsh send-key DOM KEY_G`: the suite starts every guest's load at once) or
#      wait_ticks ticks have passed, whichever comes first;
#   3. every IRQ masked; with more than one vCPU the others are woken now with
#      INIT-SIPI-SIPI (until then they sit in wait-for-SIPI, using no CPU); COM1 <- 'S';
#   4. each vCPU spins or halts by the mode byte of its initial APIC id.
#
# Parameters at fixed offsets, patched per guest by scripts/lab/lib.sh (guest_image):
#   0x1D0 modes[32]  one byte per vCPU: 0 busy, 1 idle
#   0x1F0 u16 PIT divisor (65535: ~18.2 Hz; at 100 Hz a waiting guest cost 12 % of an
#             emulated CPU in the lab host, at 18 Hz about a fifth of that)
#   0x1F2 u16 wait_ticks (default 2200: two minutes)
#   0x1F6 u16 ticks, counted by the IRQ0 handler
#   0x1F8 u8  ncpus: the other vCPUs are woken only when > 1

        .code16
        .globl _start

_start: ljmp  $0, $s2                  # normalise CS:IP to 0000:7Cxx
s2:     cli
        xor   %ax, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss
        mov   $0x7c00, %sp
        mov   $0x3f8, %dx              # COM1 <- 'R'
        mov   $'R', %al
        out   %al, %dx

# drop whatever the BIOS left in the keyboard controller's output buffer
flush:  in    $0x64, %al
        test  $1, %al
        jz    timer
        in    $0x60, %al
        jmp   flush

# PIT channel 0 at `divisor`, IRQ0 (vector 8 in the BIOS PIC map) counts ticks
timer:  movw  $isr, 0x20
        movw  $0, 0x22
        mov   $0x34, %al               # ch0, lo/hi byte, mode 2 (rate generator)
        out   %al, $0x43
        mov   divisor, %ax
        out   %al, $0x40
        mov   %ah, %al
        out   %al, $0x40
        mov   $0xFE, %al               # master PIC: IRQ0 only (the keyboard's IRQ1 stays
        out   %al, $0x21               # masked: its byte waits in the controller)
        mov   $0xFF, %al               # slave PIC: nothing
        out   %al, $0xA1
        sti
wait:   hlt                            # sleep until the next tick
        in    $0x64, %al               # a key: go now
        test  $1, %al
        jnz   go
        mov   ticks, %ax
        cmp   wait_ticks, %ax
        jb    wait

go:     cli
        mov   $0xFF, %al               # no more interrupts: the load runs undisturbed
        out   %al, $0x21

# more than one vCPU? copy the AP trampoline, wake the others from protected mode
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

# 32-bit: the xAPIC's ICR is MMIO at 0xFEE00300. INIT, wait, SIPI, wait, SIPI, to all but self.
        .code32
pm:     mov   $0x10, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %ss
        movl  $0x000C4500, 0xFEE00300  # INIT IPI, all excluding self
        mov   $0x40000, %ecx
1:      loop  1b
        movl  $0x000C4608, 0xFEE00300  # STARTUP IPI, vector 0x08
        mov   $0x40000, %ecx
2:      loop  2b
        movl  $0x000C4608, 0xFEE00300  # second SIPI, as the MP spec asks
        ljmp  $0x18, $pm16

# back to real mode through a 16-bit segment
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

# every vCPU is awake now: COM1 <- 'S' (the load runs), then vCPU 0 runs its mode.
# Written after the wake-up, whose delay loops take seconds here: a 2-vCPU guest whose
# 'S' came before it would look like a 1-vCPU load for the daemon's first ticks.
bsp:    mov   $0x3f8, %dx
        mov   $'S', %al
        out   %al, %dx
        cmpb  $1, modes
        je    idle
busy:   jmp   busy                     # one full (emulated) pCPU
idle:   hlt                            # IRQs are off: sleeps for good
        jmp   idle

# IRQ0 handler
isr:    incw  %cs:ticks
        push  %ax
        mov   $0x20, %al               # EOI to the master PIC
        out   %al, $0x20
        pop   %ax
        iret

# AP trampoline, copied to 0x8000 and run at 0800:0000: mode by initial APIC id.
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

# Parameters, patched per guest by scripts/lab/lib.sh
        .org  0x1D0
modes:      .fill 32, 1, 0             # one byte per vCPU by APIC id: 0 busy, 1 idle
divisor:    .word 65535                # 0x1F0 u16: 1193182 Hz / 65535 = ~18.2 Hz
wait_ticks: .word 2200                 # 0x1F2 u16
            .word 0                    # 0x1F4 (unused)
ticks:      .word 0                    # 0x1F6 u16, counted by isr
ncpus:      .byte 1                    # 0x1F8 u8
        .org  510
        .byte 0x55, 0xAA
