"""Request bodies in every accepted form -> the engine's channel record, or the refusal; the
refusals carry the engine's dead-letter reasons and name each failing field as sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from router.inbound import Rejected, parse_inbound
from router.intake.request import (
    BATCH,
    JSON,
    STRUCTURED,
    Problem,
    Record,
    Refused,
    channel_of,
    read_batch,
    read_message,
)
from schemas.dead_letter import SourcePosition
from schemas.message import Channel, InboundEvent
from tests.factories import inbound_event

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMIT = 4096


def message(**data: Any) -> dict[str, Any]:
    doc: dict[str, Any] = inbound_event("m-1", channel="chat", thread_ref="sess-1")["data"]
    doc.update(data)
    return {k: v for k, v in doc.items() if v is not None}


def read(
    body: bytes, content_type: str | None = JSON, headers: dict[str, str] | None = None
) -> Record | Refused:
    return read_message(
        Channel.CHAT, content_type, headers or {}, body, source_id="acme", now=NOW,
        max_record_bytes=LIMIT,
    )  # fmt: skip


def refused(outcome: Record | Refused) -> Refused:
    assert isinstance(outcome, Refused), outcome
    return outcome


def fields(outcome: Record | Refused) -> set[str]:
    return {e.field for e in refused(outcome).errors}


def test_structured_event_goes_as_sent_keyed_by_thread() -> None:
    body = orjson.dumps(inbound_event("e-1", channel="chat", thread_ref="sess-1"))
    record = read(body, STRUCTURED)
    assert record == Record("e-1", "channel.chat", b"sess-1", body)


def test_a_json_body_with_specversion_is_a_structured_event() -> None:
    body = orjson.dumps(inbound_event("e-1", channel="chat", thread_ref="sess-1"))
    assert isinstance(read(body, "application/json; charset=utf-8"), Record)


def test_plain_message_is_wrapped_with_an_id_that_survives_a_retry() -> None:
    record = read(orjson.dumps(message()))
    assert isinstance(record, Record)
    event = InboundEvent.model_validate_json(record.value)
    assert event.id == record.event_id
    assert event.source == "urn:ticket-router:gateway:acme"
    sent = InboundEvent.model_validate(inbound_event("m-1", channel="chat", thread_ref="sess-1"))
    assert event.data == sent.data
    assert record.key == b"sess-1"
    again = read(orjson.dumps(message()))
    assert isinstance(again, Record)
    assert again.event_id == record.event_id
    other = read_message(
        Channel.CHAT, JSON, {}, orjson.dumps(message()), source_id="bolt", now=NOW,
        max_record_bytes=LIMIT,
    )  # fmt: skip
    assert isinstance(other, Record)
    assert other.event_id != record.event_id  # another source's message_id space


def test_binary_mode_takes_attributes_from_ce_headers() -> None:
    headers = {
        "ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "urn:x", "ce-traceparent": "abc",
        "ce-type": "support.message.received", "ce-subject": "caf%C3%A9",
    }  # fmt: skip
    record = read(orjson.dumps(message()), JSON, headers)
    assert isinstance(record, Record)
    event = InboundEvent.model_validate_json(record.value)
    assert (event.id, event.subject, event.model_extra) == ("b-1", "café", {"traceparent": "abc"})


def test_binary_mode_names_the_missing_header() -> None:
    headers = {"ce-specversion": "1.0", "ce-source": "urn:x", "ce-type": "support.message.received"}
    assert fields(read(orjson.dumps(message()), JSON, headers)) == {"ce-id"}
    headers["ce-id"] = "b-1"
    bad = orjson.dumps(message(body=None))
    assert fields(read(bad, JSON, headers)) == {"data.body"}


@pytest.mark.parametrize(
    ("doc", "reason", "named"),
    [
        (message(sender={"id": "b", "role": "pirate"}), "schema_violation", {"sender.role"}),
        (message(vendor_id="Not A Vendor", typo=1), "schema_violation", {"vendor_id", "typo"}),
        (message(channel="fax"), "unknown_channel", {"channel"}),
        (message(channel="email"), "channel_mismatch", {"channel"}),
        (message(thread_ref=None, body=None), "schema_violation", {"thread_ref", "body"}),
        ([1, 2], "schema_violation", {"<root>"}),
    ],
)
def test_plain_message_refusals_name_the_fields_as_sent(
    doc: Any, reason: str, named: set[str]
) -> None:
    outcome = refused(read(orjson.dumps(doc)))
    assert (outcome.problem, outcome.reason) == (Problem.INVALID, reason)
    assert fields(outcome) == named


@pytest.mark.parametrize(
    "body",
    [
        b'{"specversion": "1.0", "id": ',
        orjson.dumps({**inbound_event("e", channel="chat"), "type": "support.other"}),
        orjson.dumps({**inbound_event("e", channel="chat"), "id": ""}),
        orjson.dumps(inbound_event("e", channel="email")),
        orjson.dumps({**inbound_event("e", channel="chat"), "data": {"channel": "sms"}}),
    ],
)
def test_structured_refusals_carry_the_engines_dead_letter_reason(body: bytes) -> None:
    engine = parse_inbound(
        body, None, SourcePosition(topic="channel.chat", partition=0, offset=0), NOW,
        expected_channel=Channel.CHAT, max_record_bytes=LIMIT,
    )  # fmt: skip
    assert isinstance(engine, Rejected)
    outcome = refused(read(body, STRUCTURED))
    assert outcome.reason == engine.reason.value
    assert outcome.errors == engine.errors


def test_oversize_is_413_before_and_after_wrapping() -> None:
    assert refused(read(b"x" * (LIMIT + 1))).problem is Problem.TOO_LARGE
    # fits as sent, not once wrapped in its envelope: the engine would dead-letter it
    body = orjson.dumps(message(body="x" * (LIMIT - 250)))
    assert len(body) <= LIMIT
    outcome = refused(read(body))
    assert (outcome.problem, outcome.reason) == (Problem.TOO_LARGE, "oversize")


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/xml", "application/json; charset=latin-1"]
)
def test_unsupported_media(content_type: str | None) -> None:
    assert refused(read(b"{}", content_type)).problem is Problem.UNSUPPORTED_MEDIA


def test_unknown_channel() -> None:
    assert refused(channel_of("fax")).problem is Problem.NOT_FOUND
    assert channel_of("email") is Channel.EMAIL


def batch(items: Any, content_type: str = BATCH, max_items: int = 3) -> list[Record | Refused]:
    outcomes = read_batch(
        Channel.CHAT, content_type, orjson.dumps(items), source_id="acme", now=NOW,
        max_record_bytes=LIMIT, max_items=max_items,
    )  # fmt: skip
    assert isinstance(outcomes, list), outcomes
    return outcomes


def test_a_batch_answers_per_item_in_order() -> None:
    good = inbound_event("e-1", channel="chat", thread_ref="sess-1")
    outcomes = batch([good, message(), message(sender=None)], JSON)
    assert [type(o) for o in outcomes] == [Record, Record, Refused]
    assert fields(outcomes[2]) == {"sender"}


def test_batch_refusals() -> None:
    def whole(body: bytes, content_type: str = BATCH) -> Refused:
        outcome = read_batch(
            Channel.CHAT, content_type, body, source_id="a", now=NOW, max_record_bytes=LIMIT,
            max_items=2,
        )  # fmt: skip
        assert isinstance(outcome, Refused)
        return outcome

    assert whole(orjson.dumps([message()] * 3)).problem is Problem.TOO_LARGE
    assert whole(b'{"not": "a list"}').problem is Problem.INVALID
    assert whole(b"[").reason == "invalid_json"
    assert whole(b"[]", STRUCTURED).problem is Problem.UNSUPPORTED_MEDIA
    assert batch([]) == []


def test_the_channel_a_document_names() -> None:
    from router.intake.request import channel_in

    assert channel_in(message()) is Channel.CHAT
    assert channel_in(inbound_event("e", channel="social")) is Channel.SOCIAL
    assert fields(channel_in(message(channel="fax"))) == {"channel"}
    assert fields(channel_in({**inbound_event("e"), "data": None})) == {"data.channel"}
    assert refused(channel_in([1])).reason == "unknown_channel"
