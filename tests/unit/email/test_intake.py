"""What the intake does with each kind of message, and the SMTP answer it gives."""

from __future__ import annotations

import orjson

from router.email.intake import (
    TRY_LATER,
    Kind,
    imap_source,
    intake_step,
    smtp_answer,
    smtp_source,
    with_envelope_recipients,
)
from router.email.reply import replied_action, reply_message_id
from router.outbound import idempotency_key, outbound_reply
from schemas.action import Actor, ActorRole, ReplyAction
from schemas.outbound import MESSAGE_FAILED, OutboundReplyEvent
from schemas.topics import CHANNEL_DLQ, TICKETS_EVENTS
from streams.email.imap import fetched_messages
from tests.unit.email.support import NOW, mail, parse


def test_a_message_becomes_one_channel_record_keyed_by_its_thread() -> None:
    step = intake_step(parse(mail()), NOW)
    assert step.kind is Kind.RECORD
    (record,) = step.records
    value = orjson.loads(record.value)
    assert record.topic == "channel.email"
    assert record.key == value["data"]["thread_ref"].encode()
    assert step.event_id == value["id"]
    assert smtp_answer(step, acknowledged=True) == f"250 2.0.0 OK {step.event_id}"
    assert smtp_answer(step, acknowledged=False) == TRY_LATER


def test_the_same_message_read_twice_is_the_same_record_id() -> None:
    first, again = intake_step(parse(mail()), NOW), intake_step(parse(mail()), NOW)
    assert first.event_id == again.event_id


def test_auto_replies_and_bounces_produce_nothing_and_are_accepted() -> None:
    auto = intake_step(parse(mail(Auto_Submitted="auto-replied")), NOW)
    assert (auto.kind, auto.records) == (Kind.AUTO_REPLY, ())
    assert "Auto-Submitted" in auto.detail
    assert smtp_answer(auto, acknowledged=True).startswith("250 ")
    bounce = intake_step(parse(mail(
        Content_Type='multipart/report; report-type=delivery-status; boundary="b"',
        body="--b\nContent-Type: message/delivery-status\n\nAction: failed\n--b--\n",
    )), NOW)  # fmt: skip
    assert (bounce.kind, bounce.records) == (Kind.BOUNCE, ())


def test_a_refused_message_is_dead_lettered_and_answered_5xx_with_the_reason() -> None:
    step = intake_step(parse(mail(From="", Sender="", Reply_To="", Return_Path="")), NOW)
    assert step.kind is Kind.REFUSED
    (letter,) = step.records
    assert letter.topic == CHANNEL_DLQ.name
    assert dict(letter.headers)["dlq.reason"] == b"no_sender"
    answer = smtp_answer(step, acknowledged=True)
    assert answer.startswith("554 5.6.0 Message refused (no_sender): no usable sender")
    assert smtp_answer(step, acknowledged=False) == TRY_LATER  # the dead letter is not in Kafka


def test_an_oversize_message_is_answered_552() -> None:
    step = intake_step(parse(mail(body="x" * 3000), email_max_bytes=1024), NOW)
    assert step.reason is not None
    assert step.reason.value == "oversize"
    assert smtp_answer(step, acknowledged=True).startswith("552 5.3.4 ")


def test_smtp_reply_text_is_one_bounded_printable_line() -> None:
    step = intake_step(parse(mail(From="", Sender="", Reply_To="", Return_Path="")), NOW)
    weird = step.__class__(step.kind, step.records, reason=step.reason,
                           detail="line one\r\nline two \x00\u00e9" + "y" * 2000)  # fmt: skip
    answer = smtp_answer(weird, acknowledged=True)
    assert "\r" not in answer
    assert "\n" not in answer
    assert answer.isascii()
    assert len(answer) < 512


def test_sources_are_deterministic_and_distinct() -> None:
    assert imap_source("s@h", "INBOX", 7, 42) == imap_source("s@h", "INBOX", 7, 42)
    assert imap_source("s@h", "INBOX", 7, 42).topic == "imap:s@h/INBOX"
    assert smtp_source("l", b"a") == smtp_source("l", b"a")
    assert smtp_source("l", b"a").offset != smtp_source("l", b"b").offset
    assert 0 <= smtp_source("l", b"a").offset < 2**63


