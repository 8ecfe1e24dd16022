#!/usr/bin/env bash
# bench/smtp-accept.sh: SMTP acceptance benchmark, facteur against Postfix.
#
# Postfix's smtp-source sends MESSAGES messages of SIZE bytes over SESSIONS
# parallel SMTP sessions to a server on a loopback port, and we time it.
# Both servers store to local mailboxes and fsync before they answer 250:
#   facteur  delivers into its SQLite mailbox store in the same commit that
#            precedes the 250, so accepted also means delivered.
#   postfix  writes and fsyncs a queue file, answers 250, then the queue
#            manager hands the message to virtual(8), which writes a Maildir
#            file. We time both the 250s and the last file in new/.
# After each run the stored messages are counted; anything short of MESSAGES
# is a failure.
#
# Environment (defaults in brackets):
#   MESSAGES [20000]  SESSIONS [20]  SIZE [1024]   what smtp-source sends
#   REUSE [0]         1: keep each session's connection open for several
#                     messages (smtp-source -d); 0: one connection per message
#   SIGNED [0]        1: send one DKIM-signed message (rsa-sha256, dkimpy) of
#                     about SIZE body bytes (smtp-source -F) and add the target
#                     facteur_auth: facteur with sender authentication on
#                     (loopback a stranger; SPF, DKIM, DMARC against the stub
#                     DNS server facteur-stub-dns), while "facteur" trusts
#                     loopback and checks nothing
#   TARGETS ["facteur postfix"; SIGNED=1: "facteur facteur_auth postfix"]
#                     servers to measure, in this order; each one's CPU time
#                     per message is reported (Postfix: its master and every
#                     process it ran, delivery included)
#   STUB_DNS_BIN      facteur-stub-dns binary; unset: build it with cargo
#   FACTEUR_BIN       facteur binary to use; unset: build it with cargo
#   CARGO_TARGET_DIR  [~/.cache/facteur-target]
#   SEND_TIMEOUT [1800]      seconds allowed for one smtp-source run
#   DELIVERY_TIMEOUT [900]   seconds allowed for Postfix to fill the Maildir
#   BENCH_TMPDIR [/var/tmp]  where the scratch directory goes; must be a real
#                     disk (on tmpfs fsync costs nothing and figures lie)
#   RESULTS_DIR [bench/results]   JSON and CSV output
#   KEEP [0]          1: keep the scratch directory and its logs
#
# Needs root (Postfix's master runs as root) and the packages that
# `.ci/run --deps-only` installs. Everything listens on 127.0.0.1 only.
# What it shares with bench/relay.sh is in bench/lib.sh.
set -euo pipefail
BENCH_NAME=smtp-accept
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# MESSAGES, SESSIONS, TARGETS, SEND_TIMEOUT, DELIVERY_TIMEOUT, BENCH_TMPDIR
# and KEEP, as in relay.sh.
SIGNED="${SIGNED:-0}"
zero_or_one SIGNED
extra_targets=facteur_auth
[ "$SIGNED" = 0 ] || TARGETS="${TARGETS:-facteur facteur_auth postfix}"
bench_settings
SIZE="${SIZE:-1024}"
REUSE="${REUSE:-0}"
positive SIZE "$SIZE"
zero_or_one REUSE

need smtp-source
need python3
need sqlite3
need curl
need timeout
if want_target postfix; then
    need_postfix
fi

# --- scratch space ---------------------------------------------------------

make_scratch facteur-bench
fsync_us="$(fsync_median_us "$work")"

# Called on exit, once both servers are stopped.
stub_dns_pid=""
on_exit() {
    [ -z "$stub_dns_pid" ] || kill "$stub_dns_pid" 2>/dev/null || true
    if [ "$KEEP" = 1 ] || [ "$1" -ne 0 ]; then
        note "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
}
set_traps

# smtp-source against 127.0.0.1:$1, to the one recipient both servers know;
# REUSE=1 sends several messages per connection (-d).
send_to() {
    local extra=() size="$SIZE"
    [ "$REUSE" = 1 ] && extra+=(-d)
    if [ "$SIGNED" = 1 ]; then
        extra+=(-F "$work/message")
        size=0
    fi
    run_smtp_source "$1" "$size" rcpt@bench.test "${extra[@]}"
}

declare -A accept_s=() deliver_s=() stored=() cpu_ms=()

