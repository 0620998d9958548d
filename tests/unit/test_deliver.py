"""`streams.deliver.Deliverer` with a fake HTTP call, sleep and jitter: what it sends, how
often, and what it writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import SecretStr

from router.delivery import Source
from router.outbound import outbound_reply
from schemas.action import Actor, ActorRole, ReplyAction
from streams.deliver import Answer, Deliverer
from streams.settings import RouterSettings

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
SOURCE = Source("outbound.chat", 0, 7)


def record(thread_ref: str = "whatsapp:106:4915550100") -> bytes:
    action = ReplyAction(ticket_id="T-1", at=NOW, actor=Actor(id="a", role=ActorRole.AGENT),
                         body="Hi")  # fmt: skip
    out = outbound_reply(action, "act-1", "chat", thread_ref, NOW)
    assert out is not None
    return out.value


class Fake:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.slept: list[float] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.calls.append((url, body, headers))
        return self.answers.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def deliverer(self, **settings: object) -> Deliverer:
        config = RouterSettings(deliver_base_url="http://graph.test", deliver_max_attempts=3,
                                deliver_base_delay_s=1.0, **settings)  # type: ignore[arg-type]
        return Deliverer(config, self.post, sleep=self.sleep, jitter=lambda: 0.0,
                         now=lambda: NOW)  # fmt: skip

    def run(self, value: bytes, **settings: object) -> list[dict[str, object]]:
        outs = asyncio.run(self.deliverer(**settings).deliver(value, b"T-1", SOURCE))
        return [{"topic": o.topic, **orjson.loads(o.value)} for o in outs]


def test_retries_with_backoff_then_delivers_with_one_key() -> None:
    fake = Fake(Answer(503), Answer(None, error="ClientConnectorError"),
                Answer(200, body=b'{"messages": [{"id": "wamid.1"}]}'))  # fmt: skip
    (outcome,) = fake.run(record(), deliver_token=SecretStr("tok-123"))
    assert fake.slept == [0.5, 1.0]
    assert len({c[2]["Idempotency-Key"] for c in fake.calls}) == 1
    assert {c[0] for c in fake.calls} == {"http://graph.test/106/messages"}
    assert fake.calls[0][2]["Authorization"] == "Bearer tok-123"
    assert outcome["type"] == "support.message.delivered"
    assert outcome["data"]["attempts"] == 3  # type: ignore[index]
    assert outcome["data"]["provider_message_id"] == "wamid.1"  # type: ignore[index]


def test_gives_up_after_the_last_attempt() -> None:
    fake = Fake(Answer(503), Answer(500), Answer(502))
    dlq, failed = fake.run(record())
    assert len(fake.calls) == 3
    assert fake.slept == [0.5, 1.0]
    assert (dlq["topic"], failed["type"]) == ("outbound.dlq", "support.message.failed")


@pytest.mark.parametrize("status", [400, 403])
def test_a_client_error_fails_at_once(status: int) -> None:
    fake = Fake(Answer(status))
    dlq, failed = fake.run(record())
    assert dlq["type"] == "support.reply.undeliverable"
    assert (len(fake.calls), fake.slept) == (1, [])
    assert failed["data"]["status"] == status  # type: ignore[index]


def test_no_token_no_authorization_header() -> None:
    fake = Fake(Answer(200))
    fake.run(record())
    assert "Authorization" not in fake.calls[0][2]


def test_a_thread_without_recipient_is_not_sent() -> None:
    fake = Fake()
    dlq, failed = fake.run(record("facebook:p:post:1_2:user:7"))
    assert fake.calls == []
    assert failed["data"]["attempts"] == 0  # type: ignore[index]
    assert "names no recipient" in str(dlq["data"])
