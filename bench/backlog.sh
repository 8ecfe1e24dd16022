#!/usr/bin/env bash
# bench/backlog.sh: a large queue stays cheap. For each backend (SQLite and
# PostgreSQL), a data folder holding QUEUED waiting recipients (default
# 1,000,000: half due now, half later; 100 destinations, four classes, 1 KB
# bodies) is made with SQL, delivery paused, and then measured:
#   - start-up: `facteur serve` from exec to /readyz answering 200;
#   - memory: anonymous RSS (RssAnon, not the mapped database file) once
#     ready and 30 s later (admission, housekeeping and the background
#     invariant check have run by then);
#   - `facteur queue stats` (read from counters) against the GROUP BY scan
#     of every waiting recipient it replaced, run on the same data;
#   - SQLite only: PRAGMA quick_check, which start-up used to run.
#
# Settings: QUEUED [1000000], BACKENDS ["sqlite postgres"], FACTEUR_PG,
# FACTEUR_BIN, KEEP=1 keeps the scratch folder and schemas.
set -euo pipefail
BENCH_NAME=backlog
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

QUEUED="${QUEUED:-1000000}"
BACKENDS="${BACKENDS:-sqlite postgres}"
positive QUEUED "$QUEUED"
need curl
need sqlite3
need psql
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
prepare_facteur
make_scratch backlog
scratch="$work"
results_files backlog
on_exit() { [ "${KEEP:-0}" = 1 ] || rm -rf "$scratch"; }
set_traps

