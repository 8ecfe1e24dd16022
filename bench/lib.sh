# shellcheck shell=bash
# bench/lib.sh: what the scripts in bench/ share. Sourced, never run.
#
# The sourcing script runs under `set -euo pipefail` and sets BENCH_NAME (the
# prefix of every message) before it sources this file. What is here:
#   settings and checks      bench_settings, die, note, need, positive,
#                            want_target, ...
#   scratch space            make_scratch, fsync_median_us
#   small helpers            free_ports, now_us, elapsed, rate, loadavg_1m,
#                            wait_smtp_banner, stop_within_10s
#   the load                 run_smtp_source
#   facteur                  prepare_facteur, facteur_config,
#                            start_facteur, stop_facteur
#   a private Postfix        postfix_write (roles "virtual" and "relay"),
#                            postfix_start, stop_postfix, postfix_leftovers
#   exit and results         set_traps (calls the script's on_exit),
#                            git_commit, results_files, csv_header, show_results
# Everything listens on 127.0.0.1 only, and nothing asks the DNS.

export LC_ALL=C
export PATH="$PATH:/usr/sbin:/sbin"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/facteur-target}"

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$bench_dir/.." && pwd)"
RESULTS_DIR="${RESULTS_DIR:-$bench_dir/results}"

# --- settings and checks -----------------------------------------------------

die() {
    echo "$BENCH_NAME: FAIL: $*" >&2
    exit 1
}
note() {
    echo "$BENCH_NAME: $*"
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "missing command '$1' (run .ci/run --deps-only)"
}

# positive NAME VALUE: die unless VALUE is a whole number above 0.
positive() {
    case "$2" in
        '' | *[!0-9]*) die "$1 must be a positive integer, got '$2'" ;;
    esac
    [ "$2" -gt 0 ] || die "$1 must be positive"
}

# zero_or_one NAME: die unless the variable NAME holds 0 or 1.
zero_or_one() {
    case "${!1}" in 0 | 1) ;; *) die "$1 must be 0 or 1" ;; esac
}

# The settings both benchmarks take, with their defaults (bench/README.md
# explains them), checked.
bench_settings() {
    MESSAGES="${MESSAGES:-20000}"
    SESSIONS="${SESSIONS:-20}"
    TARGETS="${TARGETS:-facteur postfix}"
    SEND_TIMEOUT="${SEND_TIMEOUT:-1800}"
    DELIVERY_TIMEOUT="${DELIVERY_TIMEOUT:-900}"
    BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
    KEEP="${KEEP:-0}"
    local v t
    for v in MESSAGES SESSIONS SEND_TIMEOUT DELIVERY_TIMEOUT; do
        positive "$v" "${!v}"
    done
    # TARGETS names the servers to measure: facteur, postfix, or both (and
    # what a script adds in extra_targets).
    for t in $TARGETS; do
        case " facteur postfix ${extra_targets:-} " in *" $t "*) ;; *) die "unknown target '$t'" ;; esac
    done
}
want_target() {
    case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# What a private Postfix instance needs: its commands, root, and the user
# and group the package creates.
need_postfix() {
    need postfix
    need postconf
    [ "$(id -u)" -eq 0 ] || die "the Postfix half needs root (its master process runs as root)"
    id postfix >/dev/null 2>&1 || die "no 'postfix' user; is the postfix package installed?"
    getent group postdrop >/dev/null || die "no 'postdrop' group; is the postfix package installed?"
}

# --- scratch space -----------------------------------------------------------

# make_scratch PREFIX: a fresh directory BENCH_TMPDIR/PREFIX.XXXXXX in $work,
# its file system type in $fstype. Postfix daemons (user postfix) and
# virtual(8) (user nobody) must traverse it.
work=""
fstype=""
make_scratch() {
    mkdir -p "$BENCH_TMPDIR"
    work="$(mktemp -d "$BENCH_TMPDIR/$1.XXXXXX")"
    chmod 0755 "$work"
    fstype="$(stat -f -c %T "$work")"
    case "$fstype" in
        tmpfs | ramfs) note "WARNING: $work is on $fstype; fsync is free there and the figures mean little" ;;
    esac
}

# Median time of one 1 KiB write + fsync in directory $1, in microseconds.
# Both servers fsync at least once per message, so this tells a slow disk
# from a fast one (or from a VM host that absorbs flushes) when figures from
# different machines are compared.
fsync_median_us() {
    python3 - "$1" <<'PY'
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
}

