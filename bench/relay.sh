#!/usr/bin/env bash
# bench/relay.sh: relay benchmark, facteur against Postfix.
#
#   smtp-source  ->  relay under test  ->  smtp-sink
#
# Postfix's smtp-source sends MESSAGES messages of SIZE bytes over SESSIONS
# parallel SMTP sessions to the relay on a loopback port. The relay (facteur,
# then a private Postfix instance) queues each message durably, answers 250,
# and forwards it to a fresh smtp-sink on another loopback port. We time the
# 250s (accept) and the moment the sink holds every message (end to end).
#
# smtp-source runs with -N, which numbers the recipients 1rcpt@, 2rcpt@, ...
# smtp-sink writes one file per received message (-d, on tmpfs when there is
# one), so afterwards every number 1..MESSAGES must be found exactly once:
# a missing number is a lost message, a repeated one a duplicate delivery.
# Either fails the run, as does a relay queue that does not drain.
#
# Environment (defaults in brackets):
#   MESSAGES [20000]  SESSIONS [20]  SIZES ["1024 10240"]  what smtp-source
#                     sends, once per size and server
#   TARGETS ["facteur postfix"]   relays to measure, in this order
#   DIRECT [1]        1: also send straight into a sink, to show what the
#                     load generator and the sink manage without a relay
#   NUMBERED [1]      0: plain recipient rcpt@sink.bench.test (no -N); the
#                     sink can then only count, not name duplicates
#   FACTEUR_BIN       facteur binary to use; unset: build it with cargo
#   CARGO_TARGET_DIR  [~/.cache/facteur-target]
#   SEND_TIMEOUT [1800]      seconds allowed for one smtp-source run
#   DELIVERY_TIMEOUT [900]   seconds allowed, after sending, for the sink to
#                     receive every message
#   QUEUE_TIMEOUT [60]       seconds allowed, once the sink is complete, for
#                     the relay to record the last deliveries
#   BENCH_TMPDIR [/var/tmp]  scratch directory (relay queues); must be a real
#                     disk (on tmpfs fsync costs nothing and figures lie)
#   SINK_TMPDIR [/dev/shm]   where the sink writes its message files; tmpfs
#                     keeps the sink cheap; falls back to the scratch dir
#   RESULTS_DIR [bench/results]   JSON and CSV output
#   KEEP [0]          1: keep the scratch directory and its logs
#
# Needs root (Postfix's master runs as root) and the packages that
# `.ci/run --deps-only` installs. Everything listens on 127.0.0.1 only, and
# neither relay looks anything up in the DNS.
set -euo pipefail
export LC_ALL=C

MESSAGES="${MESSAGES:-20000}"
SESSIONS="${SESSIONS:-20}"
SIZES="${SIZES:-1024 10240}"
TARGETS="${TARGETS:-facteur postfix}"
DIRECT="${DIRECT:-1}"
NUMBERED="${NUMBERED:-1}"
SEND_TIMEOUT="${SEND_TIMEOUT:-1800}"
DELIVERY_TIMEOUT="${DELIVERY_TIMEOUT:-900}"
QUEUE_TIMEOUT="${QUEUE_TIMEOUT:-60}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
SINK_TMPDIR="${SINK_TMPDIR:-/dev/shm}"
KEEP="${KEEP:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/facteur-target}"

# The product goal and what the current issue requires, end to end.
GOAL_RATIO=5
REQUIRED_RATIO=2

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
RESULTS_DIR="${RESULTS_DIR:-$bench_dir/results}"

export PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "relay: FAIL: $*" >&2
    exit 1
}
note() {
    echo "relay: $*"
}

positive() {
    case "$2" in
        '' | *[!0-9]*) die "$1 must be a positive integer, got '$2'" ;;
    esac
    [ "$2" -gt 0 ] || die "$1 must be positive"
}
for v in MESSAGES SESSIONS SEND_TIMEOUT DELIVERY_TIMEOUT QUEUE_TIMEOUT; do
    positive "$v" "${!v}"
done
[ -n "${SIZES// /}" ] || die "SIZES is empty"
for s in $SIZES; do
    positive SIZES "$s"
