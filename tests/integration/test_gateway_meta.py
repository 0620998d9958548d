"""Meta webhooks through the gateway on a real broker over real HTTP: the subscription
handshake, signed deliveries landing on the right channel topics (and routed by a worker),
receipts on `delivery.receipts` (and on their ticket), forgeries producing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from router.intake import meta
from schemas import CloudEvent, RoutedTicket
from schemas.message import InboundEvent
from schemas.outbound import MESSAGE_STATUS, DeliveryReceiptEvent, MessageStatus
from schemas.topics import DELIVERY_RECEIPTS, TICKETS_EVENTS
from streams.settings import RouterSettings
from tests.gateway_support import (
    GatewayThread,
    Reply,
    create_channel_topics,
    gateway_settings,
    records_on,
)
from tests.harness import Output, scrape, wait_for
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meta"
WEBHOOK = "/v1/webhooks/meta"
VERIFY_TOKEN = "verify-token-of-the-test"
PAGE = "113388404420128"
APP_SECRET = "3f1c5e0a9b7d4c2e8f6a1b3d5c7e9f0a"
NEXT_APP_SECRET = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


def meta_settings(bootstrap: str, prefix: str, **overrides: Any) -> RouterSettings:
    return gateway_settings(
        bootstrap, prefix, gateway_meta_verify_token=VERIFY_TOKEN,
        gateway_meta_app_secrets=[APP_SECRET, NEXT_APP_SECRET], **overrides,
    )  # fmt: skip


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_document(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(fixture(name))
    return doc


def deliver(gateway: GatewayThread, body: bytes, secret: str = APP_SECRET) -> Reply:
    """A delivery signed the way Meta signs it."""
    headers = {
        "Content-Type": "application/json",
        meta.SIGNATURE_HEADER: meta.sign(secret.encode(), body),
    }
    return gateway.post(WEBHOOK, body, headers)


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> RouterSettings:
    settings = meta_settings(kafka_bootstrap, topic_prefix)
    create_channel_topics(settings)
    return settings


@pytest.fixture
def gateway(settings: RouterSettings) -> Iterator[GatewayThread]:
    with GatewayThread(settings) as running:
        yield running


def channel_records(settings: RouterSettings, *ids: str) -> list[Output]:
    """Both Meta channel topics, once every one of `ids` is on them."""
    return records_on(settings, ["channel.chat", "channel.social"], *ids)


def test_the_subscription_handshake(gateway: GatewayThread) -> None:
    def verify(token: str, challenge: str = "1158201444") -> Reply:
        query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
        return gateway.get(f"{WEBHOOK}?{urlencode(query)}")

    good = verify(VERIFY_TOKEN)
    assert (good.status, good.raw) == (200, b"1158201444")
    assert good.headers["Content-Type"].startswith("text/plain")
    wrong = verify("verify-token-of-someone-else")
    assert wrong.status == 403
    assert b"1158201444" not in wrong.raw
    assert gateway.get(WEBHOOK).status == 403


def test_signed_deliveries_land_on_their_channel_topics(
    gateway: GatewayThread, settings: RouterSettings
) -> None:
    ids: dict[str, list[str]] = {}
    for name in ("whatsapp_text", "whatsapp_image", "messenger_text", "instagram_comment",
                 "instagram_mention", "facebook_feed_comment"):  # fmt: skip
        # the rotated secret signs as well as the current one
        reply = deliver(gateway, fixture(name), NEXT_APP_SECRET if "image" in name else APP_SECRET)
        assert reply.status == 200, (name, reply.json)
        ids[name] = reply.json["ids"]
    assert [len(v) for v in ids.values()] == [2, 2, 1, 1, 1, 1]

    # Meta delivers the same body again: the same ids, so the engine adds nothing
    again = deliver(gateway, fixture("whatsapp_text"))
    assert (again.status, again.json["ids"]) == (200, ids["whatsapp_text"])

    records = channel_records(settings, *(i for v in ids.values() for i in v))
    by_id = {o.value["id"]: o for o in records}
    assert len(records) == 10  # 8 records, and the two redelivered ones
    topics = {name: {by_id[i].topic for i in v} for name, v in ids.items()}
    assert topics == {
        "whatsapp_text": {"channel.chat"}, "whatsapp_image": {"channel.chat"},
        "messenger_text": {"channel.chat"}, "instagram_comment": {"channel.social"},
        "instagram_mention": {"channel.social"}, "facebook_feed_comment": {"channel.social"},
    }  # fmt: skip
    for record in records:
        event = InboundEvent.model_validate(record.value)
        assert record.key == event.data.thread_ref.encode()
        assert (event.data.attributes.get("public") is True) == (record.topic == "channel.social")
    whatsapp = [InboundEvent.model_validate(by_id[i].value).data for i in ids["whatsapp_text"]]
    assert {m.thread_ref for m in whatsapp} == {"whatsapp:106540352242922:16505551234"}
    image = InboundEvent.model_validate(by_id[ids["whatsapp_image"][0]].value).data
    assert [(a.id, a.content_type) for a in image.attachments] == [
        ("1003383421387256", "image/jpeg")
    ]  # fmt: skip


def test_forgeries_produce_nothing_and_receipts_go_to_the_receipts_topic(
    gateway: GatewayThread, settings: RouterSettings
) -> None:
    body = fixture("messenger_text")
    forged = deliver(gateway, body, secret="an-attacker's-guess-of-a-secret")
    unsigned = gateway.post(WEBHOOK, body, {"Content-Type": "application/json"})
    signature = meta.sign(APP_SECRET.encode(), body)
    tampered = gateway.post(
        WEBHOOK, body.replace(b"refund", b"refunc"),
        {"Content-Type": "application/json", meta.SIGNATURE_HEADER: signature},
    )  # fmt: skip
    for reply, reason in ((forged, "signature_mismatch"), (unsigned, "signature_missing"),
                          (tampered, "signature_mismatch")):  # fmt: skip
        assert (reply.status, reply.json["reason"]) == (401, reason)

    status = deliver(gateway, fixture("whatsapp_status"))
    assert status.status == 200
    assert (status.json["accepted"], status.json["receipts"]) == (0, 2)
    junk = deliver(gateway, b"[1, 2]")
    assert (junk.status, junk.json["reason"]) == (400, "schema_violation")
    huge = body + b" " * settings.gateway_batch_max_bytes  # signed, but over the limit
    too_large = deliver(gateway, huge)
    assert (too_large.status, too_large.json["reason"]) == (413, "body_too_large")

    # a sentinel on each topic comes after anything the refused requests could have produced
    sentinels = [*deliver(gateway, fixture("whatsapp_text")).json["ids"],
                 *deliver(gateway, fixture("facebook_feed_comment")).json["ids"]]  # fmt: skip
    records = channel_records(settings, *sentinels)
    assert sorted(o.value["id"] for o in records) == sorted(sentinels)
    expected = meta.normalise(fixture("whatsapp_status"), datetime.now(UTC), 4096)
    assert isinstance(expected, meta.Normalised)
    on_topic = records_on(
        settings, [DELIVERY_RECEIPTS.name], *(r.event_id for r in expected.receipts)
    )
    receipts = [DeliveryReceiptEvent.model_validate(o.value).data for o in on_topic]
    assert [r.status.value for r in receipts] == ["delivered", "read"]  # in Meta's order


def test_meta_deliveries_are_routed_by_the_engine_once(
    engine: EngineUnderTest, settings: RouterSettings
) -> None:
    engine.start_worker()
    with GatewayThread(settings) as gateway:
        first = deliver(gateway, fixture("whatsapp_text"))
        assert deliver(gateway, fixture("whatsapp_text")).json["ids"] == first.json["ids"]
        refund = deliver(gateway, fixture("messenger_text")).json["ids"]
        comment = deliver(gateway, fixture("facebook_feed_comment")).json["ids"]
    last = first.json["ids"][-1]

    def routed(outputs: list[Output], queue: str) -> list[RoutedTicket]:
        return [
            CloudEvent[RoutedTicket].model_validate(o.value).data
            for o in sorted(outputs, key=lambda o: o.offset)
            if o.topic == queue
        ]

    def seen(outputs: list[Output], queue: str, event_id: str) -> bool:
        return any(m.inbound_id == event_id for t in routed(outputs, queue) for m in t.messages)

    outputs = engine.collector().poll_until(
        lambda outs: seen(outs, "queue.dept.general", last)
        and seen(outs, "queue.dept.payments", refund[0])
        and seen(outs, "queue.dept.social", comment[0]),
        90, "the three Meta threads on their queues",
    )  # fmt: skip
    general = routed(outputs, "queue.dept.general")
    # two messages of one WhatsApp thread, delivered twice: one ticket, each message once
    assert [[m.inbound_id for m in t.messages] for t in general] == [
        first.json["ids"][:1], first.json["ids"]
    ]  # fmt: skip
    assert {t.ticket_id for t in general} == {general[0].ticket_id}
    (social,) = routed(outputs, "queue.dept.social")
    assert social.channel.value == "social"
    assert social.priority.value == "high"  # public posts are


def test_receipts_land_on_their_threads_ticket_and_open_none(
    engine: EngineUnderTest, settings: RouterSettings
) -> None:
    worker = engine.start_worker()
    stranger = {"object": "page", "entry": [{"id": PAGE, "messaging": [{
        "sender": {"id": "7000000000000001"}, "recipient": {"id": PAGE},
        "timestamp": 1750264600500, "read": {"watermark": 1750264540001}}]}]}  # fmt: skip
    with GatewayThread(settings) as gateway:
        opened = deliver(gateway, fixture("whatsapp_text")).json["ids"]
        # receipts are for replies, which follow the ticket: wait for it (another topic, so
        # no order between the two)
        engine.collector().poll_until(
            lambda outs: any(o.value.get("type") == "support.ticket.opened" for o in outs),
            90, "the WhatsApp ticket",
        )  # fmt: skip
        assert deliver(gateway, fixture("whatsapp_status")).json["receipts"] == 2
        assert deliver(gateway, orjson.dumps(stranger)).json["receipts"] == 1  # no ticket

    def statuses(outputs: list[Output]) -> list[MessageStatus]:
        return [
            MessageStatus.model_validate(o.value["data"])
            for o in sorted(outputs, key=lambda o: o.offset)
            if o.topic == TICKETS_EVENTS.name and o.value["type"] == MESSAGE_STATUS
        ]

    outputs = engine.collector().poll_until(
        lambda outs: len(statuses(outs)) >= 2, 90, "two receipts on the WhatsApp ticket"
    )
    (whatsapp,) = {
        o.value["subject"] for o in outputs
        if o.topic == TICKETS_EVENTS.name and o.value["type"] == "support.ticket.opened"
    }  # fmt: skip
    found = statuses(outputs)
    assert [(s.ticket_id, s.status.value) for s in found] == [
        (whatsapp, "delivered"), (whatsapp, "read"),
    ]  # fmt: skip
    assert found[0].message_ids == (
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
    )
    assert len(opened) == 2

    # the stranger's receipt was read and dropped: it opened no ticket
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def counted() -> bool:
        nonlocal samples
        url = worker.metrics_url()
        samples = scrape(url) if url is not None else {}
        key = ("router_inbound_records_total", (("outcome", "receipt_without_ticket"),))
        return samples.get(key) == 1

    wait_for(counted, 60, "the receipt without a ticket counted")
    assert samples[("router_inbound_records_total", (("outcome", "receipt"),))] == 2
    assert samples[("router_inbound_records_total", (("outcome", "opened"),))] == 1
