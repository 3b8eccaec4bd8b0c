# shellcheck shell=bash
# Shared by the lab suites (scripts/lab/service.sh, scripts/lab/topology.sh), which run
# inside the lab host as root under systemd. Sourced, not run.
#
# Each case prints one line, "ok NAME: figures" or "FAIL NAME: reason"; lines starting with
# "# " are notes. Guests are judged from /proc here (the vCPU threads' Cpus_allowed_list
# and CPU time), never from the scheduler's own output alone.

SHARE=${LAB_SHARE:-/mnt/share}
export REPO=$SHARE/repo
GUEST_BIN=$SHARE/guests/guest.bin
IMAGES=/var/lib/libvirt/images/lab
PREFIX=lab-
# shellcheck disable=SC1091
[ -f "$SHARE/lab.env" ] && . "$SHARE/lab.env"
NODES=${LAB_NODES:-2}
CORES=${LAB_CORES:-2}
THREADS=${LAB_THREADS:-2}
PER_NODE=$((CORES * THREADS))
export NPCPUS=$((NODES * PER_NODE))

PASSED=0
FAILED=0
SUITE_T0=$SECONDS
CASE_T0=$SECONDS

note() { printf '# %s\n' "$*"; }
case_start() { CASE_T0=$SECONDS; note "case $1: $2"; }
ok() {
    local name=$1; shift
    PASSED=$((PASSED + 1))
    printf 'ok %s: %s (%d s)\n' "$name" "$*" $((SECONDS - CASE_T0))
}
fail() {
    local name=$1; shift
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: %s (%d s)\n' "$name" "$*" $((SECONDS - CASE_T0))
}
# The suite's last line; its exit status says whether every case passed.
finish() {
    note "suite took $((SECONDS - SUITE_T0)) s"
    mkdir -p "$SHARE/results/libvirt-qemu"
    cp /var/log/libvirt/qemu/*.log "$SHARE/results/libvirt-qemu/" 2>/dev/null
    printf '%s: %d passed, %d failed\n' "${LAB_SUITE:-lab}" "$PASSED" "$FAILED"
    [ "$FAILED" -eq 0 ]
}

# Polls `"$@"` every second until it succeeds or $1 seconds pass.
wait_until() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 1
    done
}

# Topology: node and core of pCPU $1 (QEMU numbers socket, core, thread in that order).
node_of() { echo $(($1 / PER_NODE)); }
core_of() { echo $(($1 / THREADS)); }
# "0-3" for node $1.
node_cpus() { echo "$(($1 * PER_NODE))-$(($1 * PER_NODE + PER_NODE - 1))"; }

# ---- guests -------------------------------------------------------------------------

# Writes guest $1's image: $2 vCPUs, modes $3 (a string of b/i per vCPU: busy, idle).
guest_image() {
    local name=$1 vcpus=$2 modes=$3 img=$IMAGES/$1.img i m
    cp "$GUEST_BIN" "$img"
    for ((i = 0; i < vcpus; i++)); do
        m=${modes:i:1}
        [ "$m" = i ] && printf '\001' | dd of="$img" bs=1 seek=$((0x1D0 + i)) conv=notrunc status=none
    done
    # u8 ncpus at 0x1F8; wait_ticks stay at the default two minutes: guests_go starts them.
    printf '%b' "\\$(printf '%03o' "$vcpus")" | dd of="$img" bs=1 seek=$((0x1F8)) conv=notrunc status=none
}

# guest_xml NAME VCPUS PIN [MEM_NODESET]: a transient domain of type qemu (TCG), 16 MiB,
# every vCPU pinned to cpulist PIN, memory bound (strict) to MEM_NODESET if given.
guest_xml() {
    local name=$1 vcpus=$2 pin=$3 mem=${4:-} v pins='' numa=''
    for ((v = 0; v < vcpus; v++)); do pins+="<vcpupin vcpu='$v' cpuset='$pin'/>"; done
    [ -z "$mem" ] || numa="<numatune><memory mode='strict' nodeset='$mem'/></numatune>"
    cat <<EOF
<domain type='qemu'>
  <name>$PREFIX$name</name>
  <memory unit='MiB'>16</memory>
  <vcpu placement='static'>$vcpus</vcpu>
  <cputune>$pins</cputune>
  $numa
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$IMAGES/$name.img'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='$IMAGES/$name.serial'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# guests_start SPEC...: each SPEC is NAME:VCPUS:MODES:PIN[:MEM_NODESET]. Starts them all
# at once (virsh create in parallel) and waits for every readiness byte 'R': the BIOS is
# done and the guest waits, halted, for guests_go.
guests_start() {
    mkdir -p "$IMAGES"
    local spec name vcpus modes pin mem pids=() t0=$SECONDS names=()
    for spec in "$@"; do
        IFS=: read -r name vcpus modes pin mem <<<"$spec"
        rm -f "$IMAGES/$name.serial"
        guest_image "$name" "$vcpus" "$modes"
        guest_xml "$name" "$vcpus" "$pin" "$mem" >"$IMAGES/$name.xml"
        virsh -q create "$IMAGES/$name.xml" >/dev/null &
        pids+=($!)
        names+=("$name")
    done
    local p bad=0
    for p in "${pids[@]}"; do wait "$p" || bad=1; done
    [ $bad -eq 0 ] || { note "virsh create failed for one of: ${names[*]}"; return 1; }
    note "created ${names[*]} in $((SECONDS - t0)) s"
    guests_wait R 240 "${names[@]}" || return 1
    note "guests ${names[*]} booted (waiting, halted) $((SECONDS - t0)) s after create"
}

# guests_wait CHAR SECONDS NAME...: waits until each guest's COM1 file holds CHAR.
guests_wait() {
    local char=$1 limit=$2; shift 2
    local n deadline=$((SECONDS + limit))
    for n in "$@"; do
        until grep -q "$char" "$IMAGES/$n.serial" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                note "guest $n: no '$char' on COM1 after $limit s"
                return 1
            fi
            sleep 0.5
        done
    done
}

# guests_go NAME...: a key to each guest starts its load; waits for its 'S'.
# One virsh for all of them: under TCG in TCG each virsh start costs seconds while guests spin.
guests_go() {
    local n cmds=
    for n in "$@"; do cmds+="send-key $PREFIX$n KEY_G; "; done
    virsh -q "$cmds" >/dev/null || return 1
    guests_wait S 60 "$@"
}

# repin PCPU SPEC...: every vCPU of each guest (NAME:VCPUS) pinned live to PCPU, one virsh.
repin() {
    local p=$1 spec name vcpus v cmds=
    shift
    for spec in "$@"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        for ((v = 0; v < vcpus; v++)); do cmds+="vcpupin $PREFIX$name $v $p --live; "; done
    done
    virsh -q "$cmds" >/dev/null
}

guests_destroy_all() {
    local d
    for d in $(virsh -q list --name 2>/dev/null | grep "^$PREFIX"); do
        virsh -q destroy "$d" >/dev/null 2>&1 &
    done
    wait
    rm -f "$IMAGES"/*.img "$IMAGES"/*.serial "$IMAGES"/*.xml
}

# ---- /proc --------------------------------------------------------------------------

# These read /proc with bash builtins only: in the loaded lab host every program started
# (cat, awk) costs a good fraction of a second, and a placement check reads dozens.
qemu_pid() {   # libvirt's pid file has no final newline: read fails at EOF but sets p
    local p=
    read -r p <"/run/libvirt/qemu/$PREFIX$1.pid" 2>/dev/null
    [ -n "$p" ] && echo "$p"
}

# The thread id of vCPU $2 of guest $1 (libvirt starts QEMU with debug-threads=on, so
# vCPU threads are named "CPU N/TCG" or "CPU N/KVM").
vcpu_tid() {
    local pid t comm
    pid=$(qemu_pid "$1") || return 1
    for t in /proc/"$pid"/task/*; do
        read -r comm <"$t/comm" 2>/dev/null || continue
        case $comm in
            "CPU $2/"*) echo "${t##*/}"; return 0 ;;
        esac
    done
    return 1
}

