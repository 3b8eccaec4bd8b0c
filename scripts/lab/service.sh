#!/usr/bin/env bash
# The lab host's service suite: vcpu-scheduler installed by scripts/install.sh as an
# operator would, supervised by the real systemd (PID 1 in the lab host), on a real
# libvirtd. Runs inside the lab host as root (scripts/lab-host.sh run service).
set -uo pipefail
LAB_SUITE=lab-service
# shellcheck source=scripts/lab/lib.sh
. "$(dirname "$0")/lib.sh"

UNIT=vcpu-scheduler
SETTINGS=/etc/default/vcpu-scheduler
PROM_DIR=/var/lib/prometheus/node-exporter
PROM=$PROM_DIR/vcpu-scheduler.prom
ELSEWHERE_DIR=/var/lib/vcpu-lab-elsewhere
WATCHDOG_HOLD_S=${LAB_WATCHDOG_HOLD:-130}   # > 2 x WatchdogSec=60s
G=(a:1:b:0 b:1:b:0)                         # two busy 1-vCPU guests, born on pCPU 0

trap guests_destroy_all EXIT

prop() { systemctl show -p "$1" --value "$UNIT"; }
main_pid() { prop MainPID; }
nrestarts() { prop NRestarts; }
# Journal lines of the unit since epoch second $1 (priority $2, default all), message only.
journal_since() { journalctl -q -u "$UNIT" --since "@$1" ${2:+-p "$2"} -o cat --no-pager; }
# Epoch seconds (fraction) of the first line since $1 matching ERE $2, or nothing.
first_line_at() {
    journalctl -q -u "$UNIT" --since "@$1" -o short-unix --no-pager | grep -E -m1 "$2" | cut -d' ' -f1
}
now() { date +%s.%N; }
mono_us() { awk '{ printf "%d", $1 * 1e6 }' /proc/uptime; }   # CLOCK_BOOTTIME, as systemd's *Monotonic (no suspend here)
us_s() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
tick_of() { sed -n 's/^tick \([0-9]*\):.*/\1/p' <<<"$1"; }

# True when guests a and b run on different pCPUs, each pinned to one (from /proc).
split_ok() {
    local x y
    x=$(vcpu_affinity a 0) && y=$(vcpu_affinity b 0) || return 1
    [[ $x =~ ^[0-9]+$ && $y =~ ^[0-9]+$ ]] && [ "$x" != "$y" ]
}
pin_both_to_0() { repin 0 "${G[@]}"; }

set_setting() {   # KEY VALUE: replace or append KEY=VALUE in the settings file
    if grep -q "^$1=" "$SETTINGS"; then sed -i "s|^$1=.*|$1=$2|" "$SETTINGS"; else echo "$1=$2" >>"$SETTINGS"; fi
}
unit_active() { [ "$(prop ActiveState)" = active ]; }
# Active and ticking: StatusText is a tick line that changes within 4 s.
ticking() {
    local a b
    unit_active || return 1
    a=$(prop StatusText)
    sleep 4
    b=$(prop StatusText)
    [ -n "$(tick_of "$b")" ] && [ "$a" != "$b" ]
}

note "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), libvirt $(virsh -q version --daemon 2>/dev/null | awk '/daemon/ { print $NF }')"

# ---- guests --------------------------------------------------------------------------
case_start guests "two busy 1-vCPU guests born on pCPU 0"
if guests_start "${G[@]}" && guests_go a b; then
    ok guests "running: $(placement "${G[@]}")"
else
    fail guests "could not start the guests: the cases that judge pins will fail too"
fi

# ---- install -------------------------------------------------------------------------
case_start install "scripts/install.sh as root, as an operator runs it"
t=$SECONDS
if out=$("$REPO/scripts/install.sh" 2>&1); then
    if systemctl is-enabled -q "$UNIT" && unit_active && [ -x /usr/local/sbin/vcpu-scheduler ] &&
       [ -f /etc/systemd/system/$UNIT.service ] && [ -f "$SETTINGS" ]; then
        ok install "$((SECONDS - t)) s; enabled, active, pid $(main_pid); $(tail -n1 <<<"$out")"
    else
        fail install "installed but not enabled and active: $(prop ActiveState)/$(prop SubState); $(tr '\n' '|' <<<"$out")"
    fi
