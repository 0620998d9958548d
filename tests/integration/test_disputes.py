"""Disputes on a real broker with a real worker: each path of the state machine end to end,
the seller's silence decided by buyer protection under the threshold and sent to platform
review over it, the buyer's silence, forbidden actions refused to the dead-letter topic, and
a dispute opened by the example ruleset's rule for a parcel a week overdue.

Windows are a few seconds of the `always` calendar, so the timers fire during the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import (
    CHANNEL_DLQ,
    DISPUTES_EVENTS,
    PAYMENTS_EVENTS,
    TICKETS_ACTIONS,
    TICKETS_DECISIONS,
)
from tests.factories import inbound_bytes
from tests.harness import REPO, Output, produce
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

SELLER, OTHER_SELLER = "dune-outdoor", "casa-verde"
EXAMPLE_RULES = REPO / "rules" / "examples" / "marketplace-v2.yaml"
TOPICS = (DISPUTES_EVENTS.name, CHANNEL_DLQ.name, f"queue.vendor.{SELLER}",
          f"queue.vendor.{OTHER_SELLER}", "queue.dept.disputes")  # fmt: skip


def write_policy(tmp: Path, window: str = "4s") -> Path:
    """item_not_received: short windows (the timer paths); every other reason: an hour."""
    long = "{seller_window: {default: 1h}, buyer_window: 1h}"
    path = tmp / "disputes.yaml"
    path.write_text(f"""
version: 1
currency: EUR
seller_calendar: always
buyer_calendar: always
buyer_silence: accept
reasons:
  item_not_received: {{seller_window: {{default: {window}}}, buyer_window: {window}}}
  not_as_described: {long}
  damaged: {long}
  unauthorised_charge: {long}
buyer_protection:
  - {{reasons: [item_not_received], max_amount: "150.00"}}
