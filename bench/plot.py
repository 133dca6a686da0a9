#!/usr/bin/env python3
"""Plots a `promlake-bench compare` result (the .json beside the .md) as PNGs beside it:
<name>-ingest.png, <name>-storage.png, <name>-query.png.

    python3 bench/plot.py bench/results/2026-11-24-large.json     (needs matplotlib)
"""
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"Prometheus": "#e6522c", "promlake": "#2c7be5", "DuckDB": "#7a7a7a"}


def bars(ax, labels, values, title, unit):
    b = ax.bar(labels, values, color=[COLORS.get(l, "#999") for l in labels])
    ax.bar_label(b, fmt="%.3g")
    ax.set_title(title)
    ax.set_ylabel(unit)


def main(path):
    path = Path(path)
    r = json.loads(path.read_text())
    stem = path.with_suffix("")
    what = f"({r['size']}, {r['date']})"

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    bars(a, [x["system"] for x in r["ingest"]], [x["cpu_s_per_million"] for x in r["ingest"]],
         "Ingest CPU per sample", "CPU s per 1M samples")
    bars(b, [x["system"] for x in r["ingest"]], [x["peak_rss_mib"] for x in r["ingest"]],
         "Ingest peak RSS", "MiB")
    fig.suptitle(f"Ingest {what}")
    fig.tight_layout()
    fig.savefig(f"{stem}-ingest.png", dpi=110)

    fig, a = plt.subplots(figsize=(5, 4))
    bars(a, [x["system"] for x in r["storage"]], [x["bytes_per_sample"] for x in r["storage"]],
         f"Bytes per sample {what}", "bytes")
    fig.tight_layout()
    fig.savefig(f"{stem}-storage.png", dpi=110)

    q = r["query"]
    systems = ["Prometheus", "promlake", "DuckDB"]
    fig, a = plt.subplots(figsize=(10, 4.5))
    width = 0.27
    for i, s in enumerate(systems):
        xs = [j + (i - 1) * width for j in range(len(q))]
        b = a.bar(xs, [x[s] for x in q], width, label=s, color=COLORS[s])
        a.bar_label(b, fmt="%.3g", fontsize=7)
    a.set_xticks(range(len(q)))
    a.set_xticklabels([textwrap.fill(x["name"], 24) for x in q], fontsize=8)
    a.set_ylabel("median ms")
    a.set_yscale("log")
    a.set_title(f"Query latency {what}")
    a.legend()
    fig.tight_layout()
    fig.savefig(f"{stem}-query.png", dpi=110)
    print(f"{stem}-ingest.png {stem}-storage.png {stem}-query.png")


if __name__ == "__main__":
    main(sys.argv[1])