else
    fail install "install.sh failed: $(tr '\n' '|' <<<"$out")"
fi
note "unit: Type=$(prop Type) Restart=$(prop Restart) RestartUSec=$(prop RestartUSec) WatchdogUSec=$(prop WatchdogUSec) RestartPreventExitStatus='$(prop RestartPreventExitStatus)'"

# ---- start returns after READY=1 -------------------------------------------------------
case_start start-ready "systemctl start returns only after READY=1"
systemctl stop "$UNIT"
t0=$(now)
m0=$(mono_us)
systemctl start "$UNIT"
rc=$?
m1=$(mono_us)
t1=$(now)
state=$(prop ActiveState)/$(prop SubState)
exec_at=$(prop ExecMainStartTimestampMonotonic)
active_at=$(prop ActiveEnterTimestampMonotonic)
connected=$(journal_since "${t0%.*}" | grep -m1 'connected to')
# Type=notify: systemd enters "active" at READY=1, so READY came after exec and before
# start returned. (The journal's time of the 'connected to' line is when journald read
# it, seconds late in the loaded lab host: not a clock to order by.)
if [ $rc -eq 0 ] && [ "$state" = active/running ] && [ "$(prop Type)" = notify ] &&
   [ "$exec_at" -ge "$m0" ] && [ "$active_at" -gt "$exec_at" ] && [ "$active_at" -le $((m1 + 10000)) ] && [ -n "$connected" ]; then
    ok start-ready "start returned after $(secs "$t0" "$t1") s, $state at once; READY $(us_s $((active_at - exec_at))) s after exec and $(us_s $((m1 - active_at))) s before start returned; '$(cut -c1-70 <<<"$connected")'"
else
    fail start-ready "rc $rc, state $state right after start, Type=$(prop Type); monotonic us: start called $m0, exec $exec_at, active (READY) $active_at, start returned $m1; connected line '${connected:-none}'"
fi

# The operator's settings for the rest: metrics for node_exporter, and an unknown key,
# which the daemon warns about (the priorities case reads that warning).
mkdir -p "$PROM_DIR"
set_setting METRICS_FILE "$PROM"
set_setting LAB_NOT_A_KEY yes
t_restart=$(date +%s)
systemctl restart "$UNIT"
T0=$SECONDS
PID0=$(main_pid)
NR0=$(nrestarts)
note "restarted with METRICS_FILE=$PROM and an unknown key: pid $PID0, NRestarts $NR0"
# The first daemon may have split them already: both back onto pCPU 0 for this one.
pin_both_to_0
note "guests pinned back onto pCPU 0: $(placement "${G[@]}")"

# ---- the sandboxed daemon pins guests -------------------------------------------------
case_start sandbox-pins "the daemon, inside its sandbox, pins the two guests apart"
if wait_until 60 split_ok; then
    ok sandbox-pins "$(placement "${G[@]}") after $((SECONDS - T0)) s; usage $(usage_over 2 "${G[@]}"); $(journal_since "$t_restart" | grep -c '^moved') move lines"
else
    fail sandbox-pins "still $(placement "${G[@]}") after 60 s; journal: $(journal_since "$t_restart" | tail -n 3 | tr '\n' '|')"
fi

# ---- STATUS= -----------------------------------------------------------------------
case_start status-text "StatusText and systemctl status show the last tick's STATUS= line"
s1=$(prop StatusText)
sleep 5
s2=$(prop StatusText)
st=$(systemctl status "$UNIT" --no-pager 2>&1 | grep -m1 'Status:' | sed 's/^ *//')
n1=$(tick_of "$s1")
n2=$(tick_of "$s2")
if [ -n "$n1" ] && [ -n "$n2" ] && [ "$n2" -gt "$n1" ] && [[ $st == *"tick "* ]]; then
    ok status-text "'$s1' then, 5 s later, '$s2'; systemctl status: $st"
else
    fail status-text "StatusText '$s1' then '$s2' (ticks must advance), systemctl status '$st'"
fi

