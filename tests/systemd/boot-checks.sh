#!/bin/sh
# boot-checks.sh - run INSIDE a booted container by
# scripts/systemd-boot-test.sh (as segops-boottest.service, after the
# boot): socket activation of the installed segopsd.socket and
# segopsd.service under the real systemd, end to end. The config is a
# dry run (api_url = stdout), so delivered batches are lines in the
# journal of segopsd.service. Writes one line per check to
# DIR/results ("PASS name", "FAIL name: why", "INFO name: what") and
# the journal and the unit's security table beside it. Every wait is
# bounded; the whole run takes seconds.
#
#   boot-checks.sh DIR
set -u
out=${1:?usage: boot-checks.sh DIR}
mkdir -p "$out"
results=$out/results
: >"$results"

events=/run/segopsd/events.sock
control=/run/segopsd/segopsd.sock
svc=segopsd.service
sock=segopsd.socket
# Events sent while segopsd restarts (check "restart"): one socat each,
# some 30 ms apiece here.
n_restart=300

pass() { echo "PASS $1" >>"$results"; }
fail() { echo "FAIL $1: $2" >>"$results"; }
info() { echo "INFO $1: $2" >>"$results"; }

# wait_for SECONDS CMD...: until CMD succeeds, at most SECONDS.
wait_for() {
        n=$(($1 * 10))
        shift
        while [ "$n" -gt 0 ]; do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.1
                n=$((n - 1))
        done
        return 1
}

prop() { systemctl show -P "$2" "$1"; }

# send ID: one track event as one datagram, as a program would.
send() {
        printf '{"event_id":"%s","user_id":"u1","event_type":"boottest","payload":{}}\n' "$1" |
                socat -u - "UNIX-SENDTO:$events"
}

# send_many PREFIX: n_restart events PREFIX000001... in the background
# (pid in $sender), counting in $tmp/sent, failures in $tmp/errors.
send_many() {
        (
                i=1
                while [ $i -le "$n_restart" ]; do
                        send "$(printf '%s%06d' "$1" $i)" || echo "$i" >>"$tmp/errors"
                        echo $i >"$tmp/sent"
                        i=$((i + 1))
                done
        ) &
        sender=$!
}
sent_at_least() { [ "$(cat "$tmp/sent" 2>/dev/null || echo 0)" -ge "$1" ]; }

# delivered PREFIX: the distinct event ids starting with PREFIX that
# segopsd printed (dry run: its stdout is the journal's).
delivered() {
        journalctl -q -b -o cat -u "$svc" | grep -o "\"$1[0-9]*\"" | sort -u | wc -l
}
delivered_at_least() { [ "$(delivered "$1")" -ge "$2" ]; }
logged() { journalctl -q -b -o cat -u "$svc" | grep -q -e "$1"; }
active() { [ "$(systemctl is-active "$1")" = active ]; }

# ---- the boot -----------------------------------------------------------
state=$(timeout 60 systemctl is-system-running --wait 2>&1)
if [ "$state" = running ]; then
        pass boot
else
        fail boot "system state '$state'; failed units: $(systemctl --failed --plain --no-legend | tr '\n' ' ')"
fi

# ---- at boot: the socket listens, the service waits for it ----------------
if getent group segops >/dev/null; then
        pass sysusers-group
else
        fail sysusers-group "no group segops (sysusers.d)"
fi
gid=$(getent group segops | cut -d: -f3)
# A package enables the service too (it starts at boot, and sends what
# the spool kept); meson install enables only the socket.
want_svc=inactive
[ "$(systemctl is-enabled "$svc" 2>/dev/null)" = enabled ] && want_svc=active
if active "$sock" && [ "$(systemctl is-active "$svc")" = "$want_svc" ] && [ -S "$events" ] && [ -S "$control" ]; then
        pass socket-at-boot
else
        fail socket-at-boot "socket $(systemctl is-active "$sock"), service $(systemctl is-active "$svc"), $(ls -l /run/segopsd 2>&1 | tr '\n' ' ')"
fi
modes=$(stat -c '%A %U:%G' "$events" "$control" 2>&1 | sort -u)
if [ "$modes" = "srw-rw---- root:segops" ]; then
        pass socket-modes
