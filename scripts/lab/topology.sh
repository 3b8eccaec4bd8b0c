#!/usr/bin/env bash
# The lab host's topology suite: the daemon's topology rules on a real libvirt on a host of
# several NUMA nodes with SMT (the lab host, 2 nodes x 2 cores x 2 threads by default).
# Runs inside the lab host as root (scripts/lab-host.sh run topology). Placement is judged
# from /proc (each vCPU thread's Cpus_allowed_list), not from the daemon's output.
set -uo pipefail
LAB_SUITE=lab-topology
# shellcheck source=scripts/lab/lib.sh
. "$(dirname "$0")/lib.sh"

BIN=/usr/local/sbin/vcpu-scheduler
LOGS=$SHARE/results
INTERVAL=2
DAEMON_PID=

install -m 0755 "$REPO/target/release/vcpu-scheduler" "$BIN" || { fail setup "cannot install the binary"; finish; exit; }
virsh -q version >/dev/null || { fail setup "virsh cannot reach libvirtd"; finish; exit; }

# daemon_start LOG ARGS...: the scheduler in the background, -v, on every lab- guest.
daemon_start() {
    local log=$1; shift
    "$BIN" -v -d "$PREFIX*" "$@" "$INTERVAL" >"$log" 2>&1 &
    DAEMON_PID=$!
}
daemon_stop() {
    [ -n "$DAEMON_PID" ] || return 0
    kill "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
}
cleanup() { daemon_stop; guests_destroy_all; }
trap cleanup EXIT

last_tick() { grep '^tick ' "$1" | tail -n1; }

# True when every vCPU of guests $@ (NAME:VCPUS) is pinned to one pCPU for which
# the predicate `$PRED PCPU NAME` holds.
PRED=
all_pinned_where() {
    local spec name vcpus v a
    for spec in "$@"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        for ((v = 0; v < vcpus; v++)); do
            a=$(vcpu_affinity "$name" "$v") || return 1
            [[ $a =~ ^[0-9]+$ ]] || return 1
            $PRED "$a" "$name" || return 1
        done
    done
}

# Waits up to $1 s for `"$@"` to hold, then checks it still holds after 3 more ticks.
settles() {
    local limit=$1; shift
    wait_until "$limit" "$@" || return 1
    sleep $((3 * INTERVAL))
    "$@"
}

# ---- topology read -------------------------------------------------------------------
case_start topology-read "-v prints the capabilities as $NODES nodes of $CORES cores x $THREADS threads"
want="topology:"
for ((n = 0; n < NODES; n++)); do
    [ "$n" -eq 0 ] || want+=";"
    want+=" node $n: pcpus $(node_cpus "$n") ($CORES cores × $THREADS threads)"
done
out=$(timeout 60 "$BIN" -v --once 1 2>&1)
got=$(grep -o 'topology:.*' <<<"$out" | head -n1)
if [ "$got" = "$want" ]; then
    ok topology-read "$got"
else
    fail topology-read "expected '$want', got '${got:-no topology line}' ($(head -c 300 <<<"$out" | tr '\n' '|'))"
fi
note "virsh capabilities: $(virsh capabilities | grep -c '<cpu id=') pcpus in $(virsh capabilities | grep -c '<cell id=') cells"

# ---- memory bound to node 1, born on node 0 ------------------------------------------
case_start numa-home "a guest whose memory is bound to node 1, born pinned on pCPU 0, ends on node 1"
on_node1() { [ "$(node_of "$1")" -eq 1 ]; }
G=(home:1:b:0:1)
if guests_start "${G[@]}" && guests_go home; then
    daemon_start "$LOGS/topology-numa-home.log"
    PRED=on_node1
    if settles 60 all_pinned_where "${G[@]}"; then
        ok numa-home "home/0 on pCPU $(vcpu_affinity home 0) (node 1), usage $(usage_over 2 "${G[@]}")"
    else
        fail numa-home "placement $(placement "${G[@]}") after 60 s; last tick: $(last_tick "$LOGS/topology-numa-home.log")"
    fi
    daemon_stop
else
    fail numa-home "guests did not start"
fi
guests_destroy_all

