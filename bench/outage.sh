#!/usr/bin/env bash
# bench/outage.sh: the Libero case. The downstream is down (its port does not
# listen) while MESSAGES messages of mixed classes queue at the relay; then it
# comes back, taking at most RATE messages a second. Does the backlog drain at
# the downstream's pace by itself, without knocking it over, people first?
# See bench/README.md.
#
#   loadgen.py -> facteur or Postfix (relay) -> (nothing) ... facteur-sim --rate RATE
set -euo pipefail
BENCH_NAME=outage
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/lib/scenario.sh
. "$bench_dir/lib/scenario.sh"

RATE="${RATE:-500}"
MESSAGES="${MESSAGES:-100000}"
# 80 % bulk, 10 % interpersonal, 10 % transactional.
INTER="${INTER:-$((MESSAGES / 10))}"
TRANS="${TRANS:-$((MESSAGES / 10))}"
BULK="${BULK:-$((MESSAGES - INTER - TRANS))}"
# Seconds the downstream stays down after the last message was accepted.
DOWN_EXTRA="${DOWN_EXTRA:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
SIZE="${SIZE:-1024}"
TARGETS="${TARGETS:-facteur postfix}"
SEND_TIMEOUT="${SEND_TIMEOUT:-400}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-420}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
for v in MESSAGES DOWN_EXTRA RATE BULK INTER TRANS CONNECTIONS SIZE SEND_TIMEOUT DRAIN_TIMEOUT; do
    positive "$v" "${!v}"
done
scenario_setup
fsync_us="$(fsync_median_us "$work")"
note "$BULK bulk + $INTER interpersonal + $TRANS transactional queued with the downstream down, then rate $RATE/s; relays: $TARGETS"
note "machine: $(nproc) cores, $(uname -sr), queues on $fstype ($work)"
note_disk_and_load "$fsync_us"
commit="$(git_commit)"
want_target facteur && prepare_facteur
prepare_sim

declare -A fig=() status=()
for target in $TARGETS; do
    dir="$work/$target"
    mkdir -p "$dir"
    # The downstream's port is chosen now but nothing listens there yet:
    # every connection is refused until start_sim.
    simport="$(free_ports 1)"
    start_relay "$target" "$dir" "$simport"
    run_loadgen "$dir" "$BULK" "$INTER" "$TRANS"
    note "$target holds $("$relay_pending_fn") undelivered; downstream stays down $DOWN_EXTRA s more"
    sleep "$DOWN_EXTRA"
    t0="$(now_ms)"
    start_sim "$dir" "$simport"
    note "downstream back on 127.0.0.1:$simport"
    finish_run "$target" "$dir" "$t0" "$t0" "outage.sh, $target: delivered per second (rate limit $RATE/s)"
done

# --- report ----------------------------------------------------------------

results_files outage
{
    printf '{"benchmark": "outage", "time_utc": "%s", "git_commit": "%s", ' "$stamp" "$commit"
    printf '"machine": {"cores": %s, "filesystem": "%s", "fsync_median_us": %s, "loadavg_1m_before": %s}, ' \
        "$(nproc)" "$fstype" "$fsync_us" "$loadavg"
    printf '"params": {"down_extra_s": %s, "rate": %s, "bulk": %s, "interpersonal": %s, "transactional": %s, "connections": %s, "size": %s, "facteur_storage": "%s", "facteur_nodes": %s, ' \
        "$DOWN_EXTRA" "$RATE" "$BULK" "$INTER" "$TRANS" "$CONNECTIONS" "$SIZE" "$FACTEUR_STORAGE" "$NODES"
    runs_json
} | python3 -m json.tool >"$json"

python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["params"]
rate = p["rate"]
def f(x, unit=""):
    return "-" if x is None else f"{x}{unit}"
print()
print(f"outage: {p['bulk']} bulk + {p['interpersonal']} interpersonal + {p['transactional']} transactional queued "
      f"while the downstream was down; back with limit {rate}/s (times in s from its return); facteur: "
      f"{p['facteur_nodes']} node(s) on {p['facteur_storage']}")
