#!/usr/bin/env bash
# bench/imap.sh: IMAP work per second, facteur against Dovecot, with the same
# mailbox (MESSAGES distinct messages in INBOX) and the same load: CLIENTS
# concurrent clients, each doing ROUNDS sessions of LOGIN, SELECT, FETCH of
# every message's headers, FETCH of BODIES whole messages, two STOREs,
# LOGOUT (bench/lib/imapload.py). Then, unless SORT_STEP=0, SORT and THREAD
# (RFC 5256, SORT=DISPLAY) on a second mailbox of SORT_MESSAGES discussions,
# the same for both: SORT_REPS timed runs of six commands on one connection,
# median and p90 per server, the answers compared, facteur's peak RSS
# (bench/lib/imapsort.py), and a QRESYNC reconnect after RESYNC_CHANGES
# changes against a full resync (bench/lib/imapresync.py). See bench/README.md.
set -euo pipefail
BENCH_NAME=imap
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MESSAGES="${MESSAGES:-1000}"
CLIENTS="${CLIENTS:-8}"
ROUNDS="${ROUNDS:-20}"
BODIES="${BODIES:-50}"
TARGETS="${TARGETS:-facteur dovecot}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
SORT_STEP="${SORT_STEP:-1}"
# After SORT/THREAD, on the same mailbox: a QRESYNC reconnect after
# RESYNC_CHANGES changes against a full resync (bench/lib/imapresync.py).
RESYNC_STEP="${RESYNC_STEP:-$SORT_STEP}"
RESYNC_CHANGES="${RESYNC_CHANGES:-1000}"
SORT_MESSAGES="${SORT_MESSAGES:-10000}"
SORT_REPS="${SORT_REPS:-20}"
SORT_TIMEOUT="${SORT_TIMEOUT:-900}"
SORT_RSS_MAX_MB="${SORT_RSS_MAX_MB:-512}"
SORT_MAILBOX="SortBench"
PASSWORD="bench-pass-1"
USER_ADDR="bench@bench.test"
for v in MESSAGES CLIENTS ROUNDS BODIES SORT_MESSAGES SORT_REPS SORT_TIMEOUT SORT_RSS_MAX_MB; do
    positive "$v" "${!v}"
done
zero_or_one SORT_STEP
zero_or_one RESYNC_STEP
[ "$RESYNC_STEP" = 0 ] || [ "$SORT_STEP" = 1 ] || die "RESYNC_STEP=1 needs SORT_STEP=1 (it uses the SORT mailbox)"
[ "$BODIES" -le "$MESSAGES" ] || die "BODIES=$BODIES must be at most MESSAGES=$MESSAGES"
for t in $TARGETS; do
    case "$t" in facteur | dovecot) ;; *) die "unknown target '$t'" ;; esac
done
need python3
need curl
need sqlite3
if want_target dovecot; then
    need dovecot
    [ "$(id -u)" -eq 0 ] || die "the Dovecot half needs root (its master process runs as root)"
    id mail >/dev/null 2>&1 || die "no 'mail' user"
fi

dovecot_conf=""
on_exit() {
    if [ -n "$dovecot_conf" ] && [ -f "$dovecot_conf" ]; then
        doveadm -c "$dovecot_conf" stop >/dev/null 2>&1 || true
    fi
    if [ "$1" != 0 ] || [ "$KEEP" = 1 ]; then
        [ -z "$work" ] || note "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
}
set_traps
make_scratch imap
note "$MESSAGES messages in INBOX; $CLIENTS clients x $ROUNDS sessions; $BODIES bodies per session; servers: $TARGETS"
[ "$SORT_STEP" = 0 ] || note "then SORT and THREAD: $SORT_MESSAGES messages in $SORT_MAILBOX, $SORT_REPS runs of each command"
note "machine: $(nproc) cores, $(uname -sr), data on $fstype ($work)"
note_disk_and_load "$(fsync_median_us "$work")"
commit="$(git_commit)"

