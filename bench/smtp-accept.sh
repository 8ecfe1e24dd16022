#!/usr/bin/env bash
# bench/smtp-accept.sh: SMTP acceptance benchmark, facteur against Postfix.
#
# Postfix's smtp-source sends MESSAGES messages of SIZE bytes over SESSIONS
# parallel SMTP sessions to a server on a loopback port, and we time it.
# Both servers store to local mailboxes and fsync before they answer 250:
#   facteur  delivers into its SQLite mailbox store in the same commit that
#            precedes the 250, so accepted also means delivered.
#   postfix  writes and fsyncs a queue file, answers 250, then the queue
#            manager hands the message to virtual(8), which writes a Maildir
#            file. We time both the 250s and the last file in new/.
# After each run the stored messages are counted; anything short of MESSAGES
# is a failure.
#
# Environment (defaults in brackets):
#   MESSAGES [20000]  SESSIONS [20]  SIZE [1024]   what smtp-source sends
#   REUSE [0]         1: keep each session's connection open for several
#                     messages (smtp-source -d); 0: one connection per message
#   TARGETS ["facteur postfix"]   servers to measure, in this order
#   FACTEUR_BIN       facteur binary to use; unset: build it with cargo
#   CARGO_TARGET_DIR  [~/.cache/facteur-target]
#   SEND_TIMEOUT [1800]      seconds allowed for one smtp-source run
#   DELIVERY_TIMEOUT [900]   seconds allowed for Postfix to fill the Maildir
#   BENCH_TMPDIR [/var/tmp]  where the scratch directory goes; must be a real
#                     disk (on tmpfs fsync costs nothing and figures lie)
#   RESULTS_DIR [bench/results]   JSON and CSV output
#   KEEP [0]          1: keep the scratch directory and its logs
#
# Needs root (Postfix's master runs as root) and the packages that
# `.ci/run --deps-only` installs. Everything listens on 127.0.0.1 only.
set -euo pipefail
export LC_ALL=C

MESSAGES="${MESSAGES:-20000}"
SESSIONS="${SESSIONS:-20}"
SIZE="${SIZE:-1024}"
REUSE="${REUSE:-0}"
TARGETS="${TARGETS:-facteur postfix}"
SEND_TIMEOUT="${SEND_TIMEOUT:-1800}"
DELIVERY_TIMEOUT="${DELIVERY_TIMEOUT:-900}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/facteur-target}"

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
RESULTS_DIR="${RESULTS_DIR:-$bench_dir/results}"

export PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "smtp-accept: FAIL: $*" >&2
    exit 1
}
note() {
    echo "smtp-accept: $*"
}

for v in MESSAGES SESSIONS SIZE SEND_TIMEOUT DELIVERY_TIMEOUT; do
    case "${!v}" in
        '' | *[!0-9]*) die "$v must be a positive integer, got '${!v}'" ;;
    esac
    [ "${!v}" -gt 0 ] || die "$v must be positive"
done
case "$REUSE" in 0 | 1) ;; *) die "REUSE must be 0 or 1" ;; esac
for t in $TARGETS; do
    case "$t" in facteur | postfix) ;; *) die "unknown target '$t'" ;; esac
done

want_target() {
    case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "missing command '$1' (run .ci/run --deps-only)"
}
need smtp-source
need python3
need sqlite3
need curl
need timeout
SMTP_SOURCE="$(command -v smtp-source)"
if want_target postfix; then
    need postfix
    need postconf
    [ "$(id -u)" -eq 0 ] || die "the Postfix half needs root (its master process runs as root)"
    id postfix >/dev/null 2>&1 || die "no 'postfix' user; is the postfix package installed?"
    getent group postdrop >/dev/null || die "no 'postdrop' group; is the postfix package installed?"
fi

# --- scratch space ---------------------------------------------------------

