#!/usr/bin/env bash
# Brings a Debian 12 host to the point where the real-guest tests and the demo can run:
# build dependencies installed, /dev/kvm usable by QEMU, virtlogd + libvirtd answering on
# qemu:///system, QEMU's capability cache warm. Idempotent: every step checks first.
# Run as root. The timings in the comments were measured on Debian 12 (libvirt 9.0,
# QEMU 7.2, 2 cores, nested KVM, no systemd as PID 1).
set -euo pipefail

URI=qemu:///system
SOCK=/run/libvirt/libvirt-sock
WAIT_S=30
PACKAGES=(libvirt-dev pkg-config libclang-dev libvirt-daemon-system
          libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients
          binutils   # as + ld: tests check the test guests' boot code against its source
          systemd    # systemd-analyze: tests/systemd_unit.rs verifies dist/vcpu-scheduler.service
          prometheus prometheus-node-exporter   # promtool and node_exporter read --metrics-file
          mmdebstrap qemu-utils e2fsprogs cpio) # the lab host VM (scripts/lab-host.sh build)

say() { printf 'host-setup: %s\n' "$*"; }
die() { printf 'host-setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, starts libvirtd, changes /dev/kvm)"

# 1. Packages: only when missing, so a second run does no network access at all.
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
else
    say "packages present"
fi

# 2. /dev/kvm ships root:root 0600; QEMU runs as libvirt-qemu and would silently fall back
#    to re-probing capabilities on every call (a define took 39 s). Group kvm 0660 fixes
#    both: then a define takes ~20 ms and a start ~0.3 s.
if [ -e /dev/kvm ]; then
    { chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; } \
        || die "cannot make /dev/kvm usable by group kvm (chgrp kvm /dev/kvm)"
fi

virsh_ok() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }

# Whether daemon $1 runs, from the pid file `$1 -d` writes (no procps in minimal images).
running() { [ -s "/run/$1.pid" ] && kill -0 "$(cat "/run/$1.pid")" 2>/dev/null; }

# Waits up to WAIT_S seconds for a command to succeed.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
    say "$what ready"
}

# 3. The daemons. A systemd host has packaged units that own them: start those, never fork
#    our own copies beside them. Without systemd, virtlogd must come first or every guest
#    start fails with "Failed to connect socket to '/run/libvirt/virtlogd-sock'".
#    Debian 12 ships only the monolithic libvirtd (no virtqemud); its socket appears
#    ~25 ms after `libvirtd -d`.
if virsh_ok; then
    say "libvirtd already answering on $URI"
else
    if [ -d /run/systemd/system ]; then
        say "starting virtlogd and libvirtd with systemctl"
        systemctl start virtlogd libvirtd || die "systemctl start virtlogd libvirtd failed"
    else
        if ! running virtlogd; then
            say "starting virtlogd"
            virtlogd -d || die "virtlogd -d failed"
        fi
        if ! running libvirtd; then
            say "starting libvirtd"
            libvirtd -d || die "libvirtd -d failed"
        fi
    fi
    wait_for "socket $SOCK" test -S "$SOCK" || die "$SOCK did not appear within ${WAIT_S}s"
    # The first connection runs a cold QEMU capability probe (~7 s), hence the bounded wait.
    wait_for "libvirtd on $URI" virsh_ok || die "virsh -c $URI did not answer within ${WAIT_S}s"
fi

# 4. Warm the capability cache now so the first test's define is not the one paying for it.
timeout 60 virsh -c "$URI" domcapabilities >/dev/null 2>&1 \
    || die "virsh domcapabilities failed: QEMU cannot be probed (is qemu-system-x86 installed?)"

# Ask libvirt rather than test the device node: it is libvirt's view (QEMU's user, the
# capability probe) that decides whether a <domain type='kvm'> can start. Nested KVM
# works even where /proc/cpuinfo shows no vmx/svm flag. Without KVM, TCG runs the test
# guests just as well (the BIOS even takes ~0.2 s of vCPU time instead of ~2.8 s).
if timeout 30 virsh -c "$URI" domcapabilities --virttype kvm >/dev/null 2>&1; then
    say "accelerator: KVM (guests use domain type kvm)"
else
    say "accelerator: TCG (KVM not usable by libvirt; guests use domain type qemu, slower but fine)"
fi
say "done"
