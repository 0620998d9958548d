"""Disputes on a real broker, as operations sees them: a chargeback on an order that already
has a dispute escalates it (and the seller's copy keeps platform-only fields out), and a
dispute policy published with `router disputes policy publish` is taken by a running worker.

Windows of the disputes here are an hour or more: no timer fires during a test.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import DISPUTES_EVENTS, DISPUTES_POLICY, PAYMENTS_EVENTS
from tests.harness import Output, produce, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_disputes import (
    SELLER,
    TOPICS,
    assert_each_event_once,
    cli,
    command,
    event,
    events,
    opening,
    send,
    write_policy,
)
from tests.integration.test_rules_reload import log_events

pytestmark = pytest.mark.integration

DESK = "queue.dept.disputes"
VENDOR_QUEUE = f"queue.vendor.{SELLER}"


def chargeback(cid: str, order: str) -> bytes:
    return orjson.dumps({
        "specversion": "1.0", "id": cid, "source": "urn:payments",
        "type": "support.payment.chargeback",
        "data": {"chargeback_id": cid, "order_id": order, "buyer_id": f"buyer-{order}",
                 "vendor_id": SELLER, "amount": "60.00", "currency": "EUR",
                 "reason_code": "not_as_described"}})  # fmt: skip


def charge(engine: EngineUnderTest, records: list[tuple[str, bytes]]) -> None:
    produce(engine.bootstrap, f"{engine.prefix}{PAYMENTS_EVENTS.name}",
            [(order.encode(), value) for order, value in records])  # fmt: skip


def describe(outs: list[Output]) -> str:
    return str([(o.topic, o.key, o.value.get("type")) for o in outs])


def test_a_chargeback_escalates_the_open_dispute(engine: EngineUnderTest, tmp_path: Path) -> None:
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=str(write_policy(tmp_path)))
    waiting, offered, late = "o-cb-waiting", "o-cb-offered", "o-cb-late"
    send(engine, [
        (waiting, opening(waiting, "not_as_described", "60.00")),
        (waiting, command("w-note", waiting, "note", "agent", "agent-1",
                          body="PLATFORM-ONLY second chargeback from this buyer")),
        (offered, opening(offered, "not_as_described", "60.00")),
        (offered, command("o-respond", offered, "respond", "vendor", SELLER,
                          offer={"kind": "partial_refund", "amount": "10.00"})),
        (late, opening(late, "not_as_described", "60.00")),
        (late, command("l-withdraw", late, "withdraw", "buyer", f"buyer-{late}")),
    ])  # fmt: skip
    collector = engine.collector(*TOPICS)
    # payments.events is another input topic: its records may overtake these, so wait first
    collector.poll_until(
        lambda outs: "note_added" in events(outs, waiting)
        and "seller_responded" in events(outs, offered) and "closed" in events(outs, late),
        60, "the three disputes in place", describe=describe,
    )  # fmt: skip
    charge(engine, [
        (waiting, chargeback("cb-w1", waiting)), (waiting, chargeback("cb-w1", waiting)),
        (waiting, chargeback("cb-w2", waiting)),  # in platform review by now: recorded
        (offered, chargeback("cb-o1", offered)),
        (late, chargeback("cb-l1", late)), (late, chargeback("cb-l1", late)),
    ])  # fmt: skip
    outputs = collector.poll_until(
        lambda outs: "chargeback_recorded" in events(outs, waiting, VENDOR_QUEUE)
        and "platform_review" in events(outs, offered, VENDOR_QUEUE)
        and events(outs, late, DESK) == ["chargeback_recorded"]
        and "chargeback_recorded" in events(outs, late, VENDOR_QUEUE),
        90, "the chargebacks applied", describe=describe,
    )  # fmt: skip
    # awaiting the seller: straight to platform review, the seller's window off
    assert events(outputs, waiting) == [
        "opened", "awaiting_seller", "note_added", "platform_review", "chargeback_recorded"]
    review = event(outputs, waiting, "platform_review")["data"]
    assert review["previous_state"] == "awaiting_seller"
    assert review["acted_by"] == {"id": "payments", "party": "system"}
    assert review["chargeback_id"] == "cb-w1"
    assert review["deadlines"] == {}
    recorded = event(outputs, waiting, "chargeback_recorded")["data"]
    assert (recorded["state"], recorded["chargeback_id"]) == ("platform_review", "cb-w2")
    assert "flag" not in recorded
    # an offer on the table: platform review too
    assert events(outputs, offered) == [
        "opened", "awaiting_seller", "seller_responded", "platform_review"]
    # closed: recorded, flagged, and on the desk's queue; the outcome stands
    assert events(outputs, late) == ["opened", "awaiting_seller", "closed", "chargeback_recorded"]
    flagged = event(outputs, late, "chargeback_recorded")["data"]
    assert (flagged["state"], flagged["outcome"]) == ("closed", "withdrawn")
    assert flagged["flag"] == "chargeback cb-l1 after the dispute closed (withdrawn)"
    assert events(outputs, waiting, DESK) == ["platform_review"]
    assert events(outputs, offered, DESK) == ["platform_review"]
    # the seller's copies: every transition and chargeback, never a platform-only field
    assert events(outputs, waiting, VENDOR_QUEUE) == [
        "opened", "awaiting_seller", "platform_review", "chargeback_recorded"]
    vendor: list[dict[str, Any]] = [o.value for o in outputs if o.topic == VENDOR_QUEUE]
    assert not any(b"PLATFORM-ONLY" in orjson.dumps(v) for v in vendor)
    assert not [v for v in vendor if {"internal_note", "flag"} & set(v["data"])]
    seller_review = [v for v in vendor if v["type"] == "support.dispute.platform_review"
                     and v["subject"] == waiting]  # fmt: skip
    assert [v["id"] for v in seller_review] == [event(outputs, waiting, "platform_review")["id"]]
    # each chargeback acted once, though the payments system delivered two of them twice
    assert_each_event_once(outputs)
    shown = cli(engine, "show", late)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"order {late}: closed (withdrawn)"
    assert "chargeback_recorded system:payments (chargeback) - chargeback cb-l1 after the " \
        "dispute closed (withdrawn)" in shown.stdout


def seller_window(outputs: list[Output], order: str) -> timedelta:
    data = event(outputs, order, "awaiting_seller")["data"]
    deadline = datetime.fromisoformat(data["deadlines"]["seller_response"])
    return deadline - datetime.fromisoformat(data["at"])


def test_a_published_policy_reaches_a_running_worker(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    started = write_policy(tmp_path)  # not_as_described: the seller has an hour
    worker = engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=str(started))
    collector = engine.collector(DISPUTES_EVENTS.name)
    send(engine, [("o-before", opening("o-before", "not_as_described", "60.00"))])
    outputs = collector.poll_until(lambda outs: "awaiting_seller" in events(outs, "o-before"),
                                   60, "a dispute under the file's policy")  # fmt: skip
    assert seller_window(outputs, "o-before") == timedelta(hours=1)

    # refused before anything is written
    broken = tmp_path / "broken.yaml"
    broken.write_text(started.read_text().replace("currency: EUR", "currency: euro"))
    refused = cli(engine, "policy", "publish", str(broken))
    assert refused.returncode == 1
    assert f"{broken}:3: currency: String should match pattern" in refused.stderr
    nothing = cli(engine, "policy", "show")
    assert nothing.returncode == 1
    assert "no valid policy published" in nothing.stderr

    longer = tmp_path / "longer.yaml"
    longer.write_text(started.read_text().replace(
        "not_as_described: {seller_window: {default: 1h}",
        "not_as_described: {seller_window: {default: 3h}"))  # fmt: skip
    published = cli(engine, "policy", "publish", str(longer))
    assert published.returncode == 0, published.stderr
    assert f"to {engine.prefix}{DISPUTES_POLICY.name} (partition 0, offset 0)" in published.stdout
    wait_for(lambda: log_events(worker, "dispute_policy_activated"), 60,
             "the worker to take the published policy")  # fmt: skip
    # a record on the topic that is not a policy: logged, ignored, the published one stays
    produce(engine.bootstrap, f"{engine.prefix}{DISPUTES_POLICY.name}",
            [(b"disputes", b'{"not": "a policy"}')])  # fmt: skip
    wait_for(lambda: log_events(worker, "dispute_policy_refused"), 60,
             "the worker to refuse the bad record")  # fmt: skip
    (refusal,) = log_events(worker, "dispute_policy_refused")
    assert refusal["record"] == f"{engine.prefix}{DISPUTES_POLICY.name}[0]@1"

    send(engine, [("o-after", opening("o-after", "not_as_described", "60.00"))])
    outputs = collector.poll_until(lambda outs: "awaiting_seller" in events(outs, "o-after"),
                                   60, "a dispute under the published policy")  # fmt: skip
    assert seller_window(outputs, "o-after") == timedelta(hours=3)
    assert seller_window(outputs, "o-before") == timedelta(hours=1)  # set before: kept
    shown = cli(engine, "policy", "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{engine.prefix}{DISPUTES_POLICY.name}[0]@0: longer.yaml, ")
    assert "not_as_described: {seller_window: {default: 3h}" in shown.stdout
    assert f"refused {engine.prefix}{DISPUTES_POLICY.name}[0]@1" in shown.stderr