# --- small helpers -----------------------------------------------------------

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

# Microseconds since the epoch in REPLY, without a fork.
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

# The 1-minute load average.
loadavg_1m() {
    cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0
}

# note_disk_and_load FSYNC_US: the fsync probe's figure and the load average,
# which it also sets in $loadavg, as every run reports them before it starts.
loadavg=""
note_disk_and_load() {
    loadavg="$(loadavg_1m)"
    note "median 1 KiB write+fsync on the scratch disk: $1 us"
    note "load average before the run: $loadavg (figures from a busy machine are low and noisy)"
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

# stop_within_10s PID NAME: wait up to 10 s for PID to exit (after it has
# been asked to), then SIGKILL it.
stop_within_10s() {
    local pid="$1"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    note "$2 did not stop within 10 s; killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
}

# --- the load ----------------------------------------------------------------

# run_smtp_source PORT SIZE RCPT [ARG...]: send MESSAGES messages to
# 127.0.0.1:PORT; sets send_s to the run's wall time and send_start to the
# $EPOCHREALTIME at which it started.
#   -s SESSIONS   parallel sessions          -m MESSAGES   messages in total
#   -l SIZE       payload bytes per message  -M           HELO name, no lookups
#   -f / -t       envelope sender and recipient
#   ARG...        the script's own options (-d: several messages per
#                 connection; -N: number the recipients 1rcpt@, 2rcpt@, ...)
# Without -A, smtp-source stops with an error on any reply other than the
# expected one, so a refused or deferred message fails the run.
send_start=""
send_s=""
run_smtp_source() {
    local port="$1" size="$2" rcpt="$3" end
    shift 3
    # Size 0: the message comes from a file (-F among the extra arguments).
    local length=()
    [ "$size" = 0 ] || length=(-l "$size")
    local args=(-s "$SESSIONS" -m "$MESSAGES" "${length[@]}"
        -M client.bench.test -f sender@bench.test -t "$rcpt" "$@")
    note "smtp-source ${args[*]} 127.0.0.1:$port"
    sync
    send_start="$EPOCHREALTIME"
    timeout "$SEND_TIMEOUT" "$(command -v smtp-source)" "${args[@]}" "127.0.0.1:$port" ||
        die "smtp-source failed or timed out (exit $?) against 127.0.0.1:$port"
    end="$EPOCHREALTIME"
    # shellcheck disable=SC2034 # read by the scripts
    send_s="$(elapsed "$send_start" "$end")"
}

# --- facteur -----------------------------------------------------------------

# The binary to measure in $facteur_bin (FACTEUR_BIN, or a release build) and
# its version line in $facteur_version.
facteur_bin=""
facteur_version=""
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
    # shellcheck disable=SC2034 # read by the scripts
    facteur_version="$("$facteur_bin" --version 2>/dev/null | head -n 1 || true)"
}

# FACTEUR_STORAGE [sqlite]: the backend facteur runs on. "postgres" puts
# each run in a fresh schema of FACTEUR_PG [postgres://postgres@127.0.0.1:5432/test],
# dropped on exit.
FACTEUR_STORAGE="${FACTEUR_STORAGE:-sqlite}"
FACTEUR_PG="${FACTEUR_PG:-postgres://postgres@127.0.0.1:5432/test}"
case "$FACTEUR_STORAGE" in sqlite | postgres) ;; *) die "FACTEUR_STORAGE must be sqlite or postgres" ;; esac
bench_pg_schemas=()

# facteur_storage DIR: append the [storage] section FACTEUR_STORAGE asks for
# to DIR/facteur.toml (nothing for SQLite, the default).
facteur_storage() {
    [ "$FACTEUR_STORAGE" = postgres ] || return 0
    local schema="bench_$$_${#bench_pg_schemas[@]}"
    bench_pg_schemas+=("$schema")
    # Every run starts from a clean checkpoint: the one an earlier run's
    # writes would have brought on does not land inside this one.
    psql "$FACTEUR_PG" -qAtX -c CHECKPOINT >/dev/null || die "CHECKPOINT on $FACTEUR_PG failed"
    cat >>"$1/facteur.toml" <<EOF

[storage]
backend = "postgres"
url = "$FACTEUR_PG"
schema = "$schema"
pool_size = ${FACTEUR_PG_POOL:-16}
EOF
}

