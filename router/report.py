"""`router report`: seller scores and support metrics as terminal tables and an HTML page.

Pure: takes the values read from `vendors.scores` and `metrics.support` (the CLI reads them,
`streams.tools.topic_values`) and returns rich tables or a self-contained HTML document
(plotly, its JavaScript inlined: the page opens without a network).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import orjson
import plotly.graph_objects as go
from pydantic import ValidationError
from rich.table import Table

from schemas.envelope import CloudEvent
from schemas.scores import SUPPORT_DAY, VENDOR_SCORES, ScoreTier, SupportDay, VendorScores

_TIER_COLOURS = {ScoreTier.TOP: "#2e7d32", ScoreTier.STANDARD: "#1565c0",
                 ScoreTier.AT_RISK: "#c62828"}  # fmt: skip


@dataclass
class Report:
    """The latest record per vendor and per (queue, day); `skipped` counts unreadable ones."""

    vendors: dict[str, VendorScores] = field(default_factory=dict)
    days: dict[tuple[str, date], SupportDay] = field(default_factory=dict)
    skipped: int = 0

    @classmethod
    def from_values(cls, scores: Iterable[bytes], days: Iterable[bytes]) -> Report:
        """Values in topic order: a later record replaces an earlier one."""
        report = cls()
        for raw in scores:
            scored = _data(raw, VENDOR_SCORES, CloudEvent[VendorScores])
            if isinstance(scored, VendorScores):
                report.vendors[scored.vendor_id] = scored
            else:
                report.skipped += 1
        for raw in days:
            day = _data(raw, SUPPORT_DAY, CloudEvent[SupportDay])
            if isinstance(day, SupportDay):
                report.days[(day.queue, day.day)] = day
            else:
                report.skipped += 1
        return report

    def queues(self) -> list[str]:
        return sorted({queue for queue, _ in self.days})

    def latest_days(self) -> list[SupportDay]:
        latest: dict[str, SupportDay] = {}
        for (queue, _day), figures in sorted(self.days.items()):
            latest[queue] = figures
        return [latest[q] for q in sorted(latest)]

    def ranked(self) -> list[VendorScores]:
        """Scored vendors, best first (ties by id); unscored ones last."""
        return sorted(self.vendors.values(),
                      key=lambda v: (v.score is None, -(v.score or 0), v.vendor_id))  # fmt: skip


def _data(
    raw: bytes,
    event_type: str,
    model: type[CloudEvent[VendorScores]] | type[CloudEvent[SupportDay]],
) -> VendorScores | SupportDay | None:
    try:
        event = model.model_validate_json(raw)
    except (ValidationError, ValueError):
        return None
    return event.data if event.type == event_type else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def queue_table(report: Report) -> Table:
    table = Table(title="Support desks (latest day per queue)")
    for name in ("queue", "day", "opened", "FRT p50", "FRT p90", "TTR p50", "resolved",
                 "backlog", "SLA met", "CSAT", "NPS"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("queue", "day") else "right")
    for d in report.latest_days():
        table.add_row(
            d.queue, d.day.isoformat(), str(d.opened), duration(d.frt_p50), duration(d.frt_p90),
            duration(d.ttr_p50), share(d.resolution_rate), str(d.backlog),
            share(d.sla_attainment), number(d.csat_avg), number(d.nps, 0),
        )  # fmt: skip
    return table


def vendor_table(title: str, vendors: list[VendorScores]) -> Table:
    table = Table(title=title)
    for name in ("vendor", "score", "tier", "tickets 30d", "FRT p50", "FRT p90", "in time",
                 "resolved", "reopened", "SLA breach", "disputes", "lost", "CSAT"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("vendor", "tier") else "right")
    for v in vendors:
        w = v.window_30d
        table.add_row(
            v.vendor_id, number(v.score), v.tier.value, str(w.volume), duration(w.frt_p50),
            duration(w.frt_p90), share(w.answered_within), share(w.resolution_rate),
            share(w.reopen_rate), share(w.sla_breach_rate), share(w.dispute_rate),
            str(w.disputes_lost), number(w.csat_avg),
        )  # fmt: skip
    return table


def terminal_tables(report: Report, top: int) -> list[Table]:
    """Per queue, then the `top` best and the `top` worst scored vendors."""
    ranked = [v for v in report.ranked() if v.score is not None]
    best = ranked[:top]
    worst = list(reversed(ranked[-top:])) if ranked else []
    return [queue_table(report), vendor_table(f"Top {len(best)} vendors", best),
            vendor_table(f"Bottom {len(worst)} vendors", worst)]  # fmt: skip


def _figures(report: Report) -> list[tuple[str, go.Figure]]:
    figures: list[tuple[str, go.Figure]] = []
    frt = go.Figure()
    for queue in report.queues():
        days = sorted((d, f) for (q, d), f in report.days.items() if q == queue and f.opened)
        x = [d.isoformat() for d, _ in days]
        for q, dash in (("frt_p50", "solid"), ("frt_p90", "dot")):
            frt.add_scatter(name=f"{queue} {q[4:]}", x=x, mode="lines+markers",
                            line={"dash": dash},
                            y=[None if getattr(f, q) is None else getattr(f, q) / 3600
                               for _, f in days])  # fmt: skip
    frt.update_layout(yaxis_title="business hours", height=380)
    figures.append(("First-response time by queue and day (tickets opened that day)", frt))
    vendors = report.ranked()
    spread = go.Figure()
    for q, label in (("frt_p50", "p50"), ("frt_p90", "p90")):
        values = [getattr(v.window_30d, q) / 3600 for v in vendors
                  if getattr(v.window_30d, q) is not None]  # fmt: skip
        spread.add_histogram(name=f"vendor FRT {label}", x=values, opacity=0.7, nbinsx=30)
    spread.update_layout(barmode="overlay", xaxis_title="business hours (30 days)", height=380)
    figures.append(("First-response time across vendors", spread))
    over_time = go.Figure()
    backlog = go.Figure()
    for queue in report.queues():
        days = sorted((d, f) for (q, d), f in report.days.items() if q == queue)
        x = [d.isoformat() for d, _ in days]
        over_time.add_scatter(name=queue, x=x, mode="lines+markers",
                              y=[None if f.resolution_rate is None else 100 * f.resolution_rate
                                 for _, f in days])  # fmt: skip
        backlog.add_scatter(name=queue, x=x, y=[f.backlog for _, f in days], mode="lines+markers")
    over_time.update_layout(yaxis_title="% of the day's tickets resolved", height=380)
    backlog.update_layout(yaxis_title="open tickets at the end of the day", height=380)
    figures.append(("Resolution rate over time", over_time))
    figures.append(("Backlog over time", backlog))
    tiers = go.Figure()
    for tier in ScoreTier:
        scores = [v.score for v in vendors if v.tier is tier and v.score is not None]
        tiers.add_box(name=tier.value, y=scores, boxpoints="all",
                      marker_color=_TIER_COLOURS[tier])  # fmt: skip
    tiers.update_layout(yaxis_title="score", yaxis_range=[0, 100], height=380)
    figures.append(("Score distribution by tier", tiers))
    return figures


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c.header))}</th>" for c in table.columns)
    cells = [list(c.cells) for c in table.columns]
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(col[i]))}</td>" for col in cells) + "</tr>"
        for i in range(table.row_count)
    )
    title = html.escape(str(table.title or ""))
    return f"<h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def html_page(report: Report, top: int, title: str = "Support report") -> str:
    """One self-contained page: the tables and the charts, plotly.js inlined once."""
    parts = []
    for n, (heading, figure) in enumerate(_figures(report)):
        chart = figure.to_html(full_html=False, include_plotlyjs=(n == 0),
                               div_id=f"chart-{n}", config={"displaylogo": False})  # fmt: skip
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{chart}</section>")
    tables = "".join(_html_table(t) for t in terminal_tables(report, top))
    summary = (f"{len(report.vendors)} vendors, {len(report.queues())} queues, "
               f"{len(report.days)} queue-days")  # fmt: skip
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px}"
        "table{border-collapse:collapse;margin-bottom:2rem}"
        "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}"
        "th:first-child,td:first-child{text-align:left}"
        f"</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f"{tables}{''.join(parts)}</body></html>"
    )


def values_json(report: Report) -> bytes:
    """The report's records as JSON (for scripts): vendors ranked, then queue days."""
    return orjson.dumps({
        "vendors": [v.model_dump(mode="json") for v in report.ranked()],
        "days": [d.model_dump(mode="json") for _, d in sorted(report.days.items())],
    })  # fmt: skip