for srv, run in r["runs"].items():
    fg = run["figures"]
    lg = run["loadgen"]
    c = fg["classes"]
    reach = fg.get("reached_90pct_of_rate_s_after_return")
    dp = fg.get("drain_pct_of_rate")
    rp = fg.get("refusals_pct_of_messages")
    ip, bp = c["interpersonal"]["finished_s_after_return"], c["bulk"]["finished_s_after_return"]
    print(f"{srv}: injection {lg['seconds']} s (door 4xx retried {sum(lg['retried_4xx'].values())}); "
          f"first delivery {f(fg.get('return_to_first_delivery_s'))} s after the return, drained after "
          f"{f(fg.get('return_to_drained_s'))} s")
    print(f"  drain rate {f(fg.get('drain_msgs_per_s'))}/s = {f(dp)} % of {rate}; 5-s mean first >= 90 % of {rate} at "
          f"{f(reach)} s; target >= 90 % within 60 s: "
          + ("met" if reach is not None and reach <= 60 and (dp or 0) >= 90 else "NOT met"))
    print(f"  downstream 421s {f(fg['sim_rate_refusals'])} = {f(rp)} % of messages (target < 1 %: "
          + ("-" if rp is None else ("met" if rp < 1 else "NOT met")) + f"); peak connections {f(fg['sim_peak_connections'])}")
    print(f"  finished: interpersonal {f(ip)} s, transactional {f(c['transactional']['finished_s_after_return'])} s, "
          f"bulk {f(bp)} s; interpersonal first: " + ("-" if ip is None or bp is None else ("met" if ip < bp else "NOT met")))
    print(f"  latency p50/p99 s: " + ", ".join(f"{k} {f(c[k]['latency_p50_s'])}/{f(c[k]['latency_p99_s'])}" for k in c))
    print(f"  delivered {fg['delivered']}, missing {fg['missing']}, duplicates {fg['duplicates']}; nothing lost: "
          + ("met" if fg["missing"] == 0 else "NOT met") + f"; status: {run['status']}")
PY
csv_header "time_utc,git_commit,server,rate,bulk,interpersonal,transactional,first_delivery_s,drained_s,drain_pct_of_rate,reached_90pct_s,sim_421,refusal_pct,peak_conn,inter_done_s,bulk_done_s,missing,status"
python3 - "$json" "$csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["params"]
with open(sys.argv[2], "a") as out:
    for srv, run in r["runs"].items():
        fg = run["figures"]; c = fg["classes"]
        row = [r["time_utc"], r["git_commit"], srv, p["rate"], p["bulk"], p["interpersonal"], p["transactional"],
               fg.get("return_to_first_delivery_s"), fg.get("return_to_drained_s"), fg.get("drain_pct_of_rate"),
               fg.get("reached_90pct_of_rate_s_after_return"), fg["sim_rate_refusals"],
               fg["refusals_pct_of_messages"], fg["sim_peak_connections"],
               c["interpersonal"].get("finished_s_after_return"), c["bulk"].get("finished_s_after_return"),
               fg["missing"], '"' + run["status"] + '"']
        out.write(",".join("" if x is None else str(x) for x in row) + "\n")
PY
for target in $TARGETS; do
    mkdir -p "$RESULTS_DIR/outage-$stamp-$target"
    cp "$work/$target/per-second.csv" "$work/$target/per-second.svg" "$RESULTS_DIR/outage-$stamp-$target/"
    [ ! -f "$work/$target/per-second.png" ] || cp "$work/$target/per-second.png" "$RESULTS_DIR/outage-$stamp-$target/"
done
note "results written to $json (per-second series in $RESULTS_DIR/outage-$stamp-*/), appended to $csv"
[ "$failed" = 0 ] || die "lost or undelivered messages (see status above); scratch directory kept"
