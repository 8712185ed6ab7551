#!/usr/bin/env python3
"""Draws the charts of docs/benchmarks.md from the results in benches/results/*.csv.

    python3 benches/scripts/charts.py          # (re)writes docs/img/bench-*.svg
    python3 benches/scripts/charts.py --check  # exit 1 if any SVG differs from what the CSVs give

Only the standard library. The output is deterministic (fixed layout, fixed number formatting),
so --check (run by vswitch/tests/docs_charts.rs) keeps the committed SVGs equal to the CSVs.
A CSV line starting with '#' is a comment (where and how the figures were measured).
"""

import csv
import io
import os
import sys
from xml.sax.saxutils import escape

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RESULTS = os.path.join(ROOT, "benches", "results")
OUT = os.path.join(ROOT, "docs", "img")

# What each chart shows: (svg name, csv, title, label column, [panels]).
# A panel: (column, heading, unit suffix, scale, digits). Rows with an empty cell are left out.
CHARTS = [
    (
        "bench-forwarding.svg",
        "forwarding.csv",
        "64-byte UDP between two ports, one forwarding core (2026-12-05, run 214652, medians of 3)",
        "forwarder",
        [
            ("delivered_kpps", "Delivered packets/s (higher is better)", "k", 1, 0),
            ("fwd_ns_per_pkt", "Forwarder CPU ns per packet (lower is better; the kernel bridge has none)", " ns", 1, 0),
            ("tcp_gbits", "TCP, one flow (higher is better)", " Gbit/s", 1, 2),
        ],
    ),
    (
        "bench-services.svg",
        "services.csv",
        "ClusterIP Service: conntrack + DNAT + select group (2026-12-05, runs 215713 / 215948)",
        "system",
        [
            ("conn_per_s", "TCP connections/s through the ClusterIP (generator-bound; higher is better)", "k", 0.001, 1),
            ("fwd_core_us_per_conn", "Forwarder-core µs per connection (lower is better)", " µs", 1, 0),
            ("udp_kpps", "UDP capacity, established entries, packets/s (higher is better)", "k", 1, 0),
            ("tcp_gbits", "TCP through the VIP (higher is better)", " Gbit/s", 1, 2),
        ],
    ),
    (
        "bench-vxlan.svg",
        "vxlan.csv",
        "VXLAN node to node, 64-byte UDP (2026-12-05, run 214652, medians of 3)",
        "forwarder",
        [
            ("delivered_kpps", "Delivered packets/s (higher is better)", "k", 1, 0),
            ("all_cpu_ns_per_pkt", "All-CPU ns per packet, both nodes (lower is better)", " ns", 1, 0),
            ("tcp_gbits", "TCP, pods without offloads (higher is better)", " Gbit/s", 1, 2),
        ],
    ),
    (
        "bench-flowmods.svg",
        "flowmods.csv",
        "OpenFlow flow-mods, client -> switch (best of 3, 2026-11-27, commit 2ba16ad)",
        "client_switch",
        [
            ("flows_per_s_10k", "10,000 flows: flows/s (higher is better)", "k", 0.001, 0),
            ("flows_per_s_100k", "100,000 flows: flows/s (higher is better)", "k", 0.001, 0),
        ],
    ),
]

COLORS = {"ours": "#1f6fb4", "ceiling": "#7f7f7f", "other": "#e08a2c"}
LEGEND = [("ours", "vswitchd"), ("ceiling", "reference: raw ceiling / kernel"), ("other", "other switch")]

WIDTH = 980
LABEL_W = 400
BAR_MAX = WIDTH - LABEL_W - 130
BAR_H = 16
ROW_H = 22
FONT = "font-family=\"DejaVu Sans, Verdana, sans-serif\""


def read_rows(name):
    with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("".join(lines))))


def run_suffix(rows):
    """Labels get the run id when the CSV holds more than one run."""
    runs = []
    for r in rows:
        if r["run"] not in runs:
            runs.append(r["run"])
    return len(runs) > 1


def fmt(value, digits):
    return f"{value:,.{digits}f}"


def render(title, rows, label_col, panels):
    with_run = run_suffix(rows)
    out = []
    y = 34
    body = []
    for col, heading, unit, scale, digits in panels:
        data = []
        for r in rows:
            cell = r[col].strip()
            if not cell:
                continue
            label = r[label_col]
            if with_run:
                label += f" [{r['run'][-6:]}]"
            data.append((label, float(cell) * scale, r["kind"]))
        if not data:
            raise SystemExit(f"panel {col}: no values")
        top = max(v for _, v, _ in data)
        body.append(
            f'<text x="10" y="{y + 12}" font-size="13" font-weight="bold" {FONT}>{escape(heading)}</text>'
        )
        y += 22
        for label, value, kind in data:
            w = 0 if top <= 0 else round(BAR_MAX * value / top, 1)
            body.append(
                f'<text x="{LABEL_W - 8}" y="{y + 12}" font-size="12" text-anchor="end" {FONT}>{escape(label)}</text>'
            )
            body.append(
                f'<rect x="{LABEL_W}" y="{y}" width="{w}" height="{BAR_H}" fill="{COLORS[kind]}"/>'
            )
            body.append(
                f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 12}" font-size="12" {FONT}>{escape(fmt(value, digits) + unit)}</text>'
            )
            y += ROW_H
        y += 14
    # Legend.
    x = 10
    for kind, text in LEGEND:
        body.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS[kind]}"/>')
        body.append(f'<text x="{x + 17}" y="{y + 11}" font-size="12" {FONT}>{escape(text)}</text>')
        x += 30 + 7 * len(text)
    y += 24
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}">'
    )
    out.append(f'<rect width="{WIDTH}" height="{y}" fill="#ffffff"/>')
    out.append(f'<text x="10" y="20" font-size="15" font-weight="bold" {FONT}>{escape(title)}</text>')
    out.extend(body)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    unknown = [a for a in argv[1:] if a != "--check"]
    if unknown:
        print(f"usage: {argv[0]} [--check]", file=sys.stderr)
        return 2
    stale = []
    for svg, csv_name, title, label_col, panels in CHARTS:
        text = render(title, read_rows(csv_name), label_col, panels)
        path = os.path.join(OUT, svg)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read()
            except FileNotFoundError:
                current = None
            if current != text:
                stale.append(os.path.relpath(path, ROOT))
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, ROOT)}")
    if stale:
        print(
            "out of date with benches/results/*.csv (run python3 benches/scripts/charts.py): "
            + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
