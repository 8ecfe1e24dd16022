#!/usr/bin/env bash
# bench/flood.sh: the La Poste case. A flood of bulk mail meets a downstream
# that takes at most RATE messages a second; interpersonal and transactional
# mail arrive spread over the same period. How long do people wait, and does
# the bulk still drain at the downstream's pace? See bench/README.md.
#
#   loadgen.py -> facteur or Postfix (relay) -> facteur-sim --rate RATE
set -euo pipefail
BENCH_NAME=flood
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/lib/scenario.sh
. "$bench_dir/lib/scenario.sh"

RATE="${RATE:-500}"
BULK="${BULK:-50000}"
INTER="${INTER:-1000}"
TRANS="${TRANS:-1000}"
CONNECTIONS="${CONNECTIONS:-8}"
SIZE="${SIZE:-1024}"
TARGETS="${TARGETS:-facteur postfix}"
SEND_TIMEOUT="${SEND_TIMEOUT:-300}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
for v in RATE BULK INTER TRANS CONNECTIONS SIZE SEND_TIMEOUT DRAIN_TIMEOUT; do
    positive "$v" "${!v}"
done
scenario_setup
fsync_us="$(fsync_median_us "$work")"
note "$BULK bulk + $INTER interpersonal + $TRANS transactional, downstream rate $RATE/s; relays: $TARGETS"
note "machine: $(nproc) cores, $(uname -sr), queues on $fstype ($work)"
note_disk_and_load "$fsync_us"
commit="$(git_commit)"
want_target facteur && prepare_facteur
prepare_sim

declare -A fig=() status=()
for target in $TARGETS; do
    dir="$work/$target"
    mkdir -p "$dir"
    simport="$(free_ports 1)"
    start_sim "$dir" "$simport"
    start_relay "$target" "$dir" "$simport"
    t0="$(now_ms)"
    run_loadgen "$dir" "$BULK" "$INTER" "$TRANS"
    finish_run "$target" "$dir" "$t0" "" "flood.sh, $target: delivered per second (rate limit $RATE/s)"
done

# --- report ----------------------------------------------------------------

results_files flood
{
    printf '{"benchmark": "flood", "time_utc": "%s", "git_commit": "%s", ' "$stamp" "$commit"
    printf '"machine": {"cores": %s, "filesystem": "%s", "fsync_median_us": %s, "loadavg_1m_before": %s}, ' \
        "$(nproc)" "$fstype" "$fsync_us" "$loadavg"
    printf '"params": {"rate": %s, "bulk": %s, "interpersonal": %s, "transactional": %s, "connections": %s, "size": %s, ' \
        "$RATE" "$BULK" "$INTER" "$TRANS" "$CONNECTIONS" "$SIZE"
    runs_json
} | python3 -m json.tool >"$json"

python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate = r["params"]["rate"]
def f(x, unit=""):
    return "-" if x is None else f"{x}{unit}"
print()
print(f"flood: {r['params']['bulk']} bulk + {r['params']['interpersonal']} interpersonal + "
      f"{r['params']['transactional']} transactional, downstream limit {rate}/s")
print(f"{'server':8} {'class':14} {'p50_s':>8} {'p95_s':>8} {'p99_s':>8} {'max_s':>8} {'arrived':>8} {'missing':>7}  target")
for srv, run in r["runs"].items():
    fg = run["figures"]
    for cls in ("interpersonal", "transactional", "bulk"):
        c = fg["classes"][cls]
        tgt = ""
        if cls != "bulk" and c["latency_p99_s"] is not None:
            tgt = "p99 < 30 s: " + ("met" if c["latency_p99_s"] < 30 else "NOT met")
        print(f"{srv:8} {cls:14} {f(c['latency_p50_s']):>8} {f(c['latency_p95_s']):>8} {f(c['latency_p99_s']):>8} "
              f"{f(c['latency_max_s']):>8} {c['arrived']:>8} {c['missing']:>7}  {tgt}")
    bp = fg.get("bulk_pct_of_rate")
    lg = run["loadgen"]
    print(f"{srv:8} bulk drained at {f(fg.get('bulk_msgs_per_s'))}/s over {f(fg.get('bulk_drain_window_s'))} s = "
          f"{f(bp)} % of {rate} (all classes {f(fg.get('all_pct_of_rate_in_window'))} %); target >= 90 %: "
          + ("-" if bp is None else ("met" if bp >= 90 else "NOT met")))
    print(f"{srv:8} downstream 421s: {f(fg['sim_rate_refusals'])} ({f(fg['refusals_pct_of_messages'])} % of messages), "
          f"peak connections {f(fg['sim_peak_connections'])}; injection {lg['seconds']} s, door 4xx retried "
          f"{sum(lg['retried_4xx'].values())}; duplicates {fg['duplicates']}; nothing lost: "
          + ("met" if fg["missing"] == 0 else "NOT met") + f"; status: {run['status']}")
PY
csv_header "time_utc,git_commit,server,rate,bulk,interpersonal,transactional,inter_p99_s,trans_p99_s,bulk_p99_s,bulk_pct_of_rate,sim_421,peak_conn,missing,status"
python3 - "$json" "$csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["params"]
with open(sys.argv[2], "a") as out:
    for srv, run in r["runs"].items():
        fg = run["figures"]; c = fg["classes"]
        row = [r["time_utc"], r["git_commit"], srv, p["rate"], p["bulk"], p["interpersonal"], p["transactional"],
               c["interpersonal"]["latency_p99_s"], c["transactional"]["latency_p99_s"], c["bulk"]["latency_p99_s"],
               fg.get("bulk_pct_of_rate"), fg["sim_rate_refusals"], fg["sim_peak_connections"], fg["missing"],
               '"' + run["status"] + '"']
        out.write(",".join("" if x is None else str(x) for x in row) + "\n")
PY
for target in $TARGETS; do
    mkdir -p "$RESULTS_DIR/flood-$stamp-$target"
    cp "$work/$target/per-second.csv" "$work/$target/per-second.svg" "$RESULTS_DIR/flood-$stamp-$target/"
    [ ! -f "$work/$target/per-second.png" ] || cp "$work/$target/per-second.png" "$RESULTS_DIR/flood-$stamp-$target/"
done
note "results written to $json (per-second series in $RESULTS_DIR/flood-$stamp-*/), appended to $csv"
[ "$failed" = 0 ] || die "lost or undelivered messages (see status above); scratch directory kept"
