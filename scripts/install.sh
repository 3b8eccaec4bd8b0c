#!/usr/bin/env bash
# Installs vcpu-scheduler as a systemd service: the binary in /usr/local/sbin, the unit in
# /etc/systemd/system, the example settings in /etc/default/vcpu-scheduler (only when that
# file does not exist yet: it is the operator's). Where systemd runs, enables and starts the
# service, and restarts it when a re-install changed the binary or the unit. Idempotent: a
# second run changes nothing and says so. Run as root. `--help` for the options.
set -euo pipefail

ME=install.sh
REPO=$(cd "$(dirname "$0")/.." && pwd)
UNIT_NAME=vcpu-scheduler.service
BIN_PATH=/usr/local/sbin/vcpu-scheduler
UNIT_PATH=/etc/systemd/system/$UNIT_NAME
CONFIG_PATH=/etc/default/vcpu-scheduler

say() { printf '%s: %s\n' "$ME" "$*"; }
die() { printf '%s: error: %s\n' "$ME" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (try --help)\n' "$ME" "$*" >&2; exit 2; }

usage() {
    cat <<EOF
Usage: scripts/install.sh [--root DIR] [--binary FILE] [--uninstall]

Installs vcpu-scheduler as a systemd service:
  $BIN_PATH        the binary (mode 0755)
  $UNIT_PATH  the unit (0644)
  $CONFIG_PATH         the settings (0644), only if absent: never overwritten
Where systemd runs: daemon-reload, enable --now, and a restart when a re-install
changed the binary or the unit. Elsewhere the files are installed and nothing started.

Options:
  --root DIR     install under DIR instead of / (as DESTDIR does); systemctl is not
                 run. Also ROOT=DIR in the environment.
  --binary FILE  install FILE instead of target/release/vcpu-scheduler (which is
                 built with cargo when missing or older than the sources). Also
                 VCPU_SCHEDULER_BIN=FILE in the environment.
  --uninstall    stop and disable the service, remove the binary and the unit; keep
                 $CONFIG_PATH
  -h, --help     this text

Exit status: 0 done (or nothing to do), 1 a step failed, 2 bad usage.
EOF
}

root=${ROOT:-/}
binary=${VCPU_SCHEDULER_BIN:-}
uninstall=no
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; root=$2; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a file"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --uninstall) uninstall=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done
[ -n "$root" ] || usage_error "--root needs a directory"
root=${root%/}   # "/" becomes "", so "$root$BIN_PATH" is the real path
[ -z "$root" ] || [ -d "$root" ] || die "--root $root: no such directory"

# Only the real system needs root; a --root tree belongs to whoever builds it.
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (writes $BIN_PATH, $UNIT_PATH, runs systemctl); or --root DIR"
fi
if [ -n "$binary" ] && [ "$uninstall" = no ]; then
    [ -f "$binary" ] || die "--binary $binary: no such file"
    [ -x "$binary" ] || die "--binary $binary: not executable"
fi

# systemctl only when systemd is PID 1 and the target is this system. One line says why not.
use_systemctl=no
if [ ! -d /run/systemd/system ]; then
    say "systemd is not running here (no /run/systemd/system): files only, systemctl not run"
elif [ -n "$root" ]; then
    say "working under $root: files only, systemctl not run"
else
    use_systemctl=yes
fi

systemctl_or_die() { systemctl "$@" || die "systemctl $* failed (journalctl -u $UNIT_NAME says why)"; }

if [ "$uninstall" = yes ]; then
    if [ "$use_systemctl" = yes ] && [ -e "$UNIT_PATH" ]; then
        say "stopping and disabling $UNIT_NAME"
        systemctl_or_die disable --now "$UNIT_NAME"
    fi
    removed=0
    for f in "$BIN_PATH" "$UNIT_PATH"; do
        if [ -e "$root$f" ] || [ -L "$root$f" ]; then
            rm -f "$root$f" || die "cannot remove $root$f"
            say "removed $root$f"
            removed=$((removed + 1))
        fi
    done
    if [ "$use_systemctl" = yes ] && [ $removed -gt 0 ]; then
        systemctl_or_die daemon-reload
    fi
    [ $removed -gt 0 ] || say "nothing to remove: $root$BIN_PATH and $root$UNIT_PATH are absent"
    if [ -e "$root$CONFIG_PATH" ]; then
        say "kept $root$CONFIG_PATH (the operator's settings): remove it by hand if unwanted"
    fi
    exit 0
fi

# The binary: the one given, else the release build, rebuilt when missing or stale.
if [ -z "$binary" ]; then
    binary=$REPO/target/release/vcpu-scheduler
    why=
    if [ ! -x "$binary" ]; then
        why="missing"
    elif [ -n "$(cd "$REPO" && find src build.rs wrapper.h Cargo.toml Cargo.lock \
                 -newer "$binary" -print -quit 2>/dev/null)" ]; then
        why="older than the sources"
    fi
    if [ -n "$why" ]; then
        command -v cargo >/dev/null \
            || die "cargo not found: install Rust, or pass --binary FILE (target/release/vcpu-scheduler is $why)"
        say "building the release binary (target/release/vcpu-scheduler is $why)"
        (cd "$REPO" && cargo build --release --bin vcpu-scheduler) \
            || die "cargo build --release --bin vcpu-scheduler failed"
    fi
fi

unit_src=$REPO/dist/$UNIT_NAME
for f in "$unit_src" "$REPO/dist/vcpu-scheduler.default"; do
    [ -f "$f" ] || die "$f is missing: run from a complete checkout"
done

# Where libvirt's modular daemons are enabled (systemctl enable makes these links; in a
# --root tree they may dangle), want virtqemud instead of libvirtd: the modular units
# carry Conflicts=libvirtd.service, so starting libvirtd would stop them.
modular=no
for link in multi-user.target.wants/virtqemud.service sockets.target.wants/virtqemud.socket; do
    if [ -e "$root/etc/systemd/system/$link" ] || [ -L "$root/etc/systemd/system/$link" ]; then
        modular=yes
    fi
done
if [ "$modular" = yes ]; then
    tmp=$(mktemp) || die "mktemp failed"
    trap 'rm -f "$tmp"' EXIT
    sed 's/^Wants=libvirtd\.service$/Wants=virtqemud.service/' "$unit_src" >"$tmp" \
        || die "cannot write $tmp"
    unit_src=$tmp
    say "virtqemud is enabled here (modular libvirt daemons): the unit wants virtqemud.service, not libvirtd.service"
fi

# Installs $1 as $2 with mode $3 unless $2 already has those bytes and that mode.
# Prints what it did; returns 0 when it changed something, 1 when it had nothing to do.
put() {
    local src=$1 dest=$root$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        [ "$(stat -c %a "$dest")" = "${mode#0}" ] && return 1
        chmod "$mode" "$dest" || die "cannot chmod $mode $dest"
        say "set mode $mode on $dest"
        return 0
    fi
    local what=installed
    [ -e "$dest" ] && what=updated
    install -d -m 0755 "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
    # install(1) unlinks the old file first, so a running binary is replaced, not rewritten.
    install -m "$mode" "$src" "$dest" || die "cannot install $src as $dest"
    say "$what $dest"
}

binary_changed=no
unit_changed=no
config_changed=no
put "$binary" "$BIN_PATH" 0755 && binary_changed=yes
put "$unit_src" "$UNIT_PATH" 0644 && unit_changed=yes
if [ -e "$root$CONFIG_PATH" ]; then
    if ! cmp -s "$REPO/dist/vcpu-scheduler.default" "$root$CONFIG_PATH"; then
        say "kept $root$CONFIG_PATH (the operator's settings; dist/vcpu-scheduler.default lists every key)"
    fi
else
    put "$REPO/dist/vcpu-scheduler.default" "$CONFIG_PATH" 0644 && config_changed=yes
fi

service_changed=no
if [ "$use_systemctl" = yes ]; then
    [ "$unit_changed" = no ] || systemctl_or_die daemon-reload
    if ! systemctl is-enabled --quiet "$UNIT_NAME"; then
        say "enabling and starting $UNIT_NAME"
        systemctl_or_die enable --now "$UNIT_NAME"
        service_changed=yes
    elif ! systemctl is-active --quiet "$UNIT_NAME"; then
        say "starting $UNIT_NAME"
        systemctl_or_die start "$UNIT_NAME"
        service_changed=yes
    elif [ "$binary_changed" = yes ] || [ "$unit_changed" = yes ]; then
        say "restarting $UNIT_NAME (new binary or unit)"
        systemctl_or_die restart "$UNIT_NAME"
        service_changed=yes
    fi
fi

if [ "$binary_changed$unit_changed$config_changed$service_changed" = nononono ]; then
    say "nothing changed: binary, unit and settings already installed"
else
    say "done"
fi
