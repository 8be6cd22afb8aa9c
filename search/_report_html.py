"""Draws :class:`~devicefit.search._report.ReportData` as one self-contained HTML page.

Everything is inline: the style, the plots (SVG drawn here), and a short script that highlights one
candidate across plots and table on hover and checks that the plots rendered (it writes ``ok`` or the
problems into ``<body data-selfcheck>``, which the browser test reads). No network at view time.

This module computes nothing about the run: scales, ticks and markup only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from devicefit.search._report import DeviceFront, Fallback, HypervolumeSeries, KernelBreakdown, MemberRow, Metric, ReportData

# Colours (Okabe-Ito, readable by colour-blind viewers), one meaning each.
FRONT_COLOUR = "#0072B2"
DOMINATED_COLOUR = "#9bb7d4"
INFEASIBLE_COLOUR = "#999999"
MEMBER_RING = "#D55E00"
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")

PLOT_WIDTH, PLOT_HEIGHT = 560, 340
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 20, 16, 48


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# --------------------------------------------------------------------------------------------------
# scales


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside ``[low, high]``; whole numbers if ``integer``."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = power * next(m for limit, m in ((1.5, 1), (3.0, 2), (7.0, 5), (math.inf, 10)) if raw / power <= limit)
    if integer:
        step = max(step, 1.0)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    while (first + len(ticks)) * step <= high + 1e-9 * step and len(ticks) < 60:
        ticks.append(round((first + len(ticks)) * step, 12))
    return ticks


class _Axis:
    """A linear map from the data range (widened by ``pad`` of its span on each side) to pixels, with ticks."""

    def __init__(
        self, low: float, high: float, start_px: float, end_px: float, *, pad: float = 0.06, integer: bool = False
    ) -> None:
        if high <= low:
            spread = abs(low) * 0.05 or 1.0
            low, high = low - spread, high + spread
        span = high - low
        self.low, self.high = low - pad * span, high + pad * span
        self.ticks = nice_ticks(self.low, self.high, integer=integer)
        self.start_px, self.end_px = start_px, end_px

    def __call__(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return self.start_px + share * (self.end_px - self.start_px)


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{min(decimals, 6)}f}"


def _axes(x: _Axis, y: _Axis, x_label: str, y_label: str) -> str:
    parts = []
    x_step = x.ticks[1] - x.ticks[0] if len(x.ticks) > 1 else 1.0
    y_step = y.ticks[1] - y.ticks[0] if len(y.ticks) > 1 else 1.0
    bottom, top = y.start_px, y.end_px
    left, right = x.start_px, x.end_px
    for tick in x.ticks:
        px = x(tick)
        parts.append(f'<line class="grid" x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}"/>')
        parts.append(f'<text class="tick" x="{px:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{_tick_text(tick, x_step)}</text>')
    for tick in y.ticks:
        py = y(tick)
        parts.append(f'<line class="grid" x1="{left:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6:.1f}" y="{py + 4:.1f}" text-anchor="end">{_tick_text(tick, y_step)}</text>')
    parts.append(f'<rect class="frame" x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}"/>')
    parts.append(f'<text class="label" x="{(left + right) / 2:.1f}" y="{PLOT_HEIGHT - 8}" text-anchor="middle">{_e(x_label)}</text>')
    parts.append(
        f'<text class="label" transform="translate(16,{(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    return "\n".join(parts)


def _svg_open(plot_id: str, marks: int, title: str) -> str:
    return (
        f'<svg id="{_e(plot_id)}" class="plot" data-plot="1" data-marks="{marks}" role="img" '
        f'aria-label="{_e(title)}" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">'
    )


# --------------------------------------------------------------------------------------------------
# markers


def _is_predicted(provenance: str) -> bool:
    return provenance.startswith("predicted")


def _marker(cx: float, cy: float, provenance: str, colour: str, *, css: str, key: str, tip: str, size: float = 5.5) -> str:
    """A filled circle for a measured figure, a hollow diamond for a predicted one."""
    data = f'class="mark {css}" data-key="{_e(key)}"'
    if _is_predicted(provenance):
        d = size * 1.35
        path = f"M{cx:.1f},{cy - d:.1f} L{cx + d:.1f},{cy:.1f} L{cx:.1f},{cy + d:.1f} L{cx - d:.1f},{cy:.1f} Z"
        dash = ' stroke-dasharray="2,1.5"' if "uncalibrated" in provenance else ""
        shape = f'<path {data} d="{path}" fill="#ffffff" stroke="{colour}" stroke-width="2"{dash}>'
        return f"{shape}<title>{_e(tip)}</title></path>"
    return f'<circle {data} cx="{cx:.1f}" cy="{cy:.1f}" r="{size}" fill="{colour}" stroke="#ffffff" stroke-width="1"><title>{_e(tip)}</title></circle>'


def _legend_front() -> str:
    """The legend of the front plots: shape = provenance, colour = status, ring = Pareto member."""
    items = [
        (_marker(10, 10, "measured", FRONT_COLOUR, css="legend-mark", key="", tip="measured"), "measured latency (filled circle)"),
        (_marker(10, 10, "predicted", FRONT_COLOUR, css="legend-mark", key="", tip="predicted"), "predicted latency (hollow diamond)"),
        (_marker(10, 10, "predicted (uncalibrated)", FRONT_COLOUR, css="legend-mark", key="", tip="uncalibrated"),
         "predicted by an uncalibrated profile (dashed)"),
        (f'<rect x="4" y="4" width="12" height="12" fill="{FRONT_COLOUR}"/>', "on this device's accuracy-latency front"),
        (f'<rect x="4" y="4" width="12" height="12" fill="{DOMINATED_COLOUR}"/>', "dominated on this device"),
        (f'<rect x="4" y="4" width="12" height="12" fill="{INFEASIBLE_COLOUR}"/>', "misses the budget"),
        (f'<circle cx="10" cy="10" r="7" fill="none" stroke="{MEMBER_RING}" stroke-width="2"/>', "Pareto member of the run (all objectives)"),
    ]
    cells = "".join(
        f'<span class="legend-item"><svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true">{icon}</svg>{_e(text)}</span>'
        for icon, text in items
    )
    return f'<div class="legend">{cells}</div>'


# --------------------------------------------------------------------------------------------------
# plots


def front_plot(front: DeviceFront, index: int) -> str:
    """One device's accuracy-latency plane as SVG."""
    points = front.points
    plot_id = f"front-{index}"
    title = f"accuracy against latency on {front.device}"
    if not points:
        return f'<p class="empty">No candidate was evaluated on {_e(front.device)}.</p>'
    x = _Axis(min(p.latency_ms for p in points), max(p.latency_ms for p in points), MARGIN_LEFT, PLOT_WIDTH - MARGIN_RIGHT)
    y = _Axis(min(p.accuracy for p in points), max(p.accuracy for p in points), PLOT_HEIGHT - MARGIN_BOTTOM, MARGIN_TOP)
    kinds = sorted(front.provenance_counts)
    x_label = f"latency on {front.device} (ms; " + ", ".join(kinds) + ")"
    parts = [_svg_open(plot_id, len(points), title), _axes(x, y, x_label, "validation accuracy (fraction)")]
    best = sorted((p for p in points if p.on_device_front), key=lambda p: p.latency_ms)
    if len(best) > 1:
        steps = [f"{x(best[0].latency_ms):.1f},{y(best[0].accuracy):.1f}"]
        for previous, point in zip(best, best[1:]):
            steps.append(f"{x(point.latency_ms):.1f},{y(previous.accuracy):.1f}")
            steps.append(f"{x(point.latency_ms):.1f},{y(point.accuracy):.1f}")
        parts.append(f'<polyline class="front-line" points="{" ".join(steps)}" fill="none" stroke="{FRONT_COLOUR}" stroke-width="1.5"/>')
    ordered = sorted(points, key=lambda p: (p.on_device_front, p.member))  # front points drawn last, on top
    for point in ordered:
        colour = INFEASIBLE_COLOUR if not point.feasible else FRONT_COLOUR if point.on_device_front else DOMINATED_COLOUR
        cx, cy = x(point.latency_ms), y(point.accuracy)
        if point.member:
            parts.append(f'<circle class="member-ring" data-key="{_e(point.key)}" cx="{cx:.1f}" cy="{cy:.1f}" r="9.5" '
                         f'fill="none" stroke="{MEMBER_RING}" stroke-width="2"/>')
        status = "misses the budget" if not point.feasible else "on this device's front" if point.on_device_front else "dominated"
        tip = (f"{point.key} (trial {point.trial}): accuracy {point.accuracy:.4f}, {point.latency_ms:.3f} ms "
               f"{point.provenance}; {status}" + ("; Pareto member" if point.member else ""))
        parts.append(_marker(cx, cy, point.provenance, colour, css="predicted" if _is_predicted(point.provenance) else "measured",
                             key=point.key, tip=tip))
    parts.append("</svg>")
    return "\n".join(parts)


