# shellcheck shell=bash
# bench/lib/scenario.sh: what flood.sh and outage.sh share, on top of
# bench/lib.sh (source that first). Sourced, never run.
#
#   prepare_sim                 $sim_bin: facteur-sim (SIM_BIN, or a release build)
#   start_sim DIR PORT          facteur-sim --rate $RATE --log DIR/arrivals.log on
#                               127.0.0.1:PORT, its stdout in DIR/sim.out
#   stop_sim                    SIGINT (it prints its summary), wait
#   sim_total DIR               messages the sim accepted so far
#   start_relay TARGET DIR SIMPORT   facteur or Postfix relaying everything to
#                               127.0.0.1:SIMPORT; sets $relay_port, $relay_pending_fn
#   stop_relay                  stops whichever runs
#   run_loadgen DIR BULK INTER TRANS  bench/lib/loadgen.py into $relay_port,
#                               JSON in DIR/loadgen.json; sets $lg_accepted
#   wait_delivered DIR N TIMEOUT  until the sim has N messages; sets $wait_result
#   analyse DIR T0_MS [RETURN_MS]  bench/lib/analyse.py -> DIR/figures.json, .csv, .svg, .png
#
# Retry settings for both relays (the scenarios need fast retries, see
# bench/README.md): facteur first_retry_secs = 5, max_retry_secs = 60,
# unreachable_probe_secs = 5; Postfix minimal_backoff_time = 5s, maximal_backoff_time = 60s,
# queue_run_delay = 5s.

sim_bin=""
prepare_sim() {
    sim_bin="${SIM_BIN:-}"
    if [ -z "$sim_bin" ]; then
        need cargo
        note "building facteur-sim (cargo build --release -p facteur-testkit)"
        (cd "$repo_root" && cargo build --release -p facteur-testkit) || die "could not build facteur-sim"
        sim_bin="$CARGO_TARGET_DIR/release/facteur-sim"
    fi
    [ -x "$sim_bin" ] || die "facteur-sim not found at $sim_bin"
}

sim_pid=""
start_sim() {
    local dir="$1" port="$2"
    # --duration bounds the sim whatever happens to this script.
    "$sim_bin" --listen "127.0.0.1:$port" --mode accept --rate "$RATE" --duration "$SIM_MAX_SECS" \
        --log "$dir/arrivals.log" >>"$dir/sim.out" 2>&1 </dev/null &
    sim_pid=$!
    wait_smtp_banner "$port" || { cat "$dir/sim.out" >&2; die "facteur-sim not answering on 127.0.0.1:$port"; }
}

stop_sim() {
    [ -n "$sim_pid" ] || return 0
    if kill -0 "$sim_pid" 2>/dev/null; then
        kill -INT "$sim_pid" 2>/dev/null || true
        stop_within_10s "$sim_pid" facteur-sim
    fi
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=""
}

sim_total() {
    local last
    last="$(grep -o 'total=[0-9]*' "$1/sim.out" 2>/dev/null | tail -n 1)"
    echo "${last#total=}"
}

relay_port=""
relay_pending_fn=""
relay_spool=""

relay_dir=""
facteur_pending() {
    facteur_sql "$relay_dir" \
        "select count(*) from recipients where state not in ('delivered', 'bounced', 'deleted');" 2>/dev/null ||
        echo "?"
}
postfix_pending() {
    find "$relay_spool/maildrop" "$relay_spool/incoming" "$relay_spool/active" \
        "$relay_spool/deferred" "$relay_spool/hold" -type f 2>/dev/null | wc -l
}

start_relay() {
    local target="$1" dir="$2" simport="$3" http_port
    case "$target" in
        facteur)
            { read -r relay_port; read -r http_port; } < <(free_ports 2)
            mkdir -p "$dir"
            facteur_config "$dir" relay.bench.test "$relay_port" "$http_port"
            cat >>"$dir/facteur.toml" <<EOF

[smtp]
trusted_networks = ["127.0.0.0/8"]

[delivery]
enabled = true
dns_servers = ["127.0.0.1:9"]
first_retry_secs = 5
max_retry_secs = 60
unreachable_probe_secs = 5

[[route]]
domain = "*"
via = "127.0.0.1:$simport"
tls = "none"
EOF
            note "facteur: SMTP 127.0.0.1:$relay_port, relaying to 127.0.0.1:$simport (RUST_LOG=${RUST_LOG:-info})"
            relay_pending_fn=facteur_pending
            relay_dir="$dir"
            node_name "$dir"
            start_facteur "$dir" "$http_port" info
            start_more_nodes "$dir" "$relay_port" "$http_port"
            ;;
        postfix)
            relay_port="$(free_ports 1)"
            relay_spool="$dir/spool"
            postfix_write "$dir" "$relay_port" postfix.relay.bench.test relay "$simport"
            cat >>"$dir/etc/main.cf" <<'EOF'

# Scenario benchmarks: fast retries, like facteur's first_retry_secs = 5,
# max_retry_secs = 60.
minimal_backoff_time = 5s
maximal_backoff_time = 60s
queue_run_delay = 5s
EOF
            note "postfix $postfix_version: SMTP 127.0.0.1:$relay_port, relayhost [127.0.0.1]:$simport"
            postfix_start "$dir" "$relay_port"
            relay_pending_fn=postfix_pending
            ;;
    esac
}

stop_relay() {
    stop_more_nodes
    stop_facteur
    stop_postfix
}

