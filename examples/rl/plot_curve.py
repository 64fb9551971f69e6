#!/usr/bin/env python3
"""Reads trainerd rl JSON logs (one line per step) and writes an SVG reward curve plus a text
summary. Usage: plot_curve.py OUT.svg LABEL=LOG.jsonl [LABEL=LOG.jsonl ...] (stdlib only)."""
import json
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def load(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    train = [(r["step"], r["reward_mean"]) for r in rows if "reward_mean" in r]
    val = [(r["step"], r["val_exact"]) for r in rows if "val_exact" in r]
    return train, val


def main():
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    W, H, L, B = 720, 400, 60, 50
    data = [(label,) + load(p) for label, p in runs]
    xmax = max([s for _, tr, va in data for s, _ in tr + va] + [1])

    def xy(s, v):
        return L + (W - L - 20) * s / xmax, H - B - (H - B - 20) * v

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    for i in range(6):
        _, y = xy(0, i / 5)
        parts.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - 20}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">{i / 5:.1f}</text>')
    parts.append(f'<text x="{(W + L) / 2}" y="{H - 15}" text-anchor="middle">GRPO step</text>')
    for k, (label, train, val) in enumerate(data):
        c = COLORS[k % len(COLORS)]
        pts = " ".join("%.1f,%.1f" % xy(s, v) for s, v in train)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-opacity="0.45" points="{pts}"/>')
        pts = " ".join("%.1f,%.1f" % xy(s, v) for s, v in val)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2.5" points="{pts}"/>')
        for s, v in val:
            x, y = xy(s, v)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>')
        parts.append(f'<text x="{L + 10}" y="{20 + 16 * (k + 1)}" fill="{c}">{label}: thin = '
                     'sampled train reward, thick = held-out greedy exact match</text>')
    parts.append("</svg>")
    open(out, "w").write("\n".join(parts))
    for label, train, val in data:
        print(f"{label:>9}: held-out exact match " +
              " ".join(f"{s}:{v:.2f}" for s, v in val))


if __name__ == "__main__":
    main()
