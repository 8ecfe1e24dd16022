#!/usr/bin/env python3
"""IMAP load for bench/imap.sh: CLIENTS processes, each doing ROUNDS sessions of

  LOGIN, SELECT INBOX, FETCH 1:* (UID FLAGS RFC822.SIZE headers),
  FETCH of BODIES whole messages, STORE +FLAGS and -FLAGS on them, LOGOUT

against one server, over plain TCP on loopback. A session is one "round"; the
figure is rounds per second over all clients, and the mean time of each step.
The client only frames responses (it looks for its tagged line and counts
FETCH lines), so it costs far less than the servers it measures.

Usage: imapload.py HOST PORT USER PASSWORD CLIENTS ROUNDS MESSAGES BODIES
Prints one JSON object.
"""
import json
import multiprocessing
import socket
import sys
import time

STEPS = ["login", "select", "fetch_headers", "fetch_bodies", "store_flags", "logout"]


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=60)
        self.buf = b""
        self.n = 0
        self.read_line()

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        self.buf += chunk

    def cmd(self, text, marker=b" FETCH ("):
        """Send a command; return (tagged line, count of untagged FETCH lines
        holding `marker` (other sessions' flag changes also come as FETCH),
        EXISTS)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        fetches = 0
        exists = None
        while True:
            line = self.read_line()
            # Skip literals: {n} at the end of a line, then n octets and the
            # rest of the response; `line` keeps the response's first part.
            part = line
            while part.endswith(b"}") and b"{" in part:
                n = int(part[part.rindex(b"{") + 1:-1])
                while len(self.buf) < n:
                    self.fill()
                self.buf = self.buf[n:]
                part = self.read_line()
            if line.startswith(b"* ") and b" FETCH (" in line and marker in line:
                fetches += 1
            elif line.startswith(b"* ") and line.endswith(b" EXISTS"):
                exists = int(line.split()[1])
            elif line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text!r}: {line!r}")
                return line, fetches, exists


def client(args):
    host, port, user, password, rounds, messages, bodies, idx = args
    times = {s: 0.0 for s in STEPS}
    done = 0
    for r in range(rounds):
        t = time.perf_counter()
        c = Conn(host, port)
        c.cmd(f"LOGIN {user} {password}")
        t, t0 = time.perf_counter(), t
        times["login"] += t - t0
        _, _, exists = c.cmd("SELECT INBOX")
        if exists != messages:
            raise RuntimeError(f"SELECT saw {exists} messages, expected {messages}")
        t, t0 = time.perf_counter(), t
        times["select"] += t - t0
        _, n, _ = c.cmd(
            "FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])", b"RFC822.SIZE"
        )
        if n != messages:
            raise RuntimeError(f"header FETCH returned {n} messages, expected {messages}")
        t, t0 = time.perf_counter(), t
        times["fetch_headers"] += t - t0
        first = 1 + ((idx * rounds + r) * bodies) % max(1, messages - bodies)
        span = f"{first}:{first + bodies - 1}"
        _, n, _ = c.cmd(f"FETCH {span} (BODY.PEEK[])", b"BODY[]")
        if n != bodies:
            raise RuntimeError(f"body FETCH returned {n}, expected {bodies}")
        t, t0 = time.perf_counter(), t
        times["fetch_bodies"] += t - t0
        c.cmd(f"STORE {span} +FLAGS.SILENT (\\Flagged)")
        c.cmd(f"STORE {span} -FLAGS.SILENT (\\Flagged)")
        t, t0 = time.perf_counter(), t
        times["store_flags"] += t - t0
        c.cmd("LOGOUT")
        c.s.close()
        t, t0 = time.perf_counter(), t
        times["logout"] += t - t0
        done += 1
    return done, times


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    clients, rounds, messages, bodies = (int(x) for x in sys.argv[5:9])
    jobs = [(host, port, user, password, rounds, messages, bodies, i) for i in range(clients)]
    start = time.perf_counter()
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(client, jobs)
    elapsed = time.perf_counter() - start
    total = sum(r[0] for r in results)
    mean = {s: round(1000 * sum(r[1][s] for r in results) / total, 3) for s in STEPS}
    print(json.dumps({
        "clients": clients, "rounds_per_client": rounds, "messages": messages, "bodies_per_round": bodies,
        "seconds": round(elapsed, 3), "rounds": total, "rounds_per_s": round(total / elapsed, 3),
        "mean_ms": mean,
    }))


if __name__ == "__main__":
    main()
