"""The Python connector SDK (`ChannelPublisher`) on a real broker: what it accepts lands keyed by
thread with the gateway's ids, what the engine would dead-letter is refused before Kafka, and
no more than `max_in_flight` records wait for an acknowledgement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from router.intake.request import Record, read_document
from schemas.message import Channel, InboundMessage
from streams.connectors.publisher import ChannelPublisher, InvalidMessage
from streams.settings import RouterSettings
from tests.factories import inbound_event
from tests.gateway_support import (
    SOURCE,
    GatewayThread,
    create_channel_topics,
    gateway_settings,
    signed,
)
from tests.harness import Collector, Output

pytestmark = pytest.mark.integration


def message(n: int, thread: str = "sess-1", **data: Any) -> dict[str, Any]:
    doc: dict[str, Any] = inbound_event(f"m-{n}", channel="chat", thread_ref=thread)["data"]
    return {**doc, **data}


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> RouterSettings:
    settings = gateway_settings(kafka_bootstrap, topic_prefix)
    create_channel_topics(settings)
    return settings


def records(settings: RouterSettings, topic: str, ids: set[str]) -> list[Output]:
    collector = Collector(settings.kafka_bootstrap_servers, settings.topic_prefix, [topic])
    outputs = collector.poll_until(
        lambda outs: ids <= {o.value["id"] for o in outs}, 30, f"{len(ids)} records"
    )
    return sorted(outputs, key=lambda o: (o.partition, o.offset))


def test_published_messages_land_keyed_by_thread_with_stable_ids(settings: RouterSettings) -> None:
    async def run() -> list[str]:
        async with ChannelPublisher(settings, source=SOURCE) as publisher:
            plain = await publisher.publish(message(1, thread="sess-a"))
            again = await publisher.publish(message(1, thread="sess-a"))  # a resend
            structured = await publisher.publish(inbound_event("e-2", channel="email"))
            model = await publisher.published(InboundMessage.model_validate(message(3)))
            assert plain == again
            return [plain, structured, model]

    plain, structured, model = asyncio.run(run())
    assert structured == "e-2"
    chat = records(settings, "channel.chat", {plain, model})
    assert sorted((o.key, o.value["id"]) for o in chat) == sorted(
        [(b"sess-a", plain), (b"sess-a", plain), (b"sess-1", model)]
    )
    email = records(settings, "channel.email", {"e-2"})
    assert [o.key for o in email] == [b"thread-1"]


def test_the_gateway_and_the_publisher_give_a_message_the_same_id(
    settings: RouterSettings,
) -> None:
    body = orjson.dumps(message(7))
    with GatewayThread(settings) as gateway:
        reply = gateway.post("/v1/channels/chat/messages", body, signed(body))
    assert reply.status == 202
    expected = read_document(Channel.CHAT, message(7), SOURCE, datetime.now(UTC), 4096)
    assert isinstance(expected, Record)

    async def run() -> str:
        async with ChannelPublisher(settings, source=SOURCE) as publisher:
            return await publisher.published(message(7))

    assert asyncio.run(run()) == reply.json["id"] == expected.event_id


def test_what_the_engine_would_dead_letter_is_refused_before_kafka(
    settings: RouterSettings,
) -> None:
    async def run() -> None:
        async with ChannelPublisher(settings, source=SOURCE) as publisher:
            with pytest.raises(InvalidMessage) as bad:
                await publisher.publish(message(1, sender={"id": "b", "role": "pirate"}))
            assert bad.value.reason == "schema_violation"
            assert [e.field for e in bad.value.errors] == ["sender.role"]
            with pytest.raises(InvalidMessage) as fax:
                await publisher.publish(message(2, channel="fax"))
            assert fax.value.reason == "unknown_channel"
            with pytest.raises(InvalidMessage) as big:
                await publisher.publish(message(3, body="x" * settings.max_record_bytes))
            assert big.value.reason == "oversize"
            await publisher.published(message(4))  # the sentinel, on the same thread

    asyncio.run(run())
    chat = Collector(settings.kafka_bootstrap_servers, settings.topic_prefix, ["channel.chat"])
    outputs = chat.poll_until(lambda outs: len(outs) >= 1, 30, "the sentinel")
    assert [o.value["data"]["message_id"] for o in outputs] == ["msg-m-4"]


def test_backpressure_bounds_the_records_waiting_for_kafka(settings: RouterSettings) -> None:
    async def run() -> tuple[int, list[str]]:
        highest = 0
        async with ChannelPublisher(settings, source=SOURCE, max_in_flight=8) as publisher:
            ids = []
            for n in range(300):
                ids.append(await publisher.publish(message(n, thread=f"sess-{n % 7}")))
                highest = max(highest, publisher.in_flight)
        assert publisher.in_flight == 0  # leaving the block waited for every acknowledgement
        return highest, ids

    highest, ids = asyncio.run(run())
    assert 1 <= highest <= 8
    assert len(set(ids)) == 300
    assert len(records(settings, "channel.chat", set(ids))) == 300
