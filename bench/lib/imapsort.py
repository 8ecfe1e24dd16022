#!/usr/bin/env python3
"""SORT and THREAD for bench/imap.sh: one mailbox of discussions, built the
same for facteur and Dovecot, and the time each server takes to sort and
thread it (RFC 5256, with the DISPLAYFROM key of RFC 5957).

  imapsort.py gen DIR N
      Writes N messages DIR/000001.eml ... in mailbox order and
      DIR/manifest.json (each message's internal date, flags and Message-ID,
      and what the mailbox holds). Deterministic (a fixed seed): the same N
      gives the same octets.
  imapsort.py append HOST PORT USER PASSWORD MAILBOX DIR [--rss-pid PID]
      CREATE MAILBOX, then APPEND every message with its flags and internal
      date, in order, on one connection. Prints one JSON object.
  imapsort.py maildir DIR MAILDIR
      Copies the messages into the Maildir folder MAILDIR (cur/, one file
      each, named so that Dovecot's filename order is the mailbox order; the
      file time is the internal date, which is how Maildir keeps it).
  imapsort.py time HOST PORT USER PASSWORD MAILBOX DIR REPS ANSWERS
                   [--rss-pid PID | --rss-peer]
      One connection: LOGIN, SELECT, a check that the mailbox holds the
      messages of DIR in order with their internal dates, SORT_WARMUP
      (environment, default 2) untimed rounds of every command, then REPS
      rounds of every command (round-robin), each timed from the command
      sent to its tagged OK read. The answers go to the file ANSWERS;
      figures as one JSON object on stdout.
      --rss-pid samples VmRSS of that process every 20 ms throughout;
      --rss-peer samples the process holding the server end of the
      connection (Dovecot's imap process).
  imapsort.py report DIR WORK RSS_MAX_MB
      Reads WORK/sort-{facteur,dovecot}.json (figures of `time`),
      WORK/sort-load-*.json (of `append` and `maildir`) and
      WORK/sort-answers-*.json, compares the two servers' answers and prints
      one JSON object: the figures, the ratios Dovecot/facteur, the
      differences, and "problems" (a wrong count, a peak RSS of facteur
      above RSS_MAX_MB) that fail the run.
  imapsort.py summary FIGURES.json      one line of `time` figures
  imapsort.py table RESULTS.json        the table bench/imap.sh prints

Python standard library only; plain TCP on loopback.
"""
import base64
import bisect
import datetime
import json
import os
import random
import re
import shutil
import socket
import statistics
import sys
import threading
import time
import unicodedata

COMMANDS = [
    "SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 SINCE 1-Jan-2020",
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
]
WARMUP = int(os.environ.get("SORT_WARMUP", "2"))
SINCE = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
UTC = datetime.timezone.utc

# --- the messages -------------------------------------------------------------

FIRST = ("Alice Bob Carol David Emma Frank Grace Hugo Irene Jack Karen Louis Maria Nina Oscar Paul "
         "Quentin Rachel Sam Tina Ulrich Victor Wendy Xavier Yann Zoe Anne Pierre Claire Marc "
         "Sophie Thomas Julie Nicolas Laura Martin Eva Lukas Sara Jonas").split()
FIRST_U = ["José", "Zoë", "Øystein", "Chloé", "François", "Jürgen", "Åsa", "Mélanie", "Søren",
           "Ígor", "Łukasz", "Dóra", "Renée", "André", "Hélène", "Ángel"]
LAST = ("Smith Martin Dubois Bernard Moreau Laurent Simon Michel Lefebvre Leroy Roux David "
        "Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller "
        "Schmidt Schneider Fischer Weber Meyer Wagner Becker Hoffmann Jones Brown Taylor Wilson "
        "Evans Thomas Johnson Roberts Walker").split()
LAST_U = ["Álvarez", "Müller", "Ødegård", "Gómez", "Nuñez", "Strauß", "Håkansson", "Lefèvre",
          "Wójcik", "Dvořák", "Ibáñez", "Çelik", "Žižek", "Öztürk"]
DOMAINS = ["example.org", "example.com", "mail.example.net", "corp.example", "uni.example.edu",
           "isp.example", "remote.test", "bench.test"]
LISTS = ["dev", "users", "announce", "infra", "security", "docs"]
# A few subjects come back in unrelated discussions (REFERENCES gathers
# those under one root, ORDEREDSUBJECT groups them); most are their own.
GENERIC = ["Hello", "Question", "Update", "Meeting notes", "Weekly report", "help", "Urgent",
           "Quick question", "Welcome", "Holiday schedule", "Can't log in", "Réunion", "Hi", "test"]
