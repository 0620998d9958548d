"""`router disputes show|list` over disputes.events records: folded per order, filtered,
printed with deadlines and who acted."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import streams.logs
import streams.tools
from router.cli import app
from router.disputes.machine import Act
from router.disputes.render import render_decision
from router.disputes.views import fold, list_row, select, show_lines
from schemas.action import ActorRole
from schemas.dispute import DisputeState
from tests.unit.disputes.dispute_support import Run


def values() -> list[bytes]:
    """Two disputes: one contested and decided, one waiting for its seller."""
    out = []
    run = Run()
    for decision in (
        run.do(Act.OPEN),
        run.do(Act.RESPOND, ActorRole.VENDOR, offer={"kind": "partial_refund", "amount": "9.00"}),
        run.do(Act.REJECT),
        run.do(Act.NOTE, ActorRole.AGENT, body="called the carrier"),
        run.do(Act.DECIDE, ActorRole.AGENT, verdict="refund_full", reason="lost in transit"),
    ):
        out += render_decision(decision, run.policy)
    waiting = Run()
    out += render_decision(waiting.do(Act.OPEN, order="o-2002", vendor_id="gold-us"), run.policy)
    return [r.value for r in out if r.topic == "disputes.events"]


def test_fold_keeps_each_event_once_and_skips_other_records() -> None:
    raw = values()
    views, skipped = fold([*raw, raw[0], b"{}", b"not json"])
    assert skipped == 2
    assert set(views) == {"o-1001", "o-2002"}
    assert views["o-1001"].latest.state is DisputeState.CLOSED
    assert len(views["o-1001"].timeline) == 7  # the repeated first record counted once


def test_show_lines() -> None:
    (view,) = [v for v in fold(values())[0].values() if v.order_id == "o-1001"]
    lines = show_lines(view)
    assert lines[:4] == [
        "order o-1001: closed (decided)",
        "  buyer buyer-7, seller acme, item_not_received, 80.00 EUR",
        "  offer: partial_refund 9.00",
        "  verdict: refund_full: lost in transit",
    ]
    assert lines[4].startswith("  payments: refund 80.00 EUR (instruction ")
    assert lines[5] == "  deadlines: none"
    timeline = lines[lines.index("  timeline:") + 1 :]
    assert [line.split()[1:3] for line in timeline] == [
        ["opened", "buyer:buyer-7"], ["awaiting_seller", "timer:timer"],
        ["seller_responded", "seller:acme"], ["platform_review", "buyer:buyer-7"],
        ["note_added", "platform:agent-3"], ["decided", "platform:agent-3"],
        ["closed", "timer:timer"],
    ]  # fmt: skip
    assert timeline[4].endswith("(note) - called the carrier")


def test_select_and_list_rows() -> None:
    views, _ = fold(values())
    assert [v.order_id for v in select(views)] == ["o-1001", "o-2002"]
    assert [v.order_id for v in select(views, DisputeState.AWAITING_SELLER)] == ["o-2002"]
    assert select(views, vendor="acme", state=DisputeState.AWAITING_SELLER) == []
    (row,) = [list_row(v) for v in select(views, vendor="gold-us")]
    assert row.split("\t") == ["o-2002", "awaiting_seller", "gold-us", "buyer-7",
                               "item_not_received", "80.00 EUR",
                               "2026-01-07T22:00:00+00:00"]  # fmt: skip


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> None:
    async def read(settings: Any, logical: str) -> list[bytes]:
        assert logical == "disputes.events"
        return values()

    monkeypatch.setattr(streams.tools, "topic_values", read)
    # the CLI's JSON logging would keep CliRunner's stream, closed after the test
    monkeypatch.setattr(streams.logs, "configure_logging", lambda level: None)


@pytest.mark.usefixtures("topic")
def test_the_cli_prints_them() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["disputes", "show", "o-2002"])
    assert shown.exit_code == 0, shown.output
    assert "    seller_response: 2026-01-07T22:00:00+00:00" in shown.output.splitlines()
    listed = runner.invoke(app, ["disputes", "list", "--state", "closed"])
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == ["o-1001"]
    missing = runner.invoke(app, ["disputes", "show", "o-0"])
    assert missing.exit_code == 1