# facteur_sql DIR SQL: run one query on the storage of the facteur whose
# configuration is DIR/facteur.toml (SQLite file DIR/data/facteur.db, or
# the run's PostgreSQL schema); rows as "a|b" lines.
facteur_sql() {
    if [ "$FACTEUR_STORAGE" = postgres ]; then
        local schema
        schema="$(sed -n 's/^schema = "\(.*\)"$/\1/p' "$1/facteur.toml" | tail -n 1)"
        PGOPTIONS="-c search_path=$schema" psql "$FACTEUR_PG" -qAtX -v ON_ERROR_STOP=1 -c "$2"
    else
        sqlite3 -bail -cmd '.timeout 10000' "$1/data/facteur.db" "$2"
    fi
}

drop_pg_schemas() {
    local schema
    if [ "${KEEP:-0}" = 1 ] && [ "${#bench_pg_schemas[@]}" -gt 0 ]; then
        note "PostgreSQL schemas kept (KEEP=1): ${bench_pg_schemas[*]}"
        return 0
    fi
    for schema in "${bench_pg_schemas[@]}"; do
        psql "$FACTEUR_PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    done
}

# facteur_config DIR HOSTNAME SMTP_PORT HTTP_PORT: DIR/facteur.toml with the
# server's name and its listeners: SMTP and HTTP on the loopback ports given,
# no submission, and the storage FACTEUR_STORAGE names. The caller may
# append more sections.
facteur_config() {
    cat >"$1/facteur.toml" <<EOF
[server]
hostname = "$2"

[listen]
smtp = ["127.0.0.1:$3"]
submission = []
submissions = []
http = ["127.0.0.1:$4"]
imap = []
imaps = []
pop3 = []
pop3s = []
status = []
EOF
    facteur_storage "$1"
}

# start_facteur DIR HTTP_PORT [LOG_LEVEL]: `facteur serve` with the data
# directory DIR/data and the configuration DIR/facteur.toml, its output in
# DIR/facteur.log; returns once /readyz answers on 127.0.0.1:HTTP_PORT (at
# most 30 s). LOG_LEVEL is the RUST_LOG to use when none is set.
facteur_pid=""
start_facteur() {
    local dir="$1" http_port="$2" env=() ready=0
    [ -z "${3:-}" ] || env=("RUST_LOG=${RUST_LOG:-$3}")
    # Shared storage is made once, by init (a node's first start does not).
    if [ "$FACTEUR_STORAGE" = postgres ] && [ ! -d "$dir/data" ]; then
        "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" init >>"$dir/facteur.log" 2>&1 ||
            die "facteur init failed: $(tail -n 3 "$dir/facteur.log")"
    fi
    env "${env[@]}" "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" serve \
        >"$dir/facteur.log" 2>&1 </dev/null &
    facteur_pid=$!
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
}

# NODES [1]: facteur nodes sharing one PostgreSQL schema (needs
# FACTEUR_STORAGE=postgres). The load arrives at the first; every node
# delivers. The first is started as usual; start_more_nodes starts the rest.
NODES="${NODES:-1}"
positive NODES "$NODES"
[ "$NODES" = 1 ] || [ "$FACTEUR_STORAGE" = postgres ] || die "NODES=$NODES needs FACTEUR_STORAGE=postgres"
more_node_pids=()

# start_more_nodes DIR SMTP_PORT HTTP_PORT: nodes 2..NODES, each in DIR/nK
# with the first node's configuration DIR/facteur.toml (whose [node] name
# is "n1": see node_name) on loopback ports of its own.
start_more_nodes() {
    local dir="$1" smtp="$2" http="$3" k node_smtp node_http first="$facteur_pid"
    for k in $(seq 2 "$NODES"); do
        mkdir -p "$dir/n$k/data"
        { read -r node_smtp; read -r node_http; } < <(free_ports 2)
        sed -e "s/127.0.0.1:$smtp\"/127.0.0.1:$node_smtp\"/; s/127.0.0.1:$http\"/127.0.0.1:$node_http\"/" \
            -e "s/^name = \"n1\"$/name = \"n$k\"/" "$dir/facteur.toml" >"$dir/n$k/facteur.toml"
        start_facteur "$dir/n$k" "$node_http" info
        more_node_pids+=("$facteur_pid")
        note "facteur node n$k: SMTP 127.0.0.1:$node_smtp, the same storage"
    done
    facteur_pid="$first"
}

