#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it through .ci/run).
# On a fresh Debian 12 machine as root it installs what the build and the tests need,
# brings up libvirtd with QEMU/KVM for the real-guest tests, then builds, lints and runs
# every test, then the lab host's suites. Any failure makes it exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== host set-up (packages, libvirtd, /dev/kvm)"
scripts/host-setup.sh

echo "== build"
cargo build --all-targets
echo "== clippy"
cargo clippy --all-targets -- -D warnings
echo "== rustfmt"
cargo fmt --check
echo "== tests (unit, test driver, CLI, allocation, scenarios, real guests)"
log=$(mktemp)
lablog=$(mktemp)
trap 'rm -f "$log" "$lablog"' EXIT
status=0
# A real-guest test that finds libvirtd gone starts it again and records it here
# (tests/common/guests/virsh.rs): shown below, so a green run does not hide it.
restarts=/var/tmp/vcpu-scheduler-tests/libvirtd-restarts.log
rm -f "$restarts"
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
if [ -s "$restarts" ]; then
    echo "== libvirtd was found without a process and started again during the tests:"
    cat "$restarts"
fi

# The lab host (scripts/lab-host.sh): a VM with systemd as PID 1 and 2 NUMA nodes x 2 cores
# x 2 threads, where the service runs under real systemd and the topology rules meet a
# real libvirt. Each suite ends with "lab-SUITE: N passed, N failed"; a suite that cannot
# run (no QEMU, no space, a failed build) fails, it is never skipped.
for suite in service topology; do
    echo "== lab host: $suite suite (scripts/lab-host.sh run $suite)"
    scripts/lab-host.sh run "$suite" 2>&1 | tee -a "$lablog" || status=1
done

# One closing line over every test binary (several print "0 passed": bins and examples
# without tests) and the lab suites, so the total is what a reader sees last.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /^lab-[a-z]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log" "$lablog"
exit "$status"
