"""Replies by email on real servers: a customer's mail comes in over IMAP (Dovecot), the engine
opens a ticket, an agent replies, `router deliver --channel email` sends the reply over SMTP to
a relay (aiosmtpd) that greylists the first attempt, and the customer's answer to the reply
address joins the same ticket even without threading headers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from schemas.topics import OUTBOUND, OUTBOUND_DLQ, TICKETS_EVENTS
from streams.local.dovecot import LocalDovecot
from streams.local.install import free_port
from tests.harness import Output, produce, router_command
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_email_intake import (
    append,
    email_settings,
    imap_connector,
    mail,
    on_topics,
)
from tests.integration.test_sla import action_bytes

pytestmark = pytest.mark.integration

SUPPORT = "support@shop.example"
CUSTOMER_MAIL = "<q-1@buyer.example>"


@dataclass
class Relay:
    """Answers 451 (greylisting) to the first message, then 250; keeps what it was sent."""

    greylist: int = 1
    attempts: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts.append((envelope.mail_from, list(envelope.rcpt_tos),
                              bytes(envelope.original_content or b"")))  # fmt: skip
        if len(self.attempts) <= self.greylist:
            return "451 4.7.1 Greylisted, try again later"
        return "250 2.0.0 Queued"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def bounce_of(message_id: str) -> bytes:
    """A delivery status notification (RFC 3464) that returns the headers of `message_id`."""
    return (
        "From: MAILER-DAEMON@mx.buyer.example\r\nTo: support@shop.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-7@mx.buyer.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; '
        'boundary="b7"\r\n\r\n--b7\r\nContent-Type: text/plain\r\n\r\nMailbox full.\r\n'
        "--b7\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; ana@buyer.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        "\r\n--b7\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {message_id}\r\nSubject: Re: your support request\r\n\r\n--b7--\r\n"
    ).encode()


def of_type(outputs: list[Output], event_type: str) -> list[Output]:
    return [o for o in outputs if o.value["type"] == event_type]


def test_an_agent_reply_goes_out_by_email_and_the_customer_s_answer_joins_the_ticket(
    engine: EngineUnderTest, dovecot: LocalDovecot, relay: tuple[Relay, int]
) -> None:
    handler, relay_port = relay
    settings = email_settings(engine.bootstrap, engine.prefix, dovecot,
                              email_support_addresses=[SUPPORT])  # fmt: skip
    engine.start_worker()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
        "ROUTER_TOPIC_PREFIX": engine.prefix, "ROUTER_PARTITIONS": "3",
        "ROUTER_EMAIL_RELAY_HOST": "127.0.0.1", "ROUTER_EMAIL_RELAY_PORT": str(relay_port),
        "ROUTER_EMAIL_RELAY_STARTTLS": "false",
        "ROUTER_EMAIL_SUPPORT_ADDRESSES": orjson.dumps([SUPPORT]).decode(),
        "ROUTER_DELIVER_MAX_ATTEMPTS": "4", "ROUTER_DELIVER_BASE_DELAY_S": "0.05",
    }  # fmt: skip
    with router_command(["deliver", "--channel", "email"], env, engine.tmp / "deliver.log"):
        append(dovecot, mail(CUSTOMER_MAIL, "Parcel missing", "My parcel never arrived."))
        with imap_connector(settings):
            outputs = on_topics(
                settings, [TICKETS_EVENTS.name],
                lambda outs: bool(of_type(outs, "support.ticket.routed")), "the routed ticket",
            )  # fmt: skip
            (opened,) = of_type(outputs, "support.ticket.opened")
            ticket_id = opened.value["data"]["ticket_id"]
            thread_ref = opened.value["data"]["thread_ref"]
            produce(engine.bootstrap, f"{engine.prefix}tickets.actions", [
                (ticket_id.encode(), action_bytes("reply-1", ticket_id, "reply",
                                                  body="It ships today.")),
            ])  # fmt: skip
            outputs = on_topics(
                settings, [TICKETS_EVENTS.name, OUTBOUND.of("email"), OUTBOUND_DLQ.name],
                lambda outs: bool(of_type(outs, "support.message.delivered")),
                "support.message.delivered",
            )  # fmt: skip
            (outbound,) = [o for o in outputs if o.topic == OUTBOUND.of("email")]
            (delivered,) = of_type(outputs, "support.message.delivered")
            assert not [o for o in outputs if o.topic == OUTBOUND_DLQ.name]
            assert delivered.value["data"]["attempts"] == 2
            assert delivered.value["data"]["status"] == 250
            # the customer answers the reply from a client that keeps no threading headers
            (_, _, sent) = handler.attempts[-1]
            reply = message_from_bytes(sent, policy=policy.default)
            assert isinstance(reply, EmailMessage)
            answer = mail("<q-2@buyer.example>", "thanks", "Great, thank you!",
                          headers={"To": str(reply["Reply-To"])})  # fmt: skip
            append(dovecot, answer)
            outputs = on_topics(
                settings, [TICKETS_EVENTS.name],
                lambda outs: "q-2@buyer.example" in {o.value["data"].get("message_id")
                                                     for o in outs},
                "the customer's answer on a ticket",
            )  # fmt: skip
            # the customer's server later bounces the reply: the reply is marked failed
            append(dovecot, bounce_of(str(reply["Message-ID"])))
            outputs = on_topics(
                settings, [TICKETS_EVENTS.name],
                lambda outs: bool(of_type(outs, "support.message.failed")), "the bounce marker",
            )  # fmt: skip
    key = outbound.value["id"]
    assert [a[1] for a in handler.attempts] == [["ana@buyer.example"]] * 2
    assert len({a[2] for a in handler.attempts}) == 1  # the retry sent the very same message
    message_id = str(reply["Message-ID"]).strip("<>")
    assert message_id.startswith(f"{key}.")  # derived from the action: the same every attempt
    assert message_id.endswith("@shop.example")
    assert delivered.value["data"]["provider_message_id"] == message_id
    assert reply["In-Reply-To"] == CUSTOMER_MAIL
    assert reply["To"] == "ana@buyer.example"
    assert reply["From"] == SUPPORT
    token = thread_ref.removeprefix("email:")
    assert reply["Reply-To"] == f"support+t.{token}@shop.example"
    body = reply.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == "It ships today."
    added = [o.value["data"] for o in outputs
             if o.value["type"] == "support.ticket.message_added"]  # fmt: skip
    by_message = {e["message_id"]: e["ticket_id"] for e in added}
    assert by_message["q-2@buyer.example"] == ticket_id  # joined through the reply address
    assert len(of_type(outputs, "support.ticket.opened")) == 1  # the bounce opened nothing
    (failed,) = of_type(outputs, "support.message.failed")
    assert failed.key == ticket_id.encode()
    assert failed.value["data"]["idempotency_key"] == key
    assert failed.value["data"]["reason"].startswith("bounced: ")