TOPICS = [
    "Build failing on {p} with {t}", "Question about {t} in {v}", "Release {v} planning: {t}",
    "Proposal: drop {t} from {v}", "Patch {n}/{m}: fix {t} on {p}", "Invoice {k}", "Your order {k}",
    "Lunch on {d}?", "{t} is slow again on {p}", "Migration of {t} to {t2}", "Review request: {t} #{k}",
    "Minutes of {d} ({c})", "Outage on {d}: {t}", "Security advisory for {t} {v}", "{t} vs {t2}",
    "Budget {v} for {t}", "Travel to {c} on {d}", "Call for papers: {c} {y}", "Ticket #{k}: {t} broken",
    "[PATCH v{m}] {t}: handle {p}", "Bug {k} - {t} crashes on {p}", "Offsite in {c}, {y}",
]
TOPICS_U = [
    "Réunion de {d} à {c}", "Über die Zustellung von {t}", "Ça ne marche plus ({k})", "Привет из {c}",
    "日本語のテスト {k}", "Zoë's patch for {t}", "Café à {c} {d}", "Straße gesperrt in {c}",
    "Ødelagt bygg på {p}", "Çalışma planı {y}", "Año nuevo en {c}", "Naïve question about {t}",
    "Årsmøte {y}", "Ärger mit {t}", "Élection du bureau {y}",
]
FILL = {
    "p": ["arm64", "Debian", "macOS", "Windows", "FreeBSD", "CI", "the mirror", "staging", "riscv64",
          "Alpine", "Fedora", "the cluster"],
    "t": ["the queue", "IMAP SORT", "DKIM", "the parser", "TLS", "quotas", "backups", "logging",
          "the API", "search", "Unicode", "the scheduler", "SPF", "greylisting", "ARC", "LMTP",
          "the web UI", "POP3", "MTA-STS", "DMARC reports", "bounces", "the spool", "sieve"],
    "t2": ["cron", "systemd", "Postfix", "Dovecot", "SQLite", "PostgreSQL", "Kubernetes", "Nomad"],
    "v": ["1.0", "1.2", "2.0", "2.1", "3.0", "2024", "2025", "0.9", "1.5", "4.0"],
    "n": ["1", "2", "3", "4", "5"],
    "m": ["2", "3", "5", "7", "9"],
    "k": [str(x) for x in range(1000, 10000, 7)],
    "d": ["Monday", "Tuesday", "Friday", "the 3rd", "March 12", "next week", "June 1", "the 21st"],
    "c": ["Lyon", "Berlin", "Oslo", "Montréal", "Kyoto", "Porto", "Zürich", "Gdańsk", "Nantes"],
    "y": ["2017", "2019", "2021", "2023", "2025"],
}
WORDS = ("mail server queue delivery people first outage backlog pace letter stamp post office "
         "thread reply sort message header date subject we should could the a to of and is it "
         "patch test build release fix").split()
ZONES = ["+0000", "+0100", "+0200", "-0500", "-0800", "+0530", "+0900", "-0300", "+1000"]
ZONE_NAMES = {"+0000": ["GMT", "UT", "UTC"], "-0500": ["EST"], "-0800": ["PST"]}
START = datetime.datetime(2016, 1, 1, tzinfo=UTC).timestamp()
END = datetime.datetime(2025, 12, 1, tzinfo=UTC).timestamp()


def qp_word(s, rnd):
    """An RFC 2047 encoded-word, Q or B."""
    b = s.encode()
    if rnd.random() < 0.5:
        return "=?UTF-8?B?" + base64.b64encode(b).decode() + "?="
    out = []
    for c in b:
        ch = chr(c)
        if ch == " ":
            out.append("_")
        elif ch.isalnum() and c < 128:
            out.append(ch)
        else:
            out.append("=%02X" % c)
    return "=?UTF-8?Q?" + "".join(out) + "?="


def ascii_fold(s):
    s = s.translate(str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "ł": "l", "Ł": "L"}))
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


class Person:
    def __init__(self, rnd, i):
        unicode = rnd.random() < 0.25
        self.first = rnd.choice(FIRST_U if unicode and rnd.random() < 0.6 else FIRST)
        self.last = rnd.choice(LAST_U if unicode else LAST)
        local = ascii_fold(f"{self.first}.{self.last}").lower()
        local = re.sub(r"[^a-z0-9.]", "", local) or f"user{i}"
        if rnd.random() < 0.2:
            local += str(rnd.randint(1, 99))
        self.addr = f"{local}@{rnd.choice(DOMAINS)}"
        name = f"{self.first} {self.last}"
        non_ascii = any(ord(c) > 127 for c in name)
        r = rnd.random()
        # How this person's mail program writes the address (it keeps to it).
        if non_ascii and r < 0.7:
            self.style = "encoded"
        elif non_ascii and r < 0.85:
            self.style = "raw8bit"
        elif r < 0.45:
            self.style = "plain"
        elif r < 0.6:
            self.style = "quoted"
        elif r < 0.7:
            self.style = "lastfirst"
        elif r < 0.8:
            self.style = "bare"
        elif r < 0.85:
            self.style = "angle"
        elif r < 0.9:
            self.style = "comment"
        else:
            self.style = "nick"
        self.nick = rnd.choice(["Jr.", "the build bot", "(work)", "via list"])

    def header(self, rnd):
        name = f"{self.first} {self.last}"
        if self.style == "plain":
            return f"{name} <{self.addr}>"
        if self.style == "quoted":
            return f'"{name}" <{self.addr}>'
        if self.style == "lastfirst":
            return f'"{self.last}, {self.first}" <{self.addr}>'
        if self.style == "bare":
            return self.addr
        if self.style == "angle":
            return f"<{self.addr}>"
        if self.style == "comment":
            return f"{self.addr} ({name})"
        if self.style == "nick":
            return f'"{name} {self.nick}" <{self.addr}>'
        if self.style == "encoded":
            return f"{qp_word(name, rnd)} <{self.addr}>"
        return f"{name} <{self.addr}>"  # raw8bit: UTF-8 in the header (RFC 6532)


def make_subject(rnd):
    r = rnd.random()
    if r < 0.12:
        return rnd.choice(GENERIC)
    if r < 0.24:
        t = rnd.choice(TOPICS_U)
    else:
        t = rnd.choice(TOPICS)
    return t.format(**{k: rnd.choice(v) for k, v in FILL.items()})


