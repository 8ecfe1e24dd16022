#!/usr/bin/env bash
# The Debian package, installed for real on this machine (CI runs as root):
# it builds and installs; its unit passes systemd-analyze verify; the
# service starts as systemd would start it (its own user, only
# CAP_NET_BIND_SERVICE, the configuration checked first, READY=1 on
# NOTIFY_SOCKET once the listeners are up, on the standard ports); an
# unprivileged local user's mail goes through `sendmail` to a local user;
# SIGTERM stops it. Everything the package made is removed at the end.
#
#   bash packaging/test-deb.sh          (root; refuses a machine that has facteur installed)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
if dpkg -s facteur >/dev/null 2>&1 || [ -e /var/lib/facteur ] || [ -e /etc/facteur ]; then
    fail "facteur is already installed here (or /var/lib/facteur exists); not testing over it"
fi
work="$(mktemp -d)"
chmod 755 "$work"
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" || true; fi
    dpkg --purge facteur >/dev/null 2>&1 || true
    rm -rf /var/lib/facteur /etc/facteur
    if getent passwd facteur >/dev/null; then deluser --quiet --system facteur >/dev/null 2>&1 || userdel facteur || true; fi
    if getent group facteur >/dev/null; then delgroup --quiet --system facteur >/dev/null 2>&1 || groupdel facteur || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== build the package (debug binary, fast compression: a test package)"
"$root/release" --profile dev --no-strip --fast -o "$work/" 2>&1 | grep -v "dev profile is not supported\|debug symbols\|custom profiles" || true
deb="$(ls "$work"/facteur_*.deb)"
contents="$(dpkg-deb --contents "$deb")"
for f in ./usr/bin/facteur ./lib/systemd/system/facteur.service ./etc/facteur/facteur.toml ./usr/share/doc/facteur/README.md; do
    grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done

echo "== install"
dpkg -i "$deb"
getent passwd facteur >/dev/null || fail "no facteur user"
[ "$(stat -c '%U %a' /var/lib/facteur)" = "facteur 751" ] || fail "/var/lib/facteur: $(stat -c '%U %a' /var/lib/facteur)"
[ "$(stat -c '%U %G %a' /etc/facteur/facteur.toml)" = "root facteur 640" ] || fail "facteur.toml: $(stat -c '%U %G %a' /etc/facteur/facteur.toml)"
grep -q '^hostname = "HOSTNAME"' /etc/facteur/facteur.toml && fail "the host name was not set"
[ -s /var/lib/facteur/facteur.db ] || fail "no database made"
[ "$(stat -c '%a' /var/lib/facteur/maildrop)" = "1733" ] || fail "maildrop mode $(stat -c '%a' /var/lib/facteur/maildrop)"
update-alternatives --query sendmail | grep -q "Alternative: /usr/lib/facteur/sendmail" || fail "no sendmail alternative"

echo "== systemd-analyze verify"
# A container has no running systemd: verify the unit file on its own.
out="$(systemd-analyze verify /lib/systemd/system/facteur.service 2>&1)" || { echo "$out"; fail "systemd-analyze verify"; }
if grep -i "facteur.service" <<<"$out" | grep -vi "multi-user.target\|network-online" ; then
    fail "systemd-analyze verify complains about the unit"
fi

echo "== start it as systemd would"
as_service=(setpriv --reuid=facteur --regid=facteur --init-groups
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service --bounding-set=-all,+net_bind_service
    --no-new-privs)
"${as_service[@]}" /usr/bin/facteur --config /etc/facteur/facteur.toml config check || fail "ExecStartPre: config check"
notify="$work/notify"
/usr/bin/python3 - "$notify" >"$work/notified" <<'PY' &
import socket, sys, time, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777)
s.settimeout(60)
got = []
try:
    while b"READY=1" not in b"".join(got):
        got.append(s.recv(4096))
except socket.timeout:
    pass
print(b"\n".join(got).decode())
PY
listener=$!
for _ in $(seq 50); do [ -S "$notify" ] && break; sleep 0.1; done
NOTIFY_SOCKET="$notify" "${as_service[@]}" /usr/bin/facteur --config /etc/facteur/facteur.toml serve 2>"$work/serve.log" &
server=$!
wait "$listener" || true
grep -q "READY=1" "$work/notified" || { cat "$work/serve.log"; fail "no READY=1 on NOTIFY_SOCKET"; }
for port in 25 587 465 143 993 995; do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$work/serve.log"; fail "nothing listens on port $port"; }
done

echo "== a local program's mail, through sendmail, to a local user"
# As root, with no --data or --config: the system's server, and the
# commands become its user (nothing in /var/lib/facteur may end up root's).
facteur domain add example.test >/dev/null
printf 'pw\n' | facteur user add alice@example.test --password-stdin >/dev/null
facteur alias add root@example.test alice@example.test >/dev/null
owned_by_root="$(find /var/lib/facteur -user root)"
[ -z "$owned_by_root" ] || fail "files owned by root in the data folder: $owned_by_root"
as_facteur=(runuser -u facteur -- /usr/bin/facteur --config /etc/facteur/facteur.toml)
printf 'Subject: from cron\n\nnightly job done\n' | runuser -u nobody -- /usr/lib/facteur/sendmail -F "Cron Daemon" root \
    || fail "sendmail as nobody exited $?"
for _ in $(seq 50); do
    "${as_facteur[@]}" mailbox fetch alice@example.test 1 >"$work/msg" 2>/dev/null && break
    sleep 0.2
done
grep -q "nightly job done" "$work/msg" || fail "the message did not reach alice"
grep -q "from userid $(id -u nobody)" "$work/msg" || fail "no Received: from userid: $(cat "$work/msg")"
grep -q '^From: "Cron Daemon" <nobody@example.test>' "$work/msg" || fail "From: $(grep '^From:' "$work/msg")"
/usr/lib/facteur/mailq | grep -q "Mail queue is empty" || fail "mailq"
out="$(facteur reload 2>&1)" && grep -q "reloaded" <<<"$out" || fail "facteur reload: $out"

echo "== stop"
kill -TERM "$server"
wait "$server" || fail "facteur exited $? on SIGTERM"
server=""
echo "test-deb: ok"
