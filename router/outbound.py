"""Public replies as `outbound.<channel>` records (pure): who gets them and under which key.

The lifecycle stage calls `outbound_reply` for each reply action it applies; the thread comes
from the ticket index (channel and thread ref of the `opened` event). Buyer replies are the
customer's own words and internal notes are not replies: neither goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from router.ids import derive_id
from router.outputs import engine_record
from router.records import OutRecord
from schemas.action import ActorRole, ReplyAction
from schemas.message import EMAIL_SENDER_PREFIX, Channel
from schemas.outbound import OUTBOUND_REPLY, OutboundReply, Platform
from schemas.topics import OUTBOUND


@dataclass(frozen=True, slots=True)
class Route:
    """Where a direct-message thread's replies go on its platform."""

    platform: Platform
    account_id: str
    recipient_id: str


def thread_route(thread_ref: str) -> Route | None:
    """`whatsapp:<phone number id>:<wa_id>`, `messenger:<page id>:<PSID>` and
    `instagram:<account>:<IGSID>` name their recipient; comment and mention threads (more
    parts) and any other ref do not."""
    parts = thread_ref.split(":")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        platform = Platform(parts[0])
    except ValueError:
        return None
    if platform is Platform.FACEBOOK:
        return None  # page comments only, never a direct thread
    return Route(platform, parts[1], parts[2])


def comment_platform(thread_ref: str) -> Platform | None:
    """The platform of a comment thread (`instagram:<account>:media:<id>:user:<id>`,
    `facebook:<page>:post:<id>:user:<id>`, `router.intake.meta`); None for any other ref,
    mentions included (the webhook names no comment a reply could answer for sure)."""
    parts = thread_ref.split(":")
    if len(parts) != 6 or parts[4] != "user" or parts[2] not in ("media", "post"):
        return None
    if (parts[0], parts[2]) not in (("instagram", "media"), ("facebook", "post")):
        return None
    return Platform(parts[0])


def idempotency_key(ticket_id: str, action_id: str) -> str:
    """One per reply action: a replayed action yields the same key (and record id)."""
    return derive_id(ticket_id, action_id, "outbound")


def outbound_reply(
    action: ReplyAction,
    action_id: str,
    channel: str,
    thread_ref: str,
    now: datetime,
    reply_to: str | None = None,
    customer: str | None = None,
) -> OutRecord | None:
    """The `outbound.<channel>` record of an applied reply; None for a buyer's own reply.
    `reply_to`: the customer's latest comment, which a reply on a comment thread answers, or
    latest mail (its Message-ID), which an email reply answers; `customer`: on email, who
    opened the ticket (`email:<address>`), the reply's recipient."""
    if action.actor.role is ActorRole.BUYER:
        return None
    key = idempotency_key(action.ticket_id, action_id)
    if channel == Channel.EMAIL.value:
        address = customer.removeprefix(EMAIL_SENDER_PREFIX) if customer else None
        data = OutboundReply(
            ticket_id=action.ticket_id, action_id=action_id, idempotency_key=key,
            channel=Channel.EMAIL, thread_ref=thread_ref, recipient_id=address or None,
            reply_to_id=reply_to, body=action.body, actor=action.actor, at=action.at,
        )  # fmt: skip
        return engine_record(
            OUTBOUND.of(channel), action.ticket_id, key, OUTBOUND_REPLY, now,
            data.model_dump(mode="json", exclude_none=True),
        )  # fmt: skip
    route = thread_route(thread_ref)
    commented = comment_platform(thread_ref) if route is None else None
    if commented is not None and reply_to is not None:
        route = Route(commented, thread_ref.split(":")[1], reply_to)
    platform_reply_to = reply_to if commented is not None else None
    data = OutboundReply(
        ticket_id=action.ticket_id,
        action_id=action_id,
        idempotency_key=key,
        channel=Channel(channel),
        thread_ref=thread_ref,
        platform=route.platform if route else None,
        account_id=route.account_id if route else None,
        recipient_id=route.recipient_id if route and platform_reply_to is None else None,
        reply_to_id=platform_reply_to if route else None,
        body=action.body,
        actor=action.actor,
        at=action.at,
    )
    return engine_record(
        OUTBOUND.of(channel), action.ticket_id, key, OUTBOUND_REPLY, now,
        data.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
