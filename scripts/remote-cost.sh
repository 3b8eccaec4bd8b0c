#!/usr/bin/env bash
# What watching a host over the network costs: the same guests measured by
# examples/tick_cost through libvirtd's local socket (qemu:///system) and through TCP on
# loopback (qemu+tcp://127.0.0.1/system). The README's "Many hosts" figures come from it.
#
# For the measurement only, libvirtd is restarted listening on 127.0.0.1:16509 without
# authentication; its configuration is restored and it is restarted as before on every
# exit path. Never do this on a host reachable by others: use qemu+ssh:// or TLS there.
# Run as root on a host without systemd managing libvirtd (as on the project's machine).
#
#   scripts/remote-cost.sh [TICKS]      # 20 ticks 1 s apart per figure by default
set -euo pipefail
cd "$(dirname "$0")/.."

TICKS=${1:-20}
PREFIX=vcsremote-
CONF=/etc/libvirt/libvirtd.conf
SAVED=$(mktemp)
FLEET=target/release/examples/fleet
COST=target/release/examples/tick_cost

say() { printf 'remote-cost: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (restarts libvirtd)"
[ -d /run/systemd/system ] && die "libvirtd is managed by systemd here: measure by hand"

scripts/host-setup.sh >/dev/null
cargo build --release --example fleet --example tick_cost

restart_libvirtd() {
    if [ -s /run/libvirtd.pid ]; then
        local pid
        pid=$(cat /run/libvirtd.pid)
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    libvirtd -d "$@"
    for _ in $(seq 100); do
        timeout 5 virsh -c qemu:///system version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "libvirtd did not come back"
}

cp -p "$CONF" "$SAVED"
restore() {
    cp -p "$SAVED" "$CONF" && rm -f "$SAVED"
    restart_libvirtd
    say "libvirtd.conf restored, libvirtd listening on its unix socket only"
    "$FLEET" down "$PREFIX" >/dev/null || true
}
trap restore EXIT

cat >>"$CONF" <<'EOF'
# added by scripts/remote-cost.sh for one measurement; removed when it ends
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
auth_tcp = "none"
EOF
restart_libvirtd --listen
say "libvirtd also listening on 127.0.0.1:16509 (TCP, no authentication)"

"$FLEET" down "$PREFIX" >/dev/null
# The guests of the README's tick-cost row: 4 domains, 5 vCPUs, on 2 pCPUs.
"$FLEET" up "$PREFIX" busy=busy@0 half=50%@0 idle=idle@0 duo=busy,idle@0

for uri in qemu:///system qemu+tcp://127.0.0.1/system; do
    "$COST" "$uri" "$TICKS"
done