done
case "$DIRECT" in 0 | 1) ;; *) die "DIRECT must be 0 or 1" ;; esac
case "$NUMBERED" in 0 | 1) ;; *) die "NUMBERED must be 0 or 1" ;; esac
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
need smtp-sink
need python3
need sqlite3
need curl
need timeout
SMTP_SOURCE="$(command -v smtp-source)"
SMTP_SINK="$(command -v smtp-sink)"
if want_target postfix; then
    need postfix
    need postconf
    need postqueue
    [ "$(id -u)" -eq 0 ] || die "the Postfix half needs root (its master process runs as root)"
    id postfix >/dev/null 2>&1 || die "no 'postfix' user; is the postfix package installed?"
    getent group postdrop >/dev/null || die "no 'postdrop' group; is the postfix package installed?"
fi
# smtp-sink refuses to run as root without -u.
sink_user=()
if [ "$(id -u)" -eq 0 ]; then
    sink_user=(-u nobody)
fi

# --- scratch space ---------------------------------------------------------

mkdir -p "$BENCH_TMPDIR"
work="$(mktemp -d "$BENCH_TMPDIR/facteur-relay.XXXXXX")"
# Postfix daemons (user postfix) must traverse it.
chmod 0755 "$work"
fstype="$(stat -f -c %T "$work")"
case "$fstype" in
    tmpfs | ramfs) note "WARNING: $work is on $fstype; fsync is free there and the figures mean little" ;;
esac

# The sink's message files: one per message, never fsynced, read once at the
# end. On tmpfs they cost the sink little; they need about MESSAGES x (largest
# size + 1 KiB) at a time, removed after each run.
largest=0
for s in $SIZES; do
    [ "$s" -gt "$largest" ] && largest="$s"
done
sink_need_kb=$(( MESSAGES * (largest + 1024) / 1024 ))
sinks=""
if [ -d "$SINK_TMPDIR" ] && [ -w "$SINK_TMPDIR" ]; then
    avail_kb="$(df -Pk "$SINK_TMPDIR" | awk 'NR == 2 { print $4 }')"
    if [ "${avail_kb:-0}" -gt $(( sink_need_kb * 2 )) ]; then
        sinks="$(mktemp -d "$SINK_TMPDIR/facteur-relay-sink.XXXXXX")"
    else
        note "only ${avail_kb:-0} KiB free in $SINK_TMPDIR, the sink needs about $sink_need_kb; using the scratch directory"
    fi
fi
if [ -z "$sinks" ]; then
    sinks="$work/sinks"
    mkdir -p "$sinks"
fi
chmod 0755 "$sinks"
sink_fstype="$(stat -f -c %T "$sinks")"

# Median time of one 1 KiB write + fsync in the scratch directory, in
# microseconds, as in smtp-accept.sh: both relays fsync every message they
# queue, so this tells a slow disk from a fast one.
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

KEEP_LOG=0
facteur_pid=""
postfix_conf=""
postfix_master_pidfile=""
sink_pid=""
failed=0

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
    local master=""
    if [ -s "$postfix_master_pidfile" ]; then
        master="$(tr -dc 0-9 <"$postfix_master_pidfile")"
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
    postfix_master_pidfile=""
}

