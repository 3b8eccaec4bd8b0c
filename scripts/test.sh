#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it through .ci/run).
# On a fresh Debian 12 machine as root it installs what the build and the tests need,
# brings up libvirtd with QEMU/KVM for the real-guest tests, then builds, lints and runs
# every test. Any failure stops it with a non-zero exit.
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
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (several print "0 passed": bins and examples
# without tests), so the total is what a reader sees last.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
