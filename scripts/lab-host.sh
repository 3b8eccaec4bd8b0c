#!/usr/bin/env bash
# The lab host: a small Debian 12 VM with systemd as PID 1 and libvirtd + QEMU inside,
# booted under TCG with the NUMA/SMT topology we choose, in which the project installs
# itself and runs a suite (scripts/lab/*.sh). `scripts/lab-host.sh --help` for the commands.
set -euo pipefail

ME=lab-host
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${LAB_CACHE:-/var/cache/vcpu-scheduler-lab}
TOPOLOGY=${LAB_TOPOLOGY:-2x2x2}
MEM_PER_NODE=${LAB_MEM_PER_NODE:-2G}
IMAGE_SIZE=${LAB_IMAGE_SIZE:-4G}
# The real-guest tests' host lock (tests/common/guests/fleet.rs HostLock: std::env::temp_dir()).
LOCK=${TMPDIR:-/tmp}/vcpu-scheduler-real-guests.lock
LOCK_WAIT_S=${LAB_LOCK_WAIT:-3600}
SUITES=(service topology)
HOST_PACKAGES=(mmdebstrap qemu-system-x86 qemu-utils e2fsprogs cpio binutils)
# What the VM's tree holds (host-facts.md, "A lab host VM"): systemd as PID 1, libvirtd
# with the QEMU driver, a kernel, and the tools the suites judge guests with.
TREE_PACKAGES=(systemd systemd-sysv udev dbus kmod libvirt-daemon-system
               libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients
               linux-image-amd64 iproute2 procps numactl)

say() { printf '%s: %s\n' "$ME" "$*"; }
die() { printf '%s: error: %s\n' "$ME" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (try --help)\n' "$ME" "$*" >&2; exit 2; }

usage() {
    cat <<EOF
Usage: scripts/lab-host.sh build
       scripts/lab-host.sh run SUITE        (SUITE: ${SUITES[*]})
       scripts/lab-host.sh shell
       scripts/lab-host.sh --help

The lab host is a Debian 12 VM with systemd as PID 1, libvirtd and QEMU inside, booted
under TCG (-accel tcg,thread=multi,tb-size=512 -cpu Nehalem) with the topology below.
Guests inside it are type='qemu' (TCG in TCG). Run as root.

  build      Build the VM image with mmdebstrap from the mirrors this machine's apt
             uses, into \$LAB_CACHE ($CACHE): a Debian bookworm tree
             configured for the lab, an ext4 image of it (mke2fs -d), its kernel and
             initrd. Reused when its inputs (package list, mirrors, the build part of
             this script) did not change; the stamp file holds their hash. Installs
             the host packages it needs when missing:
             ${HOST_PACKAGES[*]}.
  run SUITE  Build if needed, build the release binary (cargo build --release), copy
             it with dist/, scripts/install.sh, scripts/lab/ and the guests' boot
             sector into a fresh 9p share, boot the VM on a throw-away overlay of the
             image, let its runner unit run the suite as root under systemd, collect
             the results and the console log, power off. Prints each case
             ("ok NAME ..." or "FAIL NAME: reason") and a last line
             "lab-SUITE: N passed, N failed"; exit status 1 when a case failed or
             anything needed is missing (never skipped). Holds $LOCK
             (flock) while the VM runs, as the real-guest tests do, so the two never
             share the host's CPUs. QEMU is killed on every exit path (Ctrl-C,
             timeout, error). Results stay in \$LAB_CACHE/results/SUITE-TIME/.
  shell      Boot the same VM with the serial console on this terminal (-serial
             mon:stdio): autologin as root, the share at /mnt/share with the files a
             run gets (run a suite by hand: /mnt/share/repo/scripts/lab/SUITE.sh).
             Leave with "poweroff", or Ctrl-A X to kill QEMU.

Environment:
  LAB_TOPOLOGY=NODESxCORESxTHREADS  CPU topology, default 2x2x2: NODES sockets, one
                      NUMA node each, of CORES cores of THREADS SMT threads
                      (-smp N*C*T,sockets=N,cores=C,threads=T; node i holds pCPUs
                      i*C*T .. (i+1)*C*T-1, as libvirt numbers them inside). The
                      service suite runs on any; the topology suite's cases are
                      written for 2 nodes of at least 3 pCPUs (it fails otherwise)
  LAB_MEM_PER_NODE=SIZE  memory of each node, default 2G (QEMU size syntax)
  LAB_TIMEOUT=SECONDS    the whole VM run, boot to power-off (default: service 900,
                      topology 900, shell none)
  LAB_BOOT_TIMEOUT=SECONDS  how long the system may take to come up (default 240;
                      about 40 s here): a boot that stalls past it (the guest kernel
                      under TCG hung in early boot once in some 30 boots so far) is
                      killed and booted once more from a fresh overlay, said in
                      the output, its console kept as console-stalled.log; the
                      suite itself never runs twice
  LAB_CACHE=DIR          where the image, the stamp and the results go (default
                      /var/cache/vcpu-scheduler-lab; never inside the repository)
  LAB_MIRROR, LAB_SECURITY_MIRROR  override the Debian mirrors read from apt's sources
  LAB_IMAGE_SIZE=SIZE    the ext4 image (sparse), default 4G
  LAB_LOCK_WAIT=SECONDS  how long to wait for $LOCK (default 3600)

Measured on the project's machine (2 cores, nested, TCG): see docs-lab-host.md.
EOF
}

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap --mode=root, mke2fs -d of a root-owned tree)"; }

