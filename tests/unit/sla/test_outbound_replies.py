"""Public replies leave through `outbound.<channel>`: built purely, rendered by the lifecycle
processor with the `replied` event, re-sent with the same id on a replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from router.delivery import request_for
from router.outbound import idempotency_key, mention_media, outbound_reply, thread_route
from router.receipts import status_record
from router.records import OutRecord
from router.reroutes import TicketIndexEntry
from router.sla.policy import SlaConfig
from router.sla.render import CMD_ACTION, CMD_HEADER
from router.stages.contract import InRecord
from router.stages.lifecycle import LifecycleProcessor
from router.stages.parking import ParkingLot
from schemas.action import Actor, ActorRole, ReplyAction
from schemas.message import Channel
from schemas.outbound import (
    MESSAGE_RECEIPT,
    DeliveryReceipt,
    DeliveryReceiptEvent,
    OutboundReplyEvent,
    Platform,
    ReceiptStatus,
)
from schemas.ticket import TicketEvent, TicketEventKind
from schemas.topics import OUTBOUND, TICKETS_COMMANDS, TICKETS_EVENTS, topic_of
from tests.unit.sla.sla_support import routed_snapshot

AT = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
WA_THREAD = "whatsapp:1065550001:4915550100"


def reply(role: ActorRole = ActorRole.AGENT, body: str = "We are on it.") -> ReplyAction:
    return ReplyAction(ticket_id="T-1", at=AT, actor=Actor(id="agent-42", role=role), body=body)


@pytest.mark.parametrize(
    ("ref", "route"),
    [
        (WA_THREAD, (Platform.WHATSAPP, "1065550001", "4915550100")),
        ("messenger:page-9:psid-7", (Platform.MESSENGER, "page-9", "psid-7")),
        ("instagram:17841:igsid-3", (Platform.INSTAGRAM, "17841", "igsid-3")),
        ("facebook:page-9:post:1_2:user:77", None),  # a comment thread
        ("instagram:17841:media:555", None),  # a mention
        ("whatsapp::4915550100", None),
        ("telegram:bot:42", None),
        ("<a1@mail.example>", None),
    ],
)
def test_thread_route_names_the_recipient_of_direct_threads_only(
    ref: str, route: tuple[Platform, str, str] | None
) -> None:
    found = thread_route(ref)
    assert (None if found is None else (found.platform, found.account_id, found.recipient_id)) \
        == route


def test_outbound_record_carries_what_delivery_needs() -> None:
    record = outbound_reply(reply(), "act-1", "chat", WA_THREAD, AT + timedelta(seconds=1))
    assert record is not None
    assert record.topic == OUTBOUND.of("chat") == "outbound.chat"
    assert topic_of(record.topic, "app") is OUTBOUND
    assert record.key == b"T-1"
    event = OutboundReplyEvent.model_validate_json(record.value)
    assert event.type == "support.reply.outbound"
    assert event.id == event.data.idempotency_key == idempotency_key("T-1", "act-1")
    data = event.data
    assert (data.ticket_id, data.action_id, data.channel, data.thread_ref) == (
        "T-1", "act-1", "chat", WA_THREAD)
    assert (data.platform, data.account_id, data.recipient_id) == (
        Platform.WHATSAPP, "1065550001", "4915550100")
    assert (data.body, data.actor.id) == ("We are on it.", "agent-42")


def test_the_key_follows_the_action_and_nothing_else() -> None:
    first = outbound_reply(reply(), "act-1", "chat", WA_THREAD, AT)
    later = outbound_reply(reply(), "act-1", "chat", WA_THREAD, AT + timedelta(hours=1))
    other = outbound_reply(reply(), "act-2", "chat", WA_THREAD, AT)
    ids = [orjson.loads(r.value)["id"] for r in (first, later, other) if r is not None]
    assert len(ids) == 3
    assert ids[0] == ids[1] != ids[2]


def test_a_buyers_own_reply_does_not_go_out() -> None:
    assert outbound_reply(reply(ActorRole.BUYER), "act-1", "chat", WA_THREAD, AT) is None


def test_system_replies_go_out_with_no_route_for_a_comment_thread() -> None:
    record = outbound_reply(reply(ActorRole.SYSTEM), "a", "social",
                            "facebook:p:post:1_2:user:7", AT)  # fmt: skip
    assert record is not None
    assert record.topic == "outbound.social"
    data = OutboundReplyEvent.model_validate_json(record.value).data
    assert (data.platform, data.recipient_id) == (None, None)


def test_a_reply_on_a_comment_thread_answers_the_customer_s_latest_comment() -> None:
    for thread, platform, url in (
        ("facebook:p1:post:1_2:user:7", Platform.FACEBOOK, "https://graph.test/1_9/comments"),
        ("instagram:ig1:media:55:user:7", Platform.INSTAGRAM, "https://graph.test/1_9/replies"),
    ):
        record = outbound_reply(reply(ActorRole.AGENT), "a", "social", thread, AT, reply_to="1_9")
        assert record is not None
        data = OutboundReplyEvent.model_validate_json(record.value).data
        assert (data.platform, data.reply_to_id, data.recipient_id) == (platform, "1_9", None)
        request = request_for(data, "https://graph.test/")
        assert request is not None
        assert (request.url, request.body) == (url, {"message": data.body})
    # a comment thread whose comment the index has not seen: no target
    unknown = outbound_reply(reply(ActorRole.AGENT), "a", "social",
                             "facebook:p1:post:1_2:user:7", AT)  # fmt: skip
    assert unknown is not None
    data = OutboundReplyEvent.model_validate_json(unknown.value).data
    assert (data.platform, data.reply_to_id) == (None, None)
    assert request_for(data, "https://graph.test") is None


def test_a_reply_on_a_mention_thread_answers_on_the_media_or_the_mentioning_comment() -> None:
    for reply_to, body in (
        ("1_9", {"media_id": "55", "comment_id": "1_9"}),  # mentioned in a comment
        ("55", {"media_id": "55"}),  # mentioned in the caption: the message id is the media's
        (None, {"media_id": "55"}),
    ):
        record = outbound_reply(reply(ActorRole.AGENT), "a", "social", "instagram:ig1:media:55",
                                AT, reply_to=reply_to)  # fmt: skip
        assert record is not None
        data = OutboundReplyEvent.model_validate_json(record.value).data
        assert (data.platform, data.account_id, data.media_id) == (
            Platform.INSTAGRAM, "ig1", "55",
        )  # fmt: skip
        request = request_for(data, "https://graph.test/")
        assert request is not None
        assert (request.url, request.body) == (
            "https://graph.test/ig1/mentions", {**body, "message": data.body},
        )  # fmt: skip
    for not_a_mention in ("instagram:ig1:media:", "instagram:ig1:post:55", "facebook:p:media:5"):
        assert mention_media(not_a_mention) is None


def test_an_email_reply_names_the_customer_and_the_mail_it_answers() -> None:
    record = outbound_reply(
        reply(ActorRole.AGENT), "a", "email", "email:abcdefghijklmnop", AT,
        reply_to="a2@buyer.example", customer="email:ana@buyer.example",
    )  # fmt: skip
    assert record is not None
    assert record.topic == "outbound.email"
    data = OutboundReplyEvent.model_validate_json(record.value).data
    assert (data.recipient_id, data.reply_to_id, data.platform) == (
        "ana@buyer.example", "a2@buyer.example", None)  # fmt: skip
    assert request_for(data, "https://graph.test") is None  # not the Graph API's to send
    unknown = outbound_reply(reply(ActorRole.AGENT), "a", "email", "email:abcdefghijklmnop", AT)
    assert unknown is not None
    data = OutboundReplyEvent.model_validate_json(unknown.value).data
    assert (data.recipient_id, data.reply_to_id) == (None, None)


# -- through the lifecycle processor ---------------------------------------------------------


class Stage:
    def __init__(self, config: SlaConfig, threads: dict[str, TicketIndexEntry]) -> None:
        self.table: dict[bytes, bytes] = {}
        self.processor = LifecycleProcessor(
            config, self.table, ParkingLot({}), max_record_bytes=256 * 1024,
            threads=threads.get,
        )  # fmt: skip
        self.offsets = iter(range(10, 10_000))

    def routed(self) -> list[OutRecord]:
        data = TicketEvent(
            ticket_id="T-1", kind=TicketEventKind.ROUTED, at=AT, queue="dept:general",
            sla_policy="basic", ticket=routed_snapshot("dept:general", "basic"),
        )  # fmt: skip
        doc = {"specversion": "1.0", "id": "ev-routed", "source": "test",
               "type": "support.ticket.routed", "data": data.model_dump(mode="json")}
        return self.feed(TICKETS_EVENTS.name, orjson.dumps(doc), {})

    def action(self, data: dict[str, Any], action_id: str, offset: int | None = None
               ) -> list[OutRecord]:  # fmt: skip
        doc = {"specversion": "1.0", "id": action_id, "source": "desk",
               "type": "support.ticket.action",
               "data": {"ticket_id": "T-1", "at": (AT + timedelta(minutes=5)).isoformat(),
                        **data}}  # fmt: skip
        return self.feed(TICKETS_COMMANDS.name, orjson.dumps(doc), {CMD_HEADER: CMD_ACTION},
                         offset)  # fmt: skip

    def feed(self, topic: str, value: bytes, headers: dict[str, bytes],
             offset: int | None = None) -> list[OutRecord]:  # fmt: skip
        offset = next(self.offsets) if offset is None else offset
        record = InRecord(topic, 1, offset, b"T-1", value, None, headers)
        return self.processor.process(record, AT + timedelta(minutes=6))


AGENT = {"actor": {"id": "agent-42", "role": "agent"}}


def test_a_public_reply_yields_its_outbound_record_after_the_replied_event(
    config: SlaConfig,
) -> None:
    stage = Stage(config, {"T-1": TicketIndexEntry("chat", WA_THREAD, None, None, None)})
    stage.routed()
    out = stage.action({"action": "reply", "body": "Refund sent.", **AGENT}, "act-1")
    topics = [r.topic for r in out]
    assert topics[-2:] == [TICKETS_EVENTS.name, "outbound.chat"]
    event = OutboundReplyEvent.model_validate_json(out[-1].value)
    assert (event.data.body, event.data.recipient_id) == ("Refund sent.", "4915550100")
    assert stage.processor.counts["outbound"] == 1


def test_notes_buyer_replies_and_duplicates_do_not_go_out(config: SlaConfig) -> None:
    stage = Stage(config, {"T-1": TicketIndexEntry("chat", WA_THREAD, None, None, None)})
    stage.routed()
    note = stage.action({"action": "internal_note", "body": "VIP", **AGENT}, "act-note")
    buyer = stage.action({"action": "reply", "body": "Thanks",
                          "actor": {"id": "b-1", "role": "buyer"}}, "act-buyer")  # fmt: skip
    first = stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1")
    again = stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1")  # redelivered
    assert [r.topic for r in note + buyer + again if r.topic.startswith("outbound.")] == []
    assert [r.topic for r in first if r.topic.startswith("outbound.")] == ["outbound.chat"]


def test_a_replayed_reply_resends_the_same_outbound_record(config: SlaConfig) -> None:
    stage = Stage(config, {"T-1": TicketIndexEntry("chat", WA_THREAD, None, None, None)})
    stage.routed()
    first = stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1", offset=500)
    replay = stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1", offset=500)
    assert [r for r in replay if r.topic == "outbound.chat"] == \
        [r for r in first if r.topic == "outbound.chat"]
    assert stage.processor.counts["replayed"] == 1


def test_a_reply_on_a_ticket_the_index_does_not_know_is_noted(config: SlaConfig) -> None:
    stage = Stage(config, {})
    stage.routed()
    out = stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1")
    assert TICKETS_EVENTS.name in [r.topic for r in out]  # the reply itself still applies
    assert not any(r.topic.startswith("outbound.") for r in out)
    assert stage.processor.counts["reply_without_thread"] == 1
    assert [n.event for n in stage.processor.notes] == ["reply_without_thread"]


def test_delivery_outcomes_on_tickets_events_are_skipped(config: SlaConfig) -> None:
    from router.delivery import Failed, Source, delivered_record, failed_records

    stage = Stage(config, {"T-1": TicketIndexEntry("chat", WA_THREAD, None, None, None)})
    stage.routed()
    (record,) = [r for r in stage.action({"action": "reply", "body": "Hi", **AGENT}, "act-1")
                 if r.topic == "outbound.chat"]  # fmt: skip
    event = OutboundReplyEvent.model_validate_json(record.value)
    receipt = DeliveryReceiptEvent(
        specversion="1.0", id="r-1", source="urn:test", type=MESSAGE_RECEIPT,
        data=DeliveryReceipt(channel=Channel.CHAT, thread_ref=WA_THREAD,
                             platform=Platform.WHATSAPP, status=ReceiptStatus.READ, at=AT),
    )  # fmt: skip
    outcomes = [delivered_record(event.data, 1, 200, None, AT),
                *failed_records(event, record.value, b"T-1", Source("outbound.chat", 0, 1), 1,
                                Failed("HTTP 400", 400), AT),
                status_record(receipt, "T-1", AT)]  # fmt: skip
    for outcome in outcomes:
        if outcome.topic == TICKETS_EVENTS.name:
            assert stage.feed(TICKETS_EVENTS.name, outcome.value, {}) == []
    assert stage.processor.counts["delivery_event"] == 3
    assert stage.processor.counts["failed"] == 0
