"""The delivery core: Graph API request shapes, the retry policy, and outcome records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from router.delivery import (
    Delivered,
    Failed,
    Retry,
    RetryPolicy,
    Source,
    delivered_record,
    failed_records,
    judge,
    provider_message_id,
    request_for,
    retry_after_seconds,
)
from router.outbound import outbound_reply
from schemas.action import Actor, ActorRole, ReplyAction
from schemas.outbound import OutboundReplyEvent, UndeliveredReply

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=10.0)


def event(thread_ref: str = "whatsapp:106:4915550100") -> OutboundReplyEvent:
    action = ReplyAction(ticket_id="T-1", at=NOW, actor=Actor(id="a", role=ActorRole.AGENT),
                         body="Refund sent.")  # fmt: skip
    record = outbound_reply(action, "act-1", "chat", thread_ref, NOW)
    assert record is not None
    return OutboundReplyEvent.model_validate_json(record.value)


def test_whatsapp_request_shape() -> None:
    request = request_for(event().data, "http://graph.test/v21.0/")
    assert request is not None
    assert request.url == "http://graph.test/v21.0/106/messages"
    assert request.body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": "4915550100", "type": "text", "text": {"body": "Refund sent."}}


@pytest.mark.parametrize("platform", ["messenger", "instagram"])
def test_messenger_and_instagram_request_shape(platform: str) -> None:
    request = request_for(event(f"{platform}:page-9:psid-7").data, "http://graph.test")
    assert request is not None
    assert request.url == "http://graph.test/me/messages"
    assert request.body == {"recipient": {"id": "psid-7"}, "messaging_type": "RESPONSE",
                            "message": {"text": "Refund sent."}}


def test_a_thread_without_recipient_has_no_request() -> None:
    assert request_for(event("facebook:p:post:1_2:user:7").data, "http://graph.test") is None


def test_backoff_doubles_within_the_cap_with_half_of_it_jittered() -> None:
    assert [POLICY.backoff(n, 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 5, 5]
    assert [POLICY.backoff(n, 0.999) for n in (1, 2)] == pytest.approx([0.9995, 1.999])


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert judge(POLICY, 1, status, now=NOW, jitter=0.5) == Delivered(status)


@pytest.mark.parametrize("status", [500, 502, 503, 504, None])
def test_5xx_and_no_answer_are_retried_until_the_last_attempt(status: int | None) -> None:
    assert judge(POLICY, 1, status, now=NOW, jitter=0.0) == Retry(0.5)
    assert judge(POLICY, 3, status, now=NOW, jitter=1.0) == Retry(4.0)
    last = judge(POLICY, 4, status, error="refused", now=NOW, jitter=0.0)
    assert isinstance(last, Failed)
    assert last.status == status
    assert "attempt 4 of 4" in last.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_fail_at_once(status: int) -> None:
    verdict = judge(POLICY, 1, status, now=NOW, jitter=0.0)
    assert verdict == Failed(f"HTTP {status}: not retriable", status)


def test_429_honours_retry_after_within_the_cap() -> None:
    assert judge(POLICY, 1, 429, retry_after="3", now=NOW, jitter=0.0) == Retry(3.0)
    assert judge(POLICY, 1, 429, retry_after="120", now=NOW, jitter=0.0) == Retry(10.0)
    assert judge(POLICY, 1, 429, now=NOW, jitter=0.0) == Retry(0.5)  # none: the backoff
    date = "Tue, 03 Mar 2026 10:00:07 GMT"
    assert judge(POLICY, 1, 429, retry_after=date, now=NOW, jitter=0.0) == Retry(7.0)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("5", NOW) == 5.0
    assert retry_after_seconds("Tue, 03 Mar 2026 09:59:00 GMT", NOW) == 0.0
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_provider_message_id() -> None:
    assert provider_message_id(b'{"messages": [{"id": "wamid.X"}]}') == "wamid.X"
    assert provider_message_id(b'{"recipient_id": "1", "message_id": "m_1"}') == "m_1"
    assert provider_message_id(b"<html>") is None


def test_outcome_ids_derive_from_the_idempotency_key() -> None:
    reply = event()
    first = delivered_record(reply.data, 3, 200, "wamid.X", NOW)
    again = delivered_record(reply.data, 3, 200, "wamid.X", NOW + timedelta(minutes=1))
    doc = orjson.loads(first.value)
    assert (first.topic, first.key, doc["type"]) == ("tickets.events", b"T-1",
                                                      "support.message.delivered")
    assert doc["id"] == orjson.loads(again.value)["id"] != reply.id
    assert doc["data"]["idempotency_key"] == reply.id
    assert (doc["data"]["attempts"], doc["data"]["provider_message_id"]) == (3, "wamid.X")


def test_a_failure_dead_letters_the_record_whole_and_reports_it() -> None:
    reply = event()
    raw = reply.model_dump_json().encode()
    dlq, failed = failed_records(reply, raw, b"T-1", Source("outbound.chat", 2, 40), 1,
                                 Failed("HTTP 400: not retriable", 400), NOW)  # fmt: skip
    assert (dlq.topic, failed.topic) == ("outbound.dlq", "tickets.events")
    letter = UndeliveredReply.model_validate(orjson.loads(dlq.value)["data"])
    assert letter.record == reply
    assert (letter.reason, letter.status, letter.offset) == ("HTTP 400: not retriable", 400, 40)
    doc = orjson.loads(failed.value)
    assert doc["type"] == "support.message.failed"
    assert doc["data"]["reason"] == "HTTP 400: not retriable"


def test_a_value_that_is_no_record_is_dead_lettered_as_read() -> None:
    (dlq,) = failed_records(None, b"not json", b"T-9", Source("outbound.chat", 0, 3), 0,
                            Failed("not an outbound record", None), NOW)  # fmt: skip
    letter = UndeliveredReply.model_validate(orjson.loads(dlq.value)["data"])
    assert (letter.raw, letter.record, dlq.key) == ("not json", None, b"T-9")