def hypervolume_plot(series: Sequence[HypervolumeSeries]) -> str:
    """The hypervolume histories as step lines, one per series."""
    if not series:
        return '<p class="empty">No feasible candidate yet: there is no hypervolume to draw.</p>'
    trials = [t for s in series for t in s.trials]
    x = _Axis(min(trials), max(trials), MARGIN_LEFT, PLOT_WIDTH - MARGIN_RIGHT, pad=0.03, integer=True)
    y = _Axis(0.0, 1.0, PLOT_HEIGHT - MARGIN_BOTTOM, MARGIN_TOP, pad=0.02)
    marks = sum(len(s.values) for s in series)
    parts = [_svg_open("hypervolume", marks, "hypervolume history"),
             _axes(x, y, "trial number", "hypervolume (share of the box)")]
    for index, item in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        steps = []
        for position, (trial, value) in enumerate(zip(item.trials, item.values)):
            if position:
                steps.append(f"{x(trial):.1f},{y(item.values[position - 1]):.1f}")
            steps.append(f"{x(trial):.1f},{y(value):.1f}")
        parts.append(f'<polyline class="series" points="{" ".join(steps)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for trial, value in zip(item.trials, item.values):
            parts.append(f'<circle class="mark" cx="{x(trial):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}">'
                         f"<title>{_e(item.name)}: {value:.4f} after trial {trial}</title></circle>")
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend-item"><svg width="20" height="20" aria-hidden="true"><line x1="2" y1="10" x2="18" y2="10" '
        f'stroke="{SERIES_COLOURS[i % len(SERIES_COLOURS)]}" stroke-width="3"/></svg>{_e(s.name)}: '
        f"{s.values[-1]:.4f} after {len(s.values)} feasible candidates; latencies {_e(_kinds(s.latency_provenance))}</span>"
        for i, s in enumerate(series)
    )
    return "\n".join(parts) + f'<div class="legend">{legend}</div>'


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