mkdir -p "$BENCH_TMPDIR"
work="$(mktemp -d "$BENCH_TMPDIR/facteur-bench.XXXXXX")"
# Postfix daemons (user postfix) and virtual(8) (user nobody) must traverse it.
chmod 0755 "$work"
fstype="$(stat -f -c %T "$work")"
case "$fstype" in
    tmpfs | ramfs) note "WARNING: $work is on $fstype; fsync is free there and the figures mean little" ;;
esac

# Median time of one 1 KiB write + fsync in the scratch directory, in
# microseconds. Both servers fsync at least once per message, so this tells a
# slow disk from a fast one (or from a VM host that absorbs flushes) when
# figures from different machines are compared.
fsync_us="$(python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
samples = []
deadline = time.monotonic() + 5
for _ in range(200):
    t = time.perf_counter()
    os.write(fd, b"x" * 1024)
    os.fsync(fd)
    samples.append(time.perf_counter() - t)
    if time.monotonic() > deadline:
        break
os.close(fd)
os.unlink(path)
samples.sort()
print(round(samples[len(samples) // 2] * 1e6))
PY
)"

facteur_pid=""
postfix_conf=""

stop_facteur() {
    [ -n "$facteur_pid" ] || return 0
    if kill -0 "$facteur_pid" 2>/dev/null; then
        kill -TERM "$facteur_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$facteur_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$facteur_pid" 2>/dev/null; then
            note "facteur did not stop within 10 s; killing pid $facteur_pid"
            kill -KILL "$facteur_pid" 2>/dev/null || true
        fi
    fi
    wait "$facteur_pid" 2>/dev/null || true
    facteur_pid=""
}

stop_postfix() {
    [ -n "$postfix_conf" ] || return 0
    local pidfile="$work/postfix/spool/pid/master.pid" master=""
    if [ -s "$pidfile" ]; then
        master="$(tr -dc 0-9 <"$pidfile")"
    fi
    timeout 30 postfix -c "$postfix_conf" stop >/dev/null 2>&1 || true
    if [ -n "$master" ]; then
        for _ in $(seq 1 100); do
            kill -0 "$master" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$master" 2>/dev/null; then
            note "postfix master did not stop within 10 s; killing pid $master"
            kill -KILL "$master" 2>/dev/null || true
        fi
    fi
    postfix_conf=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_facteur
    stop_postfix
    if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
        note "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ---------------------------------------------------------------

# Print N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
EOF
}

# Seconds between two $EPOCHREALTIME stamps, 3 decimals.
elapsed() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# MESSAGES / seconds, 1 decimal.
rate() {
    awk -v n="$MESSAGES" -v s="$1" 'BEGIN { if (s > 0) printf "%.1f", n / s; else print "inf" }'
}

# Wait (at most 30 s) until an SMTP greeting comes from 127.0.0.1:$1.
wait_smtp_banner() {
    local port="$1" line
    for _ in $(seq 1 300); do
        line="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -n 1 <&3" 2>/dev/null || true)"
        case "$line" in 220*) return 0 ;; esac
        sleep 0.1
    done
    return 1
}

# Run smtp-source against 127.0.0.1:$1; sets send_s to its wall time and
# send_start to the $EPOCHREALTIME at which it started.
#   -s SESSIONS   parallel sessions          -m MESSAGES   messages in total
#   -l SIZE       payload bytes per message  -M           HELO name, no lookups
#   -f / -t       envelope sender and the one recipient both servers know
#   -d (REUSE=1)  several messages per connection
# Without -A, smtp-source stops with an error on any reply other than the
# expected one, so a refused or deferred message fails the run.
send_start=""
send_s=""
run_smtp_source() {
    local port="$1" end
    local args=(-s "$SESSIONS" -m "$MESSAGES" -l "$SIZE"
        -M client.bench.test -f sender@bench.test -t rcpt@bench.test)
    [ "$REUSE" = 1 ] && args+=(-d)
    note "smtp-source ${args[*]} 127.0.0.1:$port"
    sync
    send_start="$EPOCHREALTIME"
    timeout "$SEND_TIMEOUT" "$SMTP_SOURCE" "${args[@]}" "127.0.0.1:$port" ||
        die "smtp-source failed or timed out (exit $?) against 127.0.0.1:$port"
    end="$EPOCHREALTIME"
    send_s="$(elapsed "$send_start" "$end")"
}