# ---- the metrics file, where the unit allows it ------------------------------------------
case_start metrics-file "METRICS_FILE in node_exporter's directory (ReadWritePaths) is written each tick, and agrees with /proc"
if [ -s "$PROM" ]; then
    m1=$(stat -c %Y "$PROM")
    sleep 4
    m2=$(stat -c %Y "$PROM")
    bad=
    for g in a b; do
        want=$(vcpu_affinity "$g" 0)
        got=$(awk -v d="${PREFIX}$g" '/^vcpu_scheduler_vcpu_pinned_pcpu\{/ && index($0, "domain=\"" d "\"") { print $NF }' "$PROM")
        [ "$want" = "$got" ] || bad+="$g: metrics say pcpu '$got', /proc '$want'; "
    done
    if [ "$m2" -gt "$m1" ] && [ -z "$bad" ]; then
        ok metrics-file "$PROM rewritten ($(wc -l <"$PROM") lines), pinned_pcpu of both guests equals their /proc affinity"
    else
        fail metrics-file "${bad}mtime $m1 then $m2"
    fi
else
    fail metrics-file "$PROM absent or empty; journal: $(journal_since "$t_restart" | grep -i metric | tr '\n' '|')"
fi

# ---- journal priorities --------------------------------------------------------------
case_start journal-priorities "journalctl -p warning shows the warnings and not the info lines"
warn=$(journal_since "$t_restart" warning)
info=$(journal_since "$t_restart" info)
if grep -q LAB_NOT_A_KEY <<<"$warn" && ! grep -q 'connected to' <<<"$warn" &&
   grep -q 'connected to' <<<"$info" && ! grep -q '^<[0-7]>' <<<"$info"; then
    ok journal-priorities "-p warning: $(wc -l <<<"$warn") line(s), '$(head -n1 <<<"$warn")'; the 'connected to' line only at info; no '<N>' left in messages"
else
    fail journal-priorities "-p warning gave '$(tr '\n' '|' <<<"$warn")'; -p info gave '$(head -n 3 <<<"$info" | tr '\n' '|')'"
fi

# ---- systemctl reload ----------------------------------------------------------------
case_start reload "systemctl reload applies a changed setting (THRESHOLD 5 -> 7) in the same process"
set_setting THRESHOLD 7
t_reload=$(date +%s)
rout=$(systemctl reload "$UNIT" 2>&1)
rrc=$?
sleep 6
line=$(journal_since "$t_reload" | grep -i -E 'reload|threshold' | head -n1)
thr=$(awk '/^vcpu_scheduler_threshold_ratio / { print $2 }' "$PROM" 2>/dev/null)
if [ $rrc -eq 0 ] && [ "$(main_pid)" = "$PID0" ] && [ -n "$line" ] && [ "$thr" = 0.07 ]; then
    ok reload "same pid $PID0; '$line'; metrics threshold_ratio $thr"
else
    fail reload "systemctl reload: rc $rrc ('$(tr '\n' ' ' <<<"$rout")'); pid $PID0 -> $(main_pid); log line '${line:-none}'; threshold_ratio '${thr:-?}' (want 0.07); ExecReload='$(prop ExecReload)' (SIGHUP reload not implemented yet?)"
fi

# ---- the watchdog keeps it alive over minutes ------------------------------------------
case_start watchdog "WatchdogSec=60s: alive, same pid, no restart for ${WATCHDOG_HOLD_S} s"
left=$((T0 + WATCHDOG_HOLD_S - SECONDS))
[ $left -le 0 ] || sleep $left
wd_at=$(prop WatchdogTimestampMonotonic)
up_us=$(awk '{ printf "%d", $1 * 1e6 }' /proc/uptime)
age=$(awk -v a="$wd_at" -v u="$up_us" 'BEGIN { printf "%.1f", (u - a) / 1e6 }')
if unit_active && [ "$(main_pid)" = "$PID0" ] && [ "$(nrestarts)" = "$NR0" ] &&
   [ "$(prop WatchdogUSec)" = 1min ] && awk -v a="$age" 'BEGIN { exit !(a < 35) }'; then
    ok watchdog "pid $PID0 ran $((SECONDS - T0)) s, NRestarts $NR0, WatchdogUSec=1min, last ping ${age} s ago; $(prop StatusText)"
