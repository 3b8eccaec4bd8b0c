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
cargo test --all-targets
