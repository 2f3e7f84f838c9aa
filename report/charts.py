"""Pictures as numbers: the geometry of the window's timeline and of the score sparkline, pure, for the templates
to draw as inline SVG (the templates escape every text; nothing here is markup)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 720, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 24, 16, 26
FAIL_BAND = 24  # failures sit in a band above the plot: a failure has no latency worth plotting
COLOURS = ("#0969da", "#8250df", "#1a7f37", "#bc4c00", "#6e7781", "#bf3989")


@dataclass
class Point:
    x: float
    y: float
    ok: bool
    title: str  # shown on hover: "+12.3 s GET /health 45 ms" or the failure's detail


@dataclass
class Series:
    name: str
    colour: str
    points: list[Point] = field(default_factory=list)


@dataclass
class Timeline:
    """A chart of the window: one series per probed target, the axes' ticks, where the window ended or was aborted."""

    width: int
    height: int
    series: list[Series]
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_ticks: list[tuple[float, str]]
    plot: tuple[float, float, float, float]  # left, top, right, bottom
    fail_y: float
    abort_x: float | None
    abort_label: str
    end_x: float
    shown: int  # samples drawn
    probes: int  # probes the window made (more when report.json kept only a sample)


def _nice(top: float) -> float:
    """A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least ``top``."""
    if top <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(top))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= top)


def timeline_chart(data: dict[str, Any], width: int = WIDTH, height: int = HEIGHT) -> Timeline | None:
    """The window's probes placed on a time × latency plane, or None when there is nothing to draw."""
    samples = [s for s in data.get("samples") or [] if isinstance(s, dict)]
    if not samples:
        return None
    window_s = float(data.get("window_s") or 0)
    aborted = data.get("aborted_at_s")
    last = max(float(s.get("at_s", 0)) for s in samples)
    span = max(window_s, last, float(aborted or 0), 1.0)
    ok_ms = [float(s.get("ms", 0)) for s in samples if s.get("ok")]
    top_ms = _nice(max(ok_ms, default=1.0))
    left, top, right, bottom = PAD_LEFT, PAD_TOP + FAIL_BAND, width - PAD_RIGHT, height - PAD_BOTTOM

    def x(at_s: float) -> float:
        return round(left + (right - left) * at_s / span, 1)

    def y(ms: float) -> float:
        return round(bottom - (bottom - top) * min(ms, top_ms) / top_ms, 1)

    fail_y = PAD_TOP + FAIL_BAND / 2
    series: dict[str, Series] = {}
    for s in samples:
        name = str(s.get("path", "?"))
        line = series.setdefault(name, Series(name, COLOURS[len(series) % len(COLOURS)]))
        at, ms, ok = float(s.get("at_s", 0)), float(s.get("ms", 0)), bool(s.get("ok"))
        said = f"+{at:.1f} s {name}: " + (f"{ms:.0f} ms" if ok else f"failed: {s.get('detail') or 'no detail'}")
        line.points.append(Point(x(at), y(ms) if ok else fail_y, ok, said))
    y_ticks = [(y(top_ms * i / 4), f"{top_ms * i / 4:g} ms") for i in range(5)]
    step = _nice(span / 6)
    x_ticks = [(x(i * step), f"+{i * step:g} s") for i in range(int(span // step) + 1)]
    return Timeline(width, height, list(series.values()), y_ticks, x_ticks, (left, top, right, bottom), fail_y,
                    x(float(aborted)) if aborted is not None else None,
                    f"aborted at +{float(aborted):.1f} s" if aborted is not None else "", x(window_s or span),
                    len(samples), int(data.get("probes") or len(samples)))


@dataclass
class Sparkline:
    width: int
    height: int
    points: str  # "x,y x,y …" for a polyline, oldest first
    dots: list[tuple[float, float, str, str]]  # (x, y, verdict, title)


def sparkline(entries: list[dict[str, Any]], width: int = 240, height: int = 40) -> Sparkline | None:
    """Scores of ``entries`` (newest first, as index.json lists them) drawn oldest to newest on a 0–100 scale."""
    scored = [e for e in reversed(entries) if isinstance(e.get("score"), int | float)]
    if not scored:
        return None
    pad = 4
    step = (width - 2 * pad) / max(len(scored) - 1, 1)
    dots = []
    for i, e in enumerate(scored):
        px = round(pad + i * step, 1)
        py = round(height - pad - (height - 2 * pad) * max(0.0, min(float(e["score"]), 100.0)) / 100, 1)
        dots.append((px, py, str(e.get("verdict", "")), f"{e.get('verdict', '?')} {float(e['score']):.1f} "
                                                          f"{e.get('revision', '')} {e.get('finished_at', '')}"))
    return Sparkline(width, height, " ".join(f"{px},{py}" for px, py, _, _ in dots), dots)