declare -A accept_s=() deliver_s=() stored=()

# --- facteur ---------------------------------------------------------------

facteur_version=""
run_facteur() {
    local bin="${FACTEUR_BIN:-}"
    if [ -z "$bin" ]; then
        need cargo
        note "building facteur (cargo build --release -p facteur)"
        (cd "$repo_root" && cargo build --release -p facteur) ||
            die "could not build facteur"
        bin="$CARGO_TARGET_DIR/release/facteur"
    fi
    [ -x "$bin" ] || die "facteur binary not found at $bin"
    facteur_version="$("$bin" --version 2>/dev/null | head -n 1 || true)"

    local dir="$work/facteur" smtp_port http_port
    mkdir -p "$dir/data"
    { read -r smtp_port; read -r http_port; } < <(free_ports 2)
    [ -n "${http_port:-}" ] || die "could not pick free loopback ports"

    "$bin" --data "$dir/data" domain add bench.test >"$dir/setup.log" 2>&1 ||
        { cat "$dir/setup.log" >&2; die "facteur domain add failed"; }
    printf 'secret\n' | "$bin" --data "$dir/data" user add rcpt@bench.test --password-stdin \
        >>"$dir/setup.log" 2>&1 ||
        { cat "$dir/setup.log" >&2; die "facteur user add failed"; }

    cat >"$dir/facteur.toml" <<EOF
[server]
hostname = "bench.test"

[listen]
smtp = ["127.0.0.1:$smtp_port"]
submission = []
submissions = []
http = ["127.0.0.1:$http_port"]
EOF

    note "starting facteur: SMTP 127.0.0.1:$smtp_port, HTTP 127.0.0.1:$http_port"
    "$bin" --data "$dir/data" --config "$dir/facteur.toml" serve \
        >"$dir/facteur.log" 2>&1 </dev/null &
    facteur_pid=$!

    local ready=0
    for _ in $(seq 1 300); do
        if ! kill -0 "$facteur_pid" 2>/dev/null; then
            tail -n 40 "$dir/facteur.log" >&2
            die "facteur exited during startup"
        fi
        if curl -fsS --noproxy '*' --max-time 1 -o /dev/null \
            "http://127.0.0.1:$http_port/readyz" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        tail -n 40 "$dir/facteur.log" >&2
        die "facteur not ready after 30 s"
    fi

    run_smtp_source "$smtp_port"
    accept_s[facteur]="$send_s"
    # Local delivery is part of the transaction acknowledged by 250.
    deliver_s[facteur]="$send_s"

    stored[facteur]="$(sqlite3 -bail -cmd '.timeout 10000' "$dir/data/facteur.db" \
        'select count(*) from mailbox_messages;')" ||
        die "could not count facteur's stored messages"
    stop_facteur
    if [ "${stored[facteur]}" != "$MESSAGES" ]; then
        tail -n 40 "$dir/facteur.log" >&2
        die "facteur stored ${stored[facteur]} messages, expected $MESSAGES"
    fi
    note "facteur: $MESSAGES accepted in ${accept_s[facteur]} s, ${stored[facteur]} stored"
}

# --- postfix ---------------------------------------------------------------