""")
    return path


def command(cid: str, order: str, action: str, role: str, actor: str, **data: Any) -> bytes:
    body = {"action": action, "order_id": order, "at": datetime.now(UTC).isoformat(),
            "actor": {"id": actor, "role": role}, **data}  # fmt: skip
    return orjson.dumps({"specversion": "1.0", "id": cid, "source": "urn:test",
                         "type": "support.dispute.action", "data": body})  # fmt: skip


def opening(order: str, reason: str, amount: str) -> bytes:
    return command(f"{order}-open", order, "open_dispute", "buyer", f"buyer-{order}",
                   buyer_id=f"buyer-{order}", vendor_id=SELLER, reason_code=reason,
                   amount=amount, currency="EUR")  # fmt: skip


def send(engine: EngineUnderTest, records: list[tuple[str, bytes]]) -> None:
    produce(engine.bootstrap, f"{engine.prefix}{TICKETS_ACTIONS.name}",
            [(order.encode(), value) for order, value in records])  # fmt: skip


def events(outputs: list[Output], order: str, topic: str = DISPUTES_EVENTS.name) -> list[str]:
    return [o.value["type"].removeprefix("support.dispute.") for o in outputs
            if o.topic == topic and o.key == order.encode()]  # fmt: skip


def event(outputs: list[Output], order: str, kind: str) -> dict[str, Any]:
    (found,) = [o.value for o in outputs if o.topic == DISPUTES_EVENTS.name
                and o.key == order.encode() and o.value["type"] == f"support.dispute.{kind}"]
    return found  # type: ignore[no-any-return]


def refusals(outputs: list[Output]) -> dict[str, str]:
    """Refused command id -> reason."""
    out = {}
    for o in outputs:
        if o.topic == CHANNEL_DLQ.name and o.value["data"]["reason"] == "action_refused":
            original = orjson.loads(o.value["data"]["original"]["value"])
            out[original["id"]] = o.value["data"]["error"]
    return out


def cli(engine: EngineUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
           "ROUTER_TOPIC_PREFIX": engine.prefix, "PYTHONPATH": str(REPO)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "router", "disputes", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def closed(order: str, topic: str = DISPUTES_EVENTS.name) -> Any:
    return lambda outs: "closed" in events(outs, order, topic)


def assert_each_event_once(outputs: list[Output]) -> None:
    ids = Counter(o.value["id"] for o in outputs if o.topic == DISPUTES_EVENTS.name)
    kinds = Counter((o.key, o.value["type"]) for o in outputs if o.topic == DISPUTES_EVENTS.name)
    assert max(kinds.values()) == 1, kinds
    assert max(ids.values()) == 1


def ids_per_event(outputs: list[Output]) -> dict[tuple[bytes | None, str], set[str]]:
    ids: dict[tuple[bytes | None, str], set[str]] = defaultdict(set)
    for o in outputs:
        if o.topic == DISPUTES_EVENTS.name:
            ids[(o.key, o.value["type"].removeprefix("support.dispute."))].add(o.value["id"])
    return ids


def silent_disputes(n: int, tag: str) -> tuple[list[str], list[tuple[str, bytes]]]:
    """`n` disputes: even ones under the buyer-protection threshold, odd ones over it."""
    orders = [f"{tag}-{i}" for i in range(n)]
    return orders, [(o, opening(o, "item_not_received", "40.00" if i % 2 == 0 else "400.00"))
                    for i, o in enumerate(orders)]  # fmt: skip


def expected(orders: list[str], answered: frozenset[str] = frozenset()) -> set[tuple[bytes, str]]:
    out = set()
    for i, order in enumerate(orders):
        if order in answered:
            path = ["opened", "awaiting_seller", "seller_responded", "resolved", "closed"]
        elif i % 2 == 0:
            path = ["opened", "awaiting_seller", "decided", "closed"]
        else:
            path = ["opened", "awaiting_seller", "platform_review"]
        out |= {(order.encode(), kind) for kind in path}
    return out


def settled(orders: list[str]) -> object:
    return lambda outs: all(
        "closed" in events(outs, o) or "platform_review" in events(outs, o) for o in orders)


def test_agreed_contested_withdrawn_and_forbidden(engine: EngineUnderTest, tmp_path: Path) -> None:
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=str(write_policy(tmp_path)))
    agreed, contested, withdrawn = "o-agreed", "o-contested", "o-withdrawn"
    send(engine, [
        (agreed, opening(agreed, "not_as_described", "60.00")),
        (agreed, command("a-wrong-seller", agreed, "respond", "vendor", OTHER_SELLER,
                         offer={"kind": "full_refund"})),
        (agreed, command("a-respond", agreed, "respond", "vendor", SELLER,
                         offer={"kind": "full_refund"})),
        (agreed, command("a-other-buyer", agreed, "accept_offer", "buyer", "buyer-x")),
        (agreed, command("a-accept", agreed, "accept_offer", "buyer", f"buyer-{agreed}")),
        (contested, opening(contested, "not_as_described", "80.00")),
        (contested, command("c-note", contested, "note", "agent", "agent-1",
                            body="PLATFORM-ONLY third claim this month")),
        (contested, command("c-respond", contested, "respond", "vendor", SELLER,
                            offer={"kind": "contest", "evidence": [{"name": "photos.zip"}]})),
        (contested, command("c-reject", contested, "reject_offer", "buyer",
                            f"buyer-{contested}")),
        (contested, command("c-vendor-decides", contested, "decide", "vendor", SELLER,
                            verdict="deny", reason="mine")),
        (contested, command("c-decide", contested, "decide", "agent", "agent-1",
                            verdict="refund_partial", amount="30.00", reason="half arrived",
                            internal_note="PLATFORM-ONLY watch this seller")),
        (withdrawn, opening(withdrawn, "damaged", "20.00")),
        (withdrawn, command("w-withdraw", withdrawn, "withdraw", "buyer", f"buyer-{withdrawn}")),
        (withdrawn, command("w-late", withdrawn, "respond", "vendor", SELLER,
                            offer={"kind": "full_refund"})),
    ])  # fmt: skip
    charged = "o-chargeback"
    chargeback = orjson.dumps({
        "specversion": "1.0", "id": "cb-77", "source": "urn:payments",
        "type": "support.payment.chargeback",
        "data": {"chargeback_id": "cb-77", "order_id": charged, "buyer_id": f"buyer-{charged}",
                 "vendor_id": SELLER, "amount": "75.00", "currency": "EUR"}})  # fmt: skip
    # delivered twice by the payments system: one dispute
    produce(engine.bootstrap, f"{engine.prefix}{PAYMENTS_EVENTS.name}",
            [(charged.encode(), chargeback), (charged.encode(), chargeback)])  # fmt: skip
    outputs = engine.collector(*TOPICS).poll_until(
        lambda outs: "awaiting_seller" in events(outs, charged)
        and all(closed(o)(outs) for o in (agreed, contested, withdrawn))
        and closed(contested, f"queue.vendor.{SELLER}")(outs)  # created on demand: seen later
        and events(outs, contested, "queue.dept.disputes")
        and len(refusals(outs)) == 4, 90, "three closed disputes and four refusals",
        describe=lambda outs: str([(o.topic, o.value.get("type")) for o in outs]),
    )
    assert events(outputs, agreed) == [
        "opened", "awaiting_seller", "seller_responded", "resolved", "closed"]
    resolved = event(outputs, agreed, "resolved")["data"]
    assert resolved["refund"]["amount"] == "60.00"
    assert resolved["outcome"] == "accepted"
    assert events(outputs, contested) == [
        "opened", "awaiting_seller", "note_added", "seller_responded", "platform_review",
        "decided", "closed"]  # fmt: skip
    decided = event(outputs, contested, "decided")["data"]
    assert (decided["verdict"], decided["refund"]["amount"]) == ("refund_partial", "30.00")
    assert events(outputs, withdrawn) == ["opened", "awaiting_seller", "closed"]
    assert events(outputs, charged) == ["opened", "awaiting_seller"]
    opened = event(outputs, charged, "opened")["data"]
    assert opened["acted_by"] == {"id": "payments", "party": "system"}
    assert (opened["reason_code"], opened["amount"]) == ("unauthorised_charge", "75.00")
    assert event(outputs, withdrawn, "closed")["data"]["outcome"] == "withdrawn"
    assert refusals(outputs) == {
        "a-wrong-seller": f"vendor {OTHER_SELLER!r} did not sell order {agreed!r}",
        "a-other-buyer": f"buyer 'buyer-x' is not the buyer of order {agreed!r}",
        "c-vendor-decides": "a seller may not decide (only: platform)",
        "w-late": "cannot respond a dispute in state closed",
    }
    # the seller sees its disputes, never the platform's notes; no other seller sees anything
    vendor = [o for o in outputs if o.topic == f"queue.vendor.{SELLER}"]
    assert events(outputs, contested, f"queue.vendor.{SELLER}") == [
        "opened", "awaiting_seller", "seller_responded", "platform_review", "decided", "closed"]
    assert not any(b"PLATFORM-ONLY" in orjson.dumps(o.value) for o in vendor)
    assert not [o for o in outputs if o.topic == f"queue.vendor.{OTHER_SELLER}"]
    assert events(outputs, contested, "queue.dept.disputes") == ["platform_review"]
    assert_each_event_once(outputs)

    shown = cli(engine, "show", contested)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"order {contested}: closed (decided)"
    assert "  verdict: refund_partial: half arrived" in lines
    timeline = [line.split()[1:3] for line in lines[lines.index("  timeline:") + 1 :]]
    assert timeline == [
        ["opened", f"buyer:buyer-{contested}"], ["awaiting_seller", "timer:timer"],
        ["note_added", "platform:agent-1"], ["seller_responded", f"seller:{SELLER}"],
        ["platform_review", f"buyer:buyer-{contested}"], ["decided", "platform:agent-1"],
        ["closed", "timer:timer"],
    ]  # fmt: skip
    listed = cli(engine, "list", "--state", "closed", "--vendor", SELLER)
    assert listed.returncode == 0, listed.stderr
    assert sorted(row.split("\t")[0] for row in listed.stdout.splitlines()) == sorted(
        [agreed, contested, withdrawn]), (listed.stdout, listed.stderr)
    assert cli(engine, "list", "--vendor", OTHER_SELLER).stdout == ""
    missing = cli(engine, "show", "o-none")
    assert missing.returncode == 1
    assert "no dispute on order 'o-none'" in missing.stderr


def test_silence_on_timers(engine: EngineUnderTest, tmp_path: Path) -> None:
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=str(write_policy(tmp_path)))
    small, large, quiet_buyer, answered = "o-small", "o-large", "o-quiet", "o-answered"
    sent_at = datetime.now(UTC)
    send(engine, [
        (small, opening(small, "item_not_received", "40.00")),
        (large, opening(large, "item_not_received", "400.00")),
        (quiet_buyer, opening(quiet_buyer, "item_not_received", "90.00")),
        (quiet_buyer, command("q-respond", quiet_buyer, "respond", "vendor", SELLER,
                              offer={"kind": "partial_refund", "amount": "25.00"})),
        (answered, opening(answered, "item_not_received", "50.00")),
        (answered, command("n-respond", answered, "respond", "vendor", SELLER,
                           offer={"kind": "replacement"})),
        (answered, command("n-accept", answered, "accept_offer", "buyer", f"buyer-{answered}")),
    ])  # fmt: skip
    outputs = engine.collector(*TOPICS).poll_until(
        lambda outs: all(closed(o)(outs) for o in (small, quiet_buyer, answered))
        and events(outs, large, "queue.dept.disputes") == ["platform_review"],
        90, "the silences to be decided",
        describe=lambda outs: str([(o.key, o.value.get("type")) for o in outs]),
    )
    # under the threshold: buyer protection refunds in full when the window ends
    assert events(outputs, small) == ["opened", "awaiting_seller", "decided", "closed"]
    decided = event(outputs, small, "decided")["data"]
    assert decided["acted_by"] == {"id": "timer", "party": "timer"}
    assert (decided["verdict"], decided["refund"]["amount"]) == ("refund_full", "40.00")
    deadline = datetime.fromisoformat(
        event(outputs, small, "awaiting_seller")["data"]["deadlines"]["seller_response"])
    fired = datetime.fromisoformat(decided["at"])
    assert deadline > sent_at
    assert 0 <= (fired - deadline).total_seconds() < 3  # on time
    # over it: platform review on the disputes desk, no decision
    assert events(outputs, large) == ["opened", "awaiting_seller", "platform_review"]
    assert events(outputs, large, "queue.dept.disputes") == ["platform_review"]
    # the buyer silent after an offer: the offer stands
    assert events(outputs, quiet_buyer) == [
        "opened", "awaiting_seller", "seller_responded", "resolved", "closed"]
    resolved = event(outputs, quiet_buyer, "resolved")["data"]
    assert resolved["acted_by"]["party"] == "timer"
    assert resolved["refund"]["amount"] == "25.00"
    # answered in time: no timer fires afterwards
    assert events(outputs, answered) == [
        "opened", "awaiting_seller", "seller_responded", "resolved", "closed"]
    assert event(outputs, answered, "resolved")["data"]["refund"]["replacement"] is True
    assert_each_event_once(outputs)


def test_two_workers_fire_each_window_once(engine: EngineUnderTest, tmp_path: Path) -> None:
    policy = str(write_policy(tmp_path, window="12s"))
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy)
    orders, opens = silent_disputes(120, "pair")
    send(engine, opens)
    collector = engine.collector(DISPUTES_EVENTS.name)
    collector.poll_until(lambda outs: all("awaiting_seller" in events(outs, o) for o in orders),
                         60, "every dispute waiting for its seller")  # fmt: skip
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=policy)  # rebalance while the windows run
    outputs = collector.poll_until(
        settled(orders), 90, "every window fired",
        describe=lambda outs: f"{len(ids_per_event(outs))} distinct events")
    ids = ids_per_event(outputs)
    assert set(ids) == expected(orders), sorted(expected(orders) ^ set(ids))[:10]
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}



def test_a_routing_rule_opens_the_dispute_for_the_buyer(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    engine.start_worker(ROUTER_DISPUTES_POLICY_FILE=str(write_policy(tmp_path, "1h")),
                        ROUTER_RULES_FILE=str(EXAMPLE_RULES))  # fmt: skip
    by_rule, unbacked = "o-by-rule", "o-no-amount"
    late = {"days_past_delivery": 9, "total": "40.00", "currency": "EUR"}
    asked = inbound_bytes("in-r1", thread_ref="thread-r1", body="My parcel never arrived",
                          vendor_id=SELLER, order_id=by_rule, attributes=late)  # fmt: skip
    no_amount = inbound_bytes("in-r2", thread_ref="thread-r2", body="It never arrived",
                              vendor_id=SELLER, order_id=unbacked,
                              attributes={"days_past_delivery": 9, "currency": "EUR"})  # fmt: skip
    # the first message delivered twice by its connector: one dispute
    engine.send("email", [(b"thread-r1", asked), (b"thread-r2", no_amount),
                          (b"thread-r1", asked)])  # fmt: skip

    def decisions(outs: list[Output]) -> dict[str, dict[str, Any]]:
        return {o.value["data"]["inbound_id"]: o.value["data"] for o in outs
                if o.topic == TICKETS_DECISIONS.name}  # fmt: skip

    outputs = engine.collector(DISPUTES_EVENTS.name, TICKETS_DECISIONS.name,
                               CHANNEL_DLQ.name).poll_until(
        lambda outs: "awaiting_seller" in events(outs, by_rule)
        and {"in-r1", "in-r2"} <= set(decisions(outs)), 60,
        "the rule's dispute awaiting the seller and both decisions",
    )  # fmt: skip
    assert events(outputs, by_rule) == ["opened", "awaiting_seller"]
    opened = event(outputs, by_rule, "opened")["data"]
    assert opened["acted_by"] == {"id": "rule:overdue-parcel-dispute", "party": "system"}
    assert (opened["buyer_id"], opened["vendor_id"]) == ("buyer-1", SELLER)
    assert (opened["reason_code"], opened["amount"], opened["currency"]) == (
        "item_not_received", "40.00", "EUR")  # fmt: skip
    assert decisions(outputs)["in-r1"]["dispute"]["rule_id"] == "overdue-parcel-dispute"
    problem = decisions(outputs)["in-r2"]["dispute"]["problem"]
    assert problem == "amount: the message does not carry it"
    assert events(outputs, unbacked) == []
    assert [o for o in outputs if o.topic == CHANNEL_DLQ.name] == []
    assert_each_event_once(outputs)
