#!/usr/bin/env bash
# The scheduler on real guests, start to finish, on a fresh Debian 12 host (as root):
# bring libvirt up, build, boot six OS-less guests of mixed load all pinned to pCPU 0,
# measure, run the scheduler for a while, measure again, compare, and remove the guests.
# The measurements come from /proc and virsh (examples/fleet.rs), not from the scheduler.
#
#   scripts/demo.sh              # DEMO_SECONDS=30 by default
#   DEMO_SECONDS=60 scripts/demo.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PREFIX=vcsdemo-
RUN_S=${DEMO_SECONDS:-30}
FLEET=target/release/examples/fleet
SCHED=target/release/vcpu-scheduler

step() { printf '\n== %s\n' "$*"; }

# Every exit path (success, error under set -e, Ctrl-C, kill) ends in cleanup, and guests
# exist only once $FLEET has been built, so it is always there to remove them.
sched_pid=
cleanup() {
    if [ -n "$sched_pid" ]; then
        kill -INT "$sched_pid" 2>/dev/null || true
        wait "$sched_pid" 2>/dev/null || true
    fi
    if [ -x "$FLEET" ]; then
        "$FLEET" down "$PREFIX" || printf 'demo: cleanup failed; run: %s down %s\n' "$FLEET" "$PREFIX" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "host setup"
scripts/host-setup.sh

step "build (release)"
cargo build --release --bin vcpu-scheduler --example fleet

step "boot 6 guests, every vCPU pinned to pCPU 0"
# Leftovers of a demo killed with SIGKILL (every other exit cleans up after itself).
"$FLEET" down "$PREFIX" >/dev/null
# busy = a full pCPU, NN% = duty cycle, idle = halted; duo has 2 vCPUs (busy, idle).
"$FLEET" up "$PREFIX" \
    busy1=busy@0 busy2=busy@0 half=50%@0 light=30%@0 idle=idle@0 duo=busy,idle@0

step "before: per-pCPU usage over 3 s (from /proc)"
before=$("$FLEET" status "$PREFIX" 3)
printf '%s\n' "$before"

step "vcpu-scheduler --monitor --domain '$PREFIX*' 1, for ${RUN_S} s"
# In the background + wait: bash runs a trap only once a foreground command has ended, so
# Ctrl-C or SIGTERM would otherwise wait out the whole run. --foreground keeps timeout in
# our process group so Ctrl-C reaches the scheduler; --preserve-status reports the
# scheduler's own exit code (0 on SIGINT) instead of timeout's 124.
timeout --foreground --preserve-status -k 5 -s INT "$RUN_S" \
    "$SCHED" --monitor --domain "$PREFIX*" 1 &
sched_pid=$!
rc=0
wait "$sched_pid" || rc=$?
sched_pid=
if [ "$rc" -ne 0 ]; then
    printf 'demo: vcpu-scheduler exited with status %s\n' "$rc" >&2
    exit "$rc"
fi

step "after: per-pCPU usage over 3 s (from /proc)"
after=$("$FLEET" status "$PREFIX" 3)
printf '%s\n' "$after"

# "summary sigma=.. busiest=.. idlest=.. total=.." -> the value of one field.
field() { printf '%s\n' "$1" | sed -n "s/^summary.* $2=\([0-9.]*\).*/\1/p"; }

step "before -> after (percent of one pCPU; sigma = std. deviation across pCPUs)"
printf '%-22s %8s %8s\n' "" before after
for f in sigma busiest idlest total; do
    case $f in
        sigma) label="sigma" ;;
        busiest) label="busiest pCPU" ;;
        idlest) label="idlest pCPU" ;;
        total) label="all guests together" ;;
    esac
    printf '%-22s %8s %8s\n' "$label" "$(field "$before" "$f")" "$(field "$after" "$f")"
done