postfix_version=""
run_postfix() {
    local base="$work/postfix" port
    local conf="$base/etc" spool="$base/spool" data="$base/data" mail="$base/mail"
    local maildir="$mail/bench.test/rcpt" uid gid
    uid="$(id -u nobody)"
    gid="$(id -g nobody)"
    port="$(free_ports 1)"
    postfix_version="$(postconf -d -h mail_version 2>/dev/null || true)"

    mkdir -p "$conf" "$spool" "$data" "$mail/bench.test" "$base/log"
    chown postfix "$data"
    # virtual(8) delivers as nobody and creates the Maildir itself.
    chown "$uid:$gid" "$mail/bench.test"

    printf 'rcpt@bench.test bench.test/rcpt/\n' >"$conf/vmailbox"

    cat >"$conf/main.cf" <<EOF
# Private Postfix instance for bench/smtp-accept.sh. Nothing here leaves
# the machine: one loopback listener, virtual mailboxes only, no DNS.
compatibility_level = 3.6
queue_directory = $spool
data_directory = $data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $base/log/maillog

myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

virtual_mailbox_domains = bench.test
virtual_mailbox_base = $mail
virtual_mailbox_maps = texthash:$conf/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 100

alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is off in this benchmark
default_transport = error:outbound mail is off in this benchmark
relay_transport = error:outbound mail is off in this benchmark
relay_domains =
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
EOF

    cat >"$conf/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n  -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

    postconf -c "$conf" >/dev/null 2>"$base/postconf.err" ||
        { cat "$base/postconf.err" >&2; die "postconf rejected the benchmark main.cf"; }
    if [ -s "$base/postconf.err" ]; then
        cat "$base/postconf.err" >&2
    fi

    note "starting postfix $postfix_version: SMTP 127.0.0.1:$port (config $conf)"
    postfix_conf="$conf"
    timeout 60 postfix -c "$conf" start >"$base/start.log" 2>&1 ||
        { cat "$base/start.log" "$base/log/maillog" >&2 2>/dev/null; die "postfix did not start"; }
    if ! wait_smtp_banner "$port"; then
        cat "$base/start.log" >&2
        tail -n 40 "$base/log/maillog" >&2 2>/dev/null || true
        die "postfix not answering on 127.0.0.1:$port after 30 s"
    fi

    run_smtp_source "$port"
    accept_s[postfix]="$send_s"

    # Wait for the queue manager and virtual(8) to write every Maildir file.
    local count=0 deadline now
    deadline=$(( ${EPOCHREALTIME%.*} + DELIVERY_TIMEOUT ))
    while :; do
        if [ -d "$maildir/new" ]; then
            count="$(find "$maildir/new" -maxdepth 1 -type f | wc -l)"
        fi
        [ "$count" -ge "$MESSAGES" ] && break
        now="${EPOCHREALTIME%.*}"
        if [ "$now" -ge "$deadline" ]; then
            tail -n 20 "$base/log/maillog" >&2 2>/dev/null || true
            postqueue -c "$conf" -p 2>/dev/null | tail -n 5 >&2 || true
            die "postfix delivered $count of $MESSAGES messages within ${DELIVERY_TIMEOUT} s"
        fi
        sleep 0.05
    done
    deliver_s[postfix]="$(elapsed "$send_start" "$EPOCHREALTIME")"
    stored[postfix]="$count"
    stop_postfix
    if [ "${stored[postfix]}" != "$MESSAGES" ]; then
        die "postfix stored ${stored[postfix]} messages, expected $MESSAGES"
    fi
    local sample
    sample="$(find "$maildir/new" -maxdepth 1 -type f -size -"$SIZE"c | head -n 1)"
    [ -z "$sample" ] || die "postfix stored a message smaller than $SIZE bytes: $sample"
    note "postfix: $MESSAGES accepted in ${accept_s[postfix]} s, all ${stored[postfix]} in the Maildir after ${deliver_s[postfix]} s"
}

# --- run -------------------------------------------------------------------

mode="one message per connection"
[ "$REUSE" = 1 ] && mode="several messages per connection"
note "$MESSAGES messages x $SIZE bytes over $SESSIONS sessions ($mode)"
note "machine: $(nproc) cores, $(uname -sr), scratch on $fstype ($work)"
loadavg="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
note "median 1 KiB write+fsync on the scratch disk: $fsync_us us"
note "load average before the run: $loadavg (figures from a busy machine are low and noisy)"

