"""The auditor's report as one self-contained HTML file.

Nothing is fetched: the style sheet is inline, the chart is inline SVG, and
there is no script; a Content-Security-Policy forbids loading anything else,
so the file reads the same offline, years later. It prints to PDF from a
browser (A4 or Letter, entries never split across pages, table headings
repeated) and reads in black and white: the chart tells target from
attended by shape and dash, and marks by symbol and label, not by colour.
Every field goes through ``visible`` and HTML escaping.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from iop_episodes.domain.canonical import canonical_decimal
from iop_episodes.domain.catalog import DischargeReason
from projections.escaping import visible
from projections.history_text import ShownEntry, value_text
from projections.localtime import shown
from projections.report import AuditReport, WeekMark
from projections.schedule import WeekSchedule

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SYMBOLS = {
    "step-down": "▼",
    "unexpected-positive": "✚",
    "certification-lapsed": "!",
    "other": "●",
}

STYLE = """
:root { color: #111; background: #fff; font: 10.5pt/1.4 "DejaVu Sans", Arial, sans-serif; }
body { margin: 0 auto; max-width: 60rem; padding: 1.5rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; border-bottom: 2px solid #111; margin: 1.5rem 0 .5rem;
     break-after: avoid; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #777; padding: .2rem .35rem; text-align: left; vertical-align: top; }
th { background: #e6e6e6; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
dl.summary { display: grid; grid-template-columns: max-content 1fr max-content 1fr;
             gap: .15rem 1rem; margin: 0; }
dl.summary dt { font-weight: bold; }
dl.summary dd { margin: 0; }
.verdict-ok { font-weight: bold; }
.verdict-FAILED { font-weight: bold; text-decoration: underline; }
.late { font-weight: bold; }
td.time { white-space: nowrap; }
table.entries { table-layout: fixed; }
table.entries td, table.entries th { overflow-wrap: anywhere; }
.voided td.details { text-decoration: line-through; }
.replaced { font-style: italic; }
.mono { font-family: "DejaVu Sans Mono", monospace; font-size: .85em; word-break: break-all; }
figure { margin: 0; }
figcaption { font-size: .9em; }
svg text { font: 11px "DejaVu Sans", Arial, sans-serif; fill: #111; }
svg .attended { fill: #9a9a9a; stroke: #111; stroke-width: 1; }
svg .target { fill: none; stroke: #111; stroke-width: 2; stroke-dasharray: 6 3; }
svg .target-point { fill: #fff; stroke: #111; stroke-width: 1.5; }
svg .axis { stroke: #111; stroke-width: 1; }
svg .grid { stroke: #ccc; stroke-width: 1; }
svg .mark-line { stroke: #111; stroke-width: 1; stroke-dasharray: 2 2; }
a { color: inherit; }
@page { margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; }
  a { text-decoration: none; }
  table.entries { font-size: 8.5pt; }
  svg.chart { break-inside: avoid; }
}
"""


def esc(value: object) -> str:
    """Visible (no control or bidi characters) and HTML-escaped."""
    return html.escape(visible(str(value)), quote=True)


def _time(value: datetime | str | None, timezone: str) -> str:
    return esc(shown(value, timezone))


def _time_cell(value: datetime | str, timezone: str) -> str:
    """The date above the time and offset, so narrow columns stay readable."""
    day, clock, offset = shown(value, timezone).split(" ")
    return f"{esc(day)}<br>{esc(clock)} {esc(offset)}"


def _hours(value: Decimal | None) -> str:
    return "-" if value is None else canonical_decimal(value)


# ---- the chart ---------------------------------------------------------------------

WIDTH, HEIGHT = 900, 330
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 34, 64


def _scale_top(weeks: Sequence[WeekSchedule]) -> int:
    highest = max(
        [*(w.target_hours for w in weeks), *(w.attended_hours for w in weeks), Decimal(3)]
    )
    return int((highest * Decimal("1.15") / 3).to_integral_value(rounding="ROUND_CEILING")) * 3


def _mark_group(marks: Sequence[WeekMark], x: float) -> Iterable[str]:
    for row, mark in enumerate(marks):
        symbol = SYMBOLS.get(mark.kind, SYMBOLS["other"])
        yield (
            f'<text class="mark mark-{esc(mark.kind)}" x="{x:.1f}" y="{TOP - 6 - 12 * row}" '
            f'text-anchor="middle"><title>{esc(mark.week)}: {esc(mark.label)}</title>'
            f"{symbol}</text>"
        )
    if marks:
        bottom = HEIGHT - BOTTOM
        yield f'<line class="mark-line" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{bottom}"/>'


def chart_svg(weeks: Sequence[WeekSchedule], marks: Sequence[WeekMark]) -> str:
    """Attended hours as bars, the target as a dashed step line, marks above their week."""
    if not weeks:
        return '<p class="no-chart">No plan yet: no weeks to chart.</p>'
    top = _scale_top(weeks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(weeks)

    def y(hours: Decimal) -> float:
        return TOP + plot_h - float(hours) / top * plot_h

    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
            'width="100%" role="img" aria-labelledby="chart-title">'
        ),
        '<title id="chart-title">Target against attended hours per ISO week</title>',
    ]
    parts.extend(
        f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(Decimal(tick)):.1f}" '
        f'y2="{y(Decimal(tick)):.1f}"/><text x="{LEFT - 6}" y="{y(Decimal(tick)) + 4:.1f}" '
        f'text-anchor="end">{tick}</text>'
        for tick in range(0, top + 1, 3)
    )
    by_week: dict[str, list[WeekMark]] = {}
    for mark in marks:
        by_week.setdefault(mark.week, []).append(mark)
    target_path = []
    for index, week in enumerate(weeks):
        x0 = LEFT + index * slot
        centre = x0 + slot / 2
        bar_top = y(week.attended_hours)
        parts.append(
            f'<rect class="attended" data-week="{esc(week.week)}" x="{x0 + slot * 0.2:.1f}" '
            f'y="{bar_top:.1f}" width="{slot * 0.6:.1f}" '
            f'height="{TOP + plot_h - bar_top:.1f}"><title>{esc(week.week)}: attended '
            f"{_hours(week.attended_hours)} of {_hours(week.target_hours)} h</title></rect>"
        )
        target_y = y(week.target_hours)
        target_path.append(f"{'M' if index == 0 else 'L'}{x0:.1f},{target_y:.1f}")
        target_path.append(f"L{x0 + slot:.1f},{target_y:.1f}")
        parts.append(
            f'<circle class="target-point" data-week="{esc(week.week)}" cx="{centre:.1f}" '
            f'cy="{target_y:.1f}" r="3"/>'
        )
        label = esc(week.week[2:]) + ("*" if week.partial else "")
        parts.append(
            f'<text x="{centre:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="end" '
            f'transform="rotate(-45 {centre:.1f} {HEIGHT - BOTTOM + 14})">{label}</text>'
        )
        parts.extend(_mark_group(by_week.pop(week.week, []), centre))
    parts.append(f'<path class="target" d="{" ".join(target_path)}"/>')
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>'
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" '
        f'y2="{TOP + plot_h}"/>'
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 12 '
        f'{TOP + plot_h / 2:.1f})" text-anchor="middle">hours</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def chart_legend(marks: Sequence[WeekMark]) -> str:
    kinds = sorted({mark.kind for mark in marks})
    items = [
        "grey bars: hours attended",
        "dashed line with dots: target hours",
        "* after a week: partial week (plan start or discharge)",
        *(f"{SYMBOLS.get(kind, SYMBOLS['other'])} {esc(kind)}" for kind in kinds),
    ]
    listed = "".join(f"<li>{item}</li>" for item in items)
    marked = "".join(
        f"<li>{esc(mark.week)}: {SYMBOLS.get(mark.kind, SYMBOLS['other'])} {esc(mark.label)}</li>"
        for mark in marks
    )
    return (
        f'<figcaption><ul class="legend">{listed}</ul>'
        + (f'<ul class="marks">{marked}</ul>' if marked else "")
        + "</figcaption>"
    )


# ---- sections ---------------------------------------------------------------------


def _discharge_reason(code: int | None) -> str:
    """The TEDS code with its meaning: ``1 (treatment completed)``."""
    if code is None:
        return "-"
    try:
        return f"{code} ({DischargeReason(code).name.lower().replace('_', ' ')})"
    except ValueError:
        return str(code)


def _summary(report: AuditReport) -> str:
    s, tz = report.summary, report.timezone
    pairs = [
        ("Client", esc(s.client_ref)),
        ("Episode", f'<span class="mono">{esc(s.episode_id)}</span>'),
        ("Status", esc(s.status)),
        ("Level", esc(s.level or "-")),
        ("Weekly hours", esc(_hours(s.weekly_hours))),
        ("Age group", esc(s.age_group)),
        ("Payer", esc(s.payer)),
        ("Medications in plan", esc(", ".join(s.medications) or "none")),
        ("Assessed", _time(s.assessed_at, tz)),
        ("Plan started", _time(s.plan_started_at, tz)),
        ("Discharged", _time(s.discharged_at, tz)),
        ("Discharge reason (TEDS)", esc(_discharge_reason(s.discharge_reason))),
        ("Step-downs", esc(s.step_downs)),
        ("Entries", esc(s.version)),
    ]
    cells = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in pairs)
    return (
        '<section class="summary"><h2>Client and episode</h2>'
        f'<dl class="summary">{cells}</dl></section>'
    )


def _medications(report: AuditReport) -> str:
    if not report.medications:
        return (
            '<section class="medications"><h2>Medications</h2>'
            "<p>None planned or dispensed.</p></section>"
        )
    rows = "".join(
        f"<tr><td>{esc(m.medication)}</td><td>{'yes' if m.in_plan else 'no'}</td>"
        f"<td>{m.doses_dispensed}</td><td>{m.take_home_doses}</td>"
        f"<td>{_time(m.last_dispensed_at, report.timezone)}</td></tr>"
        for m in report.medications
    )
    return (
        '<section class="medications"><h2>Medications and take-home supply</h2><table>'
        "<thead><tr><th>medication</th><th>in plan</th><th>doses dispensed</th>"
        "<th>take-home doses</th><th>last dispensed</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<p>Voided doses are not counted; amended doses count as amended.</p></section>"
    )


def _details(shown_entry: ShownEntry, timezone: str) -> str:
    parts = []
    for name, value in shown_entry.values.items():
        text = value_text(name, value, timezone)
        if name in shown_entry.replaced:
            was = value_text(name, shown_entry.replaced[name], timezone) or "none"
            parts.append(
                f"<b>{esc(name)}</b> {esc(text or 'none')} "
                f'<span class="replaced">(recorded {esc(was)})</span>'
            )
        elif text:
            parts.append(f"<b>{esc(name)}</b> {esc(text)}")
    return "<br>".join(parts)


def _links(shown_entry: ShownEntry) -> str:
    entry = shown_entry.entry
    links = []
    if entry.corrects is not None:
        links.append(f'corrects <a href="#v{entry.corrects}">v{entry.corrects}</a>')
    if entry.corrected_by:
        verb = shown_entry.status if shown_entry.status != "as recorded" else "corrected"
        targets = ", ".join(f'<a href="#v{v}">v{v}</a>' for v in entry.corrected_by)
        links.append(f"{esc(verb)} by {targets}")
    return "<br>".join(links)


def _entries(report: AuditReport) -> str:
    tz = report.timezone
    rows = []
    for shown_entry in report.entries:
        entry = shown_entry.entry
        voided = shown_entry.status == "voided"
        flags = "<br>".join(f for f, on in (("LATE", entry.late), ("VOIDED", voided)) if on)
        classes = " ".join(
            c
            for c in (
                "late" if entry.late else "",
                "voided" if shown_entry.status == "voided" else "",
            )
            if c
        )
        rows.append(
            f'<tr id="v{entry.version}" class="entry {classes}">'
            f"<td>v{entry.version}</td><td>{esc(entry.event_type)}</td>"
            f'<td class="time">{_time_cell(entry.occurred_at, tz)}</td>'
            f'<td class="time">{_time_cell(entry.recorded_at, tz)}</td>'
            f"<td>{esc(entry.actor_id)}<br>({esc(entry.actor_role)})</td>"
            f"<td>{flags}</td>"
            f'<td class="details">{_details(shown_entry, tz)}</td>'
            f"<td>{_links(shown_entry)}</td></tr>"
        )
    return (
        '<section class="entries"><h2>Every entry, in order</h2>'
        "<p>Times in the report's timezone; LATE: recorded more than 24 hours after it "
        "happened. Amended values are shown with the recorded value beside them.</p>"
        '<table class="entries"><colgroup><col style="width:5%"><col style="width:13%">'
        '<col style="width:12%"><col style="width:12%"><col style="width:11%">'
        '<col style="width:6%"><col style="width:30%"><col style="width:11%"></colgroup>'
        "<thead><tr><th>ver.</th><th>entry</th><th>occurred</th><th>recorded</th>"
        "<th>by</th><th>flags</th><th>details</th><th>corrections</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _verification(report: AuditReport) -> str:
    v = report.verification
    findings = "".join(f"<li>{esc(f)}</li>" for f in v.findings)
    if report.checkpoint is None:
        checkpoint = "<p>Checkpoint: none given for this report.</p>"
    else:
        c = report.checkpoint
        checkpoint = (
            f"<p>Covered by the checkpoint of log size {c.log_size}, root "
            f'<span class="mono">{esc(c.root_hash)}</span>, made '
            f"{_time(c.made_at, report.timezone)}, key {esc(c.key_id)}.</p>"
        )
    return (
        '<section class="verification"><h2>Verification</h2>'
        f'<p>Chain verification: <span class="verdict-{esc(v.verdict)}">{esc(v.verdict)}</span>, '
        f"{v.entries_checked} stored entries checked. Chain head at version "
        f'{report.summary.version}: <span class="mono">{esc(v.chain_head)}</span></p>'
        + (f'<ul class="findings">{findings}</ul>' if findings else "")
        + checkpoint
        + "</section>"
    )


def render_report(report: AuditReport) -> str:
    """The whole report as one HTML document."""
    s, tz = report.summary, report.timezone
    as_of = f" as recorded by {_time(report.as_of, tz)}" if report.as_of else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Episode audit report: {esc(s.client_ref)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>Episode audit report: client {esc(s.client_ref)}</h1>"
        f"<p>Episode {esc(s.episode_id)}{as_of}. Generated {_time(report.generated_at, tz)}; "
        f"times in {esc(tz)}; ISO weeks in the program's timezone "
        f"({esc(s.program_timezone)}).</p></header>"
        + _summary(report)
        + _verification(report)
        + '<section class="chart"><h2>Target against attended hours per ISO week</h2><figure>'
        + chart_svg(report.weeks, report.marks)
        + chart_legend(report.marks)
        + "</figure></section>"
        + _medications(report)
        + _entries(report)
        + "</body></html>\n"
    )