def breakdown_plot(item: KernelBreakdown, index: int) -> str:
    """Horizontal bars: milliseconds per kernel type of one member on one device."""
    kernels = list(item.kernels)
    row_height, top, left, right = 20, 8, 150, PLOT_WIDTH - 140
    height = top + row_height * len(kernels) + 8
    largest = max((ms for _, ms in kernels), default=1.0) or 1.0
    total = sum(ms for _, ms in kernels) or 1.0
    title = f"latency per kernel type of {item.key} on {item.device} ({item.provenance})"
    parts = [
        f'<svg id="kernels-{index}" class="plot" data-plot="1" data-marks="{len(kernels)}" role="img" aria-label="{_e(title)}" '
        f'viewBox="0 0 {PLOT_WIDTH} {height}" width="{PLOT_WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for row, (name, ms) in enumerate(kernels):
        y = top + row * row_height
        width = (right - left) * ms / largest
        fill = "#ffffff" if _is_predicted(item.provenance) else FRONT_COLOUR
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(name)}</text>')
        parts.append(f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(width, 1):.1f}" height="{row_height - 6}" '
                     f'fill="{fill}" stroke="{FRONT_COLOUR}" stroke-width="1.5"><title>{_e(name)}: {ms:.4f} ms '
                     f"({item.provenance})</title></rect>")
        parts.append(f'<text class="tick" x="{left + width + 6:.1f}" y="{y + 14}">{ms:.3f} ms ({100 * ms / total:.0f}%)</text>')
    parts.append("</svg>")
    caption = (f"ms per inference, {item.provenance}: the kernels add up to {total:.3f} ms of the whole model's "
               f"{item.latency_ms:.3f} ms")
    return "\n".join(parts) + f'<div class="caption"><small>{_e(caption)}</small></div>'


# --------------------------------------------------------------------------------------------------
# tables


def format_value(value: float | None, unit: str) -> str:
    """A figure as the table shows it (its unit is in the column header)."""
    if value is None:
        return "—"
    if unit == "fraction":
        return f"{value:.4f}"
    if unit == "ms":
        return f"{value:.3f}"
    if unit in ("bytes", "count"):
        return f"{int(round(value)):,}"
    return f"{value:g}"