else
        fail socket-modes "$(echo "$modes" | tr '\n' ' ') (want srw-rw---- root:segops)"
fi

# ---- the first datagram starts segopsd --------------------------------
if send evt-a-000001 && wait_for 20 active "$svc" && wait_for 20 delivered_at_least evt-a- 1; then
        pass activation
else
        fail activation "service $(systemctl is-active "$svc"); event delivered: $(delivered evt-a-)"
fi
if [ "$(prop "$svc" SubState)" = running ] && logged 'adopted from systemd'; then
        pass adopted-sockets
else
        fail adopted-sockets "state $(prop "$svc" SubState); segopsd did not log that it adopted systemd's sockets"
fi

# ---- who it runs as, and under which restrictions -------------------------
pid=$(prop "$svc" MainPID)
st=/proc/$pid/status
uid=$(awk '/^Uid:/ { print $2 }' "$st" 2>/dev/null)
pgid=$(awk '/^Gid:/ { print $2 }' "$st" 2>/dev/null)
# DynamicUser= picks uids from 61184-65519.
if [ -n "$uid" ] && [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] && [ "$pgid" = "$gid" ]; then
        pass dynamic-user
else
        fail dynamic-user "pid $pid uid '$uid' gid '$pgid' (want a dynamic uid, gid $gid = segops)"
fi
seccomp=$(awk '/^Seccomp:/ { print $2 }' "$st" 2>/dev/null)
nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "$st" 2>/dev/null)
capeff=$(awk '/^CapEff:/ { print $2 }' "$st" 2>/dev/null)
if [ "$seccomp" = 2 ] && [ "$nnp" = 1 ] && [ "$capeff" = 0000000000000000 ]; then
        pass confinement
else
        fail confinement "Seccomp '$seccomp' (want 2: filter), NoNewPrivs '$nnp', CapEff '$capeff'"
fi
# The spool (StateDirectory=): segopsd's own, out of other users' reach
# (with DynamicUser= it lies under /var/lib/private, 0700).
spool=$(stat -L -c '%u' /var/lib/segopsd 2>&1)
if [ "$spool" = "$uid" ] && ! setpriv --reuid=65534 --regid=65534 --clear-groups \
        ls /var/lib/segopsd/ >/dev/null 2>&1; then
        pass state-directory
else
        fail state-directory "/var/lib/segopsd: owner '$spool' (want $uid), or user nobody may list it"
fi
info state-directory "$(stat -c '%a %n' /var/lib/segopsd /var/lib/private /var/lib/private/segopsd 2>&1 | tr '\n' ' ')"

# ---- segopsctl against the running service --------------------------------
for c in status health; do
        o=$(timeout 20 segopsctl "$c" 2>&1)
        rc=$?
        if [ $rc = 0 ]; then
                pass "segopsctl-$c"
        else
                fail "segopsctl-$c" "exit $rc: $(echo "$o" | head -n 3 | tr '\n' ' ')"
        fi
done
echo "$o" >"$out/health.txt"
info status-text "$(prop "$svc" StatusText)"