# Installs the host packages that are missing (no network access when all are present).
ensure_host_packages() {
    local p missing=()
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# The mirror of suite $1 in apt's deb822 sources (or the one-line sources.list format).
mirror_for() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v want="$suite" '
            function flush() { if (uris != "" && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1]; found = 1; exit } uris = ""; suites = ""; types = "" }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0 }
            tolower($1) == "uris:" { $1 = ""; sub(/^ +/, ""); uris = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            END { if (!found) flush() }' "$f"
    done | head -n1 | grep . && return 0
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v want="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == want) { print $i; exit } }' "$f"
    done | head -n1 | grep .
}

MIRROR=
SECURITY_MIRROR=
find_mirrors() {
    MIRROR=${LAB_MIRROR:-$(mirror_for bookworm || true)}
    SECURITY_MIRROR=${LAB_SECURITY_MIRROR:-$(mirror_for bookworm-security || true)}
    [ -n "$MIRROR" ] || die "no bookworm mirror in /etc/apt/sources.list.d/*.sources or sources.list (set LAB_MIRROR)"
    [ -n "$SECURITY_MIRROR" ] || die "no bookworm-security mirror in apt's sources (set LAB_SECURITY_MIRROR)"
}

# Everything done to the tree after mmdebstrap. Part of the build's hash (declare -f).
configure_tree() {
    local t=$1
    echo lab >"$t/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 lab\n' >"$t/etc/hosts"
    # A fixed machine id: an empty one makes every boot of the overlay a "first boot".
    echo 6c61626c61626c61626c61626c61620a >"$t/etc/machine-id"
    cat >"$t/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 1
share /mnt/share 9p trans=virtio,version=9p2000.L,msize=512000,nofail 0 0
EOF
    mkdir -p "$t/mnt/share"
    printf '9p\n9pnet_virtio\n' >"$t/etc/modules-load.d/lab-9p.conf"
    chroot "$t" passwd -d root >/dev/null
    # The debugging shell: root logged in on the serial console without a password.
    mkdir -p "$t/etc/systemd/system/serial-getty@ttyS0.service.d"
    cat >"$t/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
    # The runner: once boot is done, the share's run.sh, its output to the share, power off.
    cat >"$t/usr/local/sbin/lab-runner" <<'EOF'
#!/bin/bash
# Runs /mnt/share/run.sh once the system is up, keeps its output and the journal in
# /mnt/share/results, and powers the lab host off whatever happened.
res=/mnt/share/results
mkdir -p "$res"
state=$(systemctl is-system-running --wait)
read -r up _ </proc/uptime
echo "lab-runner: system $state after $up s"
echo "$state $up" >"$res/ready"
systemctl --failed --no-legend --plain >"$res/failed-units" 2>&1
if [ -x /mnt/share/run.sh ]; then
    /mnt/share/run.sh 2>&1 | tee "$res/output.txt"
    echo "${PIPESTATUS[0]}" >"$res/rc"
else
    echo "lab-runner: /mnt/share/run.sh missing" | tee "$res/output.txt"
    echo 127 >"$res/rc"
fi
journalctl -b --no-pager >"$res/journal.txt" 2>&1
sync
systemctl poweroff
EOF
    chmod 0755 "$t/usr/local/sbin/lab-runner"
    cat >"$t/etc/systemd/system/lab-runner.service" <<'EOF'
[Unit]
Description=Lab host runner (/mnt/share/run.sh, then power off)
ConditionKernelCommandLine=lab.run=1
RequiresMountsFor=/mnt/share

[Service]
Type=simple
ExecStart=/usr/local/sbin/lab-runner
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/lab-runner.service "$t/etc/systemd/system/multi-user.target.wants/lab-runner.service"
    # libvirt: no network (the VM has no NIC and the guests none), guests are transient;
    # libvirt-guests would wait at power-off for boot sectors that ignore ACPI.
    rm -f "$t/etc/libvirt/qemu/networks/autostart/default.xml"
    # Nothing periodic during a run.
    local u
    for u in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
             e2scrub_reap.service fstrim.timer dpkg-db-backup.timer logrotate.timer \
             libvirt-guests.service; do
        ln -sf /dev/null "$t/etc/systemd/system/$u"
    done
}