# cpu_per_message TARGET TICKS: CPU milliseconds per message.
cpu_per_message() {
    cpu_ms[$1]="$(awk -v t="$2" -v hz="$(getconf CLK_TCK)" -v n="$MESSAGES" \
        'BEGIN { printf "%.3f", t * 1000 / hz / n }')"
}

# SIGNED=1: the signed message, and its key in a stub DNS server with SPF
# for loopback and DMARC p=reject for bench.test.
dns_addr=""
if [ "$SIGNED" = 1 ]; then
    need openssl
    /usr/bin/python3 -c 'import dkim' 2>/dev/null || die "SIGNED=1 needs dkimpy (Debian python3-dkim)"
    dkim_record="$(/usr/bin/python3 "$repo_root/bench/lib/signed_message.py" "$work" "$SIZE" bench.test s1)" ||
        die "could not sign the benchmark message"
    stub_dns_bin="${STUB_DNS_BIN:-}"
    if [ -z "$stub_dns_bin" ]; then
        note "building facteur-stub-dns (cargo build --release -p facteur-testkit --bin facteur-stub-dns)"
        (cd "$repo_root" && cargo build --release -p facteur-testkit --bin facteur-stub-dns) ||
            die "could not build facteur-stub-dns"
        stub_dns_bin="$CARGO_TARGET_DIR/release/facteur-stub-dns"
    fi
    "$stub_dns_bin" "txt:bench.test=v=spf1 ip4:127.0.0.1 -all" "txt:s1._domainkey.bench.test=$dkim_record" \
        "txt:_dmarc.bench.test=v=DMARC1; p=reject" >"$work/stub-dns.log" 2>&1 &
    stub_dns_pid=$!
    for _ in $(seq 1 50); do
        dns_addr="$(sed -n 's/^listening on //p' "$work/stub-dns.log")"
        [ -n "$dns_addr" ] && break
        sleep 0.1
    done
    [ -n "$dns_addr" ] || die "facteur-stub-dns did not start: $(cat "$work/stub-dns.log")"
    note "stub DNS on $dns_addr: SPF, DKIM key s1 and DMARC p=reject for bench.test"
fi

# --- facteur ---------------------------------------------------------------

# run_facteur [facteur_auth]: the plain run, or with sender authentication.
run_facteur() {
    prepare_facteur

    local target="${1:-facteur}" smtp_port http_port ticks0
    local dir="$work/$target"
    mkdir -p "$dir"
    { read -r smtp_port; read -r http_port; } < <(free_ports 2)
    [ -n "${http_port:-}" ] || die "could not pick free loopback ports"

    "$facteur_bin" --data "$dir/data" init >"$dir/setup.log" 2>&1 &&
        "$facteur_bin" --data "$dir/data" domain add bench.test >>"$dir/setup.log" 2>&1 ||
        { cat "$dir/setup.log" >&2; die "facteur init / domain add failed"; }
    printf 'secret\n' | "$facteur_bin" --data "$dir/data" user add rcpt@bench.test --password-stdin \
        >>"$dir/setup.log" 2>&1 ||
        { cat "$dir/setup.log" >&2; die "facteur user add failed"; }

    facteur_config "$dir" bench.test "$smtp_port" "$http_port"
    if [ "$target" = facteur_auth ]; then
        # Loopback is a stranger: every message is checked (no client limits).
        printf '%s\n' '[smtp]' 'trusted_networks = []' 'greet_pause_ms = 0' 'max_connections_per_ip = 0' \
            'max_messages_per_minute_per_ip = 0' '[delivery]' "dns_servers = [\"$dns_addr\"]" \
            '[sender_auth]' 'verify = true' >>"$dir/facteur.toml"
    fi

    note "starting $target: SMTP 127.0.0.1:$smtp_port, HTTP 127.0.0.1:$http_port"
    start_facteur "$dir" "$http_port"

    ticks0="$(cpu_ticks "$facteur_pid")"
    send_to "$smtp_port"
    cpu_per_message "$target" "$(($(cpu_ticks "$facteur_pid") - ticks0))"
    accept_s[$target]="$send_s"
    # Local delivery is part of the transaction acknowledged by 250.
    deliver_s[$target]="$send_s"

    stored[$target]="$(sqlite3 -bail -cmd '.timeout 10000' "$dir/data/facteur.db" \
        'select count(*) from mailbox_messages;')" ||
        die "could not count facteur's stored messages"
    if [ "$target" = facteur_auth ]; then
        # What was measured must be the checks passing, not failing early.
        local results
        results="$(sqlite3 -bail "$dir/data/facteur.db" 'select cast(data as text) from message_bodies limit 1;' |
            tr -d '\r' | sed -n '/^Authentication-Results:/,/^[^ \t]/p')"
        for want in "dkim=pass" "spf=pass" "dmarc=pass"; do
            grep -q "$want" <<<"$results" || die "facteur_auth: no $want in: $results"
        done
    fi
    stop_facteur
    if [ "${stored[$target]}" != "$MESSAGES" ]; then
        tail -n 40 "$dir/facteur.log" >&2
        die "$target stored ${stored[$target]} messages, expected $MESSAGES"
    fi
    note "$target: $MESSAGES accepted in ${accept_s[$target]} s, ${stored[$target]} stored, ${cpu_ms[$target]} CPU ms/msg"
}

