"""SIGKILL the worker while dispute windows fall due, restart it: each timeout fires once (by
event id), none is missing, and none fires for a dispute that moved on."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from schemas.topics import DISPUTES_EVENTS
from tests.harness import wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_disputes import (
    command,
    expected,
    ids_per_event,
    send,
    settled,
    silent_disputes,
    write_policy,
)
from tests.integration.test_disputes import events as kinds

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_sigkill_before_the_windows_end_then_restart_fires_each_once(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    policy = str(write_policy(tmp_path, window="8s"))
    first = engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy)
    orders, opens = silent_disputes(20, "down")
    # two of them answered and accepted before their window ends: theirs must never fire
    answered = frozenset(orders[:2])
    send(engine, opens + [
        (o, command(f"{o}-respond", o, "respond", "vendor", "dune-outdoor",
                    offer={"kind": "full_refund"})) for o in answered
    ] + [(o, command(f"{o}-accept", o, "accept_offer", "buyer", f"buyer-{o}"))
         for o in answered])  # fmt: skip
    collector = engine.collector(DISPUTES_EVENTS.name)
    outputs = collector.poll_until(
        lambda outs: all("awaiting_seller" in kinds(outs, o) for o in orders)
        and all("closed" in kinds(outs, o) for o in answered),
        60, "every dispute waiting for its seller (the answered ones closed)")
    first.kill()
    deadlines = [datetime.fromisoformat(o.value["data"]["deadlines"]["seller_response"])
                 for o in outputs if o.value["type"] == "support.dispute.awaiting_seller"]
    last = max(d.timestamp() for d in deadlines)
    assert time.time() < min(d.timestamp() for d in deadlines), "killed after a deadline"
    wait_for(lambda: time.time() > last + 1, 30, "every window to end while the worker is down")
    restarted_at = time.time()
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy)

    outputs = collector.poll_until(settled(orders), 90, "every silence decided after restart")
    ids = ids_per_event(outputs)
    assert set(ids) == expected(orders, answered)
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
    fired = [o for o in outputs if o.value["data"]["acted_by"]["party"] == "timer"
             and o.value["type"] in ("support.dispute.decided", "support.dispute.platform_review")]
    assert len({o.value["id"] for o in fired}) == len(orders) - len(answered)
    assert all(datetime.fromisoformat(o.value["data"]["at"]).timestamp() > restarted_at
               for o in fired)  # fmt: skip


def test_sigkill_during_a_deadline_storm_then_restart_loses_none(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    policy = str(write_policy(tmp_path, window="6s"))
    # A long commit interval widens the window of processed but uncommitted due commands.
    first = engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy, ROUTER_COMMIT_INTERVAL_S="5")
    orders, opens = silent_disputes(200, "storm")
    send(engine, opens)
    collector = engine.collector(DISPUTES_EVENTS.name)
    collector.poll_until(
        lambda outs: sum("decided" in kinds(outs, o) or "platform_review" in kinds(outs, o)
                         for o in orders) >= 20,
        60, "timeouts to be firing")  # fmt: skip
    first.kill()
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy)
    outputs = collector.poll_until(
        settled(orders), 120, "every dispute decided or under review",
        describe=lambda outs: f"{len(ids_per_event(outs))} distinct events")
    ids = ids_per_event(outputs)
    assert set(ids) == expected(orders), sorted(expected(orders) ^ set(ids))[:10]
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