def members_table(members: Sequence[MemberRow]) -> str:
    """Every Pareto member with every metric, its unit (in the header) and its source (under the value)."""
    if not members:
        return '<p class="empty">No Pareto member: no evaluated candidate met the budget.</p>'
    columns: dict[str, str] = {}
    for member in members:
        for metric in member.metrics:
            columns.setdefault(metric.name, metric.unit)
    head = "".join(f"<th>{_e(name)}<br><small>[{_e(unit)}]</small></th>" for name, unit in columns.items())
    rows = []
    for member in members:
        by_name: dict[str, Metric] = {metric.name: metric for metric in member.metrics}
        cells = []
        for name, unit in columns.items():
            metric = by_name.get(name)
            if metric is None:
                cells.append('<td class="na">—<br><small>not recorded</small></td>')
            else:
                cells.append(f"<td>{format_value(metric.value, unit)}<br><small>{_e(metric.source)}</small></td>")
        rows.append(
            f'<tr data-key="{_e(member.key)}"><td class="key"><code>{_e(member.key)}</code><br><small>trial {member.trial}: '
            f"{_e(member.description)}</small></td>{''.join(cells)}</tr>"
        )
    return (
        '<div class="scroll"><table class="members"><thead><tr><th>candidate</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def fallback_table(fallbacks: Sequence[Fallback]) -> str:
    """Per member and device: which ops stay on the accelerator and which fall back to the CPU."""
    rows = []
    for item in fallbacks:
        cpu = ", ".join(f"{op} x{count}" for op, count in sorted(item.cpu_ops.items())) or "none: every op runs on the accelerator"
        accelerator = (
            "not recorded" if item.accelerator_ops is None
            else ", ".join(f"{op} x{count}" for op, count in sorted(item.accelerator_ops.items())) or "none"
        )
        rows.append(f'<tr data-key="{_e(item.key)}"><td><code>{_e(item.key)}</code></td><td>{_e(item.device)}</td>'
                    f'<td class="fallback">{_e(cpu)}</td><td>{_e(accelerator)}</td></tr>')
    return ('<table class="fallbacks"><thead><tr><th>candidate</th><th>device</th><th>falls back to the CPU '
            '(op type x ops)</th><th>runs on the accelerator</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _facts(data: ReportData) -> str:
    counts = data.trial_counts
    trials = (f"{counts.get('complete', 0)} evaluated, {counts.get('duplicates', 0)} duplicates, "
              f"{counts.get('failed', 0)} failed, {counts.get('rejected', 0)} rejected, "
              f"{counts.get('interrupted', 0)} interrupted, {counts.get('running', 0)} running")
    units = {front.device: front.unit for front in data.fronts}
    devices = ", ".join(f"{d} ({units.get(d) or 'unit unknown'})" for d in data.devices)
    objectives = ", ".join(f"{o.name} [{o.unit}] ({o.direction})" for o in data.objectives)
    teacher = "not recorded" if data.teacher_accuracy is None else f"{data.teacher_accuracy:.4f} (validation split)"
    rows = [("task", data.task or "not recorded"), ("study", data.study_name), ("storage", data.storage or "—"),
            ("devices", devices), ("objectives", objectives), ("teacher accuracy", teacher), ("budget", data.budget),
            ("trials", trials), ("generated", data.generated)]
    return '<table class="facts">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


# --------------------------------------------------------------------------------------------------
# the page

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto;
       max-width: 1220px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 4px; }
table { border-collapse: collapse; } th, td { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: left;
       vertical-align: top; }
table.facts th { color: #555; font-weight: 600; width: 150px; }
table.members td, table.members th { text-align: right; white-space: nowrap; }
table.members td.key, table.members th:first-child { text-align: left; }
small { color: #666; } code { font-size: 12px; } .scroll { overflow-x: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; } figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.plot { background: #fff; border: 1px solid #e3e3e3; }
svg .grid { stroke: #eee; } svg .frame { fill: none; stroke: #bbb; }
svg .tick { font-size: 11px; fill: #555; } svg .label { font-size: 12px; fill: #333; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 6px 0 0; font-size: 12px; color: #333; }
.legend-item { display: inline-flex; align-items: center; gap: 4px; }
.notes li { margin: 2px 0; } .empty { color: #666; font-style: italic; }
.hl { stroke: #000 !important; stroke-width: 3 !important; } tr.hl td { background: #fff3d6; }
td.fallback { color: #a33; } .caption { max-width: 560px; }
"""

SCRIPT = """
(function () {
  var problems = [];
  var plots = document.querySelectorAll('svg[data-plot]');
  for (var i = 0; i < plots.length; i++) {
    var svg = plots[i], box = svg.getBoundingClientRect();
    var want = parseInt(svg.getAttribute('data-marks'), 10), got = svg.querySelectorAll('.mark').length;
    if (!(box.width > 0 && box.height > 0)) { problems.push(svg.id + ' has no size'); }
    if (got !== want) { problems.push(svg.id + ' draws ' + got + ' marks, expected ' + want); }
  }
  document.body.setAttribute('data-plots', String(plots.length));
  document.body.setAttribute('data-selfcheck', problems.length ? 'fail: ' + problems.join('; ') : 'ok');
  function mark(key, on) {
    var same = document.querySelectorAll('[data-key="' + key + '"]');
    for (var j = 0; j < same.length; j++) { same[j].classList.toggle('hl', on); }
  }
  var keyed = document.querySelectorAll('[data-key]');
  for (var k = 0; k < keyed.length; k++) {
    (function (el) {
      var key = el.getAttribute('data-key');
      if (!key) { return; }
      el.addEventListener('mouseenter', function () { mark(key, true); });
      el.addEventListener('mouseleave', function () { mark(key, false); });
    })(keyed[k]);
  }
})();
"""


def render_html(data: ReportData) -> str:
    """The whole page."""
    fronts = "".join(
        f"<figure><figcaption>{_e(front.device)}</figcaption>{front_plot(front, i)}</figure>"
        for i, front in enumerate(data.fronts)
    ) or '<p class="empty">No device.</p>'
    notes = "".join(f"<li>{_e(note)}</li>" for note in data.notes)
    if data.breakdowns:
        breakdowns = '<div class="plots">' + "".join(
            f"<figure><figcaption><code>{_e(b.key)}</code> on {_e(b.device)} ({_e(b.provenance)})</figcaption>"
            f"{breakdown_plot(b, i)}</figure>"
            for i, b in enumerate(data.breakdowns)
        ) + "</div>"
    else:
        breakdowns = ('<p class="empty">No per-kernel latency was recorded for these models: their latency was measured '
                      "as a whole on the device (a per-kernel breakdown comes with latency predicted from a device "
                      "profile).</p>")
    npu_devices = [front.device for front in data.fronts if front.unit == "npu"]
    if data.fallbacks:
        fallbacks = fallback_table(data.fallbacks)
    elif npu_devices:
        fallbacks = (f'<p class="empty">The records of {_e(", ".join(npu_devices))} do not say which ops fall back to the '
                     "CPU.</p>")
    elif all(front.unit is not None for front in data.fronts):
        fallbacks = '<p class="empty">No device of this run runs the model on an NPU: nothing can fall back.</p>'
    else:
        fallbacks = '<p class="empty">The records of this run do not say which ops fall back to the CPU.</p>'
    hv_series = "".join(
        f"<li>{_e(s.name)}: objectives {_e('; '.join(s.objectives))}; box from "
        f"{_e(', '.join(f'{v:.4g}' for v in s.ideal))} (best seen) to {_e(', '.join(f'{v:.4g}' for v in s.reference))} "
        "(reference)</li>"
        for s in data.hypervolume
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title>
<style>{STYLE}</style>
</head>
<body data-selfcheck="pending">
<h1>{_e(data.title)}</h1>
{_facts(data)}
<ul class="notes">{notes}</ul>
<h2>Pareto front per device: accuracy against latency</h2>
{_legend_front()}
<div class="plots">{fronts}</div>
<h2>Hypervolume history</h2>
{hypervolume_plot(data.hypervolume)}
<p><small>{_e(data.hypervolume_method)}.</small></p>
<ul><small>{hv_series}</small></ul>
<h2>Pareto members: every metric, its unit and its source</h2>
{members_table(data.members)}
<h2>Latency per kernel type of the Pareto members</h2>
{breakdowns}
<h2>Ops that fall back from the NPU to the CPU</h2>
{fallbacks}
<script>{SCRIPT}</script>
</body>
</html>
"""
