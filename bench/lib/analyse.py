#!/usr/bin/env python3
"""bench/lib/analyse.py: figures of one scenario run from facteur-sim's log.

Reads the arrival log written by `facteur-sim --log` (ARRIVAL_UNIX_MS<TAB>
CLASS SEQ SENT_UNIX_MS), the load generator's JSON summary and the sim's
stdout (its `summary refused=R peak_connections=P` line), and writes:
  - a JSON object of figures on stdout,
  - with --csv, the per-second arrivals by class (seconds from --t0-ms),
  - with --svg, a plot of that CSV (standard library only: hand-written SVG).
"""

import argparse
import json
import re
import sys

CLASSES = ("interpersonal", "transactional", "bulk")
COLOURS = {"interpersonal": "#d62728", "transactional": "#1f77b4", "bulk": "#7f7f7f", "total": "#000000"}


def pct(values, p):
    """Nearest-rank percentile of a sorted list (None when empty)."""
    if not values:
        return None
    k = max(0, min(len(values) - 1, -(-len(values) * p // 100) - 1))
    return values[int(k)]


def r3(x):
    return None if x is None else round(x, 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--sim-out", required=True)
    ap.add_argument("--rate", type=int, required=True)
    ap.add_argument("--t0-ms", type=int, required=True, help="time 0 of the per-second series")
    ap.add_argument("--return-ms", type=int, help="outage: when the downstream came back")
    ap.add_argument("--csv")
    ap.add_argument("--svg")
    ap.add_argument("--title", default="")
    a = ap.parse_args()

    with open(a.loadgen) as f:
        lg = json.load(f)
    first = {}  # (class, seq) -> (arrival_ms, sent_ms)
    dups = 0
    untagged = 0
    with open(a.log) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                continue
            arrival = int(parts[0])
            tag = parts[1].split()
            if len(tag) != 3 or tag[0] not in CLASSES:
                untagged += 1
                continue
            key = (tag[0], int(tag[1]))
            if key in first:
                dups += 1
                continue
            first[key] = (arrival, int(tag[2]))

    sim_refused = sim_peak = None
    with open(a.sim_out) as f:
        for line in f:
            m = re.match(r"summary refused=(\d+) peak_connections=(\d+)", line)
            if m:
                sim_refused, sim_peak = int(m.group(1)), int(m.group(2))

    out = {"classes": {}, "rate_limit": a.rate}
    total_missing = 0
    for cls in CLASSES:
        arrivals = sorted(v[0] for k, v in first.items() if k[0] == cls)
        lat = sorted((v[0] - v[1]) / 1000 for k, v in first.items() if k[0] == cls)
        accepted = lg["accepted"].get(cls, 0)
        missing = accepted - len(arrivals)
        total_missing += max(0, missing)
        c = {
            "accepted_by_relay": accepted,
            "arrived": len(arrivals),
            "missing": missing,
            "latency_p50_s": r3(pct(lat, 50)),
            "latency_p95_s": r3(pct(lat, 95)),
            "latency_p99_s": r3(pct(lat, 99)),
            "latency_max_s": r3(lat[-1] if lat else None),
            "first_arrival_s": r3((arrivals[0] - a.t0_ms) / 1000) if arrivals else None,
            "last_arrival_s": r3((arrivals[-1] - a.t0_ms) / 1000) if arrivals else None,
        }
        out["classes"][cls] = c
    out["duplicates"] = dups
    out["untagged"] = untagged
    out["missing"] = total_missing
    total = len(first)
    out["delivered"] = total
    out["sim_rate_refusals"] = sim_refused
    out["sim_peak_connections"] = sim_peak
    out["refusals_pct_of_messages"] = r3(100 * sim_refused / total) if sim_refused is not None and total else None

    # Bulk throughput while bulk was draining: from its first to its last arrival.
    bulk = sorted(v[0] for k, v in first.items() if k[0] == "bulk")
    every = sorted(v[0] for v in first.values())
    if len(bulk) > 1:
        span = (bulk[-1] - bulk[0]) / 1000
        all_in_span = sum(1 for t in every if bulk[0] <= t <= bulk[-1])
        out["bulk_drain_window_s"] = r3(span)
        out["bulk_msgs_per_s"] = r3(len(bulk) / span) if span > 0 else None
        out["bulk_pct_of_rate"] = r3(100 * len(bulk) / span / a.rate) if span > 0 else None
        out["all_msgs_per_s_in_window"] = r3(all_in_span / span) if span > 0 else None
        out["all_pct_of_rate_in_window"] = r3(100 * all_in_span / span / a.rate) if span > 0 else None

    # Per second, from t0.
    seconds = {}
    for (cls, _), (arrival, _) in first.items():
        s = (arrival - a.t0_ms) // 1000
        seconds.setdefault(s, {c: 0 for c in CLASSES})[cls] += 1
    lo = min(seconds) if seconds else 0
    hi = max(seconds) if seconds else 0
    rows = []
    for s in range(min(0, lo), hi + 1):
        c = seconds.get(s, {k: 0 for k in CLASSES})
        rows.append((s, c["interpersonal"], c["transactional"], c["bulk"], sum(c.values())))

    if a.return_ms is not None and every:
        ret = a.return_ms
        after = [t for t in every if t >= ret]
        out["return_to_first_delivery_s"] = r3((after[0] - ret) / 1000) if after else None
        out["return_to_drained_s"] = r3((every[-1] - ret) / 1000)
        if len(after) > 1:
            span = (after[-1] - after[0]) / 1000
            out["drain_msgs_per_s"] = r3(len(after) / span) if span > 0 else None
            out["drain_pct_of_rate"] = r3(100 * len(after) / span / a.rate) if span > 0 else None
        # The first 5-second window (from the return) whose mean reaches 90 % of the rate.
        per = {}
        for t in after:
            per[(t - ret) // 1000] = per.get((t - ret) // 1000, 0) + 1
        reach = None
        last = max(per) if per else -1
        for s in range(0, last - 3):
            if sum(per.get(s + i, 0) for i in range(5)) >= 0.9 * a.rate * 5:
                reach = s
                break
        out["reached_90pct_of_rate_s_after_return"] = reach
        for cls in CLASSES:
            arr = sorted(v[0] for k, v in first.items() if k[0] == cls)
            out["classes"][cls]["finished_s_after_return"] = r3((arr[-1] - ret) / 1000) if arr else None

    if a.csv:
        with open(a.csv, "w") as f:
            f.write("second,interpersonal,transactional,bulk,total\n")
            for r in rows:
                f.write(",".join(str(x) for x in r) + "\n")
    if a.svg:
        write_svg(a.svg, rows, a.rate, a.title, a.return_ms, a.t0_ms)
    json.dump(out, sys.stdout, indent=1)
    print()


def write_svg(path, rows, rate, title, return_ms, t0_ms):
    w, h, ml, mr, mt, mb = 900, 420, 60, 150, 40, 50
    pw, ph = w - ml - mr, h - mt - mb
    xs = [r[0] for r in rows] or [0, 1]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    ymax = max([r[4] for r in rows] + [rate]) * 1.1 or 1

    def X(s):
        return ml + (s - x0) / (x1 - x0) * pw

    def Y(v):
        return mt + ph - v / ymax * ph

    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
          f'<rect width="{w}" height="{h}" fill="white"/>',
          f'<text x="{ml}" y="20" font-size="14">{title}</text>',
          f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="black"/>',
          f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="black"/>']
    for i in range(6):
        v = ymax * i / 5
        el.append(f'<text x="{ml - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        el.append(f'<line x1="{ml}" y1="{Y(v):.1f}" x2="{ml + pw}" y2="{Y(v):.1f}" stroke="#eee"/>')
    for i in range(11):
        s = x0 + (x1 - x0) * i / 10
        el.append(f'<text x="{X(s):.1f}" y="{mt + ph + 16}" text-anchor="middle">{s:.0f}</text>')
    el.append(f'<text x="{ml + pw / 2}" y="{h - 10}" text-anchor="middle">seconds</text>')
    el.append(f'<text x="15" y="{mt + ph / 2}" transform="rotate(-90 15 {mt + ph / 2})" '
              f'text-anchor="middle">messages delivered per second</text>')
    el.append(f'<line x1="{ml}" y1="{Y(rate):.1f}" x2="{ml + pw}" y2="{Y(rate):.1f}" '
              f'stroke="green" stroke-dasharray="6,4"/>')
    el.append(f'<text x="{ml + pw + 5}" y="{Y(rate) + 4:.1f}" fill="green">rate limit {rate}/s</text>')
    if return_ms is not None:
        rs = (return_ms - t0_ms) / 1000
        el.append(f'<line x1="{X(rs):.1f}" y1="{mt}" x2="{X(rs):.1f}" y2="{mt + ph}" stroke="orange"/>')
        el.append(f'<text x="{X(rs) + 3:.1f}" y="{mt + 12}" fill="orange">downstream back</text>')
    for idx, name in ((4, "total"), (3, "bulk"), (2, "transactional"), (1, "interpersonal")):
        pts = " ".join(f"{X(r[0]):.1f},{Y(r[idx]):.1f}" for r in rows)
        el.append(f'<polyline fill="none" stroke="{COLOURS[name]}" stroke-width="1.5" points="{pts}"/>')
    for i, name in enumerate(("total", "bulk", "transactional", "interpersonal")):
        y = mt + 20 + 18 * i
        el.append(f'<line x1="{ml + pw + 10}" y1="{y}" x2="{ml + pw + 30}" y2="{y}" '
                  f'stroke="{COLOURS[name]}" stroke-width="2"/>')
        el.append(f'<text x="{ml + pw + 35}" y="{y + 4}">{name}</text>')
    el.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(el) + "\n")


if __name__ == "__main__":
    main()