run_facteur_auth() {
    [ "$SIGNED" = 1 ] || die "the facteur_auth target needs SIGNED=1"
    run_facteur facteur_auth
}

# --- postfix ---------------------------------------------------------------

# A private Postfix whose one virtual mailbox, rcpt@bench.test, is a Maildir.
run_postfix() {
    local base="$work/postfix" port
    local maildir="$base/mail/bench.test/rcpt"
    port="$(free_ports 1)"
    postfix_write "$base" "$port" postfix.bench.test virtual bench.test rcpt

    note "starting postfix $postfix_version: SMTP 127.0.0.1:$port (config $base/etc)"
    postfix_start "$base" "$port"
    local master ticks0
    master="$(head -n 1 "$base/spool/pid/master.pid" | tr -d ' ')"
    ticks0="$(cpu_ticks "$master")"

    send_to "$port"
    accept_s[postfix]="$send_s"

    # Wait for the queue manager and virtual(8) to write every Maildir file.
    local count=0 deadline now
    deadline=$(( ${EPOCHREALTIME%.*} + DELIVERY_TIMEOUT ))
    while :; do
        if [ -d "$maildir/new" ]; then
            count="$(find "$maildir/new" -maxdepth 1 -type f | wc -l)"
        fi
        [ "$count" -ge "$MESSAGES" ] && break
        now="${EPOCHREALTIME%.*}"
        if [ "$now" -ge "$deadline" ]; then
            tail -n 20 "$base/log/maillog" >&2 2>/dev/null || true
            postqueue -c "$base/etc" -p 2>/dev/null | tail -n 5 >&2 || true
            die "postfix delivered $count of $MESSAGES messages within ${DELIVERY_TIMEOUT} s"
        fi
        sleep 0.05
    done
    deliver_s[postfix]="$(elapsed "$send_start" "$EPOCHREALTIME")"
    cpu_per_message postfix "$(($(cpu_ticks "$master") - ticks0))"
    stored[postfix]="$count"
    stop_postfix
    if [ "${stored[postfix]}" != "$MESSAGES" ]; then
        die "postfix stored ${stored[postfix]} messages, expected $MESSAGES"
    fi
    local sample
    sample="$(find "$maildir/new" -maxdepth 1 -type f -size -"$SIZE"c | head -n 1)"
    [ -z "$sample" ] || die "postfix stored a message smaller than $SIZE bytes: $sample"
    note "postfix: $MESSAGES accepted in ${accept_s[postfix]} s, all ${stored[postfix]} in the Maildir after ${deliver_s[postfix]} s"
}

# --- run -------------------------------------------------------------------

mode="one message per connection"
[ "$REUSE" = 1 ] && mode="several messages per connection"
note "$MESSAGES messages x $SIZE bytes over $SESSIONS sessions ($mode)"
note "machine: $(nproc) cores, $(uname -sr), scratch on $fstype ($work)"
note_disk_and_load "$fsync_us"

for t in $TARGETS; do
    "run_$t"
done

# --- report ----------------------------------------------------------------

echo
printf '%-12s %9s %10s %12s %12s %15s %8s %11s\n' \
    server messages accept_s accept_msg/s delivered_s delivered_msg/s stored cpu_ms/msg
for t in $TARGETS; do
    printf '%-12s %9s %10s %12s %12s %15s %8s %11s\n' "$t" "$MESSAGES" \
        "${accept_s[$t]}" "$(rate "${accept_s[$t]}")" \
        "${deliver_s[$t]}" "$(rate "${deliver_s[$t]}")" "${stored[$t]}" "${cpu_ms[$t]}"
