#!/usr/bin/env bash
# bench/soak.sh: no fault, no incident. facteur runs with its default
# objectives, hold and quiet times, probe and watch, under a steady load for
# SOAK_SECS: every second a message to a local user, a message relayed to
# a downstream smtp-sink (a static route), an IMAP login that reads the
# INBOX's state, and a POP3 login. At the end the incidents opened are
# counted (facteur incident list --json and /status.json): any is a false
# incident and fails the run.
#
# Settings: SOAK_SECS [3600; CI runs 600], FACTEUR_BIN, FACTEUR_STORAGE,
# KEEP=1 keeps the scratch folder (logs, the database).
# Output: a summary line, and bench/results/soak-STAMP.json.
set -euo pipefail
BENCH_NAME=soak
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SOAK_SECS="${SOAK_SECS:-3600}"
positive SOAK_SECS "$SOAK_SECS"
need curl
need smtp-sink
need python3
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
prepare_facteur
make_scratch soak
scratch="$work"
results_files soak
sink_pid=""
on_exit() {
    [ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$scratch"
}
set_traps

mapfile -t ports < <(free_ports 6)
smtp="${ports[0]}" http="${ports[1]}" imaps="${ports[2]}" pop3s="${ports[3]}" status="${ports[4]}" sink="${ports[5]}"
# smtp-sink refuses to run as root without -u.
sink_user=()
[ "$(id -u)" -ne 0 ] || sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c 127.0.0.1:"$sink" 1000 >"$scratch/sink.log" 2>&1 &
sink_pid=$!
wait_smtp_banner "$sink" || die "smtp-sink did not start: $(cat "$scratch/sink.log")"
cat >"$scratch/facteur.toml" <<TOML
[server]
hostname = "soak.bench.test"
[listen]
smtp = ["127.0.0.1:$smtp"]
submission = []
submissions = []
http = ["127.0.0.1:$http"]
imap = []
imaps = ["127.0.0.1:$imaps"]
pop3 = []
pop3s = ["127.0.0.1:$pop3s"]
status = ["127.0.0.1:$status"]
[smtp]
trusted_networks = ["127.0.0.0/8"]
greet_pause_ms = 0
max_connections_per_ip = 0
max_messages_per_minute_per_ip = 0
[delivery]
dns_servers = ["127.0.0.1:9"]
[[route]]
domain = "soak.test"
via = "127.0.0.1:$sink"
tls = "none"
TOML
facteur_storage "$scratch"
facteur() { "$facteur_bin" --data "$scratch/data" --config "$scratch/facteur.toml" "$@"; }
start_facteur "$scratch" "$http" info
facteur domain add local.test >/dev/null
echo 'soak-password-123' | facteur user add user@local.test --password-stdin >/dev/null

note "steady load for $SOAK_SECS s (default objectives; ${FACTEUR_STORAGE})"
started="$(date +%s)"
python3 - "$smtp" "$imaps" "$pop3s" "$SOAK_SECS" >"$scratch/load.json" <<'PY'
import imaplib, json, poplib, smtplib, ssl, sys, time
smtp, imaps, pop3s, secs = (int(a) for a in sys.argv[1:])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
n = {"sent": 0, "refused": 0, "imap": 0, "imap_failed": 0, "pop3": 0, "pop3_failed": 0}
end = time.time() + secs
i = 0
while time.time() < end:
    tick = time.time()
    try:
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            for to in ("user@local.test", f"r{i}@soak.test"):
                s.sendmail("load@client.test", [to], f"From: load@client.test\r\nTo: {to}\r\nSubject: soak {i}\r\n\r\nsoak\r\n")
                n["sent"] += 1
    except Exception:
        n["refused"] += 1
    try:
        m = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=ctx, timeout=30)
        m.login("user@local.test", "soak-password-123")
        m.select("INBOX", readonly=True)
        m.logout()
        n["imap"] += 1
    except Exception:
        n["imap_failed"] += 1
    if i % 10 == 0:
        try:
            p = poplib.POP3_SSL("127.0.0.1", pop3s, context=ctx, timeout=30)
            p.user("user@local.test")
            p.pass_("soak-password-123")
            p.stat()
            p.quit()
            n["pop3"] += 1
        except Exception:
            n["pop3_failed"] += 1
    i += 1
    time.sleep(max(0, 1 - (time.time() - tick)))
print(json.dumps(n))
PY
elapsed_s=$(( $(date +%s) - started ))
kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink stopped during the soak: $(cat "$scratch/sink.log")"
load="$(cat "$scratch/load.json")"
incidents="$(facteur incident list --json)"
count="$(printf '%s' "$incidents" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
# Nothing stays in limbo: what was relayed reaches the sink.
for _ in $(seq 1 60); do
    waiting="$(facteur queue list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
    [ "$waiting" = 0 ] && break
    sleep 1
done
[ "$waiting" = 0 ] || die "$waiting message(s) still queued a minute after the load stopped"
page="$(curl -fsS "http://127.0.0.1:$status/status.json" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], len(j["incidents"]))')"
stop_facteur
cat >"$json" <<JSON
{"bench": "soak", "commit": "$(git_commit)", "storage": "$FACTEUR_STORAGE", "secs": $elapsed_s,
 "load": $load, "incidents": $count, "status_page": "$page"}
JSON
note "$elapsed_s s, load $load; incidents opened: $count; status page: $page"
if [ "$count" != 0 ]; then
    printf '%s\n' "$incidents" >&2
    die "$count false incident(s) during a fault-free soak"
fi
case "$page" in "operational 0") ;; *) die "status page not operational at the end: $page" ;; esac
note "PASS: no false incident in $elapsed_s s"
