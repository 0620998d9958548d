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


def mention_media(thread_ref: str) -> tuple[str, str] | None:
    """`instagram:<account>:media:<media id>` (a mention, `router.intake.meta`): the account
    mentioned and the media it was mentioned on; None for any other ref."""
    parts = thread_ref.split(":")
    if len(parts) != 4 or parts[0] != Platform.INSTAGRAM.value or parts[2] != "media":
        return None
    return (parts[1], parts[3]) if parts[1] and parts[3] else None


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
    `reply_to`: the customer's latest comment (or mention), which a reply on a comment (or
    mention) thread answers, or latest mail (its Message-ID), which an email reply answers;
    `customer`: on email, who opened the ticket (`email:<address>`), the reply's recipient."""
    if action.actor.role is ActorRole.BUYER:
        return None
    key = idempotency_key(action.ticket_id, action_id)
    target = (
        _email_target(customer, reply_to) if channel == Channel.EMAIL.value
        else _target(thread_ref, reply_to)
    )  # fmt: skip
    data = OutboundReply(
        ticket_id=action.ticket_id, action_id=action_id, idempotency_key=key,
        channel=Channel(channel), thread_ref=thread_ref, body=action.body, actor=action.actor,
        at=action.at, **target,
    )  # fmt: skip
    return engine_record(
        OUTBOUND.of(channel), action.ticket_id, key, OUTBOUND_REPLY, now,
        data.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip


def _email_target(customer: str | None, reply_to: str | None) -> dict[str, str]:
    """An email reply goes to who opened the ticket, answering their latest mail."""
    address = customer.removeprefix(EMAIL_SENDER_PREFIX) if customer else None
    target = {"recipient_id": address} if address else {}
    return {**target, "reply_to_id": reply_to} if reply_to else target


def _target(thread_ref: str, reply_to: str | None) -> dict[str, str]:
    """The `OutboundReply` fields that say where on its platform a reply goes."""
    route = thread_route(thread_ref)
    if route is not None:
        return {"platform": route.platform, "account_id": route.account_id,
                "recipient_id": route.recipient_id}  # fmt: skip
    commented = comment_platform(thread_ref)
    if commented is not None:
        if reply_to is None:  # the index has not seen the customer's comment: no target
            return {}
        return {"platform": commented, "account_id": thread_ref.split(":")[1],
                "reply_to_id": reply_to}  # fmt: skip
    mention = mention_media(thread_ref)
    if mention is not None:
        account, media = mention
        target = {"platform": Platform.INSTAGRAM, "account_id": account, "media_id": media}
        if reply_to is not None and reply_to != media:  # mentioned in a comment: answer it
            target["reply_to_id"] = reply_to
        return target
    return {}
