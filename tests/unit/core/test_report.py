"""`router report`: the tables and the HTML page from the scores stage's records (the page is
opened in headless Chromium, which must render every chart without a console error); the
scores stage's Prometheus series."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from router.records import OutRecord
from router.report import Report, duration, html_page, terminal_tables
from router.scores.sketch import RELATIVE_ACCURACY
from streams.metrics import engine_registry
from tests.unit.core.test_scores import Run, at, opened, replied, scripted

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_DEADLINE_S = 120


def report_of(out: list[OutRecord]) -> Report:
    return Report.from_values(
        [r.value for r in out if r.topic == "vendors.scores"],
        [r.value for r in out if r.topic == "metrics.support"],
    )


def text_of(report: Report, top: int) -> str:
    console = Console(width=220, record=True, file=io.StringIO())
    for table in terminal_tables(report, top):
        console.print(table)
    return console.export_text()


def test_the_tables_show_each_queue_and_the_best_and_worst_vendors() -> None:
    report = report_of(Run().feed(scripted()).out)
    assert sorted(report.vendors) == ["acme"]
    assert report.queues() == ["dept:escalations", "vendor:acme"]
    text = text_of(report, 5)
    acme_row = next(line for line in text.splitlines() if "│ acme" in line)
    cells = [c.strip() for c in acme_row.split("│")[1:-1]]
    # vendor, score, tier, tickets, FRT p50, FRT p90, in time, resolved, reopened, SLA breach,
    # disputes, lost, CSAT
    assert cells == ["acme", "63.9", "standard", "5", "30m", "1h 30m", "60%", "60%", "33%",
                     "20%", "20%", "1", "3.5"]  # fmt: skip
    assert "Top 1 vendors" in text
    assert "Bottom 1 vendors" in text
    desk_row = next(line for line in text.splitlines() if "│ vendor:acme" in line)
    assert [c.strip() for c in desk_row.split("│")[1:-1]][:3] == ["vendor:acme", "2026-01-06", "0"]


def test_unreadable_records_are_counted_not_fatal() -> None:
    good = [r.value for r in Run().feed(scripted()).out if r.topic == "vendors.scores"]
    report = Report.from_values([b"not json", orjson.dumps({"type": "x"}), *good], [])
    assert report.skipped == 2
    assert list(report.vendors) == ["acme"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0m"), (1799, "30m"), (5400, "1h 30m"), (50 * 3600, "2d 2h")],
)
def test_durations_read_as_hours_and_minutes(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_the_page_is_self_contained() -> None:
    page = html_page(report_of(Run().feed(scripted()).out), 5)
    assert page.count('class="plotly-graph-div"') == 5
    assert re.search(r"<script[^>]+src=", page) is None  # plotly.js inlined, no CDN
    assert "<td>acme</td>" in page


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium (Debian package `chromium`) is not installed"
)
def test_the_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    page = tmp_path / "report.html"
    page.write_text(html_page(report_of(Run().feed(scripted()).out), 5), encoding="utf-8")
    shot = tmp_path / "report.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
              "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
              "--window-size=1280,4000"]  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=BROWSER_DEADLINE_S)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    # plotly drew each chart: an <svg class="main-svg"> inside every chart div
    assert dom.stdout.count('class="plotly-graph-div') == 5
    assert dom.stdout.count('class="main-svg"') >= 5
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    snap = subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                          text=True, timeout=BROWSER_DEADLINE_S)  # fmt: skip
    assert snap.returncode == 0, snap.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page is a few kB
    assert [line for line in snap.stderr.splitlines() if "CONSOLE" in line] == []


def scrape(
    engine: Any, *, per_vendor: bool
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = engine_registry(engine, lambda t: t, per_vendor=per_vendor)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def scored_engine() -> Any:
    run = Run().feed([*scripted(), *opened("P1", "dept:payments", at(0, 9)),
                      replied("P1", at(0, 10), "agent")])  # fmt: skip
    return SimpleNamespace(
        processor=None, lifecycle=None, emitter=SimpleNamespace(sent=Counter()),
        policy=SimpleNamespace(policy=SimpleNamespace(name="p", version="1")),
        app=SimpleNamespace(), scores=(run.tickets, run.books),
    )  # fmt: skip


def test_support_metrics_are_per_queue_and_fold_vendor_queues() -> None:
    got = scrape(scored_engine(), per_vendor=False)
    assert got[("router_support_backlog", (("queue", "vendor:*"),))] == 1  # acme's Tuesday
    assert got[("router_support_backlog", (("queue", "dept:payments"),))] == 1
    assert got[("router_support_first_response_seconds",
                (("quantile", "0.5"), ("queue", "dept:payments")))] == pytest.approx(
        3600, rel=RELATIVE_ACCURACY)  # fmt: skip
    assert got[("router_vendors_by_tier", (("tier", "standard"),))] == 1
    assert got[("router_scores_records_total", (("outcome", "facts"), ("step", "tickets")))] > 0
    assert not any("acme" in str(labels) for _, labels in got)
    assert not any(name == "router_vendor_score" for name, _ in got)


def test_vendor_series_only_when_asked() -> None:
    got = scrape(scored_engine(), per_vendor=True)
    assert got[("router_vendor_score", (("vendor", "acme"),))] == 63.92
    assert got[("router_support_backlog", (("queue", "vendor:acme"),))] == 1
