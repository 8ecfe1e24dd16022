#!/usr/bin/env bash
# bench/postfix-peer.sh: a private Postfix to deliver to, for interop tests.
#
#   bench/postfix-peer.sh start DIR PORT DOMAIN
#   bench/postfix-peer.sh stop DIR
#
# start: writes a Postfix instance of its own under DIR (etc/ config,
# spool/ queue, data/, log/maillog) and starts it. Its only listener is
# 127.0.0.1:PORT. It accepts mail for any address @DOMAIN (a catch-all) and
# virtual(8) delivers it, as nobody, into the Maildir DIR/mail/DOMAIN/catchall/
# (one file per message in new/). Everything else it is given (a bounce or a
# success notice, say) fails at once: no local delivery, no outbound SMTP, no
# DNS. Returns once the greeting answers on PORT. DIR is created if need be
# and made traversable (0755) for Postfix's daemons.
#
# stop: stops the instance in DIR and waits until none of its processes is
# left (at most about 15 s; what remains after 5 s is killed).
#
# Prints nothing but errors. Needs root, as any Postfix master does, and the
# postfix package (`.ci/run --deps-only`). The instance is the "virtual" role
# of postfix_write in bench/lib.sh, as bench/smtp-accept.sh uses it.
set -euo pipefail
BENCH_NAME=postfix-peer
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Only errors are printed, so what lib.sh notes goes to stderr too.
note() {
    echo "$BENCH_NAME: $*" >&2
}

usage() {
    echo "usage: $0 start DIR PORT DOMAIN | stop DIR" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "must run as root (a Postfix master process runs as root)"

# An absolute path for DIR: Postfix's main.cf wants one.
absolute() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

# Wait up to 5 s for the instance's daemons to go after their master, then
# SIGKILL what is left, and wait for that to be gone too.
reap() {
    local conf="$1" left
    for _ in $(seq 1 50); do
        left="$(postfix_leftovers "$conf")"
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $left 2>/dev/null || true
    for _ in $(seq 1 50); do
        [ -n "$(postfix_leftovers "$conf")" ] || return 0
        sleep 0.1
    done
    die "processes of the instance in ${conf%/etc} are still running: $(postfix_leftovers "$conf" | tr '\n' ' ')"
}

# After a failed start, once the master is stopped, none of its daemons is
# left running either.
dir=""
on_exit() {
    if [ "$1" -ne 0 ] && [ -n "$dir" ] && [ -f "$dir/etc/main.cf" ]; then
        reap "$dir/etc"
    fi
}

case "${1:-}" in
    start)
        [ "$#" -eq 4 ] || usage
        port="$3"
        domain="$4"
        positive PORT "$port"
        [ "$port" -lt 65536 ] || die "PORT must be below 65536, got '$port'"
        case "$domain" in
            '' | *[!A-Za-z0-9.-]* | .* | *. | *..*) die "DOMAIN must be a domain name, got '$domain'" ;;
        esac
        need_postfix
        need timeout
        dir="$(absolute "$2")"
        if [ -s "$dir/spool/pid/master.pid" ] &&
            kill -0 "$(tr -dc 0-9 <"$dir/spool/pid/master.pid")" 2>/dev/null; then
            die "a Postfix instance already runs in $dir; stop it first"
        fi
        chmod 0755 "$dir"
        set_traps
        postfix_write "$dir" "$port" "postfix.$domain" virtual "$domain" "*"
        postfix_start "$dir" "$port"
        # Started: it keeps running after we exit.
        postfix_conf=""
        ;;
    stop)
        [ "$#" -eq 2 ] || usage
        [ -d "$2" ] || die "no such directory: $2"
        dir="$(cd "$2" && pwd)"
        [ -f "$dir/etc/main.cf" ] || die "no Postfix instance in $dir (no etc/main.cf)"
        need_postfix
        need timeout
        postfix_conf="$dir/etc"
        postfix_master_pidfile="$dir/spool/pid/master.pid"
        stop_postfix
        reap "$dir/etc"
        ;;
    *) usage ;;
esac