stop_sink() {
    [ -n "$sink_pid" ] || return 0
    kill -TERM "$sink_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$sink_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
    sink_pid=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_facteur
    stop_postfix
    stop_sink
    # Kept for their logs after a failure, with KEEP=1, or when facteur
    # logged warnings. The sink's files (on tmpfs, in memory) are kept only
    # after a failure or with KEEP=1.
    if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
        note "scratch directory kept: $work"
        case "$sinks" in "$work"/*) ;; *) note "sink files kept: $sinks (in memory if on tmpfs; remove when done)" ;; esac
    else
        case "$sinks" in "$work"/*) ;; *) rm -rf "$sinks" ;; esac
        if [ "$KEEP_LOG" = 1 ]; then
            rm -rf "$sinks"
            note "facteur logged warnings or deferrals; scratch directory kept for its logs: $work"
        else
            rm -rf "$work"
        fi
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

# Microseconds since the epoch, without a fork.
now_us() {
    local t="$EPOCHREALTIME"
    REPLY=$(( ${t%.*} * 1000000 + 10#${t#*.} ))
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

# --- the sink --------------------------------------------------------------

# A fresh smtp-sink per run, on its own port, so counts never mix:
#   -c    running counters "sess=N quit=N mesg=N", each ended by CR, on
#         stdout; mesg counts messages whose final "." has been read, and
#         is bumped after the message file is closed, before the 250
#   -d    one file per message in DIR (deleted again if the transaction
#         does not complete), which names the numbered recipient
#   -h    the name in its greeting
# The last argument is the listen backlog.
sink_dir=""
sink_port=""
start_sink() {
    local name="$1"
    sink_dir="$sinks/$name"
    mkdir -p "$sink_dir/msgs"
    if [ "${#sink_user[@]}" -gt 0 ]; then
        chown nobody "$sink_dir/msgs"
    fi
    sink_port="$(free_ports 1)"
    "$SMTP_SINK" "${sink_user[@]}" -c -h sink.bench.test -d "$sink_dir/msgs/" \
        "127.0.0.1:$sink_port" 1024 >"$sink_dir/counter" 2>"$sink_dir/sink.log" </dev/null &
    sink_pid=$!
    if ! wait_smtp_banner "$sink_port"; then
        cat "$sink_dir/sink.log" >&2
        die "smtp-sink not answering on 127.0.0.1:$sink_port"
    fi
    # The banner probe was a session without a message: mesg is still 0.
}

# Messages the sink has received so far (the last complete counter record).
sink_count() {
    local rec
    rec="$(tail -c 160 "$sink_dir/counter" 2>/dev/null || true)"
    rec="${rec%$'\r'*}"
    rec="${rec##*$'\r'}"
    case "$rec" in
        *mesg=*) REPLY="${rec##*mesg=}" ;;
        *) REPLY=0 ;;
    esac
    case "$REPLY" in '' | *[!0-9]*) REPLY=0 ;; esac
}

# Read the sink's message files once it has stopped. Prints one line:
#   files distinct duplicates unexpected missing short last_ns
# files       message files written
# distinct    recipient numbers seen (NUMBERED=1), else "-"
# duplicates  files beyond the first for a number (NUMBERED=0: files
#             beyond MESSAGES, a lower bound)
# unexpected  files without a number in 1..MESSAGES (a bounce, say)
# missing     numbers in 1..MESSAGES never seen
# short       files smaller than the payload (truncated messages)
# last_ns     when the last of the MESSAGES distinct messages was complete:
#             the latest first-arrival mtime, in ns since the epoch
analyse_sink() {
    python3 - "$sink_dir/msgs" "$MESSAGES" "$1" "$NUMBERED" <<'PY'
import os, re, sys
d, n, size, numbered = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rcpt = re.compile(rb"^X-Rcpt-Args: <(\d+)rcpt@sink\.bench\.test>", re.M)
first = {}
files = dups = unexpected = short = 0
mtimes = []
for e in os.scandir(d):
    if not e.is_file(follow_symlinks=False):
        continue
    st = e.stat(follow_symlinks=False)
    files += 1
    mtimes.append(st.st_mtime_ns)
    if st.st_size < size:
        short += 1
    if not numbered:
        continue
    with open(e.path, "rb") as f:
        head = f.read(4096)
    m = rcpt.search(head)
    k = int(m.group(1)) if m else 0
    if not 1 <= k <= n:
        unexpected += 1
    elif k in first:
        dups += 1
        first[k] = min(first[k], st.st_mtime_ns)
    else:
        first[k] = st.st_mtime_ns
if numbered:
    distinct = len(first)
    missing = n - distinct
    last = max(first.values()) if first else 0
else:
    distinct = "-"
    dups = max(0, files - n)
    missing = max(0, n - files)
    mtimes.sort()
    last = mtimes[n - 1] if len(mtimes) >= n else (mtimes[-1] if mtimes else 0)
print(files, distinct, dups, unexpected, missing, short, last)
PY
}

# --- the load --------------------------------------------------------------

# Run smtp-source against 127.0.0.1:$1 with payload size $2; sets send_s to
# its wall time and send_start to the $EPOCHREALTIME at which it started.
#   -s SESSIONS   parallel sessions          -m MESSAGES   messages in total
#   -l SIZE       payload bytes per message  -M           HELO name, no lookups
#   -f / -t       envelope sender and recipient
#   -N            number the recipients: 1rcpt@sink.bench.test, 2rcpt@...
# One connection per message. Without -A, smtp-source stops with an error on
# any reply other than the expected one, so a refused message fails the run.
send_start=""
send_s=""
run_smtp_source() {
    local port="$1" size="$2" end
    local args=(-s "$SESSIONS" -m "$MESSAGES" -l "$size"
        -M client.bench.test -f sender@bench.test -t rcpt@sink.bench.test)
    [ "$NUMBERED" = 1 ] && args+=(-N)
    note "smtp-source ${args[*]} 127.0.0.1:$port"
    sync
    send_start="$EPOCHREALTIME"
    timeout "$SEND_TIMEOUT" "$SMTP_SOURCE" "${args[@]}" "127.0.0.1:$port" ||
        die "smtp-source failed or timed out (exit $?) against 127.0.0.1:$port"
    end="$EPOCHREALTIME"
    send_s="$(elapsed "$send_start" "$end")"
}

# Wait until the sink has MESSAGES messages. $1 names a function that prints
# how many recipients the relay still has queued; it is asked only when the
# sink has received nothing for 3 s. Returns 0 when complete, 1 when the
# relay's queue is empty while the sink is short (lost), 2 on timeout.
wait_reason=""
wait_for_sink() {
    local pending_fn="$1" deadline last=-1 changed now pending warned=0
    now_us
    deadline=$(( REPLY + DELIVERY_TIMEOUT * 1000000 ))
    changed="$REPLY"
    while :; do
        sink_count
        local n="$REPLY"
        [ "$n" -ge "$MESSAGES" ] && return 0
        now_us
        now="$REPLY"
        if [ "$n" != "$last" ]; then
            last="$n"
            changed="$now"
            warned=0
        elif [ $(( now - changed )) -ge 3000000 ]; then
            pending="$("$pending_fn")"
            if [ "$pending" = 0 ]; then
                # Give a last delivery the time to be counted.
                sleep 1
                sink_count
                [ "$REPLY" -ge "$MESSAGES" ] && return 0
                wait_reason="the relay's queue is empty but the sink has $REPLY of $MESSAGES messages"
                return 1
            fi
            if [ "$warned" = 0 ]; then
                note "sink stalled at $n of $MESSAGES for 3 s; relay still has $pending recipient(s) queued (waiting up to ${DELIVERY_TIMEOUT} s)"
                warned=1
            fi
            changed="$now"
        fi
        if [ "$now" -ge "$deadline" ]; then
            wait_reason="stuck: the sink has $n of $MESSAGES messages after ${DELIVERY_TIMEOUT} s; relay still has $("$pending_fn") recipient(s) queued"
            return 2
        fi
        sleep 0.02
    done
}

# Wait (at most QUEUE_TIMEOUT) until $1 prints 0.
wait_queue_empty() {
    local pending_fn="$1" deadline
    now_us
    deadline=$(( REPLY + QUEUE_TIMEOUT * 1000000 ))
    while :; do
        [ "$("$pending_fn")" = 0 ] && return 0
        now_us
        [ "$REPLY" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# Results, keyed by "server,size".
declare -A accept_s=() e2e_s=() files=() distinct=() dups=() unexpected=() missing=() \
    short=() relay_check=() status=() load_before=() load_after=()
runs=()

# Record the sink's figures for run $1 (server,size) and judge them.
finish_run() {
    local key="$1" size="$2" relay_ok="$3" a_files a_distinct a_dups a_unexp a_missing a_short a_last
    # The 1-minute load average at the end of the run, which this run's own
    # processes (about 3 busy ones) raise too.
    load_after[$key]="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
    stop_sink
    read -r a_files a_distinct a_dups a_unexp a_missing a_short a_last < <(analyse_sink "$size") ||
        die "could not read the sink's files in $sink_dir/msgs"
    files[$key]="$a_files"
    distinct[$key]="$a_distinct"
    dups[$key]="$a_dups"
    unexpected[$key]="$a_unexp"
    missing[$key]="$a_missing"
    short[$key]="$a_short"
    if [ "$a_missing" = 0 ] && [ "$a_last" -gt 0 ]; then
        # From the start of sending to the sink closing the file of the last
        # message (file times are kernel-tick coarse: a few ms).
        e2e_s[$key]="$(awk -v a="$send_start" -v ns="$a_last" 'BEGIN { printf "%.3f", ns / 1e9 - a }')"
    else
        e2e_s[$key]=""
    fi
    local problems=()
    if [ "$a_missing" != 0 ]; then
        # Still queued when we gave up is not lost, only not delivered.
        case "$relay_ok" in
            stuck:*) problems+=("$a_missing missing at the sink") ;;
            *) problems+=("$a_missing lost") ;;
        esac
    fi
    [ "$a_dups" = 0 ] || problems+=("$a_dups duplicated")
    [ "$a_unexp" = 0 ] || problems+=("$a_unexp unexpected at the sink")
    [ "$a_short" = 0 ] || problems+=("$a_short truncated")
    [ "$relay_ok" = ok ] || problems+=("$relay_ok")
    if [ "${#problems[@]}" -eq 0 ]; then
        status[$key]="ok"
        # The message files have served; a failed run keeps them.
        [ "$KEEP" = 1 ] || rm -rf "$sink_dir/msgs"
    else
        local p joined=""
        for p in "${problems[@]}"; do
            joined="${joined:+$joined; }$p"
        done
        status[$key]="FAIL: $joined"
        failed=1
        note "${key%,*} (size ${size}): ${status[$key]}; sink files kept in $sink_dir/msgs"
    fi
}

begin_run() {
    local key="$1"
    runs+=("$key")
    load_before[$key]="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
}

# --- direct: load generator straight into the sink ----------------------------

no_queue() {
    echo 0
}

run_direct() {
    local size="$1" key="direct,$1"
    begin_run "$key"
    start_sink "direct-$size"
    note "direct: smtp-source into smtp-sink on 127.0.0.1:$sink_port"
    run_smtp_source "$sink_port" "$size"
    accept_s[$key]="$send_s"
    relay_check[$key]="-"
    local ok=ok
    if ! wait_for_sink no_queue; then
        ok="$wait_reason"
    fi
    finish_run "$key" "$size" "$ok"
    note "direct: $MESSAGES sent in ${accept_s[$key]} s, ${distinct[$key]} distinct at the sink"
}

# --- facteur ---------------------------------------------------------------

facteur_bin=""
facteur_version=""
facteur_db=""
prepare_facteur() {
    facteur_bin="${FACTEUR_BIN:-}"
    if [ -z "$facteur_bin" ]; then
        need cargo
        note "building facteur (cargo build --release -p facteur)"
        (cd "$repo_root" && cargo build --release -p facteur) ||
            die "could not build facteur"
        facteur_bin="$CARGO_TARGET_DIR/release/facteur"
    fi
    [ -x "$facteur_bin" ] || die "facteur binary not found at $facteur_bin"
    facteur_version="$("$facteur_bin" --version 2>/dev/null | head -n 1 || true)"
}

# Recipients facteur has not finished with (neither delivered nor bounced).
facteur_pending() {
    sqlite3 -bail -cmd '.timeout 10000' "$facteur_db" \
        "select count(*) from recipients where state not in ('delivered', 'bounced', 'deleted');" 2>/dev/null ||
        echo "?"
}

run_facteur() {
    local size="$1" key="facteur,$1"
    begin_run "$key"
    local dir="$work/facteur-$size" smtp_port http_port
    mkdir -p "$dir/data"
    facteur_db="$dir/data/facteur.db"
    start_sink "facteur-$size"
    { read -r smtp_port; read -r http_port; } < <(free_ports 2)
    [ -n "${http_port:-}" ] || die "could not pick free loopback ports"

    # No local domain: everything is relayed. Loopback is a trusted network,
    # the one route sends every domain to the sink without TLS, and the DNS
    # resolver is a closed loopback port, so no lookup can leave the machine.
    cat >"$dir/facteur.toml" <<EOF
[server]
hostname = "relay.bench.test"

[listen]
smtp = ["127.0.0.1:$smtp_port"]
submission = []
submissions = []
http = ["127.0.0.1:$http_port"]

[smtp]
trusted_networks = ["127.0.0.0/8"]

[delivery]
enabled = true
dns_servers = ["127.0.0.1:9"]

[[route]]
domain = "*"
via = "127.0.0.1:$sink_port"
tls = "none"
EOF

    note "starting facteur: SMTP 127.0.0.1:$smtp_port, HTTP 127.0.0.1:$http_port, relaying to 127.0.0.1:$sink_port"
    RUST_LOG="${RUST_LOG:-info}" "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" serve \
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

    run_smtp_source "$smtp_port" "$size"
    accept_s[$key]="$send_s"

    local ok=ok
    if ! wait_for_sink facteur_pending; then
        ok="$wait_reason"
    elif ! wait_queue_empty facteur_pending; then
        ok="stuck: facteur still has $(facteur_pending) recipient(s) queued ${QUEUE_TIMEOUT} s after the sink was complete"
    fi
    kill -0 "$facteur_pid" 2>/dev/null || ok="facteur exited during the run"
    stop_facteur

    # The checks the operator would make, on the stopped data directory.
    local list delivered total
    list="$("$facteur_bin" --data "$dir/data" queue list --json 2>>"$dir/queue-list.err" | tr -d ' \n\t')" ||
        list="(queue list failed: $(tail -n 1 "$dir/queue-list.err"))"
    delivered="$(sqlite3 -bail "$facteur_db" "select count(*) from recipients where state = 'delivered';")"
    total="$(sqlite3 -bail "$facteur_db" "select count(*) from recipients;")"
    if [ "$list" = "[]" ]; then
        relay_check[$key]="queue list: [], delivered $delivered of $total recipients"
    else
        relay_check[$key]="queue list: not empty, delivered $delivered of $total recipients"
    fi
    if [ "$list" != "[]" ]; then
        [ "$ok" = ok ] && ok="facteur queue list --json is not [] after the run"
    elif [ "$delivered" != "$MESSAGES" ]; then
        [ "$ok" = ok ] && ok="facteur marked $delivered recipient(s) delivered, expected $MESSAGES"
    fi
    if [ "$ok" != ok ]; then
        note "facteur: $ok; last lines of $dir/facteur.log:"
        tail -n 30 "$dir/facteur.log" >&2
        sqlite3 "$facteur_db" "select state, count(*), max(last_error) from recipients group by state;" >&2 || true
    fi
    finish_run "$key" "$size" "$ok"
    # facteur's log: one "delivery attempt" line per recipient and try.
    local warn_lines deferred_lines
    warn_lines="$(grep -c -E ' (WARN|ERROR) ' "$dir/facteur.log" || true)"
    deferred_lines="$(grep -c 'outcome="\?deferred' "$dir/facteur.log" || true)"
    if [ "${warn_lines:-0}" != 0 ] || [ "${deferred_lines:-0}" != 0 ]; then
        note "facteur log: $warn_lines WARN/ERROR line(s), $deferred_lines deferred attempt(s) ($dir/facteur.log):"
        grep -E ' (WARN|ERROR) |outcome="?deferred' "$dir/facteur.log" | head -n 10 >&2 || true
        KEEP_LOG=1
    fi
    note "facteur: $MESSAGES accepted in ${accept_s[$key]} s; sink ${distinct[$key]} distinct, ${dups[$key]} duplicate(s), end to end ${e2e_s[$key]:--} s; ${relay_check[$key]}"
}

# --- postfix ---------------------------------------------------------------

postfix_version=""
postfix_spool=""

# Messages still in the Postfix queue (every queue file is one message).
postfix_pending() {
    find "$postfix_spool/maildrop" "$postfix_spool/incoming" "$postfix_spool/active" \
        "$postfix_spool/deferred" "$postfix_spool/hold" -type f 2>/dev/null | wc -l
}

run_postfix() {
    local size="$1" key="postfix,$1"
    begin_run "$key"
    local base="$work/postfix-$size" port
    local conf="$base/etc" spool="$base/spool" data="$base/data"
    postfix_spool="$spool"
    postfix_version="$(postconf -d -h mail_version 2>/dev/null || true)"
    start_sink "postfix-$size"
    port="$(free_ports 1)"

    mkdir -p "$conf" "$spool" "$data" "$base/log"
    chown postfix "$data"

    cat >"$conf/main.cf" <<EOF
# Private Postfix relay for bench/relay.sh. One loopback listener; every
# message goes to the smtp-sink at [127.0.0.1]:$sink_port; no local delivery,
# no TLS, no DNS. Production defaults otherwise, fsync of queue files included.
compatibility_level = 3.6
queue_directory = $spool
data_directory = $data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $base/log/maillog

myhostname = postfix.relay.bench.test
mydomain = relay.bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

relayhost = [127.0.0.1]:$sink_port
default_transport = smtp
relay_transport = relay
relay_domains =
smtp_tls_security_level = none

alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is off in this benchmark
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtp_host_lookup = native
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

    postconf -c "$conf" >/dev/null 2>"$base/postconf.err" ||
        { cat "$base/postconf.err" >&2; die "postconf rejected the benchmark main.cf"; }
    if [ -s "$base/postconf.err" ]; then
        cat "$base/postconf.err" >&2
    fi

    note "starting postfix $postfix_version: SMTP 127.0.0.1:$port, relayhost [127.0.0.1]:$sink_port (config $conf)"
    postfix_conf="$conf"
    postfix_master_pidfile="$spool/pid/master.pid"
    timeout 60 postfix -c "$conf" start >"$base/start.log" 2>&1 ||
        { cat "$base/start.log" "$base/log/maillog" >&2 2>/dev/null; die "postfix did not start"; }
    if ! wait_smtp_banner "$port"; then
        cat "$base/start.log" >&2
        tail -n 40 "$base/log/maillog" >&2 2>/dev/null || true
        die "postfix not answering on 127.0.0.1:$port after 30 s"
    fi

    run_smtp_source "$port" "$size"
    accept_s[$key]="$send_s"

    local ok=ok
    if ! wait_for_sink postfix_pending; then
        ok="$wait_reason"
    elif ! wait_queue_empty postfix_pending; then
        ok="stuck: postfix still has $(postfix_pending) message(s) queued ${QUEUE_TIMEOUT} s after the sink was complete"
    fi
    local mailq
    mailq="$(timeout 30 postqueue -c "$conf" -p 2>&1 | tail -n 1)" || true
    relay_check[$key]="postqueue: $mailq"
    case "$mailq" in
        *"Mail queue is empty"*) ;;
        *) [ "$ok" = ok ] && ok="postqueue -p does not report an empty queue: $mailq" ;;
    esac
    if [ "$ok" != ok ]; then
        note "postfix: $ok; last lines of $base/log/maillog:"
        tail -n 30 "$base/log/maillog" >&2 2>/dev/null || true
    fi
    stop_postfix
    finish_run "$key" "$size" "$ok"
    note "postfix: $MESSAGES accepted in ${accept_s[$key]} s; sink ${distinct[$key]} distinct, ${dups[$key]} duplicate(s), end to end ${e2e_s[$key]:--} s; ${relay_check[$key]}"
}

# --- run -------------------------------------------------------------------

note "$MESSAGES messages per run over $SESSIONS sessions, sizes: $SIZES; relays: $TARGETS"
note "machine: $(nproc) cores, $(uname -sr), queues on $fstype ($work), sink files on $sink_fstype ($sinks)"
loadavg="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
note "median 1 KiB write+fsync on the scratch disk: $fsync_us us"
note "load average before the run: $loadavg (figures from a busy machine are low and noisy)"
if [ "$NUMBERED" = 0 ]; then
    note "NUMBERED=0: the sink can count messages but not tell a duplicate from a loss"
fi

# The commit measured: taken before the build, as the tree may move on
# during a long run.
commit="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=false
if [ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no -- crates 2>/dev/null || true)" ]; then
    dirty=true
fi
want_target facteur && prepare_facteur

for size in $SIZES; do
    [ "$DIRECT" = 1 ] && run_direct "$size"
    for t in $TARGETS; do
        "run_$t" "$size"
    done
done

# --- report ----------------------------------------------------------------

ratio() {
    # postfix seconds / facteur seconds = facteur rate / postfix rate
    awk -v f="$1" -v p="$2" 'BEGIN { if (f > 0 && p > 0) printf "%.2f", p / f }'
}
verdict() {
    awk -v r="$1" -v t="$2" 'BEGIN { if (r == "") print "n/a"; else if (r + 0 >= t) print "met"; else print "not met" }'
}

echo
printf '%-8s %6s %9s %9s %10s %9s %9s %8s %5s %5s %6s  %s\n' \
    server size messages accept_s accept/s e2e_s e2e/s distinct dups miss load  status
for key in "${runs[@]}"; do
    server="${key%,*}"
    size="${key#*,}"
    e="${e2e_s[$key]}"
    printf '%-8s %6s %9s %9s %10s %9s %9s %8s %5s %5s %6s  %s\n' "$server" "$size" "$MESSAGES" \
        "${accept_s[$key]}" "$(rate "${accept_s[$key]}")" \
        "${e:--}" "$([ -n "$e" ] && rate "$e" || echo -)" \
        "${distinct[$key]}" "${dups[$key]}" "${missing[$key]}" "${load_after[$key]}" "${status[$key]}"
done

declare -A r_accept=() r_e2e=()
if want_target facteur && want_target postfix; then
    echo
    echo "facteur/postfix (above 1: facteur is faster)"
    printf '%6s %10s %10s  %s\n' size accept e2e "end-to-end goal ${GOAL_RATIO}x / issue requires ${REQUIRED_RATIO}x"
    for size in $SIZES; do
        r_accept[$size]="$(ratio "${accept_s[facteur,$size]}" "${accept_s[postfix,$size]}")"
        r_e2e[$size]="$(ratio "${e2e_s[facteur,$size]}" "${e2e_s[postfix,$size]}")"
        printf '%6s %10s %10s  goal %s: %s; required %s: %s\n' "$size" \
            "${r_accept[$size]:--}" "${r_e2e[$size]:--}" \
            "${GOAL_RATIO}x" "$(verdict "${r_e2e[$size]}" "$GOAL_RATIO")" \
            "${REQUIRED_RATIO}x" "$(verdict "${r_e2e[$size]}" "$REQUIRED_RATIO")"
    done
fi

json_num() {
    # A number, or null when empty.
    if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi
}
json_str() {
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

mkdir -p "$RESULTS_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json="$RESULTS_DIR/relay-$stamp.json"
{
    printf '{\n'
    printf '  "benchmark": "relay",\n'
    printf '  "time_utc": "%s",\n' "$stamp"
    printf '  "git_commit": "%s",\n' "$commit"
    printf '  "crates_modified": %s,\n' "$dirty"
    printf '  "machine": {"cores": %s, "kernel": "%s", "filesystem": "%s", "sink_filesystem": "%s", "fsync_median_us": %s, "loadavg_1m": %s},\n' \
        "$(nproc)" "$(uname -r)" "$fstype" "$sink_fstype" "$fsync_us" "$loadavg"
    printf '  "params": {"messages": %s, "sessions": %s, "sizes": [%s], "numbered_recipients": %s},\n' \
        "$MESSAGES" "$SESSIONS" "$(echo "$SIZES" | tr ' ' ',')" "$([ "$NUMBERED" = 1 ] && echo true || echo false)"
    printf '  "versions": {"facteur": %s, "postfix": %s},\n' \
        "$(json_str "$facteur_version")" "$(json_str "$postfix_version")"
    printf '  "runs": ['
    sep=""
    for key in "${runs[@]}"; do
        e="${e2e_s[$key]}"
        printf '%s\n    {"server": "%s", "size": %s, "loadavg_1m_before": %s, "loadavg_1m_after": %s, "accept_seconds": %s, "accept_msgs_per_s": %s, "e2e_seconds": %s, "e2e_msgs_per_s": %s, "sink_files": %s, "sink_distinct": %s, "duplicates": %s, "missing": %s, "unexpected": %s, "truncated": %s, "relay_check": %s, "status": %s}' \
            "$sep" "${key%,*}" "${key#*,}" "${load_before[$key]}" "${load_after[$key]}" \
            "${accept_s[$key]}" "$(rate "${accept_s[$key]}")" \
            "$(json_num "$e")" "$(json_num "$([ -n "$e" ] && rate "$e")")" \
            "${files[$key]}" "$(json_num "${distinct[$key]//-/}")" "${dups[$key]}" "${missing[$key]}" \
            "${unexpected[$key]}" "${short[$key]}" \
            "$(json_str "${relay_check[$key]}")" "$(json_str "${status[$key]}")"
        sep=","
    done
    printf '\n  ]'
    if want_target facteur && want_target postfix; then
        printf ',\n  "ratio_facteur_over_postfix": {"goal_e2e": %s, "required_e2e": %s, "by_size": [' \
            "$GOAL_RATIO" "$REQUIRED_RATIO"
        sep=""
        for size in $SIZES; do
            printf '%s\n    {"size": %s, "accept": %s, "e2e": %s}' "$sep" "$size" \
                "$(json_num "${r_accept[$size]}")" "$(json_num "${r_e2e[$size]}")"
            sep=","
        done
        printf '\n  ]}'
    fi
    printf ',\n  "ok": %s\n}\n' "$([ "$failed" = 0 ] && echo true || echo false)"
} >"$json"

csv="$RESULTS_DIR/relay.csv"
if [ ! -s "$csv" ]; then
    echo "time_utc,git_commit,server,size,messages,sessions,loadavg_1m_before,loadavg_1m_after,accept_s,accept_msgs_per_s,e2e_s,e2e_msgs_per_s,sink_distinct,duplicates,missing,status" >"$csv"
fi
for key in "${runs[@]}"; do
    e="${e2e_s[$key]}"
    echo "$stamp,$commit,${key%,*},${key#*,},$MESSAGES,$SESSIONS,${load_before[$key]},${load_after[$key]},${accept_s[$key]},$(rate "${accept_s[$key]}"),$e,$([ -n "$e" ] && rate "$e"),${distinct[$key]},${dups[$key]},${missing[$key]},\"${status[$key]//\"/}\"" >>"$csv"
done

echo
cat "$json"
note "results written to $json and appended to $csv"
[ "$failed" = 0 ] || die "lost, duplicated or stuck messages (see status above); scratch directory kept"
