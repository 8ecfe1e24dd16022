#!/usr/bin/env bash
# bench/abuse.sh: facteur attacked from outside, as a hostile client, a
# hostile peer and an unlucky operator would (the hardening issue, item by
# item), against a release build, with a legitimate user sending mail over
# submission (TLS, AUTH) every 200 ms the whole time. Per attack it prints
# whether it held, that user's latency meanwhile (p50/max), and facteur's
# peak RSS and CPU (bench/lib/abuse.py). Exits 1 if any attack was not held.
# Everything stays on 127.0.0.0/8; delivery's resolver points at the closed
# 127.0.0.1:9. See bench/README.md.
set -euo pipefail
BENCH_NAME=abuse
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
KEEP="${KEEP:-0}"
need python3
need curl

on_exit() {
    if [ "$1" != 0 ] || [ "$KEEP" = 1 ]; then
        [ -z "$work" ] || note "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
}
set_traps
make_scratch abuse
note "machine: $(nproc) cores, $(uname -sr), data on $fstype ($work)"
note_disk_and_load "$(fsync_median_us "$work")"
prepare_facteur
note "facteur: ${facteur_version:-?} ($facteur_bin)"
# One client opens over a thousand sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
results_files abuse
rc=0
python3 "$bench_dir/lib/abuse.py" "$facteur_bin" "$work/run" "$json" || rc=$?
note "results written to $json (git commit $(git_commit))"
exit "$rc"
