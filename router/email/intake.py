"""What the email intake does with one parsed message, whichever way it arrived (an IMAP
mailbox, an SMTP session, a file): the records to produce, and, for SMTP, the reply code.

The connectors in `streams/email/` follow one rule: a message is done (flagged or moved in
IMAP, `250` in SMTP) only once Kafka acknowledged every record of its step. A refused message
is done once its dead letter is acknowledged; an auto-reply or a bounce opens nothing (counted and
logged by the connector), but the bounce of one of our email replies marks that reply failed
(`support.message.failed`), done once that marker is acknowledged.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from router.email.config import EmailConfig
from router.email.fallback import ThreadMemory, memory_value
from router.email.noise import Classification, Noise
from router.email.parse import Classified, Outcome, Parsed, parse_email
from router.email.reply import replied_action
from router.ids import derive_id
from router.inbound import dead_letter
from router.intake.limits import RateLimiter
from router.outbound import idempotency_key
from router.outputs import engine_record
from router.records import OutRecord
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.message import Channel
from schemas.outbound import MESSAGE_FAILED, DeliveryOutcome
from schemas.topics import CHANNELS, EMAIL_THREADS, TICKETS_EVENTS

SMTP_SOURCE_PREFIX = "smtp:"
IMAP_SOURCE_PREFIX = "imap:"


class Kind(StrEnum):
    RECORD = "record"  # a message for its ticket, on `channel.email`
    REFUSED = "refused"  # dead-lettered with its reason
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass(frozen=True, slots=True)
class Step:
    kind: Kind
    records: tuple[OutRecord, ...]  # all acknowledged before the message is done
    event_id: str | None = None  # the channel record's CloudEvents id
    reason: RejectReason | None = None  # refused: why
    detail: str = ""  # refused: the error; noise: the header that told


def intake_step(outcome: Outcome, now: datetime) -> Step:
    if isinstance(outcome, Parsed):
        record = OutRecord(CHANNELS[Channel.EMAIL].name, outcome.key, outcome.value)
        return Step(Kind.RECORD, (record,), event_id=outcome.event.id)
    if isinstance(outcome, Classified):
        c = outcome.classification
        marker = bounce_marker(c, now)
        return Step(Kind(c.kind.value), (marker,) if marker else (), detail=c.why)
    return Step(Kind.REFUSED, (outcome.record,), reason=outcome.reason, detail=outcome.error)


@dataclass
class LiveIntake:
    """What the live intake (IMAP and SMTP; not an import) keeps between messages:

    - a token bucket per sender address (`email_sender_rate_per_hour`, bursts of
      `email_sender_burst`): a mail storm's messages past it are dead-lettered as
      `sender_rate_limited`, whole, instead of opening tickets (nothing lost, a replay is one
      `router tail` away);
    - the thread each sender last wrote to under a subject (`router.email.fallback`), for
      replies from clients that drop every threading header; each published message also
      writes its entry to `email.threads`, acknowledged with it.
    """

    config: EmailConfig
    limiter: RateLimiter | None
    memory: ThreadMemory

    def step(self, raw: bytes, now: datetime, source: SourcePosition) -> Step:
        at = now.timestamp()
        outcome = parse_email(raw, self.config, now, source,
                              lambda sender, subject: self.memory.recall(sender, subject, at))
        step = intake_step(outcome, now)
        if step.kind is not Kind.RECORD or not isinstance(outcome, Parsed):
            return step
        data = outcome.event.data
        sender = (data.sender.address or data.sender.id).lower()
        if self.limiter is not None and self.limiter.take(sender, 1, at) > 0:
            error = f"more than the rate allowed from one sender ({sender})"
            letter = dead_letter(RejectReason.SENDER_RATE_LIMITED, error, [], source,
                                 outcome.key, outcome.value, now)  # fmt: skip
            return Step(Kind.REFUSED, (letter,), reason=RejectReason.SENDER_RATE_LIMITED,
                        detail=error)  # fmt: skip
        key = self.memory.remember(sender, data.subject or "", data.thread_ref, at)
        if key is None:
            return step
        noted = OutRecord(EMAIL_THREADS.name, key.encode(), memory_value(data.thread_ref, at))
        return Step(step.kind, (*step.records, noted), event_id=step.event_id)


def bounce_marker(bounce: Classification, now: datetime) -> OutRecord | None:
    """A failed delivery report of one of our email replies -> `support.message.failed` on
    `tickets.events` for that reply (as the deliverer writes for a refused one); None for any
    other noise, a delay report, or a message that is not ours."""
    if bounce.kind is not Noise.BOUNCE or bounce.action != "failed":
        return None
    replied = replied_action(bounce.original_message_id or "")
    if replied is None:
        return None
    ticket_id, action_id = replied
    key = idempotency_key(ticket_id, action_id)
    outcome = DeliveryOutcome(
        ticket_id=ticket_id, action_id=action_id, idempotency_key=key, channel=Channel.EMAIL,
        attempts=1,  # the relay took it; the recipient's server refused it later
        reason=f"bounced: {bounce.why}"[:500], at=now,
    )  # fmt: skip
    return engine_record(
        TICKETS_EVENTS.name, ticket_id, derive_id(key, "bounced"), MESSAGE_FAILED, now,
        outcome.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip


def imap_source(account: str, mailbox: str, uidvalidity: int, uid: int) -> SourcePosition:
    """Where an IMAP message sat: the dead letter's id derives from it, so refusing the same
    message again (a re-read after a crash) writes the same dead letter."""
    return SourcePosition(
        topic=f"{IMAP_SOURCE_PREFIX}{account}/{mailbox}", partition=uidvalidity, offset=uid
    )


def smtp_source(listener: str, raw: bytes) -> SourcePosition:
    """An SMTP message has no position: its digest stands in, so the sender's retry of a
    refused message writes the same dead letter."""
    offset = int.from_bytes(hashlib.sha256(raw).digest()[:7], "big")
    return SourcePosition(topic=f"{SMTP_SOURCE_PREFIX}{listener}", partition=0, offset=offset)


_MAX_RECIPIENTS = 100
_ADDRESS = re.compile(r"[^\s<>@,;]{1,64}@[^\s<>@,;]{1,255}")


def with_envelope_recipients(raw: bytes, recipients: list[str]) -> bytes:
    """The message with an `X-Original-To` line per SMTP envelope recipient (as a delivering
    MTA adds), so a plus-address named only in `RCPT TO` (a Bcc) still reaches the parser."""
    lines = [f"X-Original-To: {r}\r\n".encode() for r in recipients[:_MAX_RECIPIENTS]
             if r.isascii() and _ADDRESS.fullmatch(r)]  # fmt: skip
    return b"".join(lines) + raw


# RFC 5321 replies with RFC 3463 enhanced status codes
TRY_LATER = "451 4.3.0 The message could not be stored now; try again later"
_SIZE_REASONS = (RejectReason.OVERSIZE,)


def smtp_answer(step: Step, acknowledged: bool) -> str:
    """`250` once Kafka holds the outcome; `451` (the sender retries) while it cannot; `5xx`
    with the reason for a message the parser refuses (its dead letter is written first). A
    storm's message held in the dead-letter topic is answered `250`: a bounce would only feed
    an auto-responder loop, and a `4xx` would bring it back."""
    if not acknowledged:
        return TRY_LATER
    if step.reason is RejectReason.SENDER_RATE_LIMITED:
        return "250 2.0.0 OK, held: sender_rate_limited"
    if step.kind is Kind.REFUSED:
        reason = step.reason.value if step.reason is not None else "refused"
        code = "552 5.3.4" if step.reason in _SIZE_REASONS else "554 5.6.0"
        return f"{code} Message refused ({reason}): {_one_line(step.detail)}"
    if step.kind is Kind.RECORD:
        return f"250 2.0.0 OK {step.event_id}"
    return f"250 2.0.0 OK, not a ticket message ({step.kind.value})"


def _one_line(text: str, limit: int = 400) -> str:
    """Reply text: one line of printable ASCII, bounded (RFC 5321 allows 512 octets)."""
    flat = " ".join(text.split())
    return "".join(ch if " " <= ch <= "~" else "?" for ch in flat)[:limit]
