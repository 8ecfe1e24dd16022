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
# Settings: MESSAGES [10000], SIZES ["1024 10240"], SESSIONS [20], and
# what relay.sh takes (FACTEUR_PG, FACTEUR_BIN, BENCH_TMPDIR, KEEP).
set -euo pipefail
BENCH_NAME=cluster
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export MESSAGES="${MESSAGES:-10000}" SIZES="${SIZES:-1024 10240}" DIRECT=0
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
run sqlite FACTEUR_STORAGE=sqlite NODES=1 TARGETS="facteur postfix"
run postgres-1 FACTEUR_STORAGE=postgres NODES=1 TARGETS=facteur
run postgres-2 FACTEUR_STORAGE=postgres NODES=2 TARGETS=facteur

results_files cluster
python3 - "$out" "$json" "$stamp" "$(git_commit)" <<'EOF'
import json, sys
out, path, stamp, commit = sys.argv[1:]
runs = {label: json.load(open(f"{out}/{label}.json")) for label in ("sqlite", "postgres-1", "postgres-2")}
rows = []
for label, r in runs.items():
    for run in r["runs"]:
        name = "postfix" if run["server"] == "postfix" else f"facteur {label}"
        rows.append({"relay": name, "size": run["size"], "e2e_s": run["e2e_seconds"], "msgs_per_s": run["e2e_msgs_per_s"],
                     "cpu_ms_per_msg": run["cpu_ms_per_msg"], "db_cpu_pct": run["db_cpu_pct"], "status": run["status"]})
def find(relay, size):
    return next((x for x in rows if x["relay"] == relay and x["size"] == size), None)
print(f"\n{'relay':<22} {'size':>6} {'e2e_s':>7} {'msg/s':>8} {'xPostfix':>8} {'cpu_ms':>7} {'db_%':>5} {'xSQLite_cpu':>11}  status")
for x in rows:
    pf, sq = find("postfix", x["size"]), find("facteur sqlite", x["size"])
    x["x_postfix"] = round(x["msgs_per_s"] / pf["msgs_per_s"], 2) if pf and pf["msgs_per_s"] and x["msgs_per_s"] else None
    x["cpu_x_sqlite"] = (round(x["cpu_ms_per_msg"] / sq["cpu_ms_per_msg"], 2)
                         if sq and sq["cpu_ms_per_msg"] and x["cpu_ms_per_msg"] and x["relay"].startswith("facteur") else None)
    print(f"{x['relay']:<22} {x['size']:>6} {x['e2e_s'] or '-':>7} {x['msgs_per_s'] or '-':>8} {x['x_postfix'] or '-':>8} "
          f"{x['cpu_ms_per_msg'] or '-':>7} {x['db_cpu_pct'] if x['db_cpu_pct'] is not None else '-':>5} {x['cpu_x_sqlite'] or '-':>11}  {x['status']}")
bars = []
for size in sorted({x["size"] for x in rows}):
    pg = find("facteur postgres-1", size)
    if pg:
        bars.append(f"size {size}: PostgreSQL node {pg['x_postfix']}x Postfix (bar 2x: {'met' if (pg['x_postfix'] or 0) >= 2 else 'NOT met'}), "
                    f"CPU {pg['cpu_x_sqlite']}x SQLite's (bar 2x: {'met' if pg['cpu_x_sqlite'] is not None and pg['cpu_x_sqlite'] <= 2 else 'NOT met'})")
print("\n".join(bars))
json.dump({"bench": "cluster", "stamp": stamp, "commit": commit, "rows": rows, "bars": bars}, open(path, "w"), indent=1)
EOF
csv_header "stamp,commit,relay,size,e2e_s,msgs_per_s,x_postfix,cpu_ms_per_msg,db_cpu_pct,cpu_x_sqlite"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
for x in r["rows"]: print(",".join(str(v) for v in [r["stamp"], r["commit"], x["relay"], x["size"], x["e2e_s"], x["msgs_per_s"], x["x_postfix"], x["cpu_ms_per_msg"], x["db_cpu_pct"], x["cpu_x_sqlite"]]))' "$json" >>"$csv"
[ "${KEEP:-0}" = 1 ] || rm -rf "$out"
note "results in $json, appended to $csv"
