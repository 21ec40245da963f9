"""budget.svg: decode ms/token and TTFT against the device-memory budget.

Written by hand, so the harness needs nothing beyond the standard library to
draw it (the GPU machine's Python may lack matplotlib). Two panels side by
side share one legend: Djinn's sweep as a line, the copy floor as a dashed
line, and single-cap systems (the other strategies, transformers offload) as
markers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional
from xml.sax.saxutils import escape

from .results import OK, Row, copy_floor_ms

PANEL_W, PANEL_H = 420, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 20, 40, 50
LEGEND_H = 24


@dataclass
class Series:
    name: str
    # (x, y) points; None values are dropped.
    points: list
    color: str
    # `line` (solid with dots), `dashed` (no dots), or `marker` (dots only).
    style: str = "line"
    marker: str = "circle"


@dataclass
class Panel:
    title: str
    y_label: str
    series: list = field(default_factory=list)


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about `ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def ticks(lo: float, hi: float) -> list:
    step = nice_step(hi - lo)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def fmt_tick(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1 or v == 0 else f"{v:.2g}"


def _marker(shape: str, x: float, y: float, color: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}"/>'
    if shape == "diamond":
        return f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z" fill="{color}"/>'
    if shape == "triangle":
        return f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 4:.1f} L{x - 5:.1f},{y + 4:.1f} Z" fill="{color}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>'


def _panel(p: Panel, ox: float, x_range: tuple, x_label: str, clip_id: str) -> list:
    pts = [(x, y) for s in p.series for (x, y) in s.points if x is not None and y is not None]
    y_hi = max((y for _, y in pts), default=1.0) * 1.1 or 1.0
    x_lo, x_hi = x_range
    w, h = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B
    sx = lambda x: ox + MARGIN_L + (x - x_lo) / (x_hi - x_lo) * w
    sy = lambda y: MARGIN_T + h - y / y_hi * h
    out = [
        f'<text x="{ox + MARGIN_L + w / 2:.1f}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{escape(p.title)}</text>',
        f'<rect x="{ox + MARGIN_L}" y="{MARGIN_T}" width="{w}" height="{h}" fill="none" stroke="#333"/>',
        f'<clipPath id="{clip_id}"><rect x="{ox + MARGIN_L}" y="{MARGIN_T}" width="{w}" height="{h}"/></clipPath>',
    ]
    for t in ticks(0, y_hi):
        y = sy(t)
        out.append(f'<line x1="{ox + MARGIN_L}" y1="{y:.1f}" x2="{ox + MARGIN_L + w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ox + MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{fmt_tick(t)}</text>')
    for t in ticks(x_lo, x_hi):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{MARGIN_T + h}" x2="{x:.1f}" y2="{MARGIN_T + h + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{MARGIN_T + h + 18}" text-anchor="middle" font-size="11">{fmt_tick(t)}</text>')
    out.append(
        f'<text x="{ox + MARGIN_L + w / 2:.1f}" y="{PANEL_H - 10}" text-anchor="middle" font-size="12">{escape(x_label)}</text>'
    )
    cy = MARGIN_T + h / 2
    out.append(
        f'<text x="{ox + 16}" y="{cy:.1f}" text-anchor="middle" font-size="12" transform="rotate(-90 {ox + 16} {cy:.1f})">{escape(p.y_label)}</text>'
    )
    for s in p.series:
        spts = sorted((x, y) for x, y in s.points if x is not None and y is not None)
        if not spts:
            continue
        if s.style in ("line", "dashed") and len(spts) > 1:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in spts)
            dash = ' stroke-dasharray="6 4"' if s.style == "dashed" else ""
            out.append(f'<polyline points="{d}" fill="none" stroke="{s.color}" stroke-width="2"{dash} clip-path="url(#{clip_id})"/>')
        if s.style != "dashed" or len(spts) == 1:
            out += [_marker(s.marker, sx(x), sy(y), s.color) for x, y in spts]
    return out


def chart(panels: list, x_label: str) -> str:
    xs = [x for p in panels for s in p.series for (x, y) in s.points if x is not None and y is not None]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    pad = (x_hi - x_lo) * 0.08 or max(1.0, abs(x_lo) * 0.2)
    x_range = (max(0.0, x_lo - pad), x_hi + pad)
    legend = []
    for p in panels:
        for s in p.series:
            if s.name not in [n for n, _ in legend] and any(y is not None for _, y in s.points):
                legend.append((s.name, s))
    width = PANEL_W * len(panels)
    rows = math.ceil(len(legend) / 3)
    height = PANEL_H + LEGEND_H * rows + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, p in enumerate(panels):
        out += _panel(p, i * PANEL_W, x_range, x_label, f"plot{i}")
    for i, (name, s) in enumerate(legend):
        x = 20 + (i % 3) * (width - 40) / 3
        y = PANEL_H + 10 + (i // 3) * LEGEND_H
        if s.style == "marker":
            out.append(_marker(s.marker, x + 12, y, s.color))
        else:
            dash = ' stroke-dasharray="6 4"' if s.style == "dashed" else ""
            out.append(f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{s.color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 30}" y="{y + 4}" font-size="12">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


GIB = 2**30
STYLE = {
    "djinn": ("#1f77b4", "circle"),
    "sync": ("#ff7f0e", "square"),
    "stream-all": ("#2ca02c", "triangle"),
    "hf-offload": ("#d62728", "diamond"),
}


def budget_chart(main_rows: list, sweep_rows: list, h2d_gbps: Optional[float]) -> str:
    """The benchmark's plot, from the rows the table shows."""
    ok = lambda r: r.status == OK and r.cap_bytes
    sweep = [r for r in sweep_rows if ok(r)]
    if not sweep:
        sweep = [r for r in main_rows if ok(r) and r.system == "djinn"]
    floor_rows = sweep_rows or [r for r in main_rows if r.system == "djinn"]
    floor = [
        (r.cap_bytes / GIB, copy_floor_ms(r.predicted.get("streamed_bytes_per_token"), h2d_gbps))
        for r in floor_rows
        if r.cap_bytes
    ]
    panels = []
    for title, label, get in (
        ("Decode", "decode ms/token", lambda r: r.decode_ms_per_token),
        ("Time to first token", "TTFT ms", lambda r: r.ttft_ms),
    ):
        p = Panel(title, label)
        color, shape = STYLE["djinn"]
        p.series.append(Series("Djinn (djinn strategy)", [(r.cap_bytes / GIB, get(r)) for r in sweep], color, "line", shape))
        p.series.append(
            Series(
                "Djinn predicted",
                [(r.cap_bytes / GIB, r.predicted.get("decode_ms_per_token" if label.startswith("decode") else "ttft_ms")) for r in sweep],
                "#9ecae1",
                "dashed",
            )
        )
        if label.startswith("decode"):
            p.series.append(Series("copy floor (streamed bytes / H2D)", floor, "#555", "dashed"))
        for name in ("sync", "stream-all", "hf-offload"):
            rows = [r for r in main_rows if r.system == name and ok(r)]
            color, shape = STYLE[name]
            p.series.append(Series(name if name != "hf-offload" else "transformers + accelerate offload",
                                   [(r.cap_bytes / GIB, get(r)) for r in rows], color, "marker", shape))
        panels.append(p)
    return chart(panels, "device-memory budget (GiB)")
