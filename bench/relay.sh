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
#   DKIM [0]          1: facteur signs every message (ed25519 and rsa-sha256,
#                     keys made by `facteur dkim generate bench.test`, the
#                     senders' domain), which the sink's copies must carry;
#                     Postfix does not sign (it has no signer of its own)
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
#   FACTEUR_STORAGE [sqlite]  "postgres": facteur on PostgreSQL (FACTEUR_PG,
#                     default the local test database; a schema per run)
#   NODES [1]         facteur nodes sharing that PostgreSQL schema; the load
#                     goes to the first, every node delivers
#
# Needs root (Postfix's master runs as root) and the packages that
# `.ci/run --deps-only` installs. Everything listens on 127.0.0.1 only, and
# neither relay looks anything up in the DNS. What it shares with
# bench/smtp-accept.sh is in bench/lib.sh.
set -euo pipefail
BENCH_NAME=relay
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# MESSAGES, SESSIONS, TARGETS, SEND_TIMEOUT, DELIVERY_TIMEOUT, BENCH_TMPDIR
# and KEEP, as in smtp-accept.sh.
bench_settings
SIZES="${SIZES:-1024 10240}"
DIRECT="${DIRECT:-1}"
NUMBERED="${NUMBERED:-1}"
DKIM="${DKIM:-0}"
QUEUE_TIMEOUT="${QUEUE_TIMEOUT:-60}"
SINK_TMPDIR="${SINK_TMPDIR:-/dev/shm}"

# The product goal and what the current issue requires, end to end.
GOAL_RATIO=5
REQUIRED_RATIO=2

positive QUEUE_TIMEOUT "$QUEUE_TIMEOUT"
[ -n "${SIZES// /}" ] || die "SIZES is empty"
for s in $SIZES; do
    positive SIZES "$s"
done
zero_or_one DIRECT
zero_or_one NUMBERED
zero_or_one DKIM

need smtp-source
need smtp-sink
need python3
need sqlite3
need curl
need timeout
SMTP_SINK="$(command -v smtp-sink)"
if want_target postfix; then
    need_postfix
    need postqueue
fi
# smtp-sink refuses to run as root without -u.
sink_user=()
if [ "$(id -u)" -eq 0 ]; then
    sink_user=(-u nobody)
fi

# --- scratch space ---------------------------------------------------------

make_scratch facteur-relay

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

# Both relays fsync every message they queue, so this tells a slow disk from
# a fast one.
fsync_us="$(fsync_median_us "$work")"

KEEP_LOG=0
sink_pid=""
failed=0

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

# Called on exit, once both relays are stopped.
on_exit() {
    stop_sink
    # Kept for their logs after a failure, with KEEP=1, or when facteur
    # logged warnings. The sink's files (on tmpfs, in memory) are kept only
    # after a failure or with KEEP=1.
    if [ "$KEEP" = 1 ] || [ "$1" -ne 0 ]; then
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
}
set_traps

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

