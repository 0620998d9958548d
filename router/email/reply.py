"""Public replies by email (pure; `router deliver --channel email` sends them over SMTP).

An `outbound.email` record becomes one message to the customer (`recipient_id`):
- `Message-ID: <idempotency key.<ticket and action id>@our domain>`: the key derives from the
  action id, so every attempt, and a redelivered record, is the same message (a receiving
  server or client that already has it can drop the repeat), and a bounce that quotes it names
  the reply that failed;
- `In-Reply-To` / `References`: the customer's latest mail on the ticket (`reply_to_id`), so
  the reply joins the customer's thread;
- `Reply-To: support+t.<token>@...`: the ticket's reply address (`router.email.threads`), so an
  answer from a client that drops threading headers still finds its ticket.

SMTP answers: `2xx` delivered; `4xx` and no answer (a connection error, a timeout) retried
with the delivery policy's backoff; `5xx` fails at once (RFC 5321: permanent).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from router.delivery import Delivered, Failed, Retry, RetryPolicy, Verdict
from router.email.threads import THREAD_PREFIX, reply_address
from router.outbound import idempotency_key
from schemas.outbound import OutboundReplyEvent

SUBJECT = "Re: your support request"
_TOKEN = re.compile(r"[a-z2-7]{16}")
_ADDRESS = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,255}")
_MESSAGE_ID = re.compile(r"[^<>\s]{1,500}")
_SEP = "\x1f"
# CRLF; a long Message-ID stays on one line (folded ones confuse some clients)
_POLICY = SMTP.clone(max_line_length=998)
_MAX_TAG = 400  # our Message-IDs stay within what the intake reads back (500 characters)
_BASE32 = re.compile(r"[a-z2-7]+")


@dataclass(frozen=True, slots=True)
class ReplyMail:
    sender: str  # the envelope sender (MAIL FROM), our support address
    recipient: str
    message_id: str  # without brackets
    data: bytes  # the message as sent (CRLF line ends)


def reply_mail(event: OutboundReplyEvent, from_address: str) -> ReplyMail | Failed:
    """The message that answers `event`, or why there is none to send."""
    reply = event.data
    recipient = reply.recipient_id
    if not recipient or not _ADDRESS.fullmatch(recipient):
        return Failed(f"thread {reply.thread_ref!r} names no customer address to send to", None)
    message_id = reply_message_id(event, from_address.rpartition("@")[2])
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = from_address
    msg["To"] = recipient
    token = reply.thread_ref.removeprefix(THREAD_PREFIX)
    if reply.thread_ref.startswith(THREAD_PREFIX) and _TOKEN.fullmatch(token):
        msg["Reply-To"] = reply_address(from_address, token)
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(reply.at)
    msg["Message-ID"] = f"<{message_id}>"
    if reply.reply_to_id and _MESSAGE_ID.fullmatch(reply.reply_to_id):
        msg["In-Reply-To"] = f"<{reply.reply_to_id}>"
        msg["References"] = f"<{reply.reply_to_id}>"
    msg.set_content(reply.body)
    return ReplyMail(from_address, recipient, message_id, msg.as_bytes())


def reply_message_id(event: OutboundReplyEvent, domain: str) -> str:
    """`<idempotency key>.<ticket and action id, base32>@<domain>`: the same for every attempt,
    and a bounce that quotes it names the reply that failed (`replied_action`)."""
    reply = event.data
    tag = base64.b32encode(f"{reply.ticket_id}{_SEP}{reply.action_id}".encode())
    text = tag.decode("ascii").rstrip("=").lower()
    return f"{event.id}.{text}@{domain}" if len(text) <= _MAX_TAG else f"{event.id}@{domain}"


def replied_action(message_id: str) -> tuple[str, str] | None:
    """(ticket id, action id) of the reply that carried `message_id`, when it is one of ours
    (its key matches the ids it encodes); None for any other message."""
    local = message_id.rpartition("@")[0]
    key, _, tag = local.partition(".")
    if not tag or len(tag) > _MAX_TAG or not _BASE32.fullmatch(tag):
        return None
    try:
        raw = base64.b32decode(tag.upper() + "=" * (-len(tag) % 8)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    ticket_id, sep, action_id = raw.partition(_SEP)
    if not sep or idempotency_key(ticket_id, action_id) != key:
        return None
    return ticket_id, action_id


def smtp_verdict(
    policy: RetryPolicy, attempt: int, code: int | None, error: str | None, jitter: float
) -> Verdict:
    """What to do after attempt `attempt` was answered `code` (None: no answer, `error` says
    why)."""
    if code is not None and 200 <= code < 300:
        return Delivered(code)
    what = f"SMTP {code}" if code is not None else f"no answer: {error or 'connection failed'}"
    if error and code is not None:
        what += f" {error[:200]}"
    if code is not None and code >= 500:
        return Failed(f"{what}: permanent", code)
    if attempt >= policy.attempts:
        return Failed(f"{what} on attempt {attempt} of {policy.attempts}", code)
    return Retry(policy.backoff(attempt, jitter))