def encode_subject(s, rnd):
    if all(ord(c) < 128 for c in s) or rnd.random() < 0.3:
        return s
    # Encode the words that need it, as mail programs do.
    words = s.split(" ")
    return " ".join(qp_word(w, rnd) if any(ord(c) > 127 for c in w) else w for w in words)


def reply_subject(base, tag, rnd):
    pre = rnd.choices(["Re: ", "RE: ", "re: ", "Re: Re: ", "Re[2]: ", "AW: ", "Re:", "Re:  ", "Sv: "],
                      [55, 12, 4, 8, 3, 4, 6, 3, 2])[0]
    if tag:
        if rnd.random() < 0.7:
            return f"{pre}[{tag}] {base}"
        return f"[{tag}] {pre}{base}"
    return pre + base


def forward_subject(base, tag, rnd):
    s = f"[{tag}] {base}" if tag else base
    return rnd.choices([f"Fwd: {s}", f"Fw: {s}", f"FW: {s}", f"{s} (fwd)", f"Fwd: Re: {s}"], [50, 15, 15, 10, 10])[0]


def date_header(t, rnd):
    zone = rnd.choice(ZONES)
    sign = 1 if zone[0] == "+" else -1
    off = sign * (int(zone[1:3]) * 3600 + int(zone[3:]) * 60)
    d = datetime.datetime.fromtimestamp(t + off, UTC)
    r = rnd.random()
    base = d.strftime("%d %b %Y %H:%M:%S")
    if r < 0.8:
        return d.strftime("%a, ") + base + " " + zone
    if r < 0.9:
        return base.lstrip("0") + " " + zone
    if r < 0.95:
        return d.strftime("%a, ") + base + " " + zone + " (" + rnd.choice(["CET", "UTC", "PDT", "JST"]) + ")"
    if zone in ZONE_NAMES:
        return d.strftime("%a, ") + base + " " + rnd.choice(ZONE_NAMES[zone])
    return d.strftime("%a, ") + base + " " + zone


def fold(name, value):
    """A header field, folded before 78 columns where it has spaces."""
    line = f"{name}: "
    out = []
    for w in value.split(" "):
        if len(line) + len(w) > 76 and line.strip() and not line.endswith(": "):
            out.append(line.rstrip(" "))
            line = " "
        line += w + " "
    out.append(line.rstrip(" "))
    return "\r\n".join(out)