# The mailbox, the same for both: distinct messages of 2 to 6 KiB.
python3 - "$work/messages" "$MESSAGES" "$USER_ADDR" <<'PY'
import os, random, sys
out, n, to = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(out)
rnd = random.Random(7)
words = "mail server queue delivery people first outage backlog pace letter stamp post office".split()
for i in range(1, n + 1):
    body = "\r\n".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(rnd.randint(30, 90)))
    msg = (f"From: Sender {i % 37} <sender{i % 37}@remote.test>\r\nTo: <{to}>\r\n"
           f"Subject: bench message {i}\r\nDate: Sun, 22 Nov 2026 05:{i % 60:02d}:00 +0000\r\n"
           f"Message-ID: <{i}.bench@remote.test>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n")
    with open(os.path.join(out, f"{i:06d}.eml"), "wb") as f:
        f.write(msg.encode())
PY

# The SORT/THREAD mailbox, the same for both: discussions of 1 to 30
# messages with their References, list tags, Re:/Fwd: prefixes, display
# names, some Date fields missing (bench/lib/imapsort.py gen).
if [ "$SORT_STEP" = 1 ]; then
    note "SORT/THREAD mailbox: $(python3 "$bench_dir/lib/imapsort.py" gen "$work/sort-messages" "$SORT_MESSAGES")"
fi

declare -A fig=()

# sort_time NAME PORT [--rss-pid PID | --rss-peer]: the timed SORT/THREAD
# runs on SORT_MAILBOX, on one connection; figures in $work/sort-NAME.json,
# answers in $work/sort-answers-NAME.json.
sort_time() {
    local name="$1" port="$2" out
    shift 2
    out="$(timeout "$SORT_TIMEOUT" python3 "$bench_dir/lib/imapsort.py" time 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" \
        "$SORT_MAILBOX" "$work/sort-messages" "$SORT_REPS" "$work/sort-answers-$name.json" "$@")" ||
        die "$name: the SORT/THREAD runs failed or took more than SORT_TIMEOUT=${SORT_TIMEOUT}s"
    echo "$out" >"$work/sort-$name.json"
    note "$name: SORT/THREAD: $(python3 "$bench_dir/lib/imapsort.py" summary "$work/sort-$name.json")"
}

# resync_time NAME PORT: the QRESYNC reconnect on SORT_MAILBOX after
# RESYNC_CHANGES changes, against a full resync; figures in $work/resync-NAME.json.
resync_time() {
    local name="$1" port="$2" out
    out="$(timeout "$SORT_TIMEOUT" python3 "$bench_dir/lib/imapresync.py" 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" \
        "$SORT_MAILBOX" "$RESYNC_CHANGES" 7)" || die "$name: the QRESYNC reconnect failed: $out"
    echo "$out" >"$work/resync-$name.json"
    note "$name: QRESYNC reconnect after $RESYNC_CHANGES changes: $out"
}

# The user, made by facteur: its Argon2id hash (PHC string) is given to
# Dovecot too, so a LOGIN costs both servers the same hashing work.
prepare_facteur
dir="$work/facteur"
mkdir -p "$dir"
"$facteur_bin" --data "$dir/data" init >/dev/null
"$facteur_bin" --data "$dir/data" domain add bench.test >/dev/null
echo "$PASSWORD" | "$facteur_bin" --data "$dir/data" user add "$USER_ADDR" --password-stdin >/dev/null
password_hash="$(sqlite3 "$dir/data/facteur.db" "SELECT password_hash FROM users WHERE address = '$USER_ADDR'")"
case "$password_hash" in '$argon2id$'*) ;; *) die "unexpected password hash from facteur: $password_hash" ;; esac

# --- facteur -------------------------------------------------------------------
if want_target facteur; then
    read -r port http_port < <(free_ports 2 | tr '\n' ' '; echo)
    cat >"$dir/facteur.toml" <<EOF
[server]
hostname = "imap.bench.test"

[listen]
smtp = []
submission = []
submissions = []
http = ["127.0.0.1:$http_port"]
imap = ["127.0.0.1:$port"]
imaps = []
pop3 = []
pop3s = []
status = []

[imap]
plaintext_auth = true
max_connections_per_user = 1000

[delivery]
enabled = false
EOF
    start_facteur "$dir" "$http_port" warn
    # APPEND every message, in order.
    python3 - 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" "$work/messages" <<'PY'
import imaplib, os, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login(sys.argv[3], sys.argv[4])
d = sys.argv[5]
for name in sorted(os.listdir(d)):
    typ, data = m.append("INBOX", None, None, open(os.path.join(d, name), "rb").read())
    assert typ == "OK", data