for t in $TARGETS; do
    "run_$t"
done

# --- report ----------------------------------------------------------------

echo
printf '%-8s %9s %10s %12s %12s %15s %8s\n' \
    server messages accept_s accept_msg/s delivered_s delivered_msg/s stored
for t in $TARGETS; do
    printf '%-8s %9s %10s %12s %12s %15s %8s\n' "$t" "$MESSAGES" \
        "${accept_s[$t]}" "$(rate "${accept_s[$t]}")" \
        "${deliver_s[$t]}" "$(rate "${deliver_s[$t]}")" "${stored[$t]}"
done

ratio_accept=""
ratio_deliver=""
if want_target facteur && want_target postfix; then
    ratio_accept="$(awk -v f="${accept_s[facteur]}" -v p="${accept_s[postfix]}" \
        'BEGIN { printf "%.2f", p / f }')"
    ratio_deliver="$(awk -v f="${deliver_s[facteur]}" -v p="${deliver_s[postfix]}" \
        'BEGIN { printf "%.2f", p / f }')"
    echo
    echo "facteur/postfix, accepted msgs/s:  $ratio_accept"
    echo "facteur/postfix, delivered msgs/s: $ratio_deliver"
fi

mkdir -p "$RESULTS_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
commit="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
json="$RESULTS_DIR/smtp-accept-$stamp.json"
{
    printf '{\n'
    printf '  "benchmark": "smtp-accept",\n'
    printf '  "time_utc": "%s",\n' "$stamp"
    printf '  "git_commit": "%s",\n' "$commit"
    printf '  "machine": {"cores": %s, "kernel": "%s", "filesystem": "%s", "fsync_median_us": %s, "loadavg_1m": %s},\n' \
        "$(nproc)" "$(uname -r)" "$fstype" "$fsync_us" "$loadavg"
    printf '  "params": {"messages": %s, "sessions": %s, "size": %s, "reuse_connections": %s},\n' \
        "$MESSAGES" "$SESSIONS" "$SIZE" "$([ "$REUSE" = 1 ] && echo true || echo false)"
    printf '  "results": {'
    sep=""
    for t in $TARGETS; do
        case "$t" in
            facteur) ver="$facteur_version" ;;
            postfix) ver="$postfix_version" ;;
        esac
        printf '%s\n    "%s": {"version": "%s", "accept_seconds": %s, "accept_msgs_per_s": %s, "delivered_seconds": %s, "delivered_msgs_per_s": %s, "stored": %s}' \
            "$sep" "$t" "${ver//\"/}" "${accept_s[$t]}" "$(rate "${accept_s[$t]}")" \
            "${deliver_s[$t]}" "$(rate "${deliver_s[$t]}")" "${stored[$t]}"
        sep=","
    done
    printf '\n  }'
    if [ -n "$ratio_accept" ]; then
        printf ',\n  "ratio_facteur_over_postfix": {"accepted": %s, "delivered": %s}' \
            "$ratio_accept" "$ratio_deliver"
    fi
    printf '\n}\n'
} >"$json"

csv="$RESULTS_DIR/smtp-accept.csv"
if [ ! -s "$csv" ]; then
    echo "time_utc,git_commit,server,messages,sessions,size,reuse,accept_s,accept_msgs_per_s,delivered_s,delivered_msgs_per_s,stored" >"$csv"
fi
for t in $TARGETS; do
    echo "$stamp,$commit,$t,$MESSAGES,$SESSIONS,$SIZE,$REUSE,${accept_s[$t]},$(rate "${accept_s[$t]}"),${deliver_s[$t]},$(rate "${deliver_s[$t]}"),${stored[$t]}" >>"$csv"
done

echo
cat "$json"
note "results written to $json and appended to $csv"