def test_fetched_messages_take_the_body_item_whatever_its_name() -> None:
    answer = {
        9: {b"BODY[]<0>": b"second", b"SEQ": 2},
        3: {b"BODY[]": b"first", b"SEQ": 1},
        5: {b"FLAGS": ()},  # expunged meanwhile: no body
    }
    assert [(m.uid, m.raw) for m in fetched_messages(answer)] == [(3, b"first"), (9, b"second")]


def bounce_of(message_id: str, action: str = "failed") -> bytes:
    return mail(
        From="MAILER-DAEMON@mx.buyer.example", Message_ID="<dsn-1@mx.buyer.example>",
        Content_Type='multipart/report; report-type=delivery-status; boundary="b"',
        body=f"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
             f"Final-Recipient: rfc822; ana@buyer.example\nAction: {action}\n"
             f"Status: 5.1.1\n\n--b\nContent-Type: text/rfc822-headers\n\n"
             f"Message-ID: <{message_id}>\n\n--b--\n",
    )  # fmt: skip


def our_reply_id(action_id: str = "act-1") -> str:
    action = ReplyAction(ticket_id="T-1", at=NOW, actor=Actor(id="a", role=ActorRole.AGENT),
                         body="Hi")  # fmt: skip
    record = outbound_reply(action, action_id, "email", "email:abcdefghijklmnop", NOW,
                            customer="email:ana@buyer.example")  # fmt: skip
    assert record is not None
    return reply_message_id(OutboundReplyEvent.model_validate_json(record.value), "shop.example")


def test_the_bounce_of_our_reply_marks_that_reply_failed() -> None:
    step = intake_step(parse(bounce_of(our_reply_id())), NOW)
    assert step.kind is Kind.BOUNCE
    (marker,) = step.records
    assert (marker.topic, marker.key) == (TICKETS_EVENTS.name, b"T-1")
    event = orjson.loads(marker.value)
    assert event["type"] == MESSAGE_FAILED
    assert event["data"]["action_id"] == "act-1"
    assert event["data"]["idempotency_key"] == idempotency_key("T-1", "act-1")
    assert event["data"]["reason"].startswith("bounced: multipart/report")
    assert intake_step(parse(bounce_of(our_reply_id())), NOW) == step  # a re-read: same id
    assert smtp_answer(step, acknowledged=True).startswith("250 ")


def test_other_bounces_and_delay_reports_mark_nothing() -> None:
    for raw in (bounce_of("someone-else@buyer.example"), bounce_of(our_reply_id(), "delayed")):
        step = intake_step(parse(raw), NOW)
        assert (step.kind, step.records) == (Kind.BOUNCE, ())


def test_our_message_ids_name_their_reply_and_forgeries_do_not() -> None:
    ours = our_reply_id("act-9")
    assert replied_action(ours) == ("T-1", "act-9")
    key, _, rest = ours.partition(".")
    assert replied_action(f"{key[:-1]}0.{rest}") is None  # the key does not match the ids
    assert replied_action("plain@buyer.example") is None
    assert replied_action(f"{key}.!!!@shop.example") is None
    too_long = our_reply_id("x" * 300)  # ids too long to carry: the plain key
    assert "." not in too_long.partition("@")[0]
    assert replied_action(too_long) is None


def test_envelope_recipients_reach_the_parser_as_x_original_to() -> None:
    token = "abcdefghijklmnop"
    raw = with_envelope_recipients(mail(), [f"support+t.{token}@shop.example", "x\r\nBcc: y"])
    assert raw.startswith(f"X-Original-To: support+t.{token}@shop.example\r\n".encode())
    assert b"Bcc: y" not in raw  # not an address: left out
    step = intake_step(parse(raw), NOW)
    (record,) = step.records
    assert orjson.loads(record.value)["data"]["thread_ref"] == f"email:{token}"