# smtp-source against 127.0.0.1:$1 with payload size $2 and the recipient
# the sink's files name, numbered 1rcpt@, 2rcpt@, ... (-N) unless NUMBERED=0.
# One connection per message.
send_to() {
    local extra=()
    [ "$NUMBERED" = 1 ] && extra+=(-N)
    run_smtp_source "$1" "$2" rcpt@sink.bench.test "${extra[@]}"
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

# wait_drained RELAY PENDING_FN UNIT: wait for the sink to be complete, then
# for the relay's queue to empty; PENDING_FN prints how many UNITs the relay
# still has queued. Sets the caller's ok to "ok" or to what went wrong.
wait_drained() {
    ok=ok
    if ! wait_for_sink "$2"; then
        ok="$wait_reason"
    elif ! wait_queue_empty "$2"; then
        ok="stuck: $1 still has $("$2") $3 queued ${QUEUE_TIMEOUT} s after the sink was complete"
    fi
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
    load_after[$key]="$(loadavg_1m)"
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
    load_before[$key]="$(loadavg_1m)"
    cpu_ms[$key]=""
    db_share[$key]=""
}

# cpu_used KEY RELAY_TICKS DB_TICKS: the CPU the relay took during a run
# (from its start to the end of the drain; facteur: every node, Postfix:
# its master and every process it ran), with the database's (PostgreSQL's
# server and backends; 0 for SQLite, which runs inside facteur), as
# milliseconds per message and the database's share.
declare -A cpu_ms=() db_share=()
cpu_used() {
    local tck
    tck="$(getconf CLK_TCK)"
    cpu_ms[$1]="$(awk -v r="$2" -v d="$3" -v t="$tck" -v n="$MESSAGES" 'BEGIN { printf "%.3f", (r + d) * 1000 / t / n }')"
    db_share[$1]="$(awk -v r="$2" -v d="$3" 'BEGIN { if (r + d > 0) printf "%.0f", 100 * d / (r + d); else print 0 }')"
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
    send_to "$sink_port" "$size"
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

facteur_dir=""

# Recipients facteur has not finished with (neither delivered nor bounced).
facteur_pending() {
    facteur_sql "$facteur_dir" \
        "select count(*) from recipients where state not in ('delivered', 'bounced', 'deleted');" 2>/dev/null ||
        echo "?"
}

run_facteur() {
    local size="$1" key="facteur,$1"
    begin_run "$key"
    local dir="$work/facteur-$size" smtp_port http_port
    mkdir -p "$dir"
    facteur_dir="$dir"
    start_sink "facteur-$size"
    { read -r smtp_port; read -r http_port; } < <(free_ports 2)
    [ -n "${http_port:-}" ] || die "could not pick free loopback ports"

    # No local domain: everything is relayed. Loopback is a trusted network,
    # the one route sends every domain to the sink without TLS, and the DNS
    # resolver is a closed loopback port, so no lookup can leave the machine.
    facteur_config "$dir" relay.bench.test "$smtp_port" "$http_port"
    cat >>"$dir/facteur.toml" <<EOF

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

    node_name "$dir"
    if [ "$DKIM" = 1 ]; then
        "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" init >>"$dir/facteur.log" 2>&1 &&
            "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" dkim generate bench.test \
                --selector bench >>"$dir/facteur.log" 2>&1 ||
            die "facteur dkim generate failed: $(tail -n 3 "$dir/facteur.log")"
    fi
    note "starting facteur: SMTP 127.0.0.1:$smtp_port, HTTP 127.0.0.1:$http_port, relaying to 127.0.0.1:$sink_port"
    start_facteur "$dir" "$http_port" info
    start_more_nodes "$dir" "$smtp_port" "$http_port"
    local db=()
    [ "$FACTEUR_STORAGE" = sqlite ] || db=("$(postmaster_pid)")
    local cpu0 db0
    cpu0="$(cpu_ticks "$facteur_pid" "${more_node_pids[@]}")"
    db0="$(cpu_ticks "${db[@]}")"

    send_to "$smtp_port" "$size"
    accept_s[$key]="$send_s"

    local ok
    wait_drained facteur facteur_pending "recipient(s)"
    kill -0 "$facteur_pid" 2>/dev/null || ok="facteur exited during the run"
    cpu_used "$key" "$(($(cpu_ticks "$facteur_pid" "${more_node_pids[@]}") - cpu0))" \
        "$(($(cpu_ticks "${db[@]}") - db0))"
    stop_more_nodes
    stop_facteur
    if [ "$DKIM" = 1 ]; then
        local sample
        sample="$(find "$sink_dir/msgs" -type f -print -quit)"
        [ "$(grep -c '^DKIM-Signature:' "$sample")" = 2 ] ||
            [ -n "${ok:-}" ] || ok="a copy at the sink ($sample) does not carry two DKIM signatures"
    fi

    # The checks the operator would make, on the stopped data directory.
    local list delivered total
    list="$("$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" queue list --json 2>>"$dir/queue-list.err" | tr -d ' \n\t')" ||
        list="(queue list failed: $(tail -n 1 "$dir/queue-list.err"))"
    delivered="$(facteur_sql "$dir" "select count(*) from recipients where state = 'delivered';")"
    total="$(facteur_sql "$dir" "select count(*) from recipients;")"
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
        facteur_sql "$dir" "select state, count(*), max(last_error) from recipients group by state;" >&2 || true
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
    local conf="$base/etc"
    postfix_spool="$base/spool"
    start_sink "postfix-$size"
    port="$(free_ports 1)"
    postfix_write "$base" "$port" postfix.relay.bench.test relay "$sink_port"

    note "starting postfix $postfix_version: SMTP 127.0.0.1:$port, relayhost [127.0.0.1]:$sink_port (config $conf)"
    postfix_start "$base" "$port"
    local master cpu0
    master="$(head -n 1 "$postfix_spool/pid/master.pid" | tr -d ' ')"
    cpu0="$(cpu_ticks "$master")"

    send_to "$port" "$size"
    accept_s[$key]="$send_s"

    local ok
    wait_drained postfix postfix_pending "message(s)"
    cpu_used "$key" "$(($(cpu_ticks "$master") - cpu0))" 0
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
note_disk_and_load "$fsync_us"
if [ "$NUMBERED" = 0 ]; then
    note "NUMBERED=0: the sink can count messages but not tell a duplicate from a loss"
fi

# The commit measured: taken before the build, as the tree may move on
# during a long run.
commit="$(git_commit)"
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
printf '%-8s %6s %9s %9s %10s %9s %9s %8s %5s %5s %6s %7s %4s  %s\n' \
    server size messages accept_s accept/s e2e_s e2e/s distinct dups miss load cpu_ms db_%  status
for key in "${runs[@]}"; do
    server="${key%,*}"
    size="${key#*,}"
    e="${e2e_s[$key]}"
    printf '%-8s %6s %9s %9s %10s %9s %9s %8s %5s %5s %6s %7s %4s  %s\n' "$server" "$size" "$MESSAGES" \
        "${accept_s[$key]}" "$(rate "${accept_s[$key]}")" \
        "${e:--}" "$([ -n "$e" ] && rate "$e" || echo -)" \
        "${distinct[$key]}" "${dups[$key]}" "${missing[$key]}" "${load_after[$key]}" \
        "${cpu_ms[$key]:--}" "${db_share[$key]:--}" "${status[$key]}"
done
echo "cpu_ms: the relay's CPU per message (facteur: every node, and PostgreSQL's server when it stores there; Postfix: all its processes); db_%: PostgreSQL's part"

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

results_files relay
{
    printf '{\n'
    printf '  "benchmark": "relay",\n'
    printf '  "time_utc": "%s",\n' "$stamp"
    printf '  "git_commit": "%s",\n' "$commit"
    printf '  "crates_modified": %s,\n' "$dirty"
    printf '  "machine": {"cores": %s, "kernel": "%s", "filesystem": "%s", "sink_filesystem": "%s", "fsync_median_us": %s, "loadavg_1m": %s},\n' \
        "$(nproc)" "$(uname -r)" "$fstype" "$sink_fstype" "$fsync_us" "$loadavg"
    printf '  "params": {"messages": %s, "sessions": %s, "sizes": [%s], "numbered_recipients": %s, "facteur_storage": "%s", "facteur_nodes": %s, "facteur_dkim": %s},\n' \
        "$MESSAGES" "$SESSIONS" "$(echo "$SIZES" | tr ' ' ',')" "$([ "$NUMBERED" = 1 ] && echo true || echo false)" \
        "$FACTEUR_STORAGE" "$NODES" "$([ "$DKIM" = 1 ] && echo true || echo false)"
    printf '  "versions": {"facteur": %s, "postfix": %s},\n' \
        "$(json_str "$facteur_version")" "$(json_str "$postfix_version")"
    printf '  "runs": ['
    sep=""
    for key in "${runs[@]}"; do
        e="${e2e_s[$key]}"
        printf '%s\n    {"server": "%s", "size": %s, "loadavg_1m_before": %s, "loadavg_1m_after": %s, "accept_seconds": %s, "accept_msgs_per_s": %s, "e2e_seconds": %s, "e2e_msgs_per_s": %s, "sink_files": %s, "sink_distinct": %s, "duplicates": %s, "missing": %s, "unexpected": %s, "truncated": %s, "cpu_ms_per_msg": %s, "db_cpu_pct": %s, "relay_check": %s, "status": %s}' \
            "$sep" "${key%,*}" "${key#*,}" "${load_before[$key]}" "${load_after[$key]}" \
            "${accept_s[$key]}" "$(rate "${accept_s[$key]}")" \
            "$(json_num "$e")" "$(json_num "$([ -n "$e" ] && rate "$e")")" \
            "${files[$key]}" "$(json_num "${distinct[$key]//-/}")" "${dups[$key]}" "${missing[$key]}" \
            "${unexpected[$key]}" "${short[$key]}" "$(json_num "${cpu_ms[$key]}")" "$(json_num "${db_share[$key]}")" \
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

csv_header "time_utc,git_commit,server,size,messages,sessions,loadavg_1m_before,loadavg_1m_after,accept_s,accept_msgs_per_s,e2e_s,e2e_msgs_per_s,sink_distinct,duplicates,missing,status"
for key in "${runs[@]}"; do
    e="${e2e_s[$key]}"
    echo "$stamp,$commit,${key%,*},${key#*,},$MESSAGES,$SESSIONS,${load_before[$key]},${load_after[$key]},${accept_s[$key]},$(rate "${accept_s[$key]}"),$e,$([ -n "$e" ] && rate "$e"),${distinct[$key]},${dups[$key]},${missing[$key]},\"${status[$key]//\"/}\"" >>"$csv"
done

show_results
[ "$failed" = 0 ] || die "lost, duplicated or stuck messages (see status above); scratch directory kept"