else
    fail watchdog "state $(prop ActiveState), pid $PID0 -> $(main_pid), NRestarts $NR0 -> $(nrestarts), WatchdogUSec=$(prop WatchdogUSec), last ping ${age} s ago"
fi

# ---- kill -9 is restarted --------------------------------------------------------------
case_start kill-9 "kill -9 of the daemon is restarted by Restart=on-failure"
pid=$(main_pid)
nr=$(nrestarts)
t=$(now)
kill -9 "$pid"
restarted() { unit_active && [ "$(main_pid)" != "$pid" ] && [ "$(main_pid)" != 0 ]; }
if wait_until 40 restarted && [ "$(nrestarts)" = $((nr + 1)) ]; then
    ok kill-9 "pid $pid killed, pid $(main_pid) active $(secs "$t" "$(now)") s later (RestartSec=$(prop RestartUSec)), NRestarts $nr -> $(nrestarts)"
else
    fail kill-9 "after 40 s: $(prop ActiveState)/$(prop SubState), pid $pid -> $(main_pid), NRestarts $nr -> $(nrestarts)"
fi

# ---- libvirtd stopped, then started ------------------------------------------------------
case_start libvirtd-restart "systemctl stop libvirtd (and its sockets) for 20 s, then start: survived, reconnects, pins again"
pid=$(main_pid)
nr=$(nrestarts)
t_stop=$(date +%s)
# The sockets too: with them listening, the daemon's next attempt would start libvirtd again.
systemctl stop libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service 2>/dev/null
sleep 20
lost=$(journal_since "$t_stop" | grep -m1 -E 'lost|reconnect')
alive_during=$( (unit_active && [ "$(main_pid)" = "$pid" ]) && echo yes || echo no)
t_start=$(now)
systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service
pin_both_to_0
note "libvirtd back; guests re-pinned onto pCPU 0: $(placement "${G[@]}")"
reconnected() { journal_since "$t_stop" | grep -q 'reconnected to'; }
if wait_until 60 reconnected && wait_until 30 split_ok && [ "$alive_during" = yes ] &&
   [ "$(main_pid)" = "$pid" ] && [ "$(nrestarts)" = "$nr" ]; then
    ok libvirtd-restart "same pid, NRestarts $nr; '$lost'; '$(journal_since "$t_stop" | grep -m1 'reconnected to' | cut -c1-80)'; split again $(secs "$t_start" "$(now)") s after libvirtd started: $(placement "${G[@]}")"
else
    fail libvirtd-restart "alive during the outage: $alive_during; lost line '${lost:-none}'; reconnected: $(reconnected && echo yes || echo no); placement $(placement "${G[@]}"); pid $pid -> $(main_pid); NRestarts $nr -> $(nrestarts)"
fi

# ---- a hung libvirtd (SIGSTOP for 40 s) --------------------------------------------------
case_start libvirtd-hang "libvirtd stopped with SIGSTOP for 40 s: the daemon itself notices within 15 s (a log line), not systemd's watchdog"
pid=$(main_pid)
nr=$(nrestarts)
lpid=$(systemctl show -p MainPID --value libvirtd)
tick_before=$(tick_of "$(prop StatusText)")
# The clock starts right at the stop (a systemctl call takes about a second in here).
t_hang=$(date +%s)
t_hang_f=$(now)
kill -STOP "$lpid"
sleep 20
tick_mid=$(tick_of "$(prop StatusText)")
sleep 20
tick_end=$(tick_of "$(prop StatusText)")
kill -CONT "$lpid"
note "StatusText tick at SIGSTOP ${tick_before:-?}, 20 s in ${tick_mid:-?}, at SIGCONT (40 s) ${tick_end:-?}; status now: $(prop StatusText)"
noticed=$(first_line_at "$t_hang" 'lost|keepalive|not answer|hung|timed out')
after=
[ -z "$noticed" ] || after=$(secs "$t_hang_f" "$noticed")
recovered=no
if wait_until 60 ticking; then recovered=yes; fi
if [ -n "$after" ] && awk -v a="$after" 'BEGIN { exit !(a <= 15) }' && [ "$(nrestarts)" = "$nr" ] &&
   [ "$(main_pid)" = "$pid" ] && [ $recovered = yes ]; then
    ok libvirtd-hang "noticed after $after s: '$(journal_since "$t_hang" | grep -m1 -E 'lost|keepalive|not answer|hung|timed out' | cut -c1-100)'; same pid, NRestarts $nr; $(prop StatusText)"
