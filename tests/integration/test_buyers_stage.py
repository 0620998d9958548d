"""Buyer history kept by the engine, on a real broker: tickets a buyer opens are counted, a
resolve takes one off, and the rules see the counts (`buyer.open_tickets`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from router.ids import ticket_id_for
from tests.factories import inbound_bytes
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import action_bytes, send_actions

pytestmark = pytest.mark.integration

RULESET = """
name: buyers-test
version: "1"
departments: [general]
sla_policies: [standard]
defaults: {priority: normal, sla: standard}
rules:
  - id: repeat-buyer
    when: {field: buyer.open_tickets, gte: 2}
    then: {tags: [repeat-buyer], continue: true}
  - id: everything
    then: {route: "dept:general"}
"""
CHANGELOG = "ticket-router-buyers-changelog"


def buyer_records(outputs: list[Output], buyer: str) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == CHANGELOG and o.key == buyer.encode()]


def decision_tags(outputs: list[Output]) -> dict[str, list[str]]:
    return {
        o.value["data"]["ticket_id"]: o.value["data"]["tags"]
        for o in outputs
        if o.topic == "tickets.decisions"
    }


def test_open_tickets_are_counted_resolved_ones_leave_and_rules_see_it(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    rules = tmp_path / "buyers.yaml"
    rules.write_text(RULESET)
    engine.start_worker("--rules", str(rules))
    first, second = ticket_id_for("email", "b9-1"), ticket_id_for("email", "b9-2")
    engine.send("email", [
        (f"b9-{n}".encode(), inbound_bytes(f"b9-in-{n}", thread_ref=f"b9-{n}", vendor_id=None,
                                           sender_id="b-9"))
        for n in (1, 2)
    ])  # fmt: skip
    history = engine.collector(CHANGELOG, "tickets.decisions")
    outputs = history.poll_until(
        lambda outs: any(
            set(r["open"]) == {first, second} for r in buyer_records(outs, "b-9")
        ),
        90,
        "the buyer table to count two open tickets",
    )
    tags = decision_tags(outputs)
    # each saw at most one open ticket before it (the two threads race on two partitions)
    assert "repeat-buyer" not in tags[first]
    assert "repeat-buyer" not in tags[second]
    latest = buyer_records(outputs, "b-9")[-1]
    assert {t for t, _ in latest["opened"]} == {first, second}

    # The rules see the counts once this worker's copy has them (eventually consistent):
    # open a new ticket at a time until one is tagged; each is history before itself.
    probes: list[str] = []
    deadline = time.monotonic() + 60
    tagged: str | None = None
    while tagged is None and time.monotonic() < deadline:
        n = len(probes)
        probes.append(ticket_id_for("email", f"b9-probe-{n}"))
        engine.send("email", [(f"b9-probe-{n}".encode(), inbound_bytes(
            f"b9-probe-in-{n}", thread_ref=f"b9-probe-{n}", vendor_id=None, sender_id="b-9"))])
        got = engine.collector("tickets.decisions").poll_until(
            lambda outs, want=probes[-1]: want in decision_tags(outs), 30, "the probe's decision"
        )
        if "repeat-buyer" in decision_tags(got)[probes[-1]]:
            tagged = probes[-1]
    assert tagged is not None, "no ticket of a buyer with two open tickets was tagged"

    # Another buyer's tickets are not counted for b-9, and vice versa.
    engine.send("email", [(b"b5-1", inbound_bytes("b5-in-1", thread_ref="b5-1", vendor_id=None,
                                                  sender_id="b-5"))])  # fmt: skip
    # An agent resolves the first ticket: it leaves b-9's open tickets, stays recent.
    send_actions(engine, [(first.encode(), action_bytes("resolve-1", first, "resolve"))])

    def resolved(outs: list[Output]) -> bool:
        mine = buyer_records(outs, "b-9")
        return bool(mine) and first not in mine[-1]["open"] and bool(buyer_records(outs, "b-5"))

    outputs = engine.collector(CHANGELOG).poll_until(
        resolved, 90, "the resolve to reach the buyer table"
    )
    after = buyer_records(outputs, "b-9")[-1]
    assert first in [t for t, _ in after["opened"]]
    assert set(after["open"]) == {second, *probes}
    assert [set(r["open"]) for r in buyer_records(outputs, "b-5")][-1] == {
        ticket_id_for("email", "b5-1")
    }
