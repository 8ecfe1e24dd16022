#!/usr/bin/env bash
# bench/steady.sh: a long-running server's disk use stays flat under steady
# traffic. facteur takes SEND_RATE messages a second for DURATION seconds
# (default one hour): four in five relayed to a simulated destination that
# accepts everything, one in five to a local user whose IMAP client deletes
# and expunges what arrived every 30 s. Finished queue records are kept
# KEEP_FINISHED seconds (short here, 30 days by default, so the steady
# state shows within the hour). Disk use is sampled every minute:
#   SQLite: the database file and its WAL, and the pages in use (the file
#           keeps its size and reuses freed pages);
#   PostgreSQL: the schema's tables and indexes (pg_total_relation_size).
# The figure: growth of the bytes in use from the end of WARMUP to the end.
#
# Settings: DURATION [3600], SEND_RATE [20], KEEP_FINISHED [300],
# WARMUP [900], SIZE [4096], FACTEUR_STORAGE [sqlite] or postgres,
# FACTEUR_BIN, SIM_BIN, KEEP=1 keeps the scratch folder.
set -euo pipefail
BENCH_NAME=steady
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/lib/scenario.sh
. "$bench_dir/lib/scenario.sh"

DURATION="${DURATION:-3600}"
SEND_RATE="${SEND_RATE:-20}"
KEEP_FINISHED="${KEEP_FINISHED:-300}"
WARMUP="${WARMUP:-900}"
SIZE="${SIZE:-4096}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
for v in DURATION SEND_RATE KEEP_FINISHED WARMUP SIZE; do
    positive "$v" "${!v}"
done
[ "$WARMUP" -lt "$DURATION" ] || die "WARMUP ($WARMUP) must be below DURATION ($DURATION)"
# The simulated destination takes everything at once (scenario.sh's RATE).
RATE=100000
TARGETS=facteur
SEND_TIMEOUT="$DURATION"
DRAIN_TIMEOUT=60
scenario_setup
prepare_facteur
prepare_sim
results_files steady
dir="$work/facteur"
mkdir -p "$dir"
{ read -r simport; read -r imap_port; } < <(free_ports 2)
start_sim "$dir" "$simport"
start_relay facteur "$dir" "$simport"
# start_relay wrote and started the relay; add the local reader and the
# lifecycle settings, then restart it with them.
stop_facteur
cat >>"$dir/facteur.toml" <<EOF

[imap]
plaintext_auth = true
EOF
sed -i -e "s/^imap = \[\]$/imap = [\"127.0.0.1:$imap_port\"]/" "$dir/facteur.toml"
python3 - "$dir/facteur.toml" "$KEEP_FINISHED" <<'EOF'
import re, sys
path, keep = sys.argv[1], sys.argv[2]
text = open(path).read()
extra = f"keep_finished_secs = {keep}\nhousekeeping_interval_secs = 60\n"
if re.search(r"^\[storage\]$", text, re.M):
    text = re.sub(r"^\[storage\]$", "[storage]\n" + extra.rstrip("\n"), text, count=1, flags=re.M)
else:
    text += "\n[storage]\n" + extra
open(path, "w").write(text)
EOF
start_facteur "$dir" "$(sed -n 's/^http = \["127.0.0.1:\([0-9]*\)"\]$/\1/p' "$dir/facteur.toml")" info
cli() { "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" "$@"; }
cli domain add bench.test >/dev/null
echo steady-password | cli user add reader@bench.test --password-stdin >/dev/null

# Bytes on disk and bytes in use.
disk_now() {
    if [ "$FACTEUR_STORAGE" = postgres ]; then
        local schema bytes
        schema="$(sed -n 's/^schema = "\(.*\)"$/\1/p' "$dir/facteur.toml" | tail -n 1)"
        bytes="$(facteur_sql "$dir" "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
            JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = '$schema' AND c.relkind = 'r'")"
        echo "$bytes $bytes"
    else
        local files used
        files="$(du -cb "$dir/data/facteur.db"* | tail -n 1 | cut -f1)"
        used="$(sqlite3 -cmd '.timeout 10000' "$dir/data/facteur.db" \
            "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count());")"
        used=$((used * $(sqlite3 "$dir/data/facteur.db" 'PRAGMA page_size;')))
        echo "$files $used"
    fi
}

