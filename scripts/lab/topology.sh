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
if [ "$NODES" -ne 2 ] || [ "$PER_NODE" -lt 3 ]; then
    fail setup "the cases are written for 2 NUMA nodes of at least 3 pCPUs, not ${NODES}x${CORES}x${THREADS}"
    finish
    exit
fi

# daemon_start LOG GLOBS ARGS...: the scheduler in the background, -v, managing only the
# lab- guests named by the comma-separated GLOBS (the case's own: the others wait halted).
daemon_start() {
    local log=$1 globs=$2 g args=()
    shift 2
    IFS=, read -ra g <<<"$globs"
    for globs in "${g[@]}"; do args+=(-d "$PREFIX$globs"); done
    "$BIN" -v "${args[@]}" "$@" "$INTERVAL" >"$log" 2>&1 &
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

# ---- the guests, all started at once -------------------------------------------------------
# Starting a guest in the TCG-in-TCG lab host costs about 30 s of its CPUs, and far more
# while other guests spin: every guest of the suite is created here, waits halted, and
# starts its load only when its case sends it a key (guests_go).
ncores=$((NODES * CORES))
HOME_G=(home:1:b:0:1)                  # memory bound to node 1, born on pCPU 0
BUSY=()                                # one busy 1-vCPU guest per core, memory unbound
for ((i = 0; i < ncores; i++)); do BUSY+=("busy$i:1:b:0"); done
WIDE=(wide:2:bb:0)                     # a busy 2-vCPU guest, memory unbound
busy_names=("${BUSY[@]%%:*}")
case_start guests "create ${#BUSY[@]} + 2 guests, all waiting halted"
if guests_start "${HOME_G[@]}" "${BUSY[@]}" "${WIDE[@]}"; then
    started=yes
    ok guests "$(( ${#BUSY[@]} + 2 )) guests created and booted"
else
    started=no
    fail guests "the guests did not start: every case below fails"
fi

# ---- memory bound to node 1, born on node 0 ------------------------------------------
case_start numa-home "a guest whose memory is bound to node 1, born pinned on pCPU 0, ends on node 1"
on_node1() { [ "$(node_of "$1")" -eq 1 ]; }
if [ $started = yes ] && guests_go home; then
    daemon_start "$LOGS/topology-numa-home.log" home
    PRED=on_node1
    if settles 60 all_pinned_where "${HOME_G[@]}"; then
        ok numa-home "home/0 on pCPU $(vcpu_affinity home 0) (node 1), usage $(usage_over 2 "${HOME_G[@]}")"
    else
        fail numa-home "placement $(placement "${HOME_G[@]}") after 60 s; last tick: $(last_tick "$LOGS/topology-numa-home.log")"
    fi
    daemon_stop
else
    fail numa-home "guest home did not start"
fi
virsh -q destroy "${PREFIX}home" >/dev/null 2>&1 || note "virsh destroy ${PREFIX}home failed"
note "running now: $(virsh -q list --name | tr '\n' ' ')"

# ---- SMT: four busy guests on pCPU 0 end one per core --------------------------------
case_start smt-spread "$ncores busy 1-vCPU guests (memory unbound) born on pCPU 0 end one per core, over both nodes"
one_per_core() {
    local spec a c seen=" "
    for spec in "${BUSY[@]}"; do
        a=$(vcpu_affinity "${spec%%:*}" 0) || return 1
        [[ $a =~ ^[0-9]+$ ]] || return 1
        c=$(core_of "$a")
        [[ $seen == *" $c "* ]] && return 1
        seen+="$c "
    done
}
if [ $started = yes ] && guests_go "${busy_names[@]}"; then
    daemon_start "$LOGS/topology-smt-spread.log" "busy*"
    if settles 60 one_per_core; then
        ok smt-spread "$(placement "${BUSY[@]}") (one per core), usage $(usage_over 2 "${BUSY[@]}")"
    else
        fail smt-spread "placement $(placement "${BUSY[@]}") after 60 s, not one per core (cores of $THREADS threads: pCPU/$THREADS); usage $(usage_over 2 "${BUSY[@]}"); last tick: $(last_tick "$LOGS/topology-smt-spread.log")"
    fi
    daemon_stop
else
    fail smt-spread "guests did not start"
fi

# ---- a node over capacity gives a whole domain to the other node ----------------------
# The busy guests, pinned back onto pCPU 0, and the 2-vCPU guest, born there, want
# ncores + 2 pCPUs of node 0's PER_NODE: the 2-vCPU domain is the smallest whose leaving
# is enough, and must move whole to node 1; the 1-vCPU ones stay on node 0.
case_start numa-overflow "node 0 wants $((ncores + 2)) of its $PER_NODE pCPUs: whole domains move to node 1 until node 0 fits, none split across the nodes"
# Every domain whole on one node, and every vCPU on a pCPU of its own (so neither node
# holds more busy vCPUs than it has pCPUs). Which domains leave is the planner's choice:
# the 2-vCPU one, or two 1-vCPU ones, migrate the same number of vCPUs.
overflow_done() {
    local spec name vcpus v a node seen=" "
    for spec in "${BUSY[@]}" "${WIDE[@]}"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        node=
        for ((v = 0; v < vcpus; v++)); do
            a=$(vcpu_affinity "$name" "$v") || return 1
            [[ $a =~ ^[0-9]+$ ]] || return 1
            [[ $seen == *" $a "* ]] && return 1
            seen+="$a "
            [ -z "$node" ] && node=$(node_of "$a")
            [ "$(node_of "$a")" -eq "$node" ] || return 1
        done
    done
}
on_node1_names() {
    local spec name out=
    for spec in "${BUSY[@]}" "${WIDE[@]}"; do
        name=${spec%%:*}
        [ "$(node_of "$(vcpu_affinity "$name" 0)")" -eq 1 ] && out+="$name "
    done
    echo "${out% }"
}
if [ $started = yes ]; then
    repin 0 "${BUSY[@]}" "${WIDE[@]}"
    if guests_go wide; then
        note "before: $(placement "${BUSY[@]}" "${WIDE[@]}")"
        daemon_start "$LOGS/topology-numa-overflow.log" "busy*,wide"
        if settles 90 overflow_done; then
            ok numa-overflow "$(placement "${BUSY[@]}" "${WIDE[@]}"): every domain whole on one node, one vCPU per pCPU; on node 1: $(on_node1_names); $(grep -m1 -E "^tick .*moved" "$LOGS/topology-numa-overflow.log" | cut -c1-160)"
        else
            fail numa-overflow "placement $(placement "${BUSY[@]}" "${WIDE[@]}") after 90 s; last tick: $(last_tick "$LOGS/topology-numa-overflow.log")"
        fi
        daemon_stop
    else
        fail numa-overflow "guest wide did not start"
    fi
else
    fail numa-overflow "guests did not start"
fi

# ---- --cpus within each node -----------------------------------------------------------
# Fewer busy guests, so each node's guests fit its allowed pCPUs with room to spare:
# PER_NODE - 2 1-vCPU guests pinned onto pCPU 0, the 2-vCPU one onto pCPU PER_NODE
# (node 1's first), both excluded.
cpus=
for ((n = 0; n < NODES; n++)); do cpus+="$((n * PER_NODE + 1))-$((n * PER_NODE + PER_NODE - 1)),"; done
cpus=${cpus%,}
case_start cpus-per-node "--cpus $cpus: guests born on the excluded first pCPU of their node end on their node's allowed pCPUs"
allowed_node0() { [ "$(node_of "$1")" -eq 0 ] && [ $(($1 % PER_NODE)) -ne 0 ]; }
allowed_node1() { [ "$(node_of "$1")" -eq 1 ] && [ $(($1 % PER_NODE)) -ne 0 ]; }
FEW=("${BUSY[@]:0:PER_NODE-2}")
cpus_done() { PRED=allowed_node0 all_pinned_where "${FEW[@]}" && PRED=allowed_node1 all_pinned_where "${WIDE[@]}"; }
if [ $started = yes ]; then
    gone=
    for spec in "${BUSY[@]:PER_NODE-2}"; do gone+="destroy $PREFIX${spec%%:*}; "; done
    virsh -q "$gone" >/dev/null 2>&1
    repin 0 "${FEW[@]}"
    repin "$PER_NODE" "${WIDE[@]}"
    note "before: $(placement "${FEW[@]}" "${WIDE[@]}")"
    daemon_start "$LOGS/topology-cpus-per-node.log" "busy*,wide" --cpus "$cpus"
    if settles 60 cpus_done; then
        ok cpus-per-node "$(placement "${FEW[@]}" "${WIDE[@]}"): none on an excluded pCPU, each on its own node"
    else
        fail cpus-per-node "placement $(placement "${FEW[@]}" "${WIDE[@]}") after 60 s; last tick: $(last_tick "$LOGS/topology-cpus-per-node.log")"
    fi
    daemon_stop
else
    fail cpus-per-node "guests did not start"
fi
guests_destroy_all

finish
