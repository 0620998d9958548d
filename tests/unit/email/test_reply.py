"""Email replies: the message built from an `outbound.email` record, SMTP answers judged, and
the deliverer's attempts with a fake relay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes, policy

import orjson

from router.delivery import Delivered, Failed, Retry, RetryPolicy, Source
from router.email.reply import replied_action, reply_mail, reply_message_id, smtp_verdict
from router.outbound import outbound_reply
from schemas.action import Actor, ActorRole, ReplyAction
from schemas.outbound import OutboundReplyEvent
from streams.email.deliver import EmailDeliverer, SmtpAnswer
from streams.settings import RouterSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TOKEN = "abcdefghijklmnop"
SUPPORT = "support@shop.example"


def event(customer: str | None = "email:ana@buyer.example",
          reply_to: str | None = "a2@buyer.example") -> OutboundReplyEvent:  # fmt: skip
    action = ReplyAction(ticket_id="T-1", at=NOW, actor=Actor(id="agent-7", role=ActorRole.AGENT),
                         body="Your parcel ships today.\nKind regards")  # fmt: skip
    record = outbound_reply(action, "act-1", "email", f"email:{TOKEN}", NOW,
                            reply_to=reply_to, customer=customer)  # fmt: skip
    assert record is not None
    return OutboundReplyEvent.model_validate_json(record.value)


def test_the_reply_answers_the_customer_s_mail_from_the_ticket_s_reply_address() -> None:
    found = event()
    mail = reply_mail(found, SUPPORT)
    assert not isinstance(mail, Failed)
    assert (mail.sender, mail.recipient) == (SUPPORT, "ana@buyer.example")
    assert mail.message_id == reply_message_id(found, "shop.example")
    assert mail.message_id.startswith(f"{found.id}.")
    assert replied_action(mail.message_id) == ("T-1", "act-1")
    msg = message_from_bytes(mail.data, policy=policy.default)
    assert msg["To"] == "ana@buyer.example"
    assert msg["From"] == SUPPORT
    assert msg["Reply-To"] == f"support+t.{TOKEN}@shop.example"
    assert msg["Message-ID"] == f"<{mail.message_id}>"
    assert msg["In-Reply-To"] == msg["References"] == "<a2@buyer.example>"
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines() == ["Your parcel ships today.", "Kind regards"]
    assert b"\r\n" in mail.data
    assert reply_mail(found, SUPPORT) == mail  # every attempt is the same message


def test_no_customer_address_fails_without_sending() -> None:
    failed = reply_mail(event(customer=None), SUPPORT)
    assert isinstance(failed, Failed)
    assert "no customer address" in failed.reason
    no_thread = reply_mail(event(reply_to=None), SUPPORT)
    assert not isinstance(no_thread, Failed)
    assert b"In-Reply-To" not in no_thread.data


def test_smtp_answers_4xx_retried_5xx_final() -> None:
    policy = RetryPolicy(3, 1.0)
    assert smtp_verdict(policy, 1, 250, None, 0.0) == Delivered(250)
    assert smtp_verdict(policy, 1, 451, "try later", 0.0) == Retry(0.5)
    assert smtp_verdict(policy, 2, None, "ConnectionRefusedError", 0.0) == Retry(1.0)
    final = smtp_verdict(policy, 3, 451, "try later", 0.0)
    assert isinstance(final, Failed)
    assert final.reason == "SMTP 451 try later on attempt 3 of 3"
    permanent = smtp_verdict(policy, 1, 550, "no such user", 0.0)
    assert permanent == Failed("SMTP 550 no such user: permanent", 550)


class Relay:
    def __init__(self, *answers: SmtpAnswer) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.slept: list[float] = []

    async def send(self, mail: object) -> SmtpAnswer:
        self.sent.append(getattr(mail, "data", b""))
        return self.answers.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def run(relay: Relay, value: bytes, **settings: object) -> list[dict[str, object]]:
    config = RouterSettings(deliver_max_attempts=3, deliver_base_delay_s=1.0,
                            email_support_addresses=[SUPPORT], **settings)  # type: ignore[arg-type]
    deliverer = EmailDeliverer(config, relay.send, sleep=relay.sleep, jitter=lambda: 0.0,
                               now=lambda: NOW)  # fmt: skip
    outs = asyncio.run(deliverer.deliver(value, b"T-1", Source("outbound.email", 0, 3)))
    return [{"topic": o.topic, **orjson.loads(o.value)} for o in outs]


def test_the_deliverer_retries_a_451_then_reports_delivery_with_the_message_id() -> None:
    found = event()
    relay = Relay(SmtpAnswer(451, "greylisted"), SmtpAnswer(250))
    (outcome,) = run(relay, found.model_dump_json().encode())
    assert relay.slept == [0.5]
    assert len(set(relay.sent)) == 1  # the same message twice
    assert outcome["type"] == "support.message.delivered"
    data = outcome["data"]
    assert isinstance(data, dict)
    assert (data["attempts"], data["status"]) == (2, 250)
    assert data["provider_message_id"] == reply_message_id(found, "shop.example")


def test_a_550_fails_at_once_to_the_dlq() -> None:
    relay = Relay(SmtpAnswer(550, "no such user"))
    outs = run(relay, event().model_dump_json().encode())
    assert {o["topic"] for o in outs} == {"outbound.dlq", "tickets.events"}
    (failed,) = [o for o in outs if o["type"] == "support.message.failed"]
    assert isinstance(failed["data"], dict)
    assert failed["data"]["reason"] == "SMTP 550 no such user: permanent"
    assert relay.slept == []
