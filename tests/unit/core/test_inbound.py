from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from router.inbound import Rejected, parse_inbound
from schemas import CloudEvent, DeadLetter, InboundEvent, RejectReason, SourcePosition
from schemas.message import Channel
from tests.factories import inbound_bytes, inbound_event

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SRC = SourcePosition(topic="channel.email", partition=2, offset=41)


def rejected(value: bytes | None, key: bytes | None = b"k", **kw: object) -> Rejected:
    result = parse_inbound(value, key, SRC, NOW, **kw)  # type: ignore[arg-type]
    assert isinstance(result, Rejected), result
    return result


def letter_of(result: Rejected) -> DeadLetter:
    return CloudEvent[DeadLetter].model_validate_json(result.record.value).data


def test_valid_record_parses_into_typed_event() -> None:
    event = parse_inbound(inbound_bytes(), b"thread-1", SRC, NOW, expected_channel=Channel.EMAIL)
    assert isinstance(event, InboundEvent)
    assert event.data.vendor_id == "acme"
    assert event.data.sender.role == "buyer"


def test_invalid_json_is_rejected_with_reason_and_exact_bytes() -> None:
    result = rejected(b'{"specversion": "1.0",', key=b"thread-9")
    assert result.reason is RejectReason.INVALID_JSON
    letter = letter_of(result)
    assert letter.original.value == '{"specversion": "1.0",'
    assert letter.original.key == "thread-9"
    assert (letter.source.topic, letter.source.partition, letter.source.offset) == (
        "channel.email",
        2,
        41,
    )
    headers = dict(result.record.headers)
    assert headers["dlq.reason"] == b"invalid_json"
    assert headers["dlq.source.offset"] == b"41"
    assert result.record.key == b"thread-9"


def test_schema_violation_names_the_field() -> None:
    doc = inbound_event()
    del doc["data"]["thread_ref"]
    doc["data"]["sender"]["role"] = "alien"
    result = rejected(orjson.dumps(doc))
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    fields = {e.field for e in letter_of(result).errors}
    assert {"data.thread_ref", "data.sender.role"} <= fields
    assert "data.thread_ref" in result.error


def test_a_key_given_twice_is_refused_not_read_as_the_last_copy() -> None:
    text = inbound_bytes(body="Refund please").decode()
    twice = text.replace('"body":"Refund please"', '"body":"Refund please","body":"All fine"')
    assert twice != text
    result = rejected(twice.encode())
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "'body' given twice" in result.error
    assert [e.field for e in letter_of(result).errors] == ["body"]
    # the same key in two different objects is no repeat (sender.id and the event's id)
    assert isinstance(parse_inbound(inbound_bytes(), b"k", SRC, NOW), InboundEvent)


def test_unknown_data_field_is_a_schema_violation() -> None:
    doc = inbound_event()
    doc["data"]["vendorid"] = "typo"
    result = rejected(orjson.dumps(doc))
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert any(e.field == "data.vendorid" for e in letter_of(result).errors)


def test_unknown_channel() -> None:
    result = rejected(inbound_bytes(channel="fax"))
    assert result.reason is RejectReason.UNKNOWN_CHANNEL
    assert "email, chat, social" in result.error


def test_channel_must_match_topic() -> None:
    result = rejected(inbound_bytes(channel="chat"), expected_channel=Channel.EMAIL)
    assert result.reason is RejectReason.CHANNEL_MISMATCH


def test_oversize_keeps_the_whole_original() -> None:
    big = inbound_bytes(body="x" * 5000)
    result = rejected(big, max_record_bytes=2048)
    assert result.reason is RejectReason.OVERSIZE
    assert letter_of(result).original.size == len(big)
    assert letter_of(result).original.value.encode() == big


def test_binary_garbage_is_kept_as_base64() -> None:
    garbage = b"\xff\xfe\x00binary"
    result = rejected(garbage)
    original = letter_of(result).original
    assert original.value_encoding == "base64"
    assert base64.b64decode(original.value) == garbage


def test_wrong_event_type() -> None:
    doc = inbound_event()
    doc["type"] = "support.something.else"
    assert rejected(orjson.dumps(doc)).reason is RejectReason.UNSUPPORTED_TYPE


@pytest.mark.parametrize("value", [None, b""])
def test_empty_value(value: bytes | None) -> None:
    assert rejected(value).reason is RejectReason.SCHEMA_VIOLATION


def test_dead_letter_id_is_deterministic_per_source_position() -> None:
    a = rejected(b"nope").record
    b = rejected(b"nope").record
    assert orjson.loads(a.value)["id"] == orjson.loads(b.value)["id"]