done

ratio_accept=""
ratio_deliver=""
if want_target facteur && want_target postfix; then
    ratio_accept="$(awk -v f="${accept_s[facteur]}" -v p="${accept_s[postfix]}" \
        'BEGIN { printf "%.2f", p / f }')"
    ratio_deliver="$(awk -v f="${deliver_s[facteur]}" -v p="${deliver_s[postfix]}" \
        'BEGIN { printf "%.2f", p / f }')"
    echo
    echo "facteur/postfix, accepted msgs/s:  $ratio_accept"
    echo "facteur/postfix, delivered msgs/s: $ratio_deliver"
fi
ratio_auth=""
auth_cpu_ms=""
if want_target facteur_auth && want_target postfix; then
    ratio_auth="$(awk -v f="${accept_s[facteur_auth]}" -v p="${accept_s[postfix]}" \
        'BEGIN { printf "%.2f", p / f }')"
    echo "facteur_auth/postfix, accepted msgs/s: $ratio_auth (SPF+DKIM+DMARC checked; bar: 2)"
fi
if want_target facteur_auth && want_target facteur; then
    auth_cpu_ms="$(awk -v a="${cpu_ms[facteur_auth]}" -v f="${cpu_ms[facteur]}" 'BEGIN { printf "%.3f", a - f }')"
    echo "sender authentication costs $auth_cpu_ms CPU ms per message"
fi

results_files smtp-accept
commit="$(git_commit)"
{
    printf '{\n'
    printf '  "benchmark": "smtp-accept",\n'
    printf '  "time_utc": "%s",\n' "$stamp"
    printf '  "git_commit": "%s",\n' "$commit"
    printf '  "machine": {"cores": %s, "kernel": "%s", "filesystem": "%s", "fsync_median_us": %s, "loadavg_1m": %s},\n' \
        "$(nproc)" "$(uname -r)" "$fstype" "$fsync_us" "$loadavg"
    printf '  "params": {"messages": %s, "sessions": %s, "size": %s, "reuse_connections": %s, "signed": %s},\n' \
        "$MESSAGES" "$SESSIONS" "$SIZE" "$([ "$REUSE" = 1 ] && echo true || echo false)" \
        "$([ "$SIGNED" = 1 ] && echo true || echo false)"
    printf '  "results": {'
    sep=""
    for t in $TARGETS; do
        case "$t" in
            facteur | facteur_auth) ver="$facteur_version" ;;
            postfix) ver="$postfix_version" ;;
        esac
        printf '%s\n    "%s": {"version": "%s", "accept_seconds": %s, "accept_msgs_per_s": %s, "delivered_seconds": %s, "delivered_msgs_per_s": %s, "stored": %s, "cpu_ms_per_msg": %s}' \
            "$sep" "$t" "${ver//\"/}" "${accept_s[$t]}" "$(rate "${accept_s[$t]}")" \
            "${deliver_s[$t]}" "$(rate "${deliver_s[$t]}")" "${stored[$t]}" "${cpu_ms[$t]}"
        sep=","
    done
    printf '\n  }'
    if [ -n "$ratio_accept" ]; then
        printf ',\n  "ratio_facteur_over_postfix": {"accepted": %s, "delivered": %s}' \
            "$ratio_accept" "$ratio_deliver"
    fi
    if [ -n "$ratio_auth" ]; then
        printf ',\n  "ratio_facteur_auth_over_postfix": {"accepted": %s}' "$ratio_auth"
    fi
    if [ -n "$auth_cpu_ms" ]; then
        printf ',\n  "sender_auth_cpu_ms_per_msg": %s' "$auth_cpu_ms"
    fi
    printf '\n}\n'
} >"$json"

csv_header "time_utc,git_commit,server,messages,sessions,size,reuse,accept_s,accept_msgs_per_s,delivered_s,delivered_msgs_per_s,stored,signed,cpu_ms_per_msg"
for t in $TARGETS; do
    echo "$stamp,$commit,$t,$MESSAGES,$SESSIONS,$SIZE,$REUSE,${accept_s[$t]},$(rate "${accept_s[$t]}"),${deliver_s[$t]},$(rate "${deliver_s[$t]}"),${stored[$t]},$SIGNED,${cpu_ms[$t]}" >>"$csv"
done

show_results
