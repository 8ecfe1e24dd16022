#!/usr/bin/env python3
"""bench/lib/loadgen.py: a mixed-class SMTP load for the scenario benchmarks.

Standard library only (smtplib and threads). Sends BULK bulk messages at full
speed over CONNECTIONS connections while INTER interpersonal and TRANS
transactional messages are spread evenly over the same period: the i-th
paced message of a class leaves once i/INTER of the bulk has been accepted.

Every message carries `X-Bench: CLASS SEQ SENT_UNIX_MS` (SENT_UNIX_MS is the
time of the attempt that was accepted). Bulk has `List-Id:` and
`Precedence: bulk`, transactional `Auto-Submitted: auto-generated`,
interpersonal none of these (and a sender and body of its own, so no
identical-content rule can call it bulk).

A 4xx reply (at connect, MAIL, RCPT or DATA) is retried after --retry-pause
seconds on a new connection, as a sending MTA would, and counted; a 5xx is
counted as failed and not retried. Prints a JSON summary on stdout. Exits 1
if any message was not accepted before --deadline.
"""

import argparse
import json
import smtplib
import socket
import sys
import threading
import time

CLASSES = ("bulk", "interpersonal", "transactional")


def now_ms():
    return int(time.time() * 1000)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {c: 0 for c in CLASSES}
        self.tempfail = {c: 0 for c in CLASSES}
        self.failed = {c: 0 for c in CLASSES}
        self.replies = {}
        self.first_ms = {c: None for c in CLASSES}
        self.last_ms = {c: None for c in CLASSES}
        self.bulk_done = 0
        self.progress = threading.Condition(self.lock)

    def ok(self, cls, t):
        with self.lock:
            self.accepted[cls] += 1
            if self.first_ms[cls] is None:
                self.first_ms[cls] = t
            self.last_ms[cls] = t
            if cls == "bulk":
                self.bulk_done += 1
                self.progress.notify_all()

    def temp(self, cls, reply):
        with self.lock:
            self.tempfail[cls] += 1
            key = reply[:60]
            self.replies[key] = self.replies.get(key, 0) + 1

    def fail(self, cls, reply):
        with self.lock:
            self.failed[cls] += 1
            key = reply[:60]
            self.replies[key] = self.replies.get(key, 0) + 1
            if cls == "bulk":
                # Progress must move on, or the paced senders wait forever.
                self.bulk_done += 1
                self.progress.notify_all()


def message(cls, seq, size, stamp):
    sender = f"news@bulk.bench.test"
    extra = ""
    if cls == "bulk":
        extra = "List-Id: <news.bulk.bench.test>\r\nPrecedence: bulk\r\n"
    elif cls == "transactional":
        sender = "no-reply@shop.bench.test"
        extra = "Auto-Submitted: auto-generated\r\n"
    else:
        sender = f"person{seq}@people.bench.test"
    rcpt = f"{cls[0]}{seq}@dest.bench.test"
    line = f"{cls} message {seq}, sent {stamp}. "
    body = (line * (size // len(line) + 1))[:size]
    body = "\r\n".join(body[i:i + 76] for i in range(0, len(body), 76))
    data = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {cls} {seq}\r\n"
        f"Message-ID: <{cls}.{seq}.{stamp}@loadgen.bench.test>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(stamp / 1000))}\r\n"
        f"X-Bench: {cls} {seq} {stamp}\r\n{extra}\r\n{body}\r\n"
    )
    return sender, rcpt, data.encode()


class Sender:
    """One SMTP connection, reopened after an error or a 421."""

    def __init__(self, args, stats):
        self.args = args
        self.stats = stats
        self.smtp = None
        self.sent_on_conn = 0

    def close(self, polite=True):
        if self.smtp is not None:
            try:
                if polite:
                    self.smtp.quit()
                else:
                    self.smtp.close()
            except (smtplib.SMTPException, OSError):
                pass
        self.smtp = None

    def connect(self):
        self.smtp = smtplib.SMTP(self.args.host, self.args.port, local_hostname="loadgen.bench.test",
                                 timeout=self.args.timeout)
        self.smtp.ehlo()
        self.sent_on_conn = 0

    def send(self, cls, seq, deadline):
        """Send one message until accepted, refused for good or past the deadline."""
        while True:
            if time.monotonic() > deadline:
                self.stats.fail(cls, "deadline passed")
                return
            stamp = now_ms()
            sender, rcpt, data = message(cls, seq, self.args.size, stamp)
            try:
                if self.smtp is None:
                    self.connect()
                self.smtp.sendmail(sender, [rcpt], data)
                self.stats.ok(cls, stamp)
                self.sent_on_conn += 1
                if self.sent_on_conn >= self.args.per_connection:
                    self.close()
                return
            except smtplib.SMTPRecipientsRefused as e:
                code, text = next(iter(e.recipients.values()))
                reply = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
            except smtplib.SMTPResponseException as e:
                code = e.smtp_code
                text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
                reply = f"{code} {text}"
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPException, OSError) as e:
                code, reply = 421, f"connection: {type(e).__name__}"
            # Failed: start from a clean connection.
            self.close(polite=False)
            if 500 <= code < 600:
                self.stats.fail(cls, reply)
                return
            self.stats.temp(cls, reply)
            time.sleep(self.args.retry_pause)