lg_accepted=0
run_loadgen() {
    local dir="$1" bulk="$2" inter="$3" trans="$4"
    note "loadgen: $bulk bulk over $CONNECTIONS connections, $inter interpersonal, $trans transactional into 127.0.0.1:$relay_port"
    python3 "$bench_dir/lib/loadgen.py" --port "$relay_port" --bulk "$bulk" --interpersonal "$inter" \
        --transactional "$trans" --connections "$CONNECTIONS" --size "$SIZE" --deadline "$SEND_TIMEOUT" \
        >"$dir/loadgen.json" 2>"$dir/loadgen.err" ||
        note "loadgen: not every message was accepted (see $dir/loadgen.json, $dir/loadgen.err)"
    [ -s "$dir/loadgen.json" ] || { cat "$dir/loadgen.err" >&2; die "loadgen wrote no summary"; }
    lg_accepted="$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["accepted"].values()))' "$dir/loadgen.json")"
    note "loadgen: $(cat "$dir/loadgen.json")"
}

wait_result=""
wait_delivered() {
    local dir="$1" want="$2" timeout="$3" got=0 start="$SECONDS" last_note="$SECONDS"
    while :; do
        got="$(sim_total "$dir")"
        got="${got:-0}"
        if [ "$got" -ge "$want" ]; then
            wait_result=ok
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            wait_result="timeout: sim has $got of $want after ${timeout} s, relay still holds $("$relay_pending_fn")"
            return 1
        fi
        if [ $((SECONDS - last_note)) -ge 15 ]; then
            note "waiting: sim has $got of $want; relay holds $("$relay_pending_fn")"
            last_note="$SECONDS"
        fi
        sleep 1
    done
}

analyse() {
    local dir="$1" t0="$2" ret="${3:-}" title="$4" extra=()
    [ -z "$ret" ] || extra=(--return-ms "$ret")
    python3 "$bench_dir/lib/analyse.py" --log "$dir/arrivals.log" --loadgen "$dir/loadgen.json" \
        --sim-out "$dir/sim.out" --rate "$RATE" --t0-ms "$t0" "${extra[@]}" \
        --csv "$dir/per-second.csv" --svg "$dir/per-second.svg" --title "$title" >"$dir/figures.json" ||
        die "analysis failed for $dir"
    if command -v rsvg-convert >/dev/null 2>&1; then
        rsvg-convert -o "$dir/per-second.png" "$dir/per-second.svg" 2>/dev/null ||
            note "rsvg-convert failed; the SVG is in $dir/per-second.svg"
    fi
}

# Unix milliseconds now.
now_ms() {
    local t="$EPOCHREALTIME"
    echo $((${t%.*} * 1000 + 10#${t#*.} / 1000))
}

# After a scenario's load: wait until the downstream has every accepted
# message (bounded by DRAIN_TIMEOUT), stop both ends, analyse, and record
# fig[TARGET], status[TARGET] and `failed` for the report.
# finish_run TARGET DIR T0_MS RETURN_MS TITLE   (RETURN_MS empty: no outage)
finish_run() {
    local target="$1" dir="$2" t0="$3" back="$4" title="$5" st=ok pending missing
    wait_delivered "$dir" "$lg_accepted" "$DRAIN_TIMEOUT" || st="$wait_result"
    # A second more, so that duplicates (if any) show up in the log.
    sleep 1
    stop_sim
    pending="$("$relay_pending_fn")"
    if [ "$target" = facteur ] && [ -f "$dir/facteur.log" ]; then
        note "facteur log: $(grep -c ' WARN \| ERROR ' "$dir/facteur.log" || true) WARN/ERROR line(s); $dir/facteur.log"
    fi
    stop_relay
    analyse "$dir" "$t0" "$back" "$title"
    fig[$target]="$(cat "$dir/figures.json")"
    missing="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["missing"])' "$dir/figures.json")"
    [ "$missing" = 0 ] || st="$missing lost or not delivered; $st"
    [ "$pending" = 0 ] || st="relay still holds $pending; $st"
    status[$target]="$st"
    [ "$st" = ok ] || failed=1
    note "$target: $st"
}

# The end of a scenario's results JSON, after its own params: the retry
# settings both relays ran with (see start_relay), the versions, and each
# target's status, load generator report and figures.
runs_json() {
    printf '"facteur_retry": "first_retry_secs=5 max_retry_secs=60 unreachable_probe_secs=5", "postfix_retry": "minimal_backoff_time=5s maximal_backoff_time=60s queue_run_delay=5s"}, '
    printf '"versions": {"facteur": "%s", "postfix": "%s"}, "runs": {' "$facteur_version" "$postfix_version"
    sep=""
    for target in $TARGETS; do
        printf '%s"%s": {"status": "%s", "loadgen": %s, "figures": %s}' "$sep" "$target" "${status[$target]//\"/}" \
            "$(cat "$work/$target/loadgen.json")" "${fig[$target]}"
        sep=", "
    done
    printf '}}\n'
}

# What both scenarios do before their runs: check the targets and tools,
# install the exit handler (keep the scratch directory on failure or with
# KEEP=1) and make the scratch directory. Sets `failed` and `work`.
scenario_setup() {
    local t
    for t in $TARGETS; do
        case "$t" in facteur | postfix) ;; *) die "unknown target '$t'" ;; esac
    done
    SIM_MAX_SECS=$((SEND_TIMEOUT + DRAIN_TIMEOUT + 60))
    need python3
    need curl
    need sqlite3
    if want_target postfix; then need_postfix; fi
    failed=0
    set_traps
    make_scratch "$BENCH_NAME"
}

# Called by lib.sh's exit trap.
on_exit() {
    stop_sim
    if [ "$1" != 0 ] || [ "$failed" != 0 ] || [ "$KEEP" = 1 ]; then
        [ -z "$work" ] || note "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
}