# node_name DIR: with NODES > 1, name the first node "n1" in DIR/facteur.toml.
node_name() {
    [ "$NODES" = 1 ] || printf '\n[node]\nname = "n1"\n' >>"$1/facteur.toml"
}

stop_more_nodes() {
    local pid first="$facteur_pid"
    for pid in "${more_node_pids[@]}"; do
        facteur_pid="$pid"
        stop_facteur
    done
    more_node_pids=()
    facteur_pid="$first"
}

# cpu_ticks PID...: CPU time (clock ticks: user + system, with the reaped
# children's) of these processes and every live descendant of theirs.
cpu_ticks() {
    python3 - "$@" <<'PY'
import os, sys
stats = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            raw = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        f = raw[raw.rindex(")") + 2:].split()
        stats[int(p)] = (int(f[1]), sum(int(x) for x in f[11:15]))
want, total = {int(a) for a in sys.argv[1:]}, 0
while want:
    pid = want.pop()
    if pid in stats:
        total += stats.pop(pid)[1]
        want |= {c for c, (ppid, _) in stats.items() if ppid == pid}
print(total)
PY
}

# The PostgreSQL server's main process (its backends are its children).
postmaster_pid() {
    pgrep -o -x postgres || true
}

# SIGTERM, up to 10 s for a graceful exit, then SIGKILL.
stop_facteur() {
    [ -n "$facteur_pid" ] || return 0
    if kill -0 "$facteur_pid" 2>/dev/null; then
        kill -TERM "$facteur_pid" 2>/dev/null || true
        stop_within_10s "$facteur_pid" facteur
    fi
    wait "$facteur_pid" 2>/dev/null || true
    facteur_pid=""
}

# --- a private Postfix instance ----------------------------------------------

# postfix_write BASE PORT MYHOSTNAME ROLE ARG...: write a Postfix instance of
# its own under BASE and check it with postconf:
#   BASE/etc    main.cf and master.cf     BASE/spool  the queue
#   BASE/data   data_directory            BASE/log    maillog
# Its one listener is 127.0.0.1:PORT. Local delivery is off and DNS is
# disabled; production defaults otherwise, including fsync of every queue
# file. ROLE says what becomes of the mail:
#   virtual DOMAIN USER   DOMAIN is a virtual mailbox domain: virtual(8)
#                         delivers, as nobody, into the Maildir
#                         BASE/mail/DOMAIN/USER/ (USER "*": a catch-all for
#                         every address @DOMAIN, into BASE/mail/DOMAIN/catchall/);
#                         any other destination is an error
#   relay PORT2           everything goes to relayhost [127.0.0.1]:PORT2,
#                         without TLS
# Sets postfix_version.
postfix_version=""
postfix_write() {
    local base="$1" port="$2" myhostname="$3" role="$4"
    shift 4
    local conf="$base/etc" spool="$base/spool" data="$base/data"
    # shellcheck disable=SC2034 # read by the scripts
    postfix_version="$(postconf -d -h mail_version 2>/dev/null || true)"
    mkdir -p "$conf" "$spool" "$data" "$base/log"
    chown postfix "$data"

    local role_cf role_services
    case "$role" in
        virtual)
            local domain="$1" user="$2" mail="$base/mail" uid gid
            uid="$(id -u nobody)"
            gid="$(id -g nobody)"
            mkdir -p "$mail/$domain"
            # virtual(8) delivers as nobody and creates the Maildir itself.
            chown "$uid:$gid" "$mail/$domain"
            if [ "$user" = "*" ]; then
                printf '@%s %s/catchall/\n' "$domain" "$domain" >"$conf/vmailbox"
            else
                printf '%s@%s %s/%s/\n' "$user" "$domain" "$domain" "$user" >"$conf/vmailbox"
            fi
            role_cf="virtual_mailbox_domains = $domain
virtual_mailbox_base = $mail
virtual_mailbox_maps = texthash:$conf/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 100
default_transport = error:outbound mail is off in this benchmark
relay_transport = error:outbound mail is off in this benchmark"
            role_services="virtual   unix  -       n       n       -       -       virtual"
            ;;
        relay)
            role_cf="relayhost = [127.0.0.1]:$1
default_transport = smtp
relay_transport = relay
smtp_tls_security_level = none
smtp_host_lookup = native"
            role_services="smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