m.logout()
PY
    note "facteur: $MESSAGES messages appended; warming up"
    python3 "$bench_dir/lib/imapload.py" 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" 1 1 "$MESSAGES" "$BODIES" >/dev/null
    fig[facteur]="$(python3 "$bench_dir/lib/imapload.py" 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" "$CLIENTS" "$ROUNDS" "$MESSAGES" "$BODIES")"
    note "facteur: ${fig[facteur]}"
    if [ "$SORT_STEP" = 1 ]; then
        note "facteur: APPEND of $SORT_MESSAGES messages to $SORT_MAILBOX"
        timeout "$SORT_TIMEOUT" python3 "$bench_dir/lib/imapsort.py" append 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" \
            "$SORT_MAILBOX" "$work/sort-messages" --rss-pid "$facteur_pid" >"$work/sort-load-facteur.json" ||
            die "facteur: APPEND to $SORT_MAILBOX failed or took more than SORT_TIMEOUT=${SORT_TIMEOUT}s"
        note "facteur: $(cat "$work/sort-load-facteur.json")"
        sort_time facteur "$port" --rss-pid "$facteur_pid"
        [ "$RESYNC_STEP" = 0 ] || resync_time facteur "$port"
    fi
    stop_facteur
fi

# --- Dovecot -------------------------------------------------------------------
dovecot_version=""
if want_target dovecot; then
    dir="$work/dovecot"
    mkdir -p "$dir/run" "$dir/state" "$dir/home" "$dir/mail/$USER_ADDR/cur" "$dir/mail/$USER_ADDR/new" "$dir/mail/$USER_ADDR/tmp"
    port="$(free_ports 1)"
    i=0
    for f in "$work"/messages/*.eml; do
        i=$((i + 1))
        cp "$f" "$dir/mail/$USER_ADDR/cur/1795300000.$i.bench:2,"
    done
    chown -R mail:mail "$dir/mail" "$dir/home"
    printf '%s:{ARGON2ID}%s\n' "$USER_ADDR" "$password_hash" >"$dir/passwd"
    dovecot_conf="$dir/dovecot.conf"
    cat >"$dovecot_conf" <<EOF
# A private Dovecot for bench/imap.sh: one loopback listener, no TLS, one
# user with facteur's Argon2id hash, production defaults otherwise (fsync
# included).
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$dir/mail/%u
first_valid_uid = 8
mail_max_userip_connections = 1000
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = $dir/passwd
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  process_limit = 1024
}
EOF
    dovecot_version="$(dovecot --version | head -n 1)"
    dovecot -c "$dovecot_conf" || { cat "$dir/dovecot.log" >&2 || true; die "dovecot did not start"; }
    for _ in $(seq 1 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$port" 2>/dev/null && break
        sleep 0.1
    done
    note "dovecot $dovecot_version on 127.0.0.1:$port; warming up (it builds its index)"
    python3 "$bench_dir/lib/imapload.py" 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" 1 1 "$MESSAGES" "$BODIES" >/dev/null
    fig[dovecot]="$(python3 "$bench_dir/lib/imapload.py" 127.0.0.1 "$port" "$USER_ADDR" "$PASSWORD" "$CLIENTS" "$ROUNDS" "$MESSAGES" "$BODIES")"
    note "dovecot: ${fig[dovecot]}"
    if [ "$SORT_STEP" = 1 ]; then
        # A Maildir++ folder, as the INBOX was made: files with the internal
        # date as their time. Dovecot indexes it at the first SELECT, and
        # the warm-up rounds fill its cache before the timed ones.
        python3 "$bench_dir/lib/imapsort.py" maildir "$work/sort-messages" "$dir/mail/$USER_ADDR/.$SORT_MAILBOX" \
            >"$work/sort-load-dovecot.json"
        chown -R mail:mail "$dir/mail/$USER_ADDR/.$SORT_MAILBOX"
        note "dovecot: $SORT_MAILBOX: $(cat "$work/sort-load-dovecot.json")"
        sort_time dovecot "$port" --rss-peer
        [ "$RESYNC_STEP" = 0 ] || resync_time dovecot "$port"
    fi
    doveadm -c "$dovecot_conf" stop >/dev/null 2>&1 || true
    dovecot_conf=""
fi

# --- report ----------------------------------------------------------------------
results_files imap
{
    printf '{"benchmark": "imap", "time_utc": "%s", "git_commit": "%s", "machine": {"cores": %s, "filesystem": "%s", "loadavg_1m_before": %s}, ' \
        "$stamp" "$commit" "$(nproc)" "$fstype" "$loadavg"
    printf '"params": {"messages": %s, "clients": %s, "rounds": %s, "bodies": %s}, "versions": {"facteur": "%s", "dovecot": "%s"}, "runs": {' \
        "$MESSAGES" "$CLIENTS" "$ROUNDS" "$BODIES" "${facteur_version:-}" "$dovecot_version"
    sep=""
    for t in $TARGETS; do
        printf '%s"%s": %s' "$sep" "$t" "${fig[$t]}"
        sep=", "
    done
    printf '}, "sort": '
    if [ "$SORT_STEP" = 1 ]; then
        python3 "$bench_dir/lib/imapsort.py" report "$work/sort-messages" "$work" "$SORT_RSS_MAX_MB"
    else
        printf 'null'
    fi
    printf ', "resync": {'
    sep=""
    for t in $TARGETS; do
        if [ -f "$work/resync-$t.json" ]; then
            printf '%s"%s": %s' "$sep" "$t" "$(cat "$work/resync-$t.json")"
            sep=", "
        fi
    done
    printf '}}\n'
} | python3 -m json.tool >"$json"
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
runs = r["runs"]
print()
print(f"imap: {r['params']['messages']} messages, {r['params']['clients']} clients x {r['params']['rounds']} sessions "
      f"(LOGIN, SELECT, FETCH all headers, FETCH {r['params']['bodies']} bodies, 2 STOREs, LOGOUT)")
print(f"{'server':<9}{'sessions/s':>11}  mean ms per step: " + " ".join(f"{s:>13}" for s in next(iter(runs.values()))["mean_ms"]))
for name, f in runs.items():
    print(f"{name:<9}{f['rounds_per_s']:>11}  {'':17}" + " ".join(f"{v:>13}" for v in f["mean_ms"].values()))
if "facteur" in runs and "dovecot" in runs:
    print(f"ratio facteur/dovecot: {runs['facteur']['rounds_per_s'] / runs['dovecot']['rounds_per_s']:.2f} (above 1: facteur does more IMAP work per second)")
PY
csv_header "time_utc,git_commit,server,messages,clients,rounds,bodies,sessions_per_s"
for t in $TARGETS; do
    python3 - "$json" "$t" >>"$csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); f = r["runs"][sys.argv[2]]; p = r["params"]
print(",".join(str(x) for x in [r["time_utc"], r["git_commit"], sys.argv[2], p["messages"], p["clients"], p["rounds"], p["bodies"], f["rounds_per_s"]]))
PY
done
note "results written to $json, appended to $csv"
if [ "$SORT_STEP" = 1 ]; then
    python3 "$bench_dir/lib/imapsort.py" table "$json"
    csv="$RESULTS_DIR/imap-sort.csv"
    csv_header "time_utc,git_commit,server,messages,reps,command,median_ms,p90_ms,answered"
    python3 - "$json" >>"$csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["sort"]
for name, run in s["runs"].items():
    for cmd, f in run["commands"].items():
        print(",".join(str(x) for x in [r["time_utc"], r["git_commit"], name, s["messages"], run["reps"], cmd,
                                        f["median_ms"], f["p90_ms"], f["messages"]]))
PY
    note "SORT/THREAD figures appended to $csv"
    problems="$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["sort"]["problems"]))' "$json")"
    [ "$problems" = 0 ] || die "SORT/THREAD: $problems problem(s), listed above and in $json"
fi
if [ "$RESYNC_STEP" = 1 ]; then
    python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["resync"]
print()
print("imap resync: a client comes back after changes to the SORT mailbox (9 in 10 a flag set, 1 in 10 an expunge)")
print(f"{'server':<9}{'changes':>8}{'QRESYNC ms':>12}{'octets':>10}{'full ms':>10}{'octets':>10}{'octets x':>10}{'time x':>8}")
for name, f in r.items():
    ch = f["changes"]["flagged"] + f["changes"]["expunged"]
    print(f"{name:<9}{ch:>8}{f['qresync']['ms']:>12}{f['qresync']['octets']:>10}{f['full']['ms']:>10}"
          f"{f['full']['octets']:>10}{f['octets_ratio']:>10}{f['time_ratio']:>8}")
print("x: the full resync over the QRESYNC one (above 1: QRESYNC costs less)")
PY
fi
