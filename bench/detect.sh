#!/usr/bin/env bash
# bench/detect.sh: how fast facteur notices its own trouble, with its
# default objectives, hold and quiet times, probe and watch. For each fault
# kind (crates/facteur/tests/browser/status.mjs: destination down, storage
# failing, IMAP logins failing on one node of two in two regions), under a
# steady load, the time from injection to the incident on the status page
# (read in a real browser), to the first alert (the webhook), and from the
# fault's removal to resolution. Meanwhile bench/soak.sh runs a fault-free
# node under steady load for SOAK_SECS: its false incidents are counted.
#
# Bar: every fault kind opens its incident in under 2 minutes, and the soak
# has no false incident.
#
# Settings: SOAK_SECS [3600], FACTEUR_BIN, FACTEUR_PG, CHROMIUM.
# Needs node, chromium and playwright-core (npm ci --prefix
# crates/facteur/tests/browser; .ci/run installs them) and PostgreSQL.
# Output: a table, and bench/results/detect-STAMP.json.
set -euo pipefail
BENCH_NAME=detect
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SOAK_SECS="${SOAK_SECS:-3600}"
positive SOAK_SECS "$SOAK_SECS"
need node
need psql
browser_dir="$repo_root/crates/facteur/tests/browser"
[ -d "$browser_dir/node_modules/playwright-core" ] ||
    die "playwright-core missing: npm ci --prefix $browser_dir"
prepare_facteur
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
make_scratch detect
scratch="$work"
results_files detect
schema="detect_$$_$(date +%s)"
soak_pid=""
on_exit() {
    [ -z "$soak_pid" ] || kill "$soak_pid" 2>/dev/null || true
    psql "$FACTEUR_PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$scratch"
}
set_traps

note "soak: $SOAK_SECS s without a fault, in the background"
SOAK_SECS="$SOAK_SECS" FACTEUR_BIN="$facteur_bin" RESULTS_DIR="$scratch" \
    bash "$bench_dir/soak.sh" >"$scratch/soak.out" 2>&1 &
soak_pid=$!

note "faults, with the default objectives (each resolves after its window and quiet: about 20 minutes)"
FACTEUR_WATCH_DEFAULTS=1 FACTEUR_BIN="$facteur_bin" FACTEUR_SCREENSHOTS="$scratch/shots" \
    FACTEUR_PG_URL="$FACTEUR_PG" FACTEUR_PG_SCHEMA="$schema" \
    node "$browser_dir/status.mjs" >"$scratch/faults.out" 2>&1 || {
    cat "$scratch/faults.out" >&2
    die "a fault scenario failed"
}
grep '^RESULT' "$scratch/faults.out"

note "waiting for the soak to end"
soak_rc=0
wait "$soak_pid" || soak_rc=$?
soak_pid=""
tail -n 2 "$scratch/soak.out"
soak_json="$(cat "$scratch"/soak-*.json 2>/dev/null || echo '{}')"

python3 - "$scratch/faults.out" "$json" "$(git_commit)" "$soak_json" "$soak_rc" <<'PY'
import json, re, sys
out, path, commit, soak, soak_rc = sys.argv[1:]
rows = []
for line in open(out):
    m = re.match(r"RESULT (\S+): incident on the page after ([\d.]+) s, webhook open after ([\d.]+) s, resolved ([\d.]+) s", line)
    if m:
        rows.append({"fault": m[1], "open_s": float(m[2]), "alert_s": float(m[3]), "resolve_s": float(m[4])})
print(f"{'fault':<18} {'open':>8} {'alert':>8} {'resolve':>9}")
for r in rows:
    print(f"{r['fault']:<18} {r['open_s']:>7.1f}s {r['alert_s']:>7.1f}s {r['resolve_s']:>8.1f}s")
soak = json.loads(soak) if soak.strip() else {}
ok = len(rows) == 3 and all(r["open_s"] < 120 for r in rows) and soak.get("incidents") == 0 and soak_rc == "0"
json.dump({"bench": "detect", "commit": commit, "faults": rows, "soak": soak, "bar_met": ok}, open(path, "w"), indent=1)
print(f"soak: {soak.get('secs')} s, false incidents: {soak.get('incidents')}")
print("bar (every fault open < 120 s, no false incident):", "MET" if ok else "NOT MET")
sys.exit(0 if ok else 1)
PY