# Cpus_allowed_list of vCPU $2 of guest $1, from /proc.
vcpu_affinity() {
    local pid tid k v
    pid=$(qemu_pid "$1") && tid=$(vcpu_tid "$1" "$2") || return 1
    while read -r k v; do
        [ "$k" = Cpus_allowed_list: ] && { echo "$v"; return 0; }
    done <"/proc/$pid/task/$tid/status"
    return 1
}

# "NS AT": run time of vCPU $2 of guest $1 in ns (schedstat's first field) and the wall
# clock in ns when it was read. Each reading carries its own time: in the loaded lab host
# the forks around a reading take seconds, so the nominal sleep between two would lie.
vcpu_runtime() {
    local pid tid run
    pid=$(qemu_pid "$1") && tid=$(vcpu_tid "$1" "$2") || return 1
    read -r run _ <"/proc/$pid/task/$tid/schedstat" || return 1
    echo "$run ${EPOCHREALTIME/./}000"
}

# "NAME/V=CPUS ..." for guest specs NAME:VCPUS, from /proc.
placement() {
    local spec name vcpus v out=
    for spec in "$@"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        for ((v = 0; v < vcpus; v++)); do out+="$name/$v=$(vcpu_affinity "$name" "$v" || echo '?') "; done
    done
    echo "${out% }"
}

# Usage of each vCPU over at least $1 seconds, percent of one pCPU, from /proc: "NAME/V=PCT ...".
usage_over() {
    local secs=$1; shift
    local spec name vcpus v key r1 t1 out=
    local -A r0 t0
    for spec in "$@"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        for ((v = 0; v < vcpus; v++)); do
            read -r "r0[$name/$v]" "t0[$name/$v]" < <(vcpu_runtime "$name" "$v" || echo "0 1")
        done
    done
    sleep "$secs"
    for spec in "$@"; do
        IFS=: read -r name vcpus _ <<<"$spec"
        for ((v = 0; v < vcpus; v++)); do
            key=$name/$v
            read -r r1 t1 < <(vcpu_runtime "$name" "$v" || echo "0 1")
            out+="$key=$(( (r1 - r0[$key]) * 100 / (t1 - t0[$key]) ))% "
        done
    done
    echo "${out% }"
}