scache    unix  -       -       n       -       1       scache"
            ;;
        *) die "postfix_write: unknown role '$role'" ;;
    esac

    cat >"$conf/main.cf" <<EOF
# Private Postfix instance ($role) for bench/$BENCH_NAME, written by
# bench/lib.sh. One loopback listener, no local delivery, no DNS.
compatibility_level = 3.6
queue_directory = $spool
data_directory = $data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $base/log/maillog
maillog_file_prefixes = $base/log

myhostname = $myhostname
mydomain = ${myhostname#*.}
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

$role_cf
relay_domains =

alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is off in this benchmark
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
postlog   unix-dgram n  -       n       -       1       postlogd
$role_services
EOF

    postconf -c "$conf" >/dev/null 2>"$base/postconf.err" ||
        { cat "$base/postconf.err" >&2; die "postconf rejected the benchmark main.cf"; }
    if [ -s "$base/postconf.err" ]; then
        cat "$base/postconf.err" >&2
    fi
}

# postfix_start BASE PORT: start the instance postfix_write wrote under BASE
# and wait (at most 30 s) for its greeting on 127.0.0.1:PORT. From here on
# stop_postfix (and so the exit trap) stops it.
postfix_conf=""
postfix_master_pidfile=""
postfix_start() {
    local base="$1" port="$2"
    postfix_conf="$base/etc"
    postfix_master_pidfile="$base/spool/pid/master.pid"
    timeout 60 postfix -c "$postfix_conf" start >"$base/start.log" 2>&1 ||
        { cat "$base/start.log" "$base/log/maillog" >&2 2>/dev/null || true; die "postfix did not start"; }
    if ! wait_smtp_banner "$port"; then
        cat "$base/start.log" >&2
        tail -n 40 "$base/log/maillog" >&2 2>/dev/null || true
        die "postfix not answering on 127.0.0.1:$port after 30 s"
    fi
}

# `postfix stop`, up to 10 s for the master to exit, then SIGKILL for it.
stop_postfix() {
    [ -n "$postfix_conf" ] || return 0
    local master=""
    if [ -s "$postfix_master_pidfile" ]; then
        master="$(tr -dc 0-9 <"$postfix_master_pidfile")"
    fi
    timeout 30 postfix -c "$postfix_conf" stop >/dev/null 2>&1 || true
    if [ -n "$master" ]; then
        stop_within_10s "$master" "postfix master"
    fi
    postfix_conf=""
    postfix_master_pidfile=""
}

# postfix_leftovers CONF: the pids of the processes of the instance whose
# configuration directory is CONF, one per line. Its master gives every
# daemon it starts MAIL_CONFIG=CONF in the environment, which tells them
# from any other Postfix on the machine.
postfix_leftovers() {
    { grep -lzxF -- "MAIL_CONFIG=$1" /proc/[0-9]*/environ 2>/dev/null || true; } |
        sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p'
}

# --- exit and results ----------------------------------------------------------

# On any exit: stop facteur and Postfix if they run, then call the script's
# on_exit RC (which decides what to keep), and exit with the same status.
# Ctrl-C and SIGTERM exit through it too.
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_more_nodes
    stop_facteur
    stop_postfix
    drop_pg_schemas
    on_exit "$rc"
    exit "$rc"
}
set_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# The commit measured, short.
git_commit() {
    git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown
}

# results_files NAME: $stamp (UTC), $json (RESULTS_DIR/NAME-STAMP.json) and
# $csv (RESULTS_DIR/NAME.csv, one line per run appended over time).
stamp=""
json=""
csv=""
results_files() {
    mkdir -p "$RESULTS_DIR"
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    json="$RESULTS_DIR/$1-$stamp.json"
    csv="$RESULTS_DIR/$1.csv"
}

# Start $csv with the header line $1 if it is new or empty.
csv_header() {
    # A file with other columns (an older version of the script) is set
    # aside rather than appended to under the wrong header.
    if [ -s "$csv" ] && [ "$(head -n 1 "$csv")" != "$1" ]; then
        mv "$csv" "${csv%.csv}.before-$stamp.csv"
        note "$csv had other columns; kept as ${csv%.csv}.before-$stamp.csv"
    fi
    if [ ! -s "$csv" ]; then
        echo "$1" >"$csv"
    fi
}

show_results() {
    echo
    cat "$json"
    note "results written to $json and appended to $csv"
}