now="$(date +%s)"
# One SQL generator for both backends: rows i = 0..QUEUED-1 of a numbers
# table called n(i). Message ids are 26 digits (valid ids, ordered).
populate_sql() {
    local numbers="$1"
    cat <<EOF
$numbers
INSERT INTO messages (id, received_at, size, envelope, class)
SELECT substr('00000000000000000000000000' || i, -26), $now - (i % 3600), 1100,
       '{"mail_from":"bench@example.test","helo":"bench","client_ip":"127.0.0.1","auth_user":null,"tls":false,"body":null,"smtputf8":false,"ret":null,"envid":null}',
       CASE i % 4 WHEN 0 THEN 'system' WHEN 1 THEN 'interpersonal' WHEN 2 THEN 'transactional' ELSE 'bulk' END
FROM n;
$numbers
INSERT INTO message_bodies (message_id, data)
SELECT substr('00000000000000000000000000' || i, -26),
       CAST('Subject: backlog ' || i || '

' || repeat_text AS BYTES_TYPE)
FROM n;
$numbers
INSERT INTO recipients (message_id, idx, address, domain, state, attempts, next_attempt, class)
SELECT substr('00000000000000000000000000' || i, -26), 0, 'u' || i || '@dest' || (i % 100) || '.test',
       'dest' || (i % 100) || '.test', 'queued', 0, $now - 60 + (i % 2) * 7200,
       CASE i % 4 WHEN 0 THEN 'system' WHEN 1 THEN 'interpersonal' WHEN 2 THEN 'transactional' ELSE 'bulk' END
FROM n;
EOF
}
body_text="$(printf 'x%.0s' $(seq 1 1024))"

# The query `queue stats` ran before the counters (kept to compare).
old_stats_sql="SELECT m.class, r.domain, COUNT(*) FROM recipients r JOIN messages m ON m.id = r.message_id
  WHERE r.state IN ('queued', 'held') GROUP BY 1, 2"

seconds() { # seconds CMD...: wall-clock seconds CMD took, to the millisecond
    local t0="$EPOCHREALTIME"
    "$@" >/dev/null
    elapsed "$t0" "$EPOCHREALTIME"
}

rss_anon_kb() { sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

rows=()
for backend in $BACKENDS; do
    FACTEUR_STORAGE="$backend"
    dir="$scratch/$backend"
    mkdir -p "$dir"
    { read -r smtp_port; read -r http_port; } < <(free_ports 2)
    facteur_config "$dir" backlog.test "$smtp_port" "$http_port"
    cat >>"$dir/facteur.toml" <<EOF

[delivery]
dns_servers = ["127.0.0.1:9"]

[[route]]
domain = "*"
via = "127.0.0.1:9"
EOF
    "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" init >"$dir/init.log" 2>&1 ||
        die "init failed: $(tail -n 3 "$dir/init.log")"
    note "$backend: writing $QUEUED waiting recipients"
    t0="$EPOCHREALTIME"
    if [ "$backend" = postgres ]; then
        sql="$(populate_sql "WITH n(i) AS (SELECT generate_series(0, $QUEUED - 1))" |
            sed "s/repeat_text/'$body_text'/; s/BYTES_TYPE/BYTEA/")"
        schema="$(sed -n 's/^schema = "\(.*\)"$/\1/p' "$dir/facteur.toml" | tail -n 1)"
        PGOPTIONS="-c search_path=$schema" psql "$FACTEUR_PG" -qAtX -v ON_ERROR_STOP=1 -c "$sql" \
            -c "VACUUM ANALYZE" >/dev/null
        size_bytes="$(facteur_sql "$dir" "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c
            JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = '$schema' AND c.relkind = 'r'")"
    else
        sql="$(populate_sql "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $QUEUED - 1)" |
            sed "s/repeat_text/'$body_text'/; s/BYTES_TYPE/BLOB/")"
        sqlite3 -bail "$dir/data/facteur.db" "BEGIN; $sql COMMIT; ANALYZE;"
        size_bytes="$(stat -c %s "$dir/data/facteur.db")"
    fi
    note "$backend: written in $(elapsed "$t0" "$EPOCHREALTIME") s, storage $((size_bytes / 1048576)) MiB"
    for class in system interpersonal transactional bulk; do
        "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" queue pause --class "$class" >/dev/null
    done

    t0="$EPOCHREALTIME"
    start_facteur "$dir" "$http_port"
    startup="$(elapsed "$t0" "$EPOCHREALTIME")"
    rss_ready="$(rss_anon_kb "$facteur_pid")"
    sleep 30
    rss_later="$(rss_anon_kb "$facteur_pid")"
    stats_new="$(seconds "$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" queue stats)"
    depth="$("$facteur_bin" --data "$dir/data" --config "$dir/facteur.toml" queue stats --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(c["queued"] for c in d["classes"]))')"
    [ "$depth" = "$QUEUED" ] || die "$backend: queue stats counts $depth waiting, not $QUEUED"
    stats_old="$(seconds facteur_sql "$dir" "$old_stats_sql")"
    stop_facteur
    quick_check=null
    if [ "$backend" = sqlite ]; then
        quick_check="$(seconds sqlite3 "$dir/data/facteur.db" 'PRAGMA quick_check')"
    fi
    note "$backend: start-up ${startup} s, RssAnon ${rss_ready} kB ready / ${rss_later} kB after 30 s," \
        "queue stats ${stats_new} s (the old scan: ${stats_old} s), quick_check ${quick_check} s"
    rows+=("{\"backend\":\"$backend\",\"queued\":$QUEUED,\"storage_bytes\":$size_bytes,\"startup_s\":$startup,\"rss_anon_kb_ready\":$rss_ready,\"rss_anon_kb_30s\":$rss_later,\"queue_stats_s\":$stats_new,\"old_scan_s\":$stats_old,\"sqlite_quick_check_s\":$quick_check}")
    [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
done

csv_header "stamp,commit,backend,queued,storage_bytes,startup_s,rss_anon_kb_ready,rss_anon_kb_30s,queue_stats_s,old_scan_s,sqlite_quick_check_s"
{
    echo "{\"bench\":\"backlog\",\"stamp\":\"$stamp\",\"commit\":\"$(git_commit)\",\"facteur\":\"$facteur_version\",\"runs\":["
    (IFS=,; echo "${rows[*]}")
    echo "]}"
} >"$json"
python3 - "$json" "$stamp" "$(git_commit)" >>"$csv" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["runs"]:
    print(",".join(str(x) for x in [sys.argv[2], sys.argv[3], r["backend"], r["queued"], r["storage_bytes"], r["startup_s"],
                                     r["rss_anon_kb_ready"], r["rss_anon_kb_30s"], r["queue_stats_s"], r["old_scan_s"],
                                     r["sqlite_quick_check_s"]]))
EOF
show_results