def bulk_worker(args, stats, seqs, deadline):
    s = Sender(args, stats)
    for seq in seqs:
        s.send("bulk", seq, deadline)
    s.close()


def paced_worker(args, stats, cls, count, deadline):
    """Send the i-th of `count` messages once i/count of the bulk is done."""
    s = Sender(args, stats)
    for i in range(count):
        if args.bulk > 0:
            need = (i * args.bulk) // count
            with stats.progress:
                while stats.bulk_done < need and time.monotonic() < deadline:
                    stats.progress.wait(1.0)
        s.send(cls, i + 1, deadline)
    s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bulk", type=int, default=0)
    p.add_argument("--interpersonal", type=int, default=0)
    p.add_argument("--transactional", type=int, default=0)
    p.add_argument("--connections", type=int, default=8, help="bulk connections")
    p.add_argument("--per-connection", type=int, default=100, help="messages per connection, then QUIT")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--retry-pause", type=float, default=2.0, help="seconds before retrying a 4xx")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per SMTP command")
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    args = p.parse_args()
    socket.setdefaulttimeout(args.timeout)

    stats = Stats()
    start = time.monotonic()
    start_ms = now_ms()
    deadline = start + args.deadline
    threads = []
    k = max(1, args.connections)
    for i in range(k):
        seqs = range(i + 1, args.bulk + 1, k)
        threads.append(threading.Thread(target=bulk_worker, args=(args, stats, seqs, deadline), daemon=True))
    if args.interpersonal:
        threads.append(threading.Thread(target=paced_worker,
                                        args=(args, stats, "interpersonal", args.interpersonal, deadline), daemon=True))
    if args.transactional:
        threads.append(threading.Thread(target=paced_worker,
                                        args=(args, stats, "transactional", args.transactional, deadline), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    end_ms = now_ms()
    wanted = {"bulk": args.bulk, "interpersonal": args.interpersonal, "transactional": args.transactional}
    with stats.lock:
        out = {
            "start_unix_ms": start_ms,
            "end_unix_ms": end_ms,
            "seconds": round((end_ms - start_ms) / 1000, 3),
            "wanted": wanted,
            "accepted": dict(stats.accepted),
            "retried_4xx": dict(stats.tempfail),
            "failed": dict(stats.failed),
            "first_accept_unix_ms": dict(stats.first_ms),
            "last_accept_unix_ms": dict(stats.last_ms),
            "replies": stats.replies,
        }
    json.dump(out, sys.stdout)
    print()
    return 0 if out["accepted"] == wanted else 1


if __name__ == "__main__":
    sys.exit(main())