def gen(outdir, n):
    rnd = random.Random(5256)
    people = [Person(rnd, i) for i in range(400)]
    me = "Bench User <bench@bench.test>"
    msgs = []  # dicts: sent, arrival, headers...
    counter = 0
    stats = {"threads": 0, "thread_sizes": {}, "root_missing": 0, "no_date": 0, "bad_date": 0,
             "no_message_id": 0, "duplicates": 0, "moved": 0, "forwards": 0, "no_refs": 0,
             "only_in_reply_to": 0, "non_ascii_subject": 0}
    while len(msgs) < n:
        stats["threads"] += 1
        r = rnd.random()
        size = 1 if r < 0.45 else 2 + int(29 * rnd.random() ** 2.5)
        stats["thread_sizes"][size] = stats["thread_sizes"].get(size, 0) + 1
        tag = rnd.choice(LISTS) if rnd.random() < 0.4 else None
        base = make_subject(rnd)
        if any(ord(c) > 127 for c in base):
            stats["non_ascii_subject"] += size
        who = rnd.sample(people, rnd.randint(2, 6))
        t0 = rnd.uniform(START, END)
        drop_root = size >= 2 and rnd.random() < 0.06
        thread = []
        for k in range(size):
            counter += 1
            m = {"k": k}
            m["from"] = who[0] if k == 0 else rnd.choice(who)
            mid_domain = m["from"].addr.split("@")[1]
            m["mid"] = f"<{rnd.getrandbits(48):012x}.{counter}@{mid_domain}>"
            if k == 0:
                m["sent"] = t0
                m["subject"] = f"[{tag}] {base}" if tag else base
                m["refs"] = []
                m["parent"] = None
            else:
                # Most answer one of the last few messages.
                if rnd.random() < 0.7:
                    parent = thread[max(0, len(thread) - 3) + rnd.randrange(min(3, len(thread)))]
                else:
                    parent = rnd.choice(thread)
                m["parent"] = parent
                m["sent"] = parent["sent"] + min(rnd.expovariate(1 / 21600), 20 * 86400) + 30
                m["refs"] = parent["refs"] + ([parent["mid"]] if parent["mid"] else [])
                if len(m["refs"]) > 12 and rnd.random() < 0.5:
                    m["refs"] = m["refs"][:1] + m["refs"][-10:]
                r = rnd.random()
                if r < 0.03:
                    m["subject"] = forward_subject(base, tag, rnd)
                    stats["forwards"] += 1
                    if rnd.random() < 0.6:
                        m["refs"] = []
                        m["parent"] = None
                elif r < 0.05:
                    m["subject"] = f"{make_subject(rnd)} (was: {base})"
                else:
                    m["subject"] = reply_subject(base, tag, rnd)
            m["to"] = ([f"{tag} list <{tag}@lists.example.org>"] if tag and rnd.random() < 0.8 else
                       [f"{tag}@lists.example.org"] if tag else
                       [(m["parent"]["from"].header(rnd) if m.get("parent") else me)] +
                       ([me] if rnd.random() < 0.5 else []))
            m["cc"] = [p.header(rnd) for p in rnd.sample(who, min(len(who), rnd.randint(1, 3)))] if rnd.random() < 0.3 else []
            thread.append(m)
        for m in thread:
            if m["k"] == 0 and drop_root:
                stats["root_missing"] += 1
                continue
            msgs.append(m)
    msgs = msgs[:n]

    # Dates, identifiers and delivery.
    for m in msgs:
        m["arrival"] = m["sent"] + 2 + rnd.expovariate(1 / 120)
        if rnd.random() < 0.02:
            m["arrival"] += rnd.uniform(1, 5) * 86400  # held up somewhere
        # No arrival right around 1 Jan 2020: SINCE takes the date part of
        # the internal date, whose time zone a server may choose.
        lo = datetime.datetime(2019, 12, 30, tzinfo=UTC).timestamp()
        hi = datetime.datetime(2020, 1, 3, tzinfo=UTC).timestamp()
        if lo <= m["arrival"] < hi:
            m["arrival"] = hi + (m["arrival"] - lo)
        m["arrival"] = int(m["arrival"])
        r = rnd.random()
        if r < 0.03:
            m["date"] = None
            stats["no_date"] += 1
        elif r < 0.035:
            m["date"] = rnd.choice(["sometime last week", datetime.datetime.fromtimestamp(m["sent"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "Thu, 32 Foo 2021 99:99:99"])
            stats["bad_date"] += 1
        else:
            m["date"] = date_header(m["sent"], rnd)
        if rnd.random() < 0.003:
            m["no_mid"] = True
            stats["no_message_id"] += 1
        r = rnd.random()
        if m["parent"] is not None and r < 0.08:
            m["refs_mode"] = "irt"
            stats["only_in_reply_to"] += 1
        elif m["parent"] is not None and r < 0.11:
            m["refs_mode"] = "none"
            stats["no_refs"] += 1
        elif m["parent"] is not None and r < 0.13:
            m["refs_mode"] = "irt-comment"
        else:
            m["refs_mode"] = "both"
    # The same message delivered twice now and then (a list and a Cc).
    for m in list(msgs):
        if rnd.random() < 0.005:
            d = dict(m)
            d["arrival"] = m["arrival"] + rnd.randint(1, 600)
            d["dup_of"] = m
            msgs.append(d)
            stats["duplicates"] += 1
    msgs.sort(key=lambda m: m["arrival"])
    # Some were moved in from another folder later: their internal date is
    # old, their place in the mailbox late.
    moved = [i for i in range(len(msgs)) if rnd.random() < 0.05]
    stats["moved"] = len(moved)
    for i in reversed(moved):
        m = msgs.pop(i)
        msgs.insert(rnd.randint(i, len(msgs)), m)
    msgs = msgs[:n]

    os.makedirs(outdir)
    manifest = []
    rendered = {}
    for pos, m in enumerate(msgs, 1):
        src = m.get("dup_of", m)
        if id(src) in rendered:
            raw = rendered[id(src)]
        else:
            raw = render(src, rnd)
            rendered[id(src)] = raw
        with open(os.path.join(outdir, f"{pos:06d}.eml"), "wb") as f:
            f.write(raw)
        manifest.append({
            "internal": m["arrival"],
            "seen": pos < 0.9 * len(msgs) or rnd.random() < 0.3,
            "mid": "" if src.get("no_mid") else src["mid"],
        })
    since = sum(1 for x in manifest if x["internal"] >= SINCE)
    stats["thread_sizes"] = dict(sorted(stats["thread_sizes"].items()))
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"messages": manifest, "expected": {"all": len(manifest), "since": since},
                   "stats": stats}, f)
    print(json.dumps({"messages": len(manifest), "since_2020": since,
                      "octets": sum(os.path.getsize(os.path.join(outdir, x)) for x in os.listdir(outdir) if x.endswith(".eml")),
                      **{k: v for k, v in stats.items() if k != "thread_sizes"}}))