else
    fail libvirtd-hang "noticed: ${after:-never} s after SIGSTOP (limit 15 s); pid $pid -> $(main_pid); NRestarts $nr -> $(nrestarts); recovered $recovered; journal since: $(journal_since "$t_hang" | head -n 4 | tr '\n' '|')"
fi

# ---- a settings error is not restarted in a loop ---------------------------------------
case_start settings-error "a bad value in the settings is exit 2, and is not restarted (RestartPreventExitStatus)"
cp "$SETTINGS" /root/settings.good
set_setting INTERVAL not-a-number
t_bad=$(date +%s)
systemctl restart "$UNIT" 2>/dev/null
brc=$?
nr=$(nrestarts)   # a manual (re)start resets the counter
sleep 15          # > RestartSec=10s: an automatic restart would have happened by now
line=$(journal_since "$t_bad" | grep -m1 'INTERVAL')
st=$(prop ActiveState)/$(prop Result)
code=$(prop ExecMainStatus)
if [ $brc -ne 0 ] && [ "$code" = 2 ] && [ "$st" = failed/exit-code ] && [ "$(nrestarts)" = "$nr" ] && [ -n "$line" ]; then
    ok settings-error "restart failed (rc $brc), exit status 2, $st, NRestarts $nr 15 s later; RestartPreventExitStatus='$(prop RestartPreventExitStatus)'; '$line'"
else
    fail settings-error "restart rc $brc, ExecMainStatus $code, $st, NRestarts $nr -> $(nrestarts) 15 s later, line '${line:-none}', RestartPreventExitStatus='$(prop RestartPreventExitStatus)'"
fi
# README and dist/vcpu-scheduler.default promise FILE:LINE for a bad value; say what it is.
if grep -q "$SETTINGS:[0-9]" <<<"$line"; then note "the settings error names $SETTINGS:LINE"; else note "the settings error does not name $SETTINGS:LINE (README: 'a bad value is exit 2 with FILE:LINE: reason')"; fi
cp /root/settings.good "$SETTINGS"
systemctl reset-failed "$UNIT"

# ---- the metrics file anywhere else is refused by the sandbox -----------------------------
case_start metrics-elsewhere "METRICS_FILE outside ReadWritePaths: the write fails (one log line), nothing is written, the daemon goes on"
mkdir -p "$ELSEWHERE_DIR"
set_setting METRICS_FILE "$ELSEWHERE_DIR/vcpu-scheduler.prom"
t_else=$(date +%s)
systemctl start "$UNIT"
sleep 8
line=$(journal_since "$t_else" | grep -m1 'cannot write metrics file')
if unit_active && [ ! -e "$ELSEWHERE_DIR/vcpu-scheduler.prom" ] && [ -z "$(find "$ELSEWHERE_DIR" -mindepth 1)" ] && [ -n "$line" ] && ticking; then
    ok metrics-elsewhere "nothing in $ELSEWHERE_DIR; '$line'; still ticking: $(prop StatusText)"
else
    fail metrics-elsewhere "state $(prop ActiveState); $ELSEWHERE_DIR holds '$(find "$ELSEWHERE_DIR" -mindepth 1 -printf '%f ')'; log line '${line:-none}'"
fi
cp /root/settings.good "$SETTINGS"

# ---- stop ------------------------------------------------------------------------------
case_start stop "systemctl stop is clean and quick"
t=$(now)
systemctl stop "$UNIT"
el=$(secs "$t" "$(now)")
if [ "$(prop ActiveState)" = inactive ] && [ "$(prop Result)" = success ] && awk -v e="$el" 'BEGIN { exit !(e < 5) }'; then
    ok stop "stopped in $el s, Result=success, ExecMainStatus=$(prop ExecMainStatus)"
else
    fail stop "after $el s: $(prop ActiveState), Result=$(prop Result), ExecMainStatus=$(prop ExecMainStatus)"
fi

journalctl -u "$UNIT" -b --no-pager -o short-precise >"$SHARE/results/service-journal.txt" 2>&1
finish
