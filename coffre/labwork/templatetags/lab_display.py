"""How the lab pages show states, flags and a patient's results over time."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from functools import lru_cache

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from coffre.labwork import catalogue
from coffre.labwork.access import Point
from coffre.labwork.models import Order, ResultState, SpecimenState

register = template.Library()
S = ResultState


@register.filter
def result_state(code: str) -> str:
    try:
        return str(S(code).label)
    except ValueError:
        return code


@register.filter
def specimen_state(code: str) -> str:
    try:
        return str(SpecimenState(code).label)
    except ValueError:
        return code


@register.filter
def specimen_type(code: str) -> str:
    return catalogue.SPECIMEN_TYPES.get(code, code)


@register.filter
def bench_label(code: str) -> str:
    return catalogue.BENCHES.get(code, code)


@register.filter
def flag_class(flag: str) -> str:
    """"flag-crit" for LL/HH, "flag-out" for L/H, "" otherwise."""
    if flag in ("LL", "HH"):
        return "flag-crit"
    return "flag-out" if flag in ("L", "H") else ""


@register.simple_tag
def test_chips(row) -> SafeString:
    """A worklist row's tests as coloured codes. Built here rather than in a template
    loop, and memoised per test, state and language: a 500-specimen list has ~6,500
    of them, and the loop was most of the page."""
    language = get_language()
    return mark_safe("".join(  # noqa: S308 - every part is escaped in _chip
        _chip(test, state, language) for test, state in zip(row.tests, row.states,
                                                               strict=True)))


@lru_cache(maxsize=4096)
def _chip(test: catalogue.TestDef, state: str, language: str) -> str:
    return (f'<span class="code st-{html.escape(state)}" title="{html.escape(test.label)} — '
            f'{html.escape(result_state(state))}">{html.escape(test.code)}</span>')


_PROGRESS = [S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS, S.TECH_VALIDATED,
             S.BIO_VALIDATED, S.PUBLISHED]


@register.filter
def order_status(order: Order) -> str:
    """The state of an order's least advanced live test (prefetched results)."""
    states = [r.state for r in order.results.all() if r.state in _PROGRESS]
    if not states:
        return S.CANCELLED if order.results.all() else ""
    return min(states, key=_PROGRESS.index)


@register.filter
def published_count(order: Order) -> str:
    results = [r for r in order.results.all() if r.state != S.INVALIDATED]
    return f"{sum(r.state == S.PUBLISHED for r in results)}/{len(results)}"


# -- the chart ----------------------------------------------------------------------------

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 40, 26, 40
INSET = 18  # points stay off the axes


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low or abs(high) or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(count + 2)
            if first + i * step <= high + step * 1e-9]


def _num(value: float) -> str:
    return f"{value:g}".replace(".", ",")


@register.simple_tag
def result_chart(points: Sequence[Point], rng: catalogue.Range | None,
                 test: catalogue.TestDef) -> SafeString:
    """An SVG line chart: the reference range as a band, points coloured by flag."""
    if not points:
        return mark_safe("")
    values = [p.value for p in points]
    bounds = [b for b in (rng.low, rng.high) if rng and b is not None] if rng else []
    low, high = min(values + bounds), max(values + bounds)
    pad = (high - low) * 0.12 or abs(high) * 0.1 or 1.0
    low, high = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    times = [p.at.timestamp() for p in points]
    t0, t1 = min(times), max(times)

    def x(t: float) -> float:
        inner = plot_w - 2 * INSET
        return LEFT + INSET + (inner / 2 if t1 == t0 else (t - t0) / (t1 - t0) * inner)

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(test.label)}" xmlns="http://www.w3.org/2000/svg">']
    if rng and (rng.low is not None or rng.high is not None):
        top = y(min(rng.high, high)) if rng.high is not None else TOP
        bottom = y(max(rng.low, low)) if rng.low is not None else TOP + plot_h
        parts.append(f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{plot_w}" '
                     f'height="{max(0.0, bottom - top):.1f}"/>')
    for tick in _nice_ticks(low, high):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
                     f'text-anchor="end">{_num(tick)}</text>')
    step = max(1, math.ceil(len(points) / 8))
    for point in points[::step]:
        px = x(point.at.timestamp())
        day = timezone.localtime(point.at).strftime("%d/%m/%y")
        parts.append(f'<text class="tick" x="{px:.1f}" y="{HEIGHT - BOTTOM + 18}" '
                     f'text-anchor="middle">{day}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" '
                 f'y2="{TOP + plot_h}"/><line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                 f'y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    line = " ".join(f"{x(t):.1f},{y(p.value):.1f}" for t, p in zip(times, points,
                                                                     strict=True))
    parts.append(f'<polyline class="line" points="{line}"/>')
    for t, point in zip(times, points, strict=True):
        day = timezone.localtime(point.at).strftime("%d/%m/%Y")
        parts.append(f'<circle class="pt {flag_class(point.flag) or "flag-ok"}" '
                     f'cx="{x(t):.1f}" cy="{y(point.value):.1f}" r="4.5">'
                     f'<title>{escape(day)} : {escape(point.text)} {escape(test.unit)}'
                     f'</title></circle>')
    parts.append(f'<text class="unit" x="{LEFT - 6}" y="12" text-anchor="end">'
                 f'{escape(test.unit)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


@register.simple_tag
def get_dict_item(mapping: dict, key) -> object:
    return mapping.get(key, "")
