"""Email replies over SMTP (`router deliver --channel email`): each `outbound.email` record is
sent to the configured relay as the message `router.email.reply.reply_mail` builds; the loop,
its retries, the delivered/failed events and `outbound.dlq` are `streams.deliver`'s."""

from __future__ import annotations

import asyncio
import random
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from router.delivery import Failed, Verdict
from router.email.reply import ReplyMail, reply_mail, smtp_verdict
from schemas.outbound import OutboundReplyEvent
from streams.deliver import ReplyDeliverer
from streams.settings import RouterSettings


@dataclass(frozen=True, slots=True)
class SmtpAnswer:
    code: int | None  # None: no answer (refused connection, timeout, dropped session)
    error: str | None = None


Send = Callable[[ReplyMail], Awaitable[SmtpAnswer]]


def smtp_send(settings: RouterSettings) -> Send:
    """One SMTP session per message with the relay (stdlib smtplib, in a thread)."""
    host = settings.email_relay_host
    port, timeout = settings.email_relay_port, settings.deliver_timeout_s
    user, password = settings.email_relay_user, settings.email_relay_password

    def send_blocking(mail: ReplyMail) -> SmtpAnswer:
        if not host:
            return SmtpAnswer(None, "no relay configured (email_relay_host)")
        try:
            with smtplib.SMTP(host, port, timeout=timeout) as client:
                if settings.email_relay_starttls:
                    client.starttls(context=ssl.create_default_context())
                if user and password is not None:
                    client.login(user, password.get_secret_value())
                client.sendmail(mail.sender, [mail.recipient], mail.data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, said = next(iter(exc.recipients.values()), (None, b""))
            return SmtpAnswer(code, _text(said))
        except smtplib.SMTPResponseException as exc:
            return SmtpAnswer(exc.smtp_code, _text(exc.smtp_error))
        except (smtplib.SMTPException, OSError) as exc:
            return SmtpAnswer(None, type(exc).__name__)
        return SmtpAnswer(250)

    async def send(mail: ReplyMail) -> SmtpAnswer:
        return await asyncio.to_thread(send_blocking, mail)

    return send


def _text(said: bytes | str) -> str:
    raw = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    return " ".join(raw.split())[:200]


class EmailDeliverer(ReplyDeliverer[ReplyMail, SmtpAnswer]):
    def __init__(
        self,
        settings: RouterSettings,
        send: Send,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(settings, sleep=sleep, jitter=jitter, now=now)
        self.from_address = settings.email_reply_from or next(
            iter(settings.email_support_addresses), None
        )
        self._send = send

    def prepare(self, event: OutboundReplyEvent) -> ReplyMail | Failed:
        if self.from_address is None:
            return Failed("no sender address: set email_reply_from or email_support_addresses",
                          None)  # fmt: skip
        return reply_mail(event, self.from_address)

    async def attempt(self, prepared: ReplyMail) -> SmtpAnswer:
        return await self._send(prepared)

    def verdict(self, attempt: int, answer: SmtpAnswer) -> Verdict:
        return smtp_verdict(self.policy, attempt, answer.code, answer.error, self._jitter())

    def provider_id(self, prepared: ReplyMail, answer: SmtpAnswer) -> str | None:
        return prepared.message_id