note "sending $SEND_RATE messages/s for $DURATION s ($FACTEUR_STORAGE; records kept $KEEP_FINISHED s)"
python3 - "$relay_port" "$imap_port" "$SEND_RATE" "$DURATION" "$SIZE" >"$dir/traffic.json" 2>"$dir/traffic.err" <<'EOF' &
import imaplib, json, smtplib, sys, threading, time
smtp_port, imap_port, rate, duration, size = (int(a) for a in sys.argv[1:])
body = ("x" * 76 + "\r\n") * (size // 78)
stats = {"sent": 0, "local": 0, "tempfail": 0, "expunged": 0}
stop = time.monotonic() + duration

def reader():
    while time.monotonic() < stop:
        time.sleep(30)
        try:
            m = imaplib.IMAP4("127.0.0.1", imap_port)
            m.login("reader@bench.test", "steady-password")
            m.select("INBOX")
            m.store("1:*", "+FLAGS", "(\\Deleted)")
            typ, data = m.expunge()
            stats["expunged"] += len([d for d in data if d])
            m.logout()
        except Exception as e:  # an empty mailbox answers NO to 1:*
            print(f"reader: {e}", file=sys.stderr)

threading.Thread(target=reader, daemon=True).start()
s, n, start = None, 0, time.monotonic()
while time.monotonic() < stop:
    due = start + n / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
    local = n % 5 == 0
    to = "reader@bench.test" if local else f"r{n}@far.test"
    msg = f"From: <load@origin.test>\r\nTo: <{to}>\r\nSubject: steady {n}\r\n\r\n{body}"
    try:
        if s is None:
            s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=60)
        s.sendmail("load@origin.test", [to], msg)
        stats["sent"] += 1
        stats["local"] += local
    except smtplib.SMTPException as e:
        stats["tempfail"] += 1
        print(f"sender: {e}", file=sys.stderr)
        try:
            s.quit()
        except Exception:
            pass
        s = None
        time.sleep(1)
    n += 1
json.dump(stats, sys.stdout)
EOF
traffic_pid=$!

# PostgreSQL gives back the space of removed rows only through VACUUM.
# With autovacuum off on the server (facteur warns of it at start), the
# benchmark vacuums the schema every minute in its stead, and says so.
vacuum_every_minute=0
if [ "$FACTEUR_STORAGE" = postgres ] && [ "$(facteur_sql "$dir" "SHOW autovacuum")" != on ]; then
    vacuum_every_minute=1
    note "autovacuum is off on this PostgreSQL server: the benchmark runs VACUUM on facteur's schema every minute"
fi

samples="$dir/disk.csv"
echo "elapsed_s,file_bytes,used_bytes,pending" >"$samples"
t0="$SECONDS"
while kill -0 "$traffic_pid" 2>/dev/null; do
    if [ "$vacuum_every_minute" = 1 ]; then
        facteur_sql "$dir" "VACUUM message_bodies, messages, recipients, attempts, mailbox_messages, queue_counts, queue_count_changes" >/dev/null
    fi
    read -r file_bytes used_bytes < <(disk_now)
    echo "$((SECONDS - t0)),$file_bytes,$used_bytes,$(facteur_pending)" >>"$samples"
    note "$((SECONDS - t0)) s: $((file_bytes / 1024)) KiB on disk, $((used_bytes / 1024)) KiB in use, $(facteur_pending) waiting"
    sleep 60
done
wait "$traffic_pid" || die "the traffic generator failed: $(tail -n 3 "$dir/traffic.err")"
read -r file_bytes used_bytes < <(disk_now)
echo "$((SECONDS - t0)),$file_bytes,$used_bytes,$(facteur_pending)" >>"$samples"
stop_facteur
stop_sim

python3 - "$samples" "$WARMUP" "$dir/traffic.json" "$json" "$stamp" "$(git_commit)" "$FACTEUR_STORAGE" \
    "$SEND_RATE" "$KEEP_FINISHED" "$vacuum_every_minute" <<'EOF'
import csv, json, sys
samples, warmup, traffic, out, stamp, commit, storage, rate, keep, vacuum = sys.argv[1:]
rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(open(samples))]
start = next(r for r in rows if r["elapsed_s"] >= int(warmup))
end = rows[-1]
growth = 100.0 * (end["used_bytes"] - start["used_bytes"]) / max(start["used_bytes"], 1)
result = {
    "bench": "steady", "stamp": stamp, "commit": commit, "storage": storage, "send_rate": int(rate),
    "keep_finished_s": int(keep), "bench_vacuums_every_minute": vacuum == "1", "traffic": json.load(open(traffic)),
    "at_warmup": start, "at_end": end, "used_growth_pct": round(growth, 1), "samples": rows,
}
json.dump(result, open(out, "w"), indent=1)
print(f"steady ({storage}, {rate}/s, records kept {keep} s): in use {start['used_bytes'] // 1024} KiB at "
      f"{start['elapsed_s']} s, {end['used_bytes'] // 1024} KiB at {end['elapsed_s']} s ({growth:+.1f} %); "
      f"on disk {start['file_bytes'] // 1024} -> {end['file_bytes'] // 1024} KiB; traffic {result['traffic']}")
EOF
csv_header "stamp,commit,storage,send_rate,keep_finished_s,warmup_used_bytes,end_used_bytes,used_growth_pct"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(",".join(str(x) for x in [r["stamp"], r["commit"], r["storage"], r["send_rate"], r["keep_finished_s"], r["at_warmup"]["used_bytes"], r["at_end"]["used_bytes"], r["used_growth_pct"]]))' "$json" >>"$csv"
note "results in $json, appended to $csv"
