"""The gateway in front of the engine: `router gateway` -> channel topic -> worker -> queue, and
Kafka going away under a running gateway (503, then a retry accepted and routed once)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import CloudEvent, RoutedTicket
from streams.local.broker import LocalKafka, NodeSpec
from streams.local.install import free_port, new_kafka_uuid
from tests.factories import inbound_event
from tests.gateway_support import (
    GatewayProcess,
    GatewayThread,
    Reply,
    gateway_settings,
    signed,
)
from tests.harness import Output, wait_for
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

CHAT = "/v1/channels/chat/messages"


def chat(n: int, thread: str, vendor: str) -> bytes:
    doc: dict[str, Any] = inbound_event(f"m-{n}", channel="chat", thread_ref=thread)["data"]
    return orjson.dumps({**doc, "vendor_id": vendor, "body": f"message {n}"})


def routed(outputs: list[Output], queue: str) -> list[RoutedTicket]:
    return [
        CloudEvent[RoutedTicket].model_validate(o.value).data
        for o in sorted(outputs, key=lambda o: o.offset)
        if o.topic == queue
    ]


def last_inbound(queue: str, event_id: str) -> Callable[[list[Output]], bool]:
    return lambda outs: any(t.messages[-1].inbound_id == event_id for t in routed(outs, queue))


def accepted(reply: Reply) -> str:
    assert reply.status == 202, reply.json
    event_id: str = reply.json["id"]
    return event_id


def test_messages_through_the_gateway_are_routed_once(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    engine.start_worker()
    gateway = GatewayProcess(
        {"KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap, "ROUTER_TOPIC_PREFIX": engine.prefix},
        tmp_path / "gateway.log",
    ).start()
    try:
        first = chat(1, "sess-1", "acme")
        t0 = int(time.time())
        opened = accepted(gateway.post(CHAT, first, signed(first, at=t0)))
        # a connector's retry (signed again, so another signature): same id, nothing added
        retried = signed(first, at=t0 - 1)
        assert accepted(gateway.post(CHAT, first, retried)) == opened
        follow_up = chat(2, "sess-1", "acme")
        joined = accepted(gateway.post(CHAT, follow_up, signed(follow_up)))
        email = orjson.dumps(inbound_event("e-1", thread_ref="mail-1", vendor_id="bolt"))
        reply = gateway.post(
            "/v1/channels/email/messages", email, signed(email, "application/cloudevents+json")
        )
        assert accepted(reply) == "e-1"

        outputs = engine.collector().poll_until(
            lambda outs: last_inbound("queue.vendor.acme", joined)(outs)
            and last_inbound("queue.vendor.bolt", "e-1")(outs),
            90, "both tickets on their vendors' queues",
        )  # fmt: skip
        acme = routed(outputs, "queue.vendor.acme")
        assert [[m.inbound_id for m in t.messages] for t in acme] == [[opened], [opened, joined]]
        assert acme[0].ticket_id == acme[1].ticket_id
        assert [t.messages[0].inbound_id for t in routed(outputs, "queue.vendor.bolt")] == ["e-1"]
    finally:
        rc = gateway.stop()
    assert rc == 0, gateway.log_text()  # SIGTERM: drained and closed
    assert "0123456789abcdef" not in gateway.log_text()  # no secret in its logs


def test_kafka_unavailable_503_then_a_retry_is_accepted_and_routed_once(
    tmp_path: Path, topic_prefix: str
) -> None:
    client_port, controller_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{client_port}"
    settings = gateway_settings(bootstrap, topic_prefix, gateway_ack_timeout_s=3.0)
    node = NodeSpec(
        1, client_port, controller_port, {1: f"127.0.0.1:{controller_port}"}, new_kafka_uuid(), 1
    )
    kafka = LocalKafka(node=node)
    engine = EngineUnderTest(bootstrap, topic_prefix, tmp_path)
    with GatewayThread(settings) as gateway:
        try:
            # nothing listens on the broker's port yet
            first = chat(1, "sess-1", "acme")
            headers = signed(first)
            down = gateway.post(CHAT, first, headers)
            assert (down.status, down.json["reason"]) == (503, "kafka_unavailable")
            assert int(down.headers["Retry-After"]) >= 1
            assert gateway.get("/readyz").status == 503

            kafka.start()
            engine.start_worker()  # creates the channel topics
            wait_for(lambda: gateway.get("/readyz").status == 200, 60, "the gateway ready")
            # the very request that got the 503 (same signature) is accepted now
            opened = accepted(gateway.post(CHAT, first, headers))
            assert opened == down.json["id"]
            # the worker past its start-up (it routed something) before the broker dies
            engine.collector().poll_until(
                last_inbound("queue.vendor.acme", opened), 120, "the first message routed"
            )

            # the broker dies under a connected gateway: 503 again, and back after a restart
            kafka.kill()
            second = chat(2, "sess-1", "acme")
            lost = gateway.post(CHAT, second, signed(second))
            assert (lost.status, lost.json["reason"]) == (503, "kafka_unavailable")
            kafka.restart()
            joined = accepted(gateway.post(CHAT, second, signed(second)))
            assert joined == lost.json["id"]
            third = chat(3, "sess-1", "acme")
            last = accepted(gateway.post(CHAT, third, signed(third)))

            outputs = engine.collector().poll_until(
                last_inbound("queue.vendor.acme", last), 120, "the last message routed"
            )
            tickets = routed(outputs, "queue.vendor.acme")
            # the record the dead broker may still have taken adds nothing: one per id
            assert [[m.inbound_id for m in t.messages] for t in tickets] == [
                [opened], [opened, joined], [opened, joined, last]
            ]  # fmt: skip
        finally:
            try:
                engine.stop_all()
            finally:
                kafka.stop()
