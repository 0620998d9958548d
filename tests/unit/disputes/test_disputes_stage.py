"""The disputes stage without Kafka: forwarding, applying, refusing, crash replay, and the
SLA deadline machinery firing a response window once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord

from router.clock import FakeClock
from router.disputes.policy import published_value
from router.records import OutRecord
from router.stages.disputes import dispute_due
from schemas.dispute import DISPUTE_POLICY_KEY
from schemas.topics import (
    CHANNEL_DLQ,
    DISPUTES_COMMANDS,
    DISPUTES_EVENTS,
    DISPUTES_POLICY,
    PAYMENTS_EVENTS,
    TICKETS_ACTIONS,
)
from streams.settings import RouterSettings
from streams.stages.disputes import DisputePolicyReload, DisputesStage
from tests.unit.disputes.dispute_support import (
    BUYER,
    EXAMPLE_POLICY,
    MONDAY,
    ORDER,
    VENDOR,
    calendars,
    policy,
)
from tests.unit.sla.test_lifecycle_stage import Local, Sent

PARTITION = 2


def command(cid: str, action: str, role: str, actor: str, **data: Any) -> bytes:
    body = {"action": action, "order_id": ORDER, "at": MONDAY.isoformat(),
            "actor": {"id": actor, "role": role}, **data}  # fmt: skip
    return orjson.dumps({"specversion": "1.0", "id": cid, "source": "test",
                         "type": "support.dispute.action", "data": body})  # fmt: skip


OPEN = command("c-open", "open_dispute", "buyer", BUYER, buyer_id=BUYER, vendor_id=VENDOR,
               reason_code="item_not_received", amount="40.00", currency="EUR")  # fmt: skip


class Harness:
    def __init__(self) -> None:
        self.table: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {ORDER.encode(): PARTITION}
        self.sent = Sent()
        self.clock = FakeClock(MONDAY)
        self.offsets = iter(range(10_000))

        async def emit(records: Iterable[OutRecord], partition: int | None) -> None:
            self.sent.extend((r.topic, r, partition) for r in records)

        self.stage = DisputesStage(
            RouterSettings(topic_prefix=""), policy(), self.table,
            Local(self.table, self.partition_of), emit, clock=self.clock,
        )  # fmt: skip

    def run(self, coro: Any) -> Any:
        async def step() -> Any:
            try:
                return await coro
            finally:
                wakeup = self.stage.deadlines._wakeup
                if wakeup is not None:
                    wakeup.cancel()
                    self.stage.deadlines._wakeup = None

        return asyncio.run(step())

    def act(self, value: bytes, key: bytes = ORDER.encode()) -> list[OutRecord]:
        """Through the forwarder and the command agent, as on Kafka; what it produced."""
        before = len(self.sent)
        self.run(self.stage.handle(TICKETS_ACTIONS.name, 0, next(self.offsets), key, value))
        forwarded = [r for t, r, _ in self.sent[before:] if t == DISPUTES_COMMANDS.name]
        for record in forwarded:
            self.apply(record)
        return [r for _, r, _ in self.sent[before:]]

    def apply(self, record: OutRecord, offset: int | None = None) -> None:
        offset = next(self.offsets) if offset is None else offset
        self.run(self.stage.handle(DISPUTES_COMMANDS.name, PARTITION, offset, record.key,
                                   record.value, list(record.headers)))  # fmt: skip

    def types(self, topic: str = DISPUTES_EVENTS.name) -> list[str]:
        return [orjson.loads(r.value)["type"] for r in self.sent.on(topic)]


def test_a_command_is_forwarded_keyed_by_order_and_applied() -> None:
    h = Harness()
    out = h.act(OPEN, key=b"whatever-partitioner")
    assert any(r.topic == CHANNEL_DLQ.name for r in out)  # the key must be the order id
    h.sent.clear()
    out = h.act(OPEN)
    (forwarded,) = [r for r in out if r.topic == DISPUTES_COMMANDS.name]
    assert forwarded.key == ORDER.encode()
    assert forwarded.value == OPEN  # bytes unchanged
    assert h.types() == ["support.dispute.opened", "support.dispute.awaiting_seller"]
    assert h.types(f"queue.vendor.{VENDOR}") == h.types()
    assert ORDER.encode() in h.table


def test_ticket_actions_are_skipped() -> None:
    h = Harness()
    ticket = orjson.dumps({"specversion": "1.0", "id": "t-1", "source": "desk",
                           "type": "support.ticket.action", "data": {}})  # fmt: skip
    assert h.act(ticket, key=b"T-1") == []
    assert h.stage.counts["ticket_action"] == 1


def test_a_refused_command_is_dead_lettered_with_where_it_was_read() -> None:
    h = Harness()
    h.act(OPEN)
    decide = command("c-decide", "decide", "vendor", VENDOR, verdict="deny", reason="no")
    h.act(decide)
    (letter,) = [orjson.loads(r.value)["data"] for r in h.sent.on(CHANNEL_DLQ.name)]
    assert letter["reason"] == "action_refused"
    assert letter["error"] == "cannot decide a dispute in state awaiting_seller"
    assert letter["source"]["topic"] == TICKETS_ACTIONS.name
    assert letter["original"]["key"] == ORDER
    assert orjson.loads(letter["original"]["value"])["id"] == "c-decide"


def test_a_command_read_again_after_a_crash_resends_the_same_records() -> None:
    h = Harness()
    h.act(OPEN)  # forwarded at offset 0, applied at offset 1
    respond = command("c-resp", "respond", "vendor", VENDOR, offer={"kind": "full_refund"})
    h.act(respond)  # forwarded at offset 2, applied at offset 3
    responded = h.sent.on(DISPUTES_EVENTS.name)[-1]
    stored = h.table[ORDER.encode()]
    resp_cmd = h.sent.on(DISPUTES_COMMANDS.name)[-1]
    # the respond command's offset was never committed: it is read again after a crash
    h.sent.clear()
    h.apply(resp_cmd, offset=3)
    assert h.stage.counts["replayed"] == 1
    assert [r.value for r in h.sent.on(DISPUTES_EVENTS.name)] == [responded.value]
    assert h.table[ORDER.encode()] == stored
    # the same command id in a new record (a client's retry) adds nothing
    h.sent.clear()
    h.apply(resp_cmd)
    assert h.sent.on(DISPUTES_EVENTS.name) == []
    assert h.stage.counts["ignored"] == 1


def test_the_seller_window_fires_once_through_the_deadline_index() -> None:
    h = Harness()
    h.run(h.stage.deadlines.on_recovered({PARTITION}))
    h.act(OPEN)
    due = h.stage.deadlines.index.next_due()
    assert due is not None
    h.clock.set(MONDAY + timedelta(hours=1))
    assert h.run(h.stage.tick()) == 0
    h.clock.set(MONDAY + timedelta(days=10))
    assert h.run(h.stage.tick()) == 1
    (due_cmd,) = [r for t, r, p in h.sent if t == DISPUTES_COMMANDS.name and p == PARTITION
                  and dict(r.headers)["router.cmd"] == b"due"]  # fmt: skip
    h.apply(due_cmd)
    assert h.types()[-2:] == ["support.dispute.decided", "support.dispute.closed"]
    assert h.run(h.stage.tick()) == 0  # nothing pending any more
    h.apply(due_cmd)  # a duplicate due command fires nothing
    assert h.types().count("support.dispute.decided") == 1


def test_the_index_is_rebuilt_from_the_table_after_recovery() -> None:
    h = Harness()
    h.act(OPEN)
    assert len(h.stage.deadlines.index) == 0  # partition not assigned here yet
    h.run(h.stage.deadlines.on_recovered({PARTITION}))
    assert len(h.stage.deadlines.index) == 1
    assert h.stage.deadlines.last_rebuild["states_read"] == 1


def test_a_backlog_of_commands_holds_the_timer_back_until_it_is_read() -> None:
    positions = [(TICKETS_ACTIONS.name, 0, 2, 0)]  # two records on the partition, none read
    h = Harness()
    h.stage = DisputesStage(
        RouterSettings(topic_prefix=""), policy(), h.table, Local(h.table, h.partition_of),
        h.stage._emit, clock=h.clock, positions=lambda: positions,
    )  # fmt: skip
    h.run(h.stage.deadlines.on_recovered({PARTITION}))
    h.run(h.stage.handle(TICKETS_ACTIONS.name, 0, 0, ORDER.encode(), OPEN,
                         timestamp=MONDAY.timestamp()))  # fmt: skip
    h.apply(h.sent.on(DISPUTES_COMMANDS.name)[0])
    # the worker was down: the window has ended, but the seller's answer (offset 1, sent in
    # time) is still in the backlog, so nothing fires
    h.clock.set(MONDAY + timedelta(days=10))
    assert h.run(h.stage.tick()) == 0
    respond = command("c-resp", "respond", "vendor", VENDOR, offer={"kind": "replacement"})
    h.run(h.stage.handle(TICKETS_ACTIONS.name, 0, 1, ORDER.encode(), respond,
                         timestamp=(MONDAY + timedelta(hours=1)).timestamp()))  # fmt: skip
    h.apply(h.sent.on(DISPUTES_COMMANDS.name)[-1])
    assert h.types()[-1] == "support.dispute.seller_responded"
    # read to the end: the buyer's window (72 h from the answer) is what is pending now
    h.clock.set(MONDAY + timedelta(days=14))
    assert h.run(h.stage.tick()) == 1
    h.apply(h.sent.on(DISPUTES_COMMANDS.name)[-1])
    assert h.types()[-2:] == ["support.dispute.resolved", "support.dispute.closed"]
    assert "support.dispute.decided" not in h.types()


def test_a_due_command_with_until_fires_only_what_was_due_by_then() -> None:
    h = Harness()
    h.act(OPEN)
    h.clock.set(MONDAY + timedelta(days=10))
    early = dispute_due(ORDER, h.clock.now().timestamp(), until=MONDAY.timestamp() + 60)
    h.apply(early)
    assert h.types() == ["support.dispute.opened", "support.dispute.awaiting_seller"]
    h.apply(dispute_due(ORDER, h.clock.now().timestamp()))
    assert h.types()[-1] == "support.dispute.closed"


def chargeback(cid: str = "cb-1", **data: Any) -> bytes:
    body = {"chargeback_id": cid, "order_id": ORDER, "buyer_id": BUYER, "vendor_id": VENDOR,
            "amount": "40.00", "currency": "EUR", **data}  # fmt: skip
    return orjson.dumps({"specversion": "1.0", "id": cid, "source": "urn:payments",
                         "type": "support.payment.chargeback", "data": body})  # fmt: skip


def test_a_chargeback_opens_a_dispute_once() -> None:
    h = Harness()
    for _ in range(2):  # the payments system delivers it twice
        h.run(h.stage.handle(PAYMENTS_EVENTS.name, 1, next(h.offsets), ORDER.encode(),
                             chargeback()))  # fmt: skip
    for forwarded in h.sent.on(DISPUTES_COMMANDS.name):
        h.apply(forwarded)
    assert h.types() == ["support.dispute.opened", "support.dispute.awaiting_seller"]
    opened = orjson.loads(h.sent.on(DISPUTES_EVENTS.name)[0].value)["data"]
    assert opened["acted_by"] == {"id": "payments", "party": "system"}
    assert opened["reason_code"] == "unauthorised_charge"
    assert h.stage.counts["ignored"] == 1
    assert opened["chargeback_id"] == "cb-1"


def charge(h: Harness, cid: str, **data: Any) -> list[OutRecord]:
    """A chargeback through the forwarder and the command agent; what it produced."""
    before = len(h.sent)
    h.run(h.stage.handle(PAYMENTS_EVENTS.name, 1, next(h.offsets), ORDER.encode(),
                         chargeback(cid, **data)))  # fmt: skip
    for forwarded in [r for t, r, _ in h.sent[before:] if t == DISPUTES_COMMANDS.name]:
        h.apply(forwarded)
    return [r for _, r, _ in h.sent[before:]]


def on(records: list[OutRecord], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.topic == topic]


def test_a_chargeback_on_an_open_dispute_escalates_it_to_platform_review_once() -> None:
    h = Harness()
    h.act(OPEN)
    out = charge(h, "cb-9")
    (review,) = on(out, DISPUTES_EVENTS.name)
    assert review["type"] == "support.dispute.platform_review"
    assert review["data"]["previous_state"] == "awaiting_seller"
    assert review["data"]["chargeback_id"] == "cb-9"
    assert review["data"]["deadlines"] == {}  # nobody is awaited: the seller's window is off
    assert [e["id"] for e in on(out, "queue.dept.disputes")] == [review["id"]]
    assert [e["id"] for e in on(out, f"queue.vendor.{VENDOR}")] == [review["id"]]
    h.clock.set(MONDAY + timedelta(days=10))  # the seller's window would have ended
    before = len(h.sent.on(DISPUTES_EVENTS.name))
    h.apply(dispute_due(ORDER, h.clock.now().timestamp()))
    assert len(h.sent.on(DISPUTES_EVENTS.name)) == before
    # the payments system delivers it again: nothing more happens
    ignored = h.stage.counts["ignored"]
    assert on(charge(h, "cb-9"), DISPUTES_EVENTS.name) == []
    assert h.stage.counts["ignored"] == ignored + 1
    # another chargeback while in review: recorded, no state change, not on the desk's queue
    out = charge(h, "cb-10")
    (recorded,) = on(out, DISPUTES_EVENTS.name)
    assert recorded["type"] == "support.dispute.chargeback_recorded"
    assert (recorded["data"]["state"], recorded["data"]["previous_state"]) == (
        "platform_review", "platform_review")
    assert "flag" not in recorded["data"]
    assert on(out, "queue.dept.disputes") == []


def test_a_chargeback_after_the_decision_is_flagged_for_the_desk_only() -> None:
    h = Harness()
    h.act(OPEN)
    h.act(command("c-withdraw", "withdraw", "buyer", BUYER))
    out = charge(h, "cb-late")
    (recorded,) = on(out, DISPUTES_EVENTS.name)
    assert recorded["type"] == "support.dispute.chargeback_recorded"
    assert recorded["data"]["state"] == "closed"
    assert recorded["data"]["flag"] == "chargeback cb-late after the dispute closed (withdrawn)"
    (desk,) = on(out, "queue.dept.disputes")
    assert desk == recorded
    (seller,) = on(out, f"queue.vendor.{VENDOR}")
    assert seller["id"] == recorded["id"]
    assert "flag" not in seller["data"]  # platform only
    assert seller["data"]["chargeback_id"] == "cb-late"


def test_a_chargeback_naming_another_seller_is_refused() -> None:
    h = Harness()
    h.act(OPEN)
    charge(h, "cb-x", vendor_id="someone-else")
    (letter,) = [orjson.loads(r.value)["data"] for r in h.sent.on(CHANNEL_DLQ.name)]
    assert letter["reason"] == "action_refused"
    assert letter["source"]["topic"] == PAYMENTS_EVENTS.name
    assert letter["error"] == (
        f"chargeback 'cb-x' names buyer {BUYER!r} and seller 'someone-else'; the dispute on "
        f"order {ORDER!r} is between {BUYER!r} and {VENDOR!r}"
    )


def test_a_bad_chargeback_is_dead_lettered() -> None:
    h = Harness()
    wrong = orjson.loads(chargeback())
    wrong["type"] = "support.payment.refund"
    h.run(h.stage.handle(PAYMENTS_EVENTS.name, 1, 0, ORDER.encode(), orjson.dumps(wrong)))
    h.run(h.stage.handle(PAYMENTS_EVENTS.name, 1, 1, ORDER.encode(),
                         chargeback(amount="lots")))  # fmt: skip
    letters = [orjson.loads(r.value)["data"] for r in h.sent.on(CHANNEL_DLQ.name)]
    assert [d["reason"] for d in letters] == ["unsupported_type", "schema_violation"]
    assert letters[0]["error"] == (
        "type is 'support.payment.refund'; payments.events carries 'support.payment.chargeback'"
    )
    assert "data.amount" in letters[1]["error"]
    assert h.sent.on(DISPUTES_COMMANDS.name) == []


def policy_record(offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=DISPUTES_POLICY.name, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=DISPUTE_POLICY_KEY.encode(), value=value, checksum=None, serialized_key_size=8,
        serialized_value_size=len(value or b""), headers=(),
    )  # fmt: skip


ONE_HOUR = EXAMPLE_POLICY.read_text().replace(
    "seller_window: {default: 16h, gold: 24h, platinum: 24h}", "seller_window: {default: 1h}"
)
BROKEN = EXAMPLE_POLICY.read_text().replace("currency: EUR", "currency: euro")


def test_the_published_policy_is_followed_and_a_bad_record_keeps_the_previous_one() -> None:
    h = Harness()
    reload = DisputePolicyReload(RouterSettings(topic_prefix=""), h.stage, calendars())
    started = h.stage.processor.policy
    v1 = published_value(ONE_HOUR, "p.yaml", MONDAY)
    # at start: the newest record that validates wins; a newer broken one is refused
    with structlog.testing.capture_logs() as logs:
        h.run(reload.on_catch_up([policy_record(0, v1),
                                  policy_record(1, published_value(BROKEN, "p.yaml", MONDAY)),
                                  policy_record(2, None)]))  # fmt: skip
    (refused,) = [e for e in logs if e["event"] == "dispute_policy_refused"]
    assert refused["record"] == f"{DISPUTES_POLICY.name}[0]@1"
    assert refused["problems"] == [
        f"{DISPUTES_POLICY.name}[0]@1:p.yaml:6: currency: "
        "String should match pattern '^[A-Z]{3}$'"
    ]
    assert [e["record"] for e in logs if e["event"] == "dispute_policy_activated"] == [
        f"{DISPUTES_POLICY.name}[0]@0"
    ]
    assert h.stage.processor.policy.fingerprint != started.fingerprint
    assert reload.active == f"{DISPUTES_POLICY.name}[0]@0"
    opened = h.act(OPEN)
    (awaiting,) = [orjson.loads(r.value)["data"] for r in opened
                   if r.topic == DISPUTES_EVENTS.name
                   and orjson.loads(r.value)["type"] == "support.dispute.awaiting_seller"]
    # one business hour of the seller's calendar (Berlin, opening 10:00): 11:00, 10:00 UTC
    assert awaiting["deadlines"]["seller_response"] == "2026-01-05T10:00:00Z"
    # followed: a bad record changes nothing; the next good one is taken
    one_hour = h.stage.processor.policy
    h.run(reload.on_records([policy_record(3, b"not json")]))
    assert h.stage.processor.policy is one_hour
    assert reload.active == f"{DISPUTES_POLICY.name}[0]@0"
    h.run(reload.on_records([policy_record(4, published_value(
        EXAMPLE_POLICY.read_text(), "policy.yaml", MONDAY))]))  # fmt: skip
    assert h.stage.processor.policy.fingerprint == started.fingerprint
    assert reload.active == f"{DISPUTES_POLICY.name}[0]@4"


def test_with_nothing_published_the_startup_policy_stays() -> None:
    h = Harness()
    reload = DisputePolicyReload(RouterSettings(topic_prefix=""), h.stage, calendars())
    started = h.stage.processor.policy
    h.run(reload.on_catch_up([]))
    assert h.stage.processor.policy is started
    assert reload.active is None