def render(m, rnd):
    h = []
    h.append(f"Return-Path: <{m['from'].addr}>")
    h.append(f"Received: from mx.{m['from'].addr.split('@')[1]} (mx [192.0.2.{rnd.randint(1, 254)}])\r\n"
             f"\tby imap.bench.test with ESMTPS id {rnd.getrandbits(40):010x}\r\n"
             f"\tfor <bench@bench.test>; {datetime.datetime.fromtimestamp(m['arrival'], UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}")
    h.append(f"From: {m['from'].header(rnd)}")
    h.append(fold("To", ", ".join(m["to"])))
    if m["cc"]:
        h.append(fold("Cc", ", ".join(m["cc"])))
    r = rnd.random()
    if r < 0.005:
        pass  # no Subject field
    elif r < 0.01:
        h.append("Subject: ")
    else:
        h.append(fold("Subject", encode_subject(m["subject"], rnd)))
    if m["date"] is not None:
        h.append(f"Date: {m['date']}")
    if not m.get("no_mid"):
        h.append(f"Message-ID: {m['mid']}")
    p = m["parent"]
    if p is not None and p["mid"]:
        mode = m["refs_mode"]
        if mode in ("both", "irt", "irt-comment"):
            irt = p["mid"]
            if mode == "irt-comment":
                irt += f" (message from {p['from'].first} of some day)"
            h.append(f"In-Reply-To: {irt}")
        if mode == "both" and m["refs"]:
            h.append(fold("References", " ".join(m["refs"])))
    elif m["refs"] and m["refs_mode"] == "both":
        h.append(fold("References", " ".join(m["refs"])))
    if "[" in m["subject"] and "lists.example.org" in "".join(m["to"]):
        tag = m["subject"].split("[", 1)[1].split("]", 1)[0]
        h.append(f"List-Id: {tag} list <{tag}.lists.example.org>")
    h.append("MIME-Version: 1.0")
    h.append("Content-Type: text/plain; charset=utf-8")
    h.append("Content-Transfer-Encoding: 8bit")
    lines = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 14))) for _ in range(rnd.randint(3, 40))]
    if p is not None:
        lines += ["", f"On some day, {p['from'].first} wrote:"] + ["> " + " ".join(rnd.choice(WORDS) for _ in range(10)) for _ in range(rnd.randint(1, 8))]
    return ("\r\n".join(h) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


def load_manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def imap_date(t):
    return '"' + datetime.datetime.fromtimestamp(t, UTC).strftime("%d-%b-%Y %H:%M:%S +0000") + '"'


# --- IMAP over a socket ----------------------------------------------------------

class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=300)
        self.buf = bytearray()
        self.n = 0
        self.line()

    def fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        self.buf += chunk

    def line(self):
        start = 0
        while True:
            i = self.buf.find(b"\r\n", start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            start = max(0, len(self.buf) - 1)
            self.fill()

    def send(self, text):
        self.n += 1
        tag = b"s%d" % self.n
        self.s.sendall(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return tag

    def response(self, tag):
        """The untagged responses until the tagged one, each a list of parts:
        the line's text, then (after a literal) the literal and the rest."""
        untagged = []
        while True:
            first = self.line()
            parts = [first]
            part = first
            while part.endswith(b"}") and b"{" in part:
                n = int(part[part.rindex(b"{") + 1:-1].rstrip(b"+"))
                while len(self.buf) < n:
                    self.fill()
                parts.append(bytes(self.buf[:n]))
                del self.buf[:n]
                part = self.line()
                parts.append(part)
            if first.startswith(tag + b" "):
                if not first.startswith(tag + b" OK"):
                    raise RuntimeError(f"{first!r}")
                return untagged, first
            untagged.append(parts)

    def cmd(self, text):
        return self.response(self.send(text))


# --- memory ----------------------------------------------------------------------

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peer_pid(sock):
    """The pid of the process holding the other end of this loopback TCP
    connection (root can see every process's descriptors)."""
    lport = sock.getsockname()[1]
    rport = sock.getpeername()[1]
    want_local = f"0100007F:{rport:04X}"
    want_remote = f"0100007F:{lport:04X}"
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}") == target:
                    return int(p)
        except OSError:
            continue
    return None


class Sampler:
    def __init__(self, pid):
        self.pid = pid
        self.first = rss_kb(pid) if pid else None
        self.peak = self.first or 0
        self.last = self.first
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        if pid:
            self.t.start()

    def run(self):
        while not self.stop.wait(0.02):
            self.sample()

    def sample(self):
        v = rss_kb(self.pid)
        if v is not None:
            self.last = v
            self.peak = max(self.peak, v)
        return v

    def finish(self):
        self.stop.set()
        if self.pid:
            self.t.join()
            self.sample()
        mb = lambda v: None if v is None else round(v / 1024, 1)
        return {"pid": self.pid, "before_mb": mb(self.first), "peak_mb": mb(self.peak if self.pid else None),
                "end_mb": mb(self.last)}


def opt(args, name, flag=False):
    """Take the option NAME (with its value, unless FLAG) out of ARGS."""
    if name not in args:
        return None
    i = args.index(name)
    if flag:
        del args[i]
        return True
    v = args[i + 1]
    del args[i:i + 2]
    return v


# --- append and maildir ------------------------------------------------------------

def append(args):
    pid = opt(args, "--rss-pid")
    host, port, user, password, mailbox, d = args
    man = load_manifest(d)["messages"]
    rss = Sampler(int(pid) if pid else None)
    c = Conn(host, int(port))
    c.cmd(f"LOGIN {user} {password}")
    c.cmd(f"CREATE {mailbox}")
    start = time.perf_counter()
    # One APPEND at a time (LITERAL+ saves the continuation round trip), as
    # the script's other mailbox is loaded.
    for pos, m in enumerate(man, 1):
        raw = open(os.path.join(d, f"{pos:06d}.eml"), "rb").read()
        flags = "(\\Seen) " if m["seen"] else ""
        tag = c.send(f"APPEND {mailbox} {flags}{imap_date(m['internal'])} {{{len(raw)}+}}\r\n".encode() + raw)
        c.response(tag)
    secs = time.perf_counter() - start
    c.cmd("LOGOUT")
    print(json.dumps({"appended": len(man), "seconds": round(secs, 3), "per_s": round(len(man) / secs, 1),
                      "rss": rss.finish()}))


def maildir(args):
    d, md = args
    man = load_manifest(d)["messages"]
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    start = time.perf_counter()
    for pos, m in enumerate(man, 1):
        # Dovecot gives new files their UIDs in filename order: same time
        # part, then the zero-padded position.
        dst = os.path.join(md, "cur", f"1795300000.P{pos:06d}.bench:2,{'S' if m['seen'] else ''}")
        shutil.copyfile(os.path.join(d, f"{pos:06d}.eml"), dst)
        os.utime(dst, (m["internal"], m["internal"]))
    print(json.dumps({"copied": len(man), "seconds": round(time.perf_counter() - start, 3)}))


# --- timing ------------------------------------------------------------------------

def parse_internaldate(s):
    return int(datetime.datetime.strptime(s, "%d-%b-%Y %H:%M:%S %z").timestamp())


def check_mailbox(c, man):
    """The mailbox holds the messages of the manifest, in order, with their
    internal dates: so sequence numbers mean the same on both servers."""
    untagged, _ = c.cmd("FETCH 1:* (INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    seen = {}
    for parts in untagged:
        m = re.match(rb"\* (\d+) FETCH ", parts[0])
        if not m:
            continue
        seq = int(m.group(1))
        text = b"".join(parts).decode("utf-8", "replace")
        d = re.search(r'INTERNALDATE "([^"]+)"', text)
        mid = re.search(r"Message-ID:\s*(<[^>]*>)", text, re.I)
        seen[seq] = (parse_internaldate(d.group(1).strip()) if d else None, mid.group(1) if mid else "")
    bad_order = sum(1 for i, m in enumerate(man, 1) if seen.get(i, (None, None))[1] != m["mid"])
    bad_date = sum(1 for i, m in enumerate(man, 1) if seen.get(i, (None, None))[0] != m["internal"])
    return len(seen), bad_order, bad_date


def parse_sort(untagged):
    for parts in untagged:
        if parts[0].startswith(b"* SORT"):
            return [int(x) for x in parts[0][6:].split()]
    raise RuntimeError("no SORT response")


def parse_thread(untagged):
    """The THREAD response as a list of threads, each a nested list: numbers
    are messages, a list is a branch (RFC 5256 §4)."""
    for parts in untagged:
        if parts[0].startswith(b"* THREAD"):
            text = parts[0][8:].decode()
            stack = [[]]
            for tok in re.findall(r"\(|\)|\d+", text):
                if tok == "(":
                    stack.append([])
                elif tok == ")":
                    done = stack.pop()
                    stack[-1].append(done)
                else:
                    stack[-1].append(int(tok))
            return stack[0]
    raise RuntimeError("no THREAD response")


def pctl(xs, p):
    s = sorted(xs)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def timing(args):
    pid = opt(args, "--rss-pid")
    peer = opt(args, "--rss-peer", flag=True)
    host, port, user, password, mailbox, d, reps, answers_path = args
    reps = int(reps)
    man = load_manifest(d)
    c = Conn(host, int(port))
    rss = Sampler(int(pid) if pid else None)
    c.cmd(f"LOGIN {user} {password}")
    if peer:
        rss = Sampler(peer_pid(c.s))
    t = time.perf_counter()
    untagged, _ = c.cmd(f"SELECT {mailbox}")
    select_ms = (time.perf_counter() - t) * 1000
    exists = None
    for parts in untagged:
        if parts[0].endswith(b" EXISTS"):
            exists = int(parts[0].split()[1])
    if exists != len(man["messages"]):
        raise RuntimeError(f"SELECT {mailbox}: {exists} messages, expected {len(man['messages'])}")
    t = time.perf_counter()
    fetched, bad_order, bad_date = check_mailbox(c, man["messages"])
    check_ms = (time.perf_counter() - t) * 1000
    if fetched != exists or bad_order or bad_date:
        raise RuntimeError(f"mailbox {mailbox} is not the generated one: {fetched} fetched, "
                           f"{bad_order} out of place, {bad_date} with another internal date")
    samples = {cmd: [] for cmd in COMMANDS}
    warm = {cmd: [] for cmd in COMMANDS}
    first = {}
    varied = {cmd: 0 for cmd in COMMANDS}
    rss_rounds = []
    for r in range(WARMUP + reps):
        for cmd in COMMANDS:
            tag = c.send(cmd)
            t = time.perf_counter()
            untagged, _ = c.response(tag)
            ms = (time.perf_counter() - t) * 1000
            if cmd not in first:
                first[cmd] = untagged
            elif [p[0] for p in untagged] != [p[0] for p in first[cmd]]:
                varied[cmd] += 1
            (warm if r < WARMUP else samples)[cmd].append(ms)
        if rss.pid:
            rss_rounds.append(rss.sample())
    c.cmd("LOGOUT")
    mem = rss.finish()
    mem["after_warmup_mb"] = round(rss_rounds[WARMUP - 1] / 1024, 1) if WARMUP and rss_rounds and rss_rounds[WARMUP - 1] else None
    mem["after_last_round_mb"] = round(rss_rounds[-1] / 1024, 1) if rss_rounds and rss_rounds[-1] else None
    mem["per_round_mb"] = [round(v / 1024, 1) if v else None for v in rss_rounds]
    answers = {}
    figures = {}
    for cmd in COMMANDS:
        if cmd.startswith("SORT"):
            a = parse_sort(first[cmd])
            answers[cmd] = a
            count = len(a)
        else:
            a = parse_thread(first[cmd])
            answers[cmd] = a
            count = len(re.findall(r"\d+", json.dumps(a)))
        s = samples[cmd]
        figures[cmd] = {
            "median_ms": round(statistics.median(s), 2), "p90_ms": round(pctl(s, 90), 2),
            "min_ms": round(min(s), 2), "max_ms": round(max(s), 2),
            "warmup_ms": [round(x, 2) for x in warm[cmd]], "messages": count,
            "answers_varied": varied[cmd],
        }
        if cmd.startswith("THREAD"):
            figures[cmd]["threads"] = len(a)
    with open(answers_path, "w") as f:
        json.dump(answers, f)
    print(json.dumps({"messages": exists, "reps": reps, "warmup_rounds": WARMUP,
                      "select_ms": round(select_ms, 1), "check_fetch_ms": round(check_ms, 1),
                      "commands": figures, "rss": mem}))


# --- comparison ---------------------------------------------------------------------

def thread_shape(threads):
    """For each message: its parent (0: a root; -1: under a dummy), the
    thread it is in (the first message of its thread), and the messages in
    response order. A list is a chain of messages, each the parent of the
    next, then branches under the chain's last message (or under a dummy
    if the list has no message of its own)."""
    parent, group, order = {}, {}, []

    def walk(items, up, root):
        prev, chain = up, False
        for it in items:
            if isinstance(it, int):
                parent[it], group[it] = prev, root
                order.append(it)
                prev, chain = it, True
            else:
                walk(it, prev if chain else -1, root)

    for t in threads:
        walk(t, 0, first_number(t))
    return parent, group, order


def longest_increasing(xs):
    """The length of the longest increasing subsequence (patience sorting)."""
    tops = []
    for x in xs:
        i = bisect.bisect_left(tops, x)
        if i == len(tops):
            tops.append(x)
        else:
            tops[i] = x
    return len(tops)


def first_number(x):
    while isinstance(x, list):
        x = x[0]
    return x


def subject_of(d, seq, field):
    try:
        raw = open(os.path.join(d, f"{seq:06d}.eml"), "rb").read().split(b"\r\n\r\n", 1)[0]
    except OSError:
        return "?"
    m = re.search(rb"(?im)^" + field.encode() + rb":(.*(?:\r\n[ \t].*)*)", raw)
    return m.group(1).decode("utf-8", "replace").replace("\r\n", "").strip() if m else "(none)"


def report(args):
    d, work, rss_max = args
    rss_max = float(rss_max)
    man = load_manifest(d)
    runs = {}
    for name in ("facteur", "dovecot"):
        path = os.path.join(work, f"sort-{name}.json")
        if os.path.exists(path):
            runs[name] = json.load(open(path))
            load = os.path.join(work, f"sort-load-{name}.json")
            if os.path.exists(load):
                runs[name]["load"] = json.load(open(load))
    fans = os.path.join(work, "sort-answers-facteur.json")
    dans = os.path.join(work, "sort-answers-dovecot.json")
    out = {"messages": man["expected"]["all"], "expected_since_2020": man["expected"]["since"],
           "mailbox": man["stats"], "runs": runs, "ratios": {}, "compare": {}, "problems": [], "warnings": []}
    for name, r in runs.items():
        for cmd, f in r["commands"].items():
            want = man["expected"]["since"] if "SINCE" in cmd else man["expected"]["all"]
            if f["messages"] != want:
                out["problems"].append(f"{name}: {cmd} answered {f['messages']} messages, expected {want}")
            if f["answers_varied"]:
                out["warnings"].append(f"{name}: {cmd} gave a different answer in {f['answers_varied']} of its runs")
    if "facteur" in runs:
        peaks = [runs["facteur"]["rss"].get("peak_mb"), runs["facteur"].get("load", {}).get("rss", {}).get("peak_mb")]
        peak = max((p for p in peaks if p is not None), default=None)
        runs["facteur"]["rss"]["step_peak_mb"] = peak
        if peak is not None and peak > rss_max:
            out["problems"].append(f"facteur: peak RSS {peak} MB above SORT_RSS_MAX_MB={rss_max:g}")
    if "facteur" in runs and "dovecot" in runs:
        fa, da = json.load(open(fans)), json.load(open(dans))
        for cmd in COMMANDS:
            ff, df = runs["facteur"]["commands"][cmd], runs["dovecot"]["commands"][cmd]
            out["ratios"][cmd] = {"median": round(df["median_ms"] / ff["median_ms"], 2),
                                  "p90": round(df["p90_ms"] / ff["p90_ms"], 2)}
            a, b = fa[cmd], da[cmd]
            if cmd.startswith("SORT"):
                diff = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
                cmp = {"same_count": len(a) == len(b), "positions_differ": len(diff) + abs(len(a) - len(b))}
                if len(a) != len(b):
                    out["problems"].append(f"{cmd}: facteur answered {len(a)} messages, dovecot {len(b)}")
                if diff:
                    field = {"SUBJECT": "Subject", "DISPLAYFROM": "From", "DATE": "Date", "ARRIVAL": "Date"}[
                        re.search(r"\((?:REVERSE )?(\w+)\)", cmd).group(1)]
                    # One message put elsewhere shifts every position after
                    # it: also count the fewest messages that would have to
                    # move to turn one order into the other (the length
                    # less the longest common subsequence), and show the
                    # first pairs the two servers order differently.
                    where = {x: i for i, x in enumerate(b)}
                    common = [where[x] for x in a if x in where]
                    cmp["messages_out_of_place"] = len(a) - longest_increasing(common)
                    examples = []
                    for i in range(len(a) - 1):
                        x, y = a[i], a[i + 1]
                        if x in where and y in where and where[x] > where[y]:
                            examples.append([subject_of(d, x, field), subject_of(d, y, field)])
                            if len(examples) == 3:
                                break
                    cmp["first_difference"] = {"position": diff[0] + 1, "field": field,
                                               "facteur_before_dovecot_after": examples}
                    shown = "; ".join(f"{x!r} before {y!r}" for x, y in examples)
                    out["warnings"].append(
                        f"{cmd}: the orders differ at {len(diff)} of {len(a)} positions ({cmp['messages_out_of_place']} "
                        f"messages out of place), first at {diff[0] + 1}. facteur puts ({field}) {shown}; dovecot the other way")
            else:
                pa, ga, oa = thread_shape(a)
                pb, gb, ob = thread_shape(b)
                if set(oa) != set(ob) or len(oa) != len(ob):
                    out["problems"].append(f"{cmd}: facteur threads {len(oa)} messages, dovecot {len(ob)}")
                # Same thread: the same set of messages with the same first one.
                members_a, members_b = {}, {}
                for k, v in ga.items():
                    members_a.setdefault(v, set()).add(k)
                for k, v in gb.items():
                    members_b.setdefault(v, set()).add(k)
                other_thread = sum(1 for k in oa if k in gb and members_a[ga[k]] != members_b[gb[k]])
                other_parent = sum(1 for k in oa if k in pb and pa[k] != pb[k])
                pos = sum(1 for x, y in zip(oa, ob) if x != y) + abs(len(oa) - len(ob))
                cmp = {"threads": [len(a), len(b)], "identical": a == b,
                       "messages_in_another_thread": other_thread, "messages_with_another_parent": other_parent,
                       "positions_differ": pos}
                if a != b:
                    out["warnings"].append(
                        f"{cmd}: the answers differ: {len(a)} threads from facteur, {len(b)} from dovecot; "
                        f"{other_thread} messages grouped differently, {other_parent} with another parent, "
                        f"{pos} positions differ in the order")
            out["compare"][cmd] = cmp
    print(json.dumps(out))


def short(cmd):
    return cmd.replace(" UTF-8", "")


def summary(args):
    r = json.load(open(args[0]))
    parts = [f"{short(c)} {f['median_ms']}/{f['p90_ms']}" for c, f in r["commands"].items()]
    rss = r["rss"]
    mem = f"; RSS {rss['before_mb']} -> peak {rss['peak_mb']} MB" if rss.get("pid") else ""
    print("median/p90 ms: " + "; ".join(parts) + mem)


def table(args):
    r = json.load(open(args[0]))
    s = r["sort"]
    runs = s["runs"]
    names = list(runs)
    print()
    print(f"imap sort/thread: {s['messages']} messages ({s['mailbox']['threads']} discussions), one connection after "
          f"SELECT, {next(iter(runs.values()))['reps']} timed runs of each command after "
          f"{next(iter(runs.values()))['warmup_rounds']} warm-up rounds; latency in ms")
    head = f"{'command':<42}" + "".join(f"{n + ' med':>13}{n + ' p90':>13}" for n in names)
    if len(names) == 2:
        head += f"{'ratio med':>11}{'ratio p90':>11}  answers"
    print(head)
    for cmd in COMMANDS:
        line = f"{short(cmd):<42}" + "".join(
            f"{runs[n]['commands'][cmd]['median_ms']:>13}{runs[n]['commands'][cmd]['p90_ms']:>13}" for n in names)
        if len(names) == 2:
            ra, c = s["ratios"][cmd], s["compare"][cmd]
            if cmd.startswith("SORT"):
                ans = (f"{runs['facteur']['commands'][cmd]['messages']} each, "
                       if c["same_count"] else "COUNTS DIFFER, ") + (
                    "same order" if not c["positions_differ"] else
                    f"{c['positions_differ']} positions differ, {c['messages_out_of_place']} msgs out of place")
            else:
                ans = f"{c['threads'][0]}/{c['threads'][1]} threads, " + (
                    "identical" if c["identical"] else
                    f"{c['messages_in_another_thread']} msgs grouped differently, "
                    f"{c['messages_with_another_parent']} other parent")
            line += f"{ra['median']:>11}{ra['p90']:>11}  {ans}"
        print(line)
    if len(names) == 2:
        print("ratio: dovecot/facteur latency (above 1: facteur answers faster)")
    for n in names:
        run = runs[n]
        load = run.get("load", {})
        how = (f"APPEND {load['appended']} in {load['seconds']} s (RSS {load['rss']['before_mb']} -> "
               f"{load['rss']['end_mb']} MB, peak {load['rss']['peak_mb']})" if "appended" in load else
               f"Maildir copy {load.get('copied')} in {load.get('seconds')} s" if load else "")
        rss = run["rss"]
        print(f"{n}: {how}; first SELECT {run['select_ms']} ms; "
              f"RSS of the {'facteur process' if n == 'facteur' else 'imap process'}: "
              f"{rss.get('before_mb')} MB at LOGIN, {rss.get('after_warmup_mb')} after warm-up, "
              f"{rss.get('after_last_round_mb')} after the last run, peak {rss.get('peak_mb')}")
    for w in s["warnings"]:
        print(f"imap: WARNING: {w}")
    for p in s["problems"]:
        print(f"imap: PROBLEM: {p}")


if __name__ == "__main__":
    what, rest = sys.argv[1], sys.argv[2:]
    {"gen": lambda a: gen(a[0], int(a[1])), "append": append, "maildir": maildir, "time": timing,
     "report": report, "summary": summary, "table": table}[what](rest)
