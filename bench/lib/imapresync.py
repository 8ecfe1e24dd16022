#!/usr/bin/env python3
"""QRESYNC reconnect against a full resync (bench/imap.sh, RESYNC_STEP).

    imapresync.py HOST PORT USER PASSWORD MAILBOX CHANGES SEED

A client that knew MAILBOX (its UIDVALIDITY and HIGHESTMODSEQ) goes away;
another session makes CHANGES changes (nine in ten: a flag set on one
message each; one in ten: a message expunged); the client comes back:

- with QRESYNC (RFC 7162 §3.2.5): ENABLE QRESYNC, then
  SELECT MAILBOX (QRESYNC (uidvalidity modseq)), which must answer the
  expunged UIDs in VANISHED (EARLIER) and a FETCH for each flagged message;
- without: SELECT MAILBOX, then UID FETCH 1:* (FLAGS), what a client without
  CONDSTORE reads to learn the same.

Each is timed from the command to its tagged OK, and the octets of the
answers are counted. Prints one JSON object. Standard library only; the
answers parsed here hold no literals.
"""

import json
import random
import re
import socket
import sys
import time


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=120)
        self.buf = b""
        self.n = 0
        self.line()  # greeting

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(1 << 16)
            if not data:
                raise RuntimeError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, command):
        self.n += 1
        tag = f"r{self.n}"
        self.sock.sendall(f"{tag} {command}\r\n".encode())
        return tag

    def until(self, tag):
        """The answer's lines up to the tagged one, and its octets."""
        lines, octets = [], 0
        while True:
            line = self.line()
            octets += len(line) + 2
            lines.append(line.decode("utf-8", "replace"))
            if line.startswith(tag.encode() + b" "):
                if not line.startswith(tag.encode() + b" OK"):
                    raise RuntimeError(f"{lines[-1]}")
                return lines, octets

    def cmd(self, command):
        return self.until(self.send(command))


def login(host, port, user, password):
    c = Conn(host, port)
    c.cmd(f'LOGIN "{user}" "{password}"')
    return c


def code(lines, name):
    for line in lines:
        m = re.search(rf"\[{name} (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise RuntimeError(f"no {name} in {lines[:12]}")


def set_count(text):
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        n += abs(int(hi or lo) - int(lo)) + 1
    return n


def main():
    host, port, user, password, mailbox, changes, seed = sys.argv[1:8]
    port, changes = int(port), int(changes)
    rng = random.Random(int(seed))

    # The client's last visit.
    c = login(host, port, user, password)
    c.cmd("ENABLE QRESYNC")
    lines, _ = c.cmd(f'SELECT "{mailbox}"')
    validity, known = code(lines, "UIDVALIDITY"), code(lines, "HIGHESTMODSEQ")
    lines, _ = c.cmd("UID SEARCH ALL")
    uids = [int(u) for line in lines if line.startswith("* SEARCH") for u in line.split()[2:]]
    c.send("LOGOUT")

    # Meanwhile, another session.
    expunge_n = changes // 10
    picked = rng.sample(uids, min(changes, len(uids)))
    gone, flagged = sorted(picked[:expunge_n]), sorted(picked[expunge_n:])
    o = login(host, port, user, password)
    o.cmd(f'SELECT "{mailbox}"')
    for i in range(0, len(flagged), 100):
        tags = [o.send(f"UID STORE {u} +FLAGS.SILENT (\\Flagged $Resync)") for u in flagged[i : i + 100]]
        for tag in tags:
            o.until(tag)
    gone_set = ",".join(map(str, gone))
    if gone:
        o.cmd(f"UID STORE {gone_set} +FLAGS.SILENT (\\Deleted)")
        o.cmd(f"UID EXPUNGE {gone_set}")
    o.send("LOGOUT")

    # Back, with QRESYNC.
    q = login(host, port, user, password)
    q.cmd("ENABLE QRESYNC")
    started = time.perf_counter()
    lines, q_octets = q.cmd(f'SELECT "{mailbox}" (QRESYNC ({validity} {known}))')
    q_ms = (time.perf_counter() - started) * 1000
    vanished = sum(set_count(l.split()[-1]) for l in lines if l.startswith("* VANISHED (EARLIER) "))
    fetched = sum(1 for l in lines if " FETCH (" in l)
    q.send("LOGOUT")

    # Back, without: the whole list of UIDs and flags.
    f = login(host, port, user, password)
    started = time.perf_counter()
    lines, select_octets = f.cmd(f'SELECT "{mailbox}"')
    lines2, fetch_octets = f.cmd("UID FETCH 1:* (FLAGS)")
    f_ms = (time.perf_counter() - started) * 1000
    f_fetched = sum(1 for l in lines2 if " FETCH (" in l)
    f.send("LOGOUT")

    ok = vanished == len(gone) and fetched == len(flagged) and f_fetched == len(uids) - len(gone)
    print(json.dumps({
        "messages": len(uids),
        "changes": {"flagged": len(flagged), "expunged": len(gone)},
        "qresync": {"ms": round(q_ms, 2), "octets": q_octets, "vanished": vanished, "fetched": fetched},
        "full": {"ms": round(f_ms, 2), "octets": select_octets + fetch_octets, "fetched": f_fetched},
        "octets_ratio": round((select_octets + fetch_octets) / q_octets, 1),
        "time_ratio": round(f_ms / q_ms, 1) if q_ms else None,
        "ok": ok,
    }))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
