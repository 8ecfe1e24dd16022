#!/usr/bin/env bash
# bench/cluster.sh: the relay benchmark (bench/relay.sh) for every storage
# layout facteur has, and Postfix, in one run:
#   1. facteur, one node on SQLite, and Postfix;
#   2. facteur, one node on PostgreSQL;
#   3. facteur, two nodes on one PostgreSQL schema (the load at the first,
#      both delivering).
# Each reports messages per second end to end and the CPU per message of
# the relay with its database (PostgreSQL's server and backends counted,
# and their share shown). On a 2-core machine adding a node cannot add wall-
# clock throughput; the CPU per message says what a node and the database
# cost. Bars (issue 12): one PostgreSQL node relays at least 2x Postfix's
# messages per second; CPU per message on PostgreSQL at most 2x SQLite's.
#
# The three are run ROUNDS times in turn; the table gives each figure's
# median over the rounds with its range, ratios taken within each round
# (Postfix and SQLite measured minutes apart from the PostgreSQL runs they
# are compared with), and says in how many rounds each bar was met.
#
# Settings: ROUNDS [3], MESSAGES [10000], SIZES ["1024 10240"], SESSIONS
# [20], and what relay.sh takes (FACTEUR_PG, FACTEUR_BIN, BENCH_TMPDIR, KEEP).
set -euo pipefail
BENCH_NAME=cluster
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export MESSAGES="${MESSAGES:-10000}" SIZES="${SIZES:-1024 10240}" DIRECT=0
ROUNDS="${ROUNDS:-3}"
case "$ROUNDS" in '' | *[!0-9]* | 0) die "ROUNDS must be a whole number of at least 1, not '$ROUNDS'" ;; esac
need psql
prepare_facteur
export FACTEUR_BIN="$facteur_bin"
out="$RESULTS_DIR/cluster-runs.$$"
mkdir -p "$out"
run() { # run LABEL ENV...: relay.sh with ENV, its JSON kept as LABEL.json
    local label="$1" latest
    shift
    note "--- $label"
    env "$@" RESULTS_DIR="$out/$label" bash "$bench_dir/relay.sh" || die "relay.sh failed for $label"
    latest="$(ls -t "$out/$label"/relay-*.json | head -n 1)"
    cp "$latest" "$out/$label.json"
}
for round in $(seq 1 "$ROUNDS"); do
    run "sqlite.$round" FACTEUR_STORAGE=sqlite NODES=1 TARGETS="facteur postfix"
    run "postgres-1.$round" FACTEUR_STORAGE=postgres NODES=1 TARGETS=facteur
    run "postgres-2.$round" FACTEUR_STORAGE=postgres NODES=2 TARGETS=facteur
done

results_files cluster
python3 - "$out" "$json" "$stamp" "$(git_commit)" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, path, stamp, commit, rounds = sys.argv[1:]
rounds = int(rounds)
measured = []  # one row per round, relay and size, with the round's ratios
for n in range(1, rounds + 1):
    rows = []
    for label in ("sqlite", "postgres-1", "postgres-2"):
        for run in json.load(open(f"{out}/{label}.{n}.json"))["runs"]:
            rows.append({"round": n, "relay": "postfix" if run["server"] == "postfix" else f"facteur {label}",
                         "size": run["size"], "e2e_s": run["e2e_seconds"], "msgs_per_s": run["e2e_msgs_per_s"],
                         "cpu_ms_per_msg": run["cpu_ms_per_msg"], "db_cpu_pct": run["db_cpu_pct"], "status": run["status"]})
    def find(relay, size):
        return next((x for x in rows if x["relay"] == relay and x["size"] == size), None)
    for x in rows:
        pf, sq = find("postfix", x["size"]), find("facteur sqlite", x["size"])
        x["x_postfix"] = round(x["msgs_per_s"] / pf["msgs_per_s"], 2) if pf and pf["msgs_per_s"] and x["msgs_per_s"] else None
        x["cpu_x_sqlite"] = (round(x["cpu_ms_per_msg"] / sq["cpu_ms_per_msg"], 2)
                             if sq and sq["cpu_ms_per_msg"] and x["cpu_ms_per_msg"] and x["relay"].startswith("facteur") else None)
    measured += rows

def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None
def spread(values):
    values = [v for v in values if v is not None]
    return f"{min(values)}-{max(values)}" if len(values) > 1 else "-"

keys = []
for x in measured:
    if (x["relay"], x["size"]) not in keys:
        keys.append((x["relay"], x["size"]))
summary = []
for relay, size in keys:
    of = [x for x in measured if x["relay"] == relay and x["size"] == size]
    row = {"relay": relay, "size": size, "rounds": len(of),
           "status": "ok" if all(x["status"] == "ok" for x in of) else "FAILED"}
    for k in ("e2e_s", "msgs_per_s", "x_postfix", "cpu_ms_per_msg", "db_cpu_pct", "cpu_x_sqlite"):
        row[k] = median([x[k] for x in of])
        row[k + "_range"] = spread([x[k] for x in of])
    summary.append(row)

def show(r, k):
    return f"{r[k]} [{r[k + '_range']}]" if r[k] is not None else "-"
print(f"\nmedians over {rounds} round(s), [range]")
print(f"{'relay':<22} {'size':>6} {'msg/s':>8} {'xPostfix':>18} {'cpu_ms':>18} {'db_%':>5} {'xSQLite_cpu':>18}  status")
for r in summary:
    print(f"{r['relay']:<22} {r['size']:>6} {r['msgs_per_s'] or '-':>8} {show(r, 'x_postfix'):>18} "
          f"{show(r, 'cpu_ms_per_msg'):>18} {r['db_cpu_pct'] if r['db_cpu_pct'] is not None else '-':>5} "
          f"{show(r, 'cpu_x_sqlite'):>18}  {r['status']}")
bars = []
for relay, size in keys:
    if relay != "facteur postgres-1":
        continue
    of = [x for x in measured if x["relay"] == relay and x["size"] == size]
    r = next(s for s in summary if s["relay"] == relay and s["size"] == size)
    speed = sum(1 for x in of if (x["x_postfix"] or 0) >= 2)
    cpu = sum(1 for x in of if x["cpu_x_sqlite"] is not None and x["cpu_x_sqlite"] <= 2)
    bars.append(f"size {size}: PostgreSQL node {r['x_postfix']}x Postfix (bar 2x: met in {speed} of {len(of)} rounds), "
                f"CPU {r['cpu_x_sqlite']}x SQLite's (bar 2x: met in {cpu} of {len(of)} rounds)")
print("\n".join(bars))
json.dump({"bench": "cluster", "stamp": stamp, "commit": commit, "rounds": rounds, "measured": measured,
           "summary": summary, "bars": bars}, open(path, "w"), indent=1)
EOF
csv_header "stamp,commit,round,relay,size,e2e_s,msgs_per_s,x_postfix,cpu_ms_per_msg,db_cpu_pct,cpu_x_sqlite"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
for x in r["measured"]: print(",".join(str(v) for v in [r["stamp"], r["commit"], x["round"], x["relay"], x["size"], x["e2e_s"], x["msgs_per_s"], x["x_postfix"], x["cpu_ms_per_msg"], x["db_cpu_pct"], x["cpu_x_sqlite"]]))' "$json" >>"$csv"
[ "${KEEP:-0}" = 1 ] || rm -rf "$out"
note "results in $json, appended to $csv"
