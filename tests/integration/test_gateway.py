"""The gateway on a real broker over real HTTP: what it accepts lands on the channel topic,
keyed by thread, once Kafka acknowledged it; what it refuses never reaches Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from schemas.message import InboundEvent
from streams.settings import RouterSettings
from tests.factories import inbound_event
from tests.gateway_support import (
    NEXT_SECRET,
    GatewayThread,
    create_channel_topics,
    gateway_settings,
    records_on,
    signed,
)
from tests.harness import Output, scrape, wait_for

pytestmark = pytest.mark.integration

CHAT = "/v1/channels/chat/messages"
BATCH = "/v1/channels/chat/messages:batch"


def message(n: int, thread: str = "sess-1", **data: Any) -> dict[str, Any]:
    doc: dict[str, Any] = inbound_event(f"m-{n}", channel="chat", thread_ref=thread)["data"]
    return {**doc, **data}


def event(n: int, thread: str = "sess-1") -> bytes:
    return orjson.dumps(inbound_event(f"e-{n}", channel="chat", thread_ref=thread))


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> RouterSettings:
    settings = gateway_settings(kafka_bootstrap, topic_prefix, max_record_bytes=4096)
    create_channel_topics(settings)
    return settings


@pytest.fixture
def gateway(settings: RouterSettings) -> Iterator[GatewayThread]:
    with GatewayThread(settings) as running:
        yield running


def chat_records(settings: RouterSettings, *ids: str) -> list[Output]:
    return records_on(settings, ["channel.chat"], *ids)


def by_key(outputs: list[Output]) -> set[tuple[bytes | None, str]]:
    return {(o.key, o.value["id"]) for o in outputs}


def test_each_form_is_acknowledged_and_lands_keyed_by_thread(
    gateway: GatewayThread, settings: RouterSettings
) -> None:
    structured = event(1, thread="sess-a")
    reply = gateway.post(CHAT, structured, signed(structured, "application/cloudevents+json"))
    assert (reply.status, reply.json) == (202, {"status": 202, "id": "e-1"})

    plain = orjson.dumps(message(2, thread="sess-b"))
    reply = gateway.post(CHAT, plain, signed(plain, secret=NEXT_SECRET))  # the rotated secret
    assert reply.status == 202
    plain_id = reply.json["id"]

    data = orjson.dumps(message(3, thread="sess-c"))
    ce = {"ce-specversion": "1.0", "ce-id": "b-3", "ce-source": "urn:chat",
          "ce-type": "support.message.received"}  # fmt: skip
    reply = gateway.post(CHAT, data, signed(data, extra=ce))
    assert (reply.status, reply.json["id"]) == (202, "b-3")

    records = chat_records(settings, "e-1", plain_id, "b-3")
    assert by_key(records) == {(b"sess-a", "e-1"), (b"sess-b", plain_id), (b"sess-c", "b-3")}
    first = next(o for o in records if o.value["id"] == "e-1")
    assert first.value == orjson.loads(structured)  # a structured event goes as sent
    for record in records:
        InboundEvent.model_validate(record.value)


def test_refused_requests_get_their_status_and_nothing_is_produced(
    gateway: GatewayThread, settings: RouterSettings
) -> None:
    body = event(1)
    now = int(time.time())
    refusals = {
        "forged": (gateway.post(CHAT, body, signed(body, secret="an-attacker's-guess!")), 401),
        "stale": (gateway.post(CHAT, body, signed(body, at=now - 301)), 401),
        "unsigned": (gateway.post(CHAT, body, {"Content-Type": "application/json"}), 401),
        "unknown source": (gateway.post(CHAT, body, signed(body, source="someone")), 401),
        "oversize": (gateway.post(CHAT, b" " * 4097 + body, signed(b" " * 4097 + body)), 413),
        "media type": (gateway.post(CHAT, body, signed(body, "text/plain")), 415),
        "channel": (gateway.post("/v1/channels/fax/messages", body, signed(body)), 404),
    }
    bad = orjson.dumps(message(9, sender={"id": "b-1", "role": "pirate"}, colour="red"))
    refusals["invalid"] = (gateway.post(CHAT, bad, signed(bad)), 400)
    for what, (reply, status) in refusals.items():
        assert reply.status == status, (what, reply.json)
        assert reply.headers["Content-Type"].startswith("application/json"), what
        assert reply.json["status"] == status
        assert "Traceback" not in reply.raw.decode()
    assert refusals["forged"][0].json["reason"] == "signature_mismatch"
    assert refusals["stale"][0].json["reason"] == "signature_stale"
    assert refusals["unsigned"][0].json["reason"] == "signature_missing"
    assert refusals["invalid"][0].json["reason"] == "schema_violation"
    assert {e["field"] for e in refusals["invalid"][0].json["errors"]} == {"sender.role", "colour"}

    headers = signed(body)
    assert gateway.post(CHAT, body, headers).status == 202
    replayed = gateway.post(CHAT, body, headers)  # the very same signed request again
    assert (replayed.status, replayed.json["reason"]) == (401, "signature_replayed")

    sentinel = event(2)
    assert gateway.post(CHAT, sentinel, signed(sentinel)).status == 202
    assert [o.value["id"] for o in chat_records(settings, "e-2")] == ["e-1", "e-2"]


def test_a_retry_with_a_fresh_signature_is_accepted_again(
    gateway: GatewayThread, settings: RouterSettings
) -> None:
    plain = orjson.dumps(message(1))
    t0 = int(time.time())
    first = gateway.post(CHAT, plain, signed(plain, at=t0))
    retry = gateway.post(CHAT, plain, signed(plain, at=t0 - 1))
    assert first.status == retry.status == 202
    assert first.json["id"] == retry.json["id"]  # the engine keeps one message per id
    records = chat_records(settings, first.json["id"])
    assert {o.value["id"] for o in records} == {first.json["id"]}


def test_a_batch_answers_per_item(gateway: GatewayThread, settings: RouterSettings) -> None:
    items = [
        orjson.loads(event(1, thread="sess-x")),
        message(2, thread="sess-y"),
        message(3, body=None),
        orjson.loads(event(4, thread="sess-x")),
    ]
    body = orjson.dumps(items)
    reply = gateway.post(BATCH, body, signed(body))
    assert reply.status == 200, reply.json
    assert (reply.json["accepted"], reply.json["refused"]) == (3, 1)
    results = reply.json["results"]
    assert [r["status"] for r in results] == [202, 202, 400, 202]
    assert results[2]["errors"] == [{"field": "body", "error": "Input should be a valid string"}]
    records = chat_records(settings, "e-1", results[1]["id"], "e-4")
    assert by_key(records) == {
        (b"sess-x", "e-1"), (b"sess-y", results[1]["id"]), (b"sess-x", "e-4")
    }  # fmt: skip

    too_many = orjson.dumps([message(n) for n in range(settings.gateway_batch_max_items + 1)])
    reply = gateway.post(BATCH, too_many, signed(too_many))
    assert (reply.status, reply.json["reason"]) == (413, "too_many_items")


def test_over_the_rate_limit_429_with_retry_after(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = gateway_settings(
        kafka_bootstrap, topic_prefix, gateway_rate_per_s=0.05, gateway_rate_burst=2,
        gateway_batch_max_items=2,
    )  # fmt: skip
    create_channel_topics(settings)
    with GatewayThread(settings) as gateway:
        replies = [gateway.post(CHAT, event(n), signed(event(n))) for n in range(3)]
        assert [r.status for r in replies] == [202, 202, 429]
        assert replies[2].json["reason"] == "rate_limited"
        assert int(replies[2].headers["Retry-After"]) >= 19  # a token per 20 s
        assert gateway.post(CHAT, event(2), signed(event(2))).status == 429  # still over
    records = chat_records(settings, "e-1")
    assert [o.value["id"] for o in records] == ["e-0", "e-1"]


def test_health_readiness_and_openapi(gateway: GatewayThread) -> None:
    assert gateway.get("/healthz").status == 200
    wait_for(lambda: gateway.get("/readyz").status == 200, 30, "readiness")
    assert gateway.get("/readyz").json["ready"] is True
    doc = gateway.get("/openapi.json")
    assert doc.status == 200
    assert "/v1/channels/{channel}/messages:batch" in doc.json["paths"]
    assert gateway.get("/v1/nothing").json == {
        "status": 404, "reason": "not_found", "error": "Not Found", "errors": []
    }  # fmt: skip


def test_metrics_count_answers_by_route_and_acknowledged_records(
    gateway: GatewayThread,
) -> None:
    first, second = event(1, thread="sess-m"), event(2, thread="sess-m")
    for body in (first, second):
        assert gateway.post(CHAT, body, signed(body)).status == 202
    assert gateway.post(CHAT, first, {"Content-Type": "application/json"}).status == 401
    assert gateway.post("/v1/channels/fax/messages", first, signed(first)).status == 404
    assert gateway.get("/no/such/path").status == 404
    samples = scrape(gateway.url + "/metrics")

    def requests(route: str, status: str) -> float | None:
        return samples.get(("router_gateway_requests_total", (("route", route),
                                                              ("status", status))))  # fmt: skip

    assert requests("/v1/channels/{channel}/messages", "202") == 2
    assert requests("/v1/channels/{channel}/messages", "401") == 1
    assert requests("/v1/channels/{channel}/messages", "404") == 1  # the route, not "fax"
    assert requests("unmatched", "404") == 1
    assert samples[("router_gateway_records_total", (("topic", "channel.chat"),))] == 2
    assert samples[("router_gateway_kafka_seconds_count", ())] == 2
    assert not any("fax" in str(labels) or "no/such" in str(labels) for _, labels in samples)


def test_not_ready_while_the_topics_it_writes_are_missing(kafka_bootstrap: str) -> None:
    settings = gateway_settings(kafka_bootstrap, "never-created.")
    with GatewayThread(settings) as gateway:
        ready = gateway.get("/readyz")
        assert ready.status == 503
        assert ready.json["missing"] == [
            "never-created.channel.chat", "never-created.channel.email",
            "never-created.channel.social", "never-created.delivery.receipts",
        ]  # fmt: skip