build_key() {
    {
        echo "packages: ${TREE_PACKAGES[*]}"
        echo "mirrors: $MIRROR $SECURITY_MIRROR"
        echo "image size: $IMAGE_SIZE"
        declare -f configure_tree build_tree
    } | sha256sum | cut -d' ' -f1
}

artifacts_present() { [ -s "$CACHE/lab.img" ] && [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initrd.img" ]; }

# Free space in MiB of the file system holding $1.
free_mib() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }

build_tree() {
    local out=$1
    mmdebstrap --mode=root --variant=apt --quiet \
        --aptopt='Acquire::Retries "3"' \
        --include="$(IFS=,; echo "${TREE_PACKAGES[*]}")" \
        bookworm "$out/tree" \
        "deb $MIRROR bookworm main" \
        "deb $MIRROR bookworm-updates main" \
        "deb $SECURITY_MIRROR bookworm-security main" \
        || die "mmdebstrap failed (mirror $MIRROR)"
    configure_tree "$out/tree"
    local k i
    k=$(find "$out/tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
    i=$(find "$out/tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
    if [ -z "$k" ] || [ -z "$i" ]; then die "no kernel or initrd in the tree's /boot"; fi
    cp "$k" "$out/vmlinuz"
    cp "$i" "$out/initrd.img"
    mke2fs -q -t ext4 -L labroot -d "$out/tree" "$out/lab.img" "$IMAGE_SIZE" \
        || die "mke2fs -d failed"
}

cmd_build() {
    need_root
    ensure_host_packages
    find_mirrors
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    exec 8>"$CACHE/.build.lock"
    flock 8
    local key t0=$SECONDS
    key=$(build_key)
    if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$key" ] && artifacts_present; then
        say "image up to date in $CACHE (inputs unchanged, stamp $key)"
        exec 8>&-
        return 0
    fi
    local avail
    avail=$(free_mib "$CACHE")
    [ "$avail" -ge 3072 ] || die "$CACHE has ${avail} MiB free; the build needs about 3 GiB"
    local new=$CACHE/build.new
    rm -rf "$new"
    mkdir -p "$new"
    trap 'rm -rf "$new"' EXIT
    say "building the image from $MIRROR (and $SECURITY_MIRROR) into $CACHE"
    build_tree "$new"
    rm -f "$CACHE/stamp"
    mv -f "$new/lab.img" "$new/vmlinuz" "$new/initrd.img" "$CACHE/"
    rm -rf "$new"
    trap - EXIT
    echo "$key" >"$CACHE/stamp"
    exec 8>&-
    say "built in $((SECONDS - t0)) s: $CACHE/lab.img ($(du -h "$CACHE/lab.img" | cut -f1) used), stamp $key"
}

# ---- run and shell ----------------------------------------------------------------------

NODES='' CORES='' THREADS='' NCPUS='' MEM_MIB=''
parse_topology() {
    [[ $TOPOLOGY =~ ^([1-9][0-9]*)x([1-9][0-9]*)x([1-9][0-9]*)$ ]] \
        || usage_error "LAB_TOPOLOGY=$TOPOLOGY: expected NODESxCORESxTHREADS, e.g. 2x2x2"
    NODES=${BASH_REMATCH[1]} CORES=${BASH_REMATCH[2]} THREADS=${BASH_REMATCH[3]}
    NCPUS=$((NODES * CORES * THREADS))
    [ "$NCPUS" -le 64 ] || usage_error "LAB_TOPOLOGY=$TOPOLOGY: $NCPUS CPUs; at most 64"
    [[ $MEM_PER_NODE =~ ^([1-9][0-9]*)([MG])$ ]] \
        || usage_error "LAB_MEM_PER_NODE=$MEM_PER_NODE: expected a size like 2G or 1536M"
    local n=${BASH_REMATCH[1]}
    if [ "${BASH_REMATCH[2]}" = G ]; then MEM_MIB=$((n * 1024)); else MEM_MIB=$n; fi
    [ "$MEM_MIB" -ge 512 ] || usage_error "LAB_MEM_PER_NODE=$MEM_PER_NODE: at least 512M per node"
}

# The QEMU command line for the lab host: TCG (this machine's kvm_pvm does not boot a stock
# kernel), -cpu Nehalem (an AMD-style model shows no SMT siblings under TCG), one socket per
# NUMA node, each with its own memory backend. $1: overlay image, $2: share, $3: extra
# kernel arguments; the caller adds the serial console and the monitor.
QEMU_ARGS=()
qemu_args() {
    local overlay=$1 share=$2 extra=$3 i per=$((CORES * THREADS))
    # shellcheck disable=SC2054  # commas inside QEMU's options
    QEMU_ARGS=(qemu-system-x86_64 -name lab-host,debug-threads=on
        -accel tcg,thread=multi,tb-size=512 -cpu Nehalem
        -m "$((NODES * MEM_MIB))M"
        -smp "$NCPUS,sockets=$NODES,cores=$CORES,threads=$THREADS")
    for ((i = 0; i < NODES; i++)); do
        QEMU_ARGS+=(-object "memory-backend-ram,id=m$i,size=${MEM_MIB}M"
            -numa "node,nodeid=$i,cpus=$((i * per))-$(((i + 1) * per - 1)),memdev=m$i")
    done
    QEMU_ARGS+=(-kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img"
        -append "root=/dev/vda rw console=ttyS0 $extra"
        -drive "file=$overlay,if=virtio,format=qcow2"
        -virtfs "local,path=$share,mount_tag=share,security_model=passthrough,id=share"
        -nic none -display none -no-reboot)
}

# Fills share dir $1 with what the VM needs for suite $2 (empty: the shell).
prepare_share() {
    local share=$1 suite=$2
    mkdir -p "$share/repo/scripts" "$share/repo/target/release" "$share/guests" "$share/results"
    cp -a "$REPO/dist" "$share/repo/"
    cp -a "$REPO/scripts/install.sh" "$REPO/scripts/lab" "$share/repo/scripts/"
    # -p keeps the mtime, so install.sh sees the binary as up to date, as after a build.
    cp -p "$REPO/target/release/vcpu-scheduler" "$share/repo/target/release/"
    # The guests' boot sector is assembled here: the lab host has no binutils.
    if ! { as --32 "$REPO/scripts/lab/guest.S" -o "$share/guests/guest.o" &&
           ld -m elf_i386 -Ttext 0x7c00 --oformat binary "$share/guests/guest.o" -o "$share/guests/guest.bin"; }; then
        die "cannot assemble scripts/lab/guest.S (as and ld, from binutils)"
    fi
    [ "$(stat -c %s "$share/guests/guest.bin")" -eq 512 ] || die "scripts/lab/guest.S must assemble to 512 bytes"
    cat >"$share/lab.env" <<EOF
LAB_NODES=$NODES
LAB_CORES=$CORES
LAB_THREADS=$THREADS
LAB_MEM_PER_NODE=$MEM_PER_NODE
LAB_SUITE=lab-${suite:-shell}
EOF
    if [ -n "$suite" ]; then
        printf '#!/bin/bash\nexec bash /mnt/share/repo/scripts/lab/%s.sh\n' "$suite" >"$share/run.sh"
        chmod 0755 "$share/run.sh"
    fi
}

# The release binary the VM installs, built as an operator would (cargo is a no-op when fresh).
build_binary() {
    command -v cargo >/dev/null || die "cargo not found: the lab installs target/release/vcpu-scheduler"
    (cd "$REPO" && cargo build --release --quiet --bin vcpu-scheduler) \
        || die "cargo build --release --bin vcpu-scheduler failed"
}

# Takes the real-guest tests' host lock on fd 9 (QEMU inherits it, so it is held for as
# long as the VM runs, even if this script is killed).
take_lock() {
    exec 9>>"$LOCK" || die "cannot open $LOCK"
    if ! flock -n 9; then
        say "waiting for $LOCK (a real-guest test run or another lab run holds the host's CPUs)"
        flock -w "$LOCK_WAIT_S" 9 || die "$LOCK still held after $LOCK_WAIT_S s"
    fi
}

# Starts the VM in the background (QEMU_ARGS, console to the run dir), QEMU_PID its pid;
# under timeout(1) as well, so QEMU ends even if this script is killed with SIGKILL.
start_qemu() {
    timeout --kill-after=10 $(($1 + 30)) "${QEMU_ARGS[@]}" -monitor none \
        -serial "file:$RUN_DIR/console.log" -pidfile "$RUN_DIR/qemu.pid" </dev/null >"$RUN_DIR/qemu.log" 2>&1 &
    QEMU_PID=$!
}

# Stops the VM: TERM, then KILL after 10 s, and QEMU itself by its pidfile if it outlived
# timeout(1); QEMU_PID cleared.
stop_qemu() {
    local i
    if [ -n "$QEMU_PID" ]; then
        if kill -0 "$QEMU_PID" 2>/dev/null; then
            say "stopping QEMU (pid $QEMU_PID)"
            kill -TERM "$QEMU_PID" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.2; done
            kill -KILL "$QEMU_PID" 2>/dev/null || true
        fi
        # Killed, it exits non-zero: expected here, and not an error under errexit.
        wait "$QEMU_PID" 2>/dev/null || true
        QEMU_PID=
    fi
    # QEMU itself, should timeout(1) have gone without it.
    local qpid
    qpid=$(cat "$RUN_DIR/qemu.pid" 2>/dev/null || true)
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null && grep -q qemu "/proc/$qpid/comm" 2>/dev/null; then
        kill -KILL "$qpid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
    fi
}

RUN_DIR='' QEMU_PID='' KEEP_DIR='' RUN_SUITE='' CLOSED=''
# shellcheck disable=SC2317  # run by the EXIT trap
# Every exit path: QEMU killed (TERM, then KILL), results kept, the overlay and share
# removed; a run stopped before its closing line still ends with one, counting a failure.
cleanup_run() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e   # every step runs: a failing kill or wait must not end the cleanup (errexit)
    if [ -n "$RUN_SUITE" ] && [ -z "$CLOSED" ]; then
        local p=0 f=0 out=$RUN_DIR/share/results/output.txt
        if [ -f "$out" ]; then
            p=$(grep -c '^ok ' "$out" || true)
            f=$(grep -c '^FAIL ' "$out" || true)
        fi
        echo "FAIL lab-run: stopped before the suite finished (see the message above)"
        echo "lab-$RUN_SUITE: $p passed, $((f + 1)) failed"
        [ "$rc" -ne 0 ] || rc=1
    fi
    stop_qemu
    if [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ]; then
        if [ -n "$KEEP_DIR" ]; then
            mkdir -p "$KEEP_DIR"
            cp -a "$RUN_DIR/console.log" "$RUN_DIR/qemu.log" "$KEEP_DIR/" 2>/dev/null
            cp -a "$RUN_DIR/console-stalled.log" "$KEEP_DIR/" 2>/dev/null
            cp -a "$RUN_DIR/share/results/." "$KEEP_DIR/" 2>/dev/null
        fi
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}

new_run_dir() {
    local what=$1 avail
    avail=$(free_mib "$CACHE")
    [ "$avail" -ge 2048 ] || die "$CACHE has ${avail} MiB free; a run needs about 2 GiB (overlay, share)"
    RUN_DIR=$CACHE/runs/$what-$(date +%Y%m%d-%H%M%S)-$$
    mkdir -p "$RUN_DIR/share" || die "cannot create $RUN_DIR"
    qemu-img create -q -f qcow2 -F raw -b "$CACHE/lab.img" "$RUN_DIR/overlay.qcow2" \
        || die "qemu-img create failed"
}

# Lines $2..$3 of the suite's output $1, without its own closing line (ours replaces it).
suite_lines() { sed -n "$2,$3p" "$1" | grep -v -E '^lab-[a-z]+: [0-9]+ passed, [0-9]+ failed$' || true; }

cmd_run() {
    local suite=${1:-}
    [ -n "$suite" ] || usage_error "run needs a suite (${SUITES[*]})"
    [[ " ${SUITES[*]} " == *" $suite "* ]] || usage_error "unknown suite '$suite' (${SUITES[*]})"
    [ $# -le 1 ] || usage_error "run takes one suite"
    # From here on every exit, a bad setting included, ends with the suite's closing line.
    trap cleanup_run EXIT
    trap 'say interrupted; exit 130' INT
    trap 'say terminated; exit 143' TERM HUP
    RUN_SUITE=$suite
    parse_topology
    need_root
    local t_start=$SECONDS timeout_s=${LAB_TIMEOUT:-900} boot_s=${LAB_BOOT_TIMEOUT:-240}
    [[ $timeout_s =~ ^[1-9][0-9]*$ ]] || usage_error "LAB_TIMEOUT=$timeout_s: expected seconds"
    [[ $boot_s =~ ^[1-9][0-9]*$ ]] || usage_error "LAB_BOOT_TIMEOUT=$boot_s: expected seconds"
    cmd_build
    trap cleanup_run EXIT
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    build_binary
    new_run_dir "$suite"
    KEEP_DIR=$CACHE/results/${RUN_DIR##*/}
    # Results of the 20 latest runs are kept.
    mkdir -p "$CACHE/results"
    find "$CACHE/results" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
        sort -rn | tail -n +20 | cut -d' ' -f2- | xargs -r rm -rf || true
    prepare_share "$RUN_DIR/share" "$suite"
    qemu_args "$RUN_DIR/overlay.qcow2" "$RUN_DIR/share" "lab.run=1"
    take_lock
    local t_boot=$SECONDS attempt=1
    say "booting the lab host: $TOPOLOGY ($NCPUS CPUs, $NODES x $MEM_PER_NODE), suite $suite, timeout ${timeout_s} s"
    start_qemu "$timeout_s"
    local res=$RUN_DIR/share/results shown=0 ready_said='' deadline=$((SECONDS + timeout_s)) timed_out=''
    local out=$res/output.txt n
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then timed_out=yes; break; fi
        if [ -z "$ready_said" ] && [ ! -s "$res/ready" ] && [ $((SECONDS - t_boot)) -ge "$boot_s" ] &&
            [ "$attempt" -eq 1 ]; then
            # The suite has not started (it starts only once the system is up): booting
            # again runs nothing twice.
            say "boot stalled: the system was not up ${boot_s} s after QEMU started; the console's last line: $(tail -n 1 "$RUN_DIR/console.log" 2>/dev/null | tr -d '\r')"
            stop_qemu
            mv "$RUN_DIR/console.log" "$RUN_DIR/console-stalled.log"
            qemu-img create -q -f qcow2 -F raw -b "$CACHE/lab.img" "$RUN_DIR/overlay.qcow2" \
                || die "qemu-img create failed"
            attempt=2 t_boot=$SECONDS deadline=$((SECONDS + timeout_s))
            say "booting the lab host again (attempt 2 of 2), timeout ${timeout_s} s"
            start_qemu "$timeout_s"
            continue
        fi
        if [ -z "$ready_said" ] && [ -s "$res/ready" ]; then
            ready_said=yes
            say "system $(cut -d' ' -f1 "$res/ready") $((SECONDS - t_boot)) s after QEMU started ($(cut -d' ' -f2 "$res/ready") s of uptime inside)"
        fi
        if [ -f "$out" ]; then
            # Complete lines only, counted first: what arrives meanwhile is shown next time.
            n=$(wc -l <"$out")
            [ "$n" -le "$shown" ] || suite_lines "$out" $((shown + 1)) "$n"
            shown=$n
        fi
        sleep 1
    done
    local t_end=$SECONDS
    if [ -n "$timed_out" ]; then
        say "timeout: the VM ran past ${timeout_s} s (LAB_TIMEOUT); killing QEMU"
    else
        local qrc=0
        wait "$QEMU_PID" || qrc=$?
        QEMU_PID=
        [ "$qrc" -eq 0 ] || say "QEMU exited with status $qrc: $(tail -n 3 "$RUN_DIR/qemu.log" | tr '\n' ' ')"
    fi
    [ -f "$out" ] && suite_lines "$out" $((shown + 1)) '$'
    local passed=0 failed=0 rc=
    if [ -f "$out" ]; then
        passed=$(grep -c '^ok ' "$out" || true)
        failed=$(grep -c '^FAIL ' "$out" || true)
    fi
    rc=$(cat "$res/rc" 2>/dev/null || true)
    if [ -z "$rc" ]; then
        echo "FAIL lab-run: the suite did not finish (timeout, crash or no boot); console: $KEEP_DIR/console.log"
        tail -n 15 "$RUN_DIR/console.log" 2>/dev/null | sed 's/^/# console: /'
        failed=$((failed + 1))
    elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "FAIL lab-run: the suite exited with status $rc and no failed case; see $KEEP_DIR/output.txt"
        failed=$((failed + 1))
    fi
    if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then echo "FAIL lab-run: no case ran"; failed=1; fi
    say "wall time: $((t_end - t_boot)) s from QEMU start to power-off, $((SECONDS - t_start)) s in all; results in $KEEP_DIR"
    echo "lab-$suite: $passed passed, $failed failed"
    CLOSED=yes
    [ "$failed" -eq 0 ]
}

cmd_shell() {
    [ $# -eq 0 ] || usage_error "shell takes no argument"
    parse_topology
    need_root
    trap cleanup_run EXIT
    cmd_build
    trap cleanup_run EXIT
    build_binary
    new_run_dir shell
    prepare_share "$RUN_DIR/share" ""
    qemu_args "$RUN_DIR/overlay.qcow2" "$RUN_DIR/share" ""
    take_lock
    say "booting the lab host ($TOPOLOGY) on this terminal: root logs in by itself on ttyS0 (about a minute);"
    say "the share is /mnt/share (suites: /mnt/share/repo/scripts/lab/SUITE.sh); leave with poweroff, or Ctrl-A X"
    "${QEMU_ARGS[@]}" -serial mon:stdio
}

main() {
    case ${1:-} in
        build) cmd_build ;;
        run) shift; cmd_run "$@" ;;
        shell) shift; cmd_shell "$@" ;;
        -h|--help|help) usage ;;
        "") usage_error "a command is needed" ;;
        *) usage_error "unknown command '$1'" ;;
    esac
}

# One line, read whole before it runs: editing this file during a run cannot change it.
main "$@"; exit