# ---- systemd-analyze security: the running unit and the files agree ------
systemd-analyze security --no-pager "$svc" >"$out/security-online.txt" 2>&1
systemd-analyze security --no-pager --offline=yes "$svc" >"$out/security-offline.txt" 2>&1
exposure() { sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$1"; }
on=$(exposure "$out/security-online.txt")
off=$(exposure "$out/security-offline.txt")
if [ -n "$on" ] && [ "$on" = "$off" ]; then
        pass security-online-equals-offline
        info exposure "$on"
else
        fail security-online-equals-offline "running unit '$on', offline '$off'; they differ in: $(diff "$out/security-offline.txt" "$out/security-online.txt" | sed -n 's/^[<>] *[^ ]* \([A-Za-z]*=\).*/\1/p' | sort -u | tr '\n' ' ')"
fi

# ---- reload ------------------------------------------------------------------
n0=$(journalctl -q -b -o cat -u "$svc" | grep -c '^reloaded ')
if systemctl reload "$svc" &&
        wait_for 20 sh -c "[ \$(journalctl -q -b -o cat -u $svc | grep -c '^reloaded ') -gt $n0 ]" &&
        [ "$(prop "$svc" MainPID)" = "$pid" ] && active "$svc"; then
        pass reload
else
        fail reload "service $(systemctl is-active "$svc"), pid $(prop "$svc" MainPID) (was $pid); $(journalctl -q -b -o cat -u "$svc" -n 3 | tr '\n' ' ')"
fi

# The key came as the credential the unit loads (segopsd names its source
# on reload), not from a file segopsd's user would read.
if logged 'the API key is the systemd credential api_key'; then
        pass key-credential
else
        fail key-credential "segopsd did not say on reload that its key is the credential api_key"
fi

# ---- restart while a sender keeps sending: the socket holds the datagrams -
tmp=$(mktemp -d)
send_many evt-r-
wait_for 30 sent_at_least $((n_restart / 10))
systemctl restart "$svc"
rc=$?
during=$(cat "$tmp/sent" 2>/dev/null || echo 0)
wait "$sender"
pid2=$(prop "$svc" MainPID)
timeout 20 segopsctl flush >/dev/null 2>&1
wait_for 30 delivered_at_least evt-r- "$n_restart"
got=$(delivered evt-r-)
lines=$(journalctl -q -b -o cat -u "$svc" | grep -o '"evt-r-[0-9]*"' | wc -l)
if [ $rc = 0 ] && [ "$got" = "$n_restart" ] && [ ! -s "$tmp/errors" ] && [ "$pid2" != "$pid" ] &&
        [ "$during" -lt "$n_restart" ]; then
        pass restart-loses-nothing
else
        fail restart-loses-nothing "restart exit $rc; $got of $n_restart delivered; send errors: $(wc -l <"$tmp/errors" 2>/dev/null || echo 0); pid $pid -> $pid2; restart done after $during sent"
fi
info restart "$n_restart sent, restart finished after $during; $got delivered, $((lines - got)) of them twice"
rm -rf "$tmp"

# ---- upgrade (with --debs): the package restarts the service, not the ----
# socket, which holds what is sent meanwhile; the edited config stays.
upgrade=/root/segops-upgrade/segopsd_new.deb
if [ -f "$upgrade" ]; then
        conf=$(systemctl cat "$svc" | sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' | tail -n 1)
        echo "; edited by the boot test" >>"$conf"
        tmp=$(mktemp -d)
        send_many evt-u-
        wait_for 30 sent_at_least $((n_restart / 10))
        pid=$(prop "$svc" MainPID)
        sock_since=$(prop "$sock" ActiveEnterTimestampMonotonic)
        DEBIAN_FRONTEND=noninteractive dpkg -i "$upgrade" </dev/null >"$out/upgrade.log" 2>&1
        rc=$?
        during=$(cat "$tmp/sent" 2>/dev/null || echo 0)
        wait "$sender"
        wait_for 20 active "$svc"
        pid2=$(prop "$svc" MainPID)
        timeout 20 segopsctl flush >/dev/null 2>&1
        wait_for 30 delivered_at_least evt-u- "$n_restart"
        got=$(delivered evt-u-)
        if [ $rc = 0 ] && [ "$got" = "$n_restart" ] && [ ! -s "$tmp/errors" ] &&
                [ "$pid2" != "$pid" ] && [ "$(prop "$sock" ActiveEnterTimestampMonotonic)" = "$sock_since" ] &&
                grep -qx '; edited by the boot test' "$conf" && ! ls "$conf".dpkg-* >/dev/null 2>&1; then
                pass upgrade-loses-nothing
        else
                fail upgrade-loses-nothing "dpkg exit $rc ($(tail -n 2 "$out/upgrade.log" | tr '\n' ' ')); $got of $n_restart delivered; send errors: $(wc -l <"$tmp/errors" 2>/dev/null || echo 0); pid $pid -> $pid2; socket restarted: $([ "$(prop "$sock" ActiveEnterTimestampMonotonic)" = "$sock_since" ] && echo no || echo yes); config edit kept: $(grep -c 'edited by the boot test' "$conf")"
        fi
        info upgrade "$(dpkg-query -W -f '${Version}' segopsd); $n_restart sent, dpkg done after $during"
        rm -rf "$tmp"
fi

# ---- stop: clean, and the socket still takes events -----------------------
systemctl stop "$svc"
rc=$?
result=$(prop "$svc" Result)
status=$(prop "$svc" ExecMainStatus)
if [ $rc = 0 ] && [ "$result" = success ] && [ "$status" = 0 ] &&
        [ "$(systemctl is-active "$svc")" = inactive ] && logged '^stopped: every accepted event was delivered'; then
        pass stop-clean
else
        fail stop-clean "exit $rc, Result $result, status $status, $(systemctl is-active "$svc"); $(journalctl -q -b -o cat -u "$svc" -n 3 | tr '\n' ' ')"
fi
if active "$sock" && send evt-s-000001 && wait_for 20 delivered_at_least evt-s- 1; then
        pass activation-after-stop
else
        fail activation-after-stop "socket $(systemctl is-active "$sock"), service $(systemctl is-active "$svc")"
fi

# ---- no key yet: what a fresh package runs with ------------------------------
# The shipped config (the pristine copy in the docs' examples) and an
# empty key, as an install leaves them: segopsd runs, takes events and
# holds them in the spool, health says 6; once the key is there, a
# restart sends what was held (here: the dry run again, which prints it).
conf=$(systemctl cat "$svc" | sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' | tail -n 1)
key=$(systemctl cat "$svc" | sed -n 's/^LoadCredential=api_key://p' | tail -n 1)
tmp=$(mktemp -d)
cp -p "$conf" "$tmp/conf" && cp -p "$key" "$tmp/key"
example=$(ls /usr/share/doc/segops*/examples/segopsd.conf \
        /usr/local/share/doc/segops*/examples/segopsd.conf 2>/dev/null | head -n 1)
if [ -n "$example" ]; then
        cp "$example" "$conf"
else
        info no-key "no shipped example config found: the test's own, with a real api_url"
        sed -i 's|^api_url = stdout$|api_url = https://segops.invalid|' "$conf"
fi
: >"$key"
no_key_state() { timeout 10 segopsctl stats --json 2>/dev/null | grep -q '"state": *"no_key"'; }
systemctl restart "$svc"
rc=$?
send evt-k-000001
timeout 10 segopsctl health >"$tmp/health" 2>&1
health=$?
if [ $rc = 0 ] && active "$svc" && wait_for 10 no_key_state && [ $health = 6 ] &&
        logged 'no API key yet: the systemd credential api_key is empty' &&
        timeout 10 segopsctl status | grep -q 'no API key yet'; then
        pass no-key-runs-and-holds
else
        fail no-key-runs-and-holds "restart exit $rc, $(systemctl is-active "$svc"), health $health: $(cat "$tmp/health")"
fi
cp -p "$tmp/conf" "$conf" && cp -p "$tmp/key" "$key"
systemctl restart "$svc"
if wait_for 20 delivered_at_least evt-k- 1; then
        pass no-key-held-then-sent
else
        fail no-key-held-then-sent "the event held without a key was not sent after the key came"
fi
rm -rf "$tmp"

# ---- nothing broke along the way -------------------------------------------
restarts=$(prop "$svc" NRestarts)
if [ "$restarts" = 0 ] && ! journalctl -q -b -o cat | grep -q -e 'status=31/SYS' -e 'code=dumped' -e 'Watchdog timeout'; then
        pass no-crash
else
        fail no-crash "NRestarts $restarts; $(journalctl -q -b -o cat | grep -e 'status=31/SYS' -e 'code=dumped' -e 'Watchdog timeout' | head -n 3 | tr '\n' ' ')"
fi
if systemctl stop "$svc" "$sock" && [ "$(prop "$svc" Result)" = success ] && [ -z "$(systemctl --failed --plain --no-legend)" ]; then
        pass final-stop
else
        fail final-stop "Result $(prop "$svc" Result); failed: $(systemctl --failed --plain --no-legend | tr '\n' ' ')"
fi

journalctl -q -b --no-pager >"$out/journal.txt" 2>&1
echo "done" >>"$results"
