"""The `direct` routing runtime (streams/stages/direct.py) on a real broker: it routes as the
faust runtime does, from the same table changelog, and loses nothing across a SIGKILL, a
rebalance between two workers, or a restart."""

from __future__ import annotations

import pytest

from schemas import CloudEvent, DeadLetter, RoutedTicket
from tests.factories import inbound_bytes
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

DIRECT = {"ROUTER_STAGE": "routing", "ROUTER_ROUTING_RUNTIME": "direct"}


def on(topic: str, outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def test_routes_follow_ups_and_dead_letters(engine: EngineUnderTest) -> None:
    engine.start_worker(**DIRECT)
    engine.send("chat", [
        (b"sess-9", inbound_bytes("c-1", channel="chat", thread_ref="sess-9", vendor_id="bolt")),
        (b"sess-9", b'{"specversion": "1.0", "id": "broken"'),
        (b"sess-9", inbound_bytes("c-2", channel="chat", thread_ref="sess-9", vendor_id="bolt",
                                  body="Any news?")),
    ])  # fmt: skip
    outputs = engine.collector().poll_until(
        lambda outs: len(on("queue.vendor.bolt", outs)) >= 2 and bool(on("channel.dlq", outs)),
        90, "two routed records and one dead letter",
    )  # fmt: skip
    first, second = (CloudEvent[RoutedTicket].model_validate(o.value).data
                     for o in on("queue.vendor.bolt", outputs))  # fmt: skip
    assert first.ticket_id == second.ticket_id
    assert [m.inbound_id for m in second.messages] == ["c-1", "c-2"]
    letter = CloudEvent[DeadLetter].model_validate(on("channel.dlq", outputs)[0].value).data
    assert letter.reason == "invalid_json"