# ---- SMT: four busy guests on pCPU 0 end one per core --------------------------------
ncores=$((NODES * CORES))
case_start smt-spread "$ncores busy 1-vCPU guests (memory unbound) born on pCPU 0 end one per core, over both nodes"
G=()
for ((i = 0; i < ncores; i++)); do G+=("busy$i:1:b:0"); done
names=("${G[@]%%:*}")
one_per_core() {
    local spec a c seen=" "
    for spec in "${G[@]}"; do
        a=$(vcpu_affinity "${spec%%:*}" 0) || return 1
        [[ $a =~ ^[0-9]+$ ]] || return 1
        c=$(core_of "$a")
        [[ $seen == *" $c "* ]] && return 1
        seen+="$c "
    done
}
if guests_start "${G[@]}" && guests_go "${names[@]}"; then
    daemon_start "$LOGS/topology-smt-spread.log"
    if settles 90 one_per_core; then
        ok smt-spread "$(placement "${G[@]}") (one per core), usage $(usage_over 2 "${G[@]}")"
    else
        fail smt-spread "placement $(placement "${G[@]}") after 90 s, not one per core (cores of $THREADS threads: pCPU/$THREADS); last tick: $(last_tick "$LOGS/topology-smt-spread.log")"
    fi
    daemon_stop
else
    fail smt-spread "guests did not start"
fi
guests_destroy_all

# ---- a node over capacity gives a whole domain to the other node ----------------------
# Node 0's pCPUs cannot hold its guests: PER_NODE - 1 busy 1-vCPU guests bound to node 0
# plus one busy 2-vCPU guest whose memory is unbound, all born on pCPU 0, want
# PER_NODE + 1 pCPUs. The unbound domain must move whole to node 1; the bound stay.
case_start numa-overflow "node 0 wants $((PER_NODE + 1)) of its $PER_NODE pCPUs: the unbound 2-vCPU domain moves whole to node 1"
G=()
for ((i = 0; i < PER_NODE - 1; i++)); do G+=("bound$i:1:b:0:0"); done
BOUND=("${G[@]}")
G+=("wide:2:bb:0")
names=("${G[@]%%:*}")
on_node0() { [ "$(node_of "$1")" -eq 0 ]; }
overflow_done() { PRED=on_node0 all_pinned_where "${BOUND[@]}" && PRED=on_node1 all_pinned_where wide:2; }
if guests_start "${G[@]}" && guests_go "${names[@]}"; then
    daemon_start "$LOGS/topology-numa-overflow.log"
    if settles 120 overflow_done; then
        ok numa-overflow "$(placement "${G[@]}"): wide whole on node 1, the bound ones on node 0 ($(grep -c 'moved' "$LOGS/topology-numa-overflow.log") tick lines with moves)"
    else
        fail numa-overflow "placement $(placement "${G[@]}") after 120 s; last tick: $(last_tick "$LOGS/topology-numa-overflow.log")"
    fi
    daemon_stop

    # ---- --cpus within each node (the same guests, re-pinned onto excluded pCPUs) ------
    cpus=
    for ((n = 0; n < NODES; n++)); do cpus+="$((n * PER_NODE + 1))-$((n * PER_NODE + PER_NODE - 1)),"; done
    cpus=${cpus%,}
    case_start cpus-per-node "--cpus $cpus: node 0's guests born on pCPU 0 end on node 0's allowed pCPUs, node 1's on pCPU $PER_NODE on node 1's"
    for spec in "${BOUND[@]}"; do virsh -q vcpupin "$PREFIX${spec%%:*}" 0 0 --live >/dev/null; done
    virsh -q vcpupin "${PREFIX}wide" 0 "$PER_NODE" --live >/dev/null
    virsh -q vcpupin "${PREFIX}wide" 1 "$PER_NODE" --live >/dev/null
    note "re-pinned: $(placement "${G[@]}")"
    allowed_node0() { [ "$(node_of "$1")" -eq 0 ] && [ $(($1 % PER_NODE)) -ne 0 ]; }
    allowed_node1() { [ "$(node_of "$1")" -eq 1 ] && [ $(($1 % PER_NODE)) -ne 0 ]; }
    cpus_done() { PRED=allowed_node0 all_pinned_where "${BOUND[@]}" && PRED=allowed_node1 all_pinned_where wide:2; }
    daemon_start "$LOGS/topology-cpus-per-node.log" --cpus "$cpus"
    if settles 60 cpus_done; then
        ok cpus-per-node "$(placement "${G[@]}"): none on an excluded pCPU, each on its own node"
    else
        fail cpus-per-node "placement $(placement "${G[@]}") after 60 s; last tick: $(last_tick "$LOGS/topology-cpus-per-node.log")"
    fi
    daemon_stop
else
    fail numa-overflow "guests did not start"
    fail cpus-per-node "guests did not start"
fi
guests_destroy_all

finish
