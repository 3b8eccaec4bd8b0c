#!/bin/sh
# Regenerates scenarios/recorded/: the guests of the real-guest suite's scenarios
# (tests/real_guests.rs, tests/real_demand.rs, tests/real_record.rs) started on this
# host as the tests start them, and recorded by `vcpu-scheduler record --anonymize`
# for 15 s at 1 s, with no scheduler running. Each file keeps record's own header
# and gets one line on top saying which guest is which (d1, d2, ... in start order).
#
#   scripts/record-scenarios.sh            # every case
#   scripts/record-scenarios.sh CASE...    # some of them (names below)
#
# Needs root and a running libvirtd (scripts/host-setup.sh). The whole run holds the
# real-guest lock (/tmp/vcpu-scheduler-real-guests.lock), as the tests do, so no test
# shares the pCPUs meanwhile; waiting for it is normal. Guests are removed on every
# exit path.
set -eu
cd "$(dirname "$0")/.."

LOCK=/tmp/vcpu-scheduler-real-guests.lock
if [ "${RECORD_SCENARIOS_LOCKED:-}" != 1 ]; then
    export RECORD_SCENARIOS_LOCKED=1
    echo "record-scenarios: waiting for $LOCK" >&2
    exec flock "$LOCK" "$0" "$@"
fi

cargo build --release --quiet --bin vcpu-scheduler --example fleet
BIN=target/release/vcpu-scheduler
FLEET=target/release/examples/fleet
OUT=scenarios/recorded
FOR=${RECORD_FOR:-15s}
PREFIX="vcrec-$$-"
mkdir -p "$OUT"
trap '"$FLEET" down "$PREFIX" >/dev/null 2>&1 || true' EXIT INT TERM

# record NAME "what it is" GUEST...: start the guests (fleet's NAME=LOAD[,LOAD]@CPUS),
# record them, remove them.
record() {
    name=$1 what=$2
    shift 2
    p="$PREFIX$name-"
    "$FLEET" up "$p" "$@" >/dev/null
    "$BIN" record -d "$p*" --anonymize --for "$FOR" 1 "$OUT/$name.scn.new"
    "$FLEET" down "$p" >/dev/null
    finish "$name" "$what"
}

# The line on top, then record's file; the result replaces scenarios/recorded/NAME.scn.
finish() {
    { echo "# scenario: $2"; cat "$OUT/$1.scn.new"; } >"$OUT/$1.scn.tmp"
    rm -f "$OUT/$1.scn.new"
    mv "$OUT/$1.scn.tmp" "$OUT/$1.scn"
    "$BIN" simulate "$OUT/$1.scn" | tail -1 | sed "s/^/record-scenarios: $1: balance: /" >&2
}

# Domains that come and go while recorded: c stops after 6 s, e and f start then (their
# BIOS shows as a busy start).
start_stop() {
    name=start-stop
    p="$PREFIX$name-"
    "$FLEET" up "${p}ab-" a=busy@0 b=busy@1 >/dev/null
    "$FLEET" up "${p}c-" c=50%@0 >/dev/null
    "$BIN" record -d "$p*" --anonymize --for "${RECORD_FOR:-20s}" 1 "$OUT/$name.scn.new" &
    rec=$!
    sleep 6
    "$FLEET" down "${p}c-" >/dev/null
    "$FLEET" up "${p}ef-" e=busy@0 f=30%@1 >/dev/null
    wait "$rec"
    "$FLEET" down "$p" >/dev/null
    finish "$name" "d1 busy on pCPU 0, d2 busy on pCPU 1, d3 50 % on pCPU 0 stops after \
about 6 s; then d4 busy on pCPU 0 and d5 30 % on pCPU 1 start (their BIOS first)"
}

cases=${*:-"four-busy-on-0 busy-half-affinity two-busy-two-half-on-0 three-busy-one-light-on-0 two-vcpu-guest-on-0 round-robin mixed-on-0 start-stop"}
for c in $cases; do
    echo "record-scenarios: $c" >&2
    case $c in
    four-busy-on-0)
        record "$c" "4 busy 1-vCPU guests d1-d4, all born on pCPU 0" \
            a=busy@0 b=busy@0 c=busy@0 d=busy@0 ;;
    busy-half-affinity)
        record "$c" "d1 busy, d2 50 %, d3 busy, d4 50 %, each allowed on every pCPU" \
            b1=busy h1=50% b2=busy h2=50% ;;
    two-busy-two-half-on-0)
        record "$c" "d1 d2 busy, d3 d4 50 % duty cycles, all born on pCPU 0" \
            b1=busy@0 b2=busy@0 h1=50%@0 h2=50%@0 ;;
    three-busy-one-light-on-0)
        record "$c" "d1 d2 d3 busy, d4 30 % duty cycle, all born on pCPU 0" \
            b1=busy@0 b2=busy@0 b3=busy@0 l1=30%@0 ;;
    two-vcpu-guest-on-0)
        record "$c" "d1: one guest with 2 busy vCPUs, born on pCPU 0" duo=busy,busy@0 ;;
    round-robin)
        record "$c" "4 busy guests already 2 per pCPU: d1 d3 on pCPU 0, d2 d4 on pCPU 1" \
            a=busy@0 b=busy@1 c=busy@0 d=busy@1 ;;
    mixed-on-0)
        record "$c" "tests/real_record.rs's guests: d1 2 busy vCPUs, d2 5 % and d3 15 % \
duty cycles, d4 idle, all born on pCPU 0" \
            multi=busy,busy@0 duty5=5%@0 duty15=15%@0 idle=idle@0 ;;
    start-stop) start_stop ;;
    *) echo "record-scenarios: unknown case $c" >&2; exit 2 ;;
    esac
done
