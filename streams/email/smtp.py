"""SMTP intake (aiosmtpd): mail delivered straight to the router, answered only once Kafka has it.

At the end of DATA the message (with an `X-Original-To` line per envelope recipient) is
parsed by the core and its records (the channel record, or
the dead letter of a refused message) are produced; the answer (`router.email.intake.
smtp_answer`) is `250` once Kafka acknowledged them, `451` when it did not within
`email_ack_timeout_s` (the sending server keeps the message and retries: nothing is lost),
`5xx` with the reason for a message the parser refuses. A message above `email_max_bytes` is
refused by the server itself during DATA (`552`), as announced in its `SIZE` extension.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from router.email.config import EmailConfig
from router.email.intake import (
    Kind,
    LiveIntake,
    smtp_answer,
    smtp_source,
    with_envelope_recipients,
)
from streams.email.live import live_intake
from streams.gateway.sink import ChannelSink
from streams.settings import RouterSettings

log = structlog.get_logger("router.email.smtp")

SESSION_TIMEOUT_S = 300  # RFC 5321's minimum server timeouts are 5 minutes


class IntakeHandler:
    """aiosmtpd's handler: the DATA hook does the work."""

    def __init__(
        self, config: EmailConfig, sink: ChannelSink, listener: str, live: LiveIntake
    ) -> None:
        self.config = config
        self.sink = sink
        self.live = live
        self.listener = listener
        self.counts: Counter[str] = Counter()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = with_envelope_recipients(envelope.original_content or b"", envelope.rcpt_tos)
        source = smtp_source(self.listener, raw)
        now = datetime.now(UTC)
        step = self.live.step(raw, now, source)
        acked = all(await self.sink.send(step.records)) if step.records else True
        answer = smtp_answer(step, acked)
        self.counts[step.kind.value if acked else "deferred"] += 1
        if not acked or step.kind is not Kind.RECORD:
            log.info("smtp_message", peer=str(session.peer), kind=step.kind.value,
                     answer=answer[:200], size=len(raw))  # fmt: skip
        return answer


class SmtpIntake:
    def __init__(
        self,
        settings: RouterSettings,
        config: EmailConfig,
        sink: ChannelSink,
        live: LiveIntake | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.sink = sink
        self.live = live or live_intake(settings, config)
        self.port = 0
        self.handler: IntakeHandler | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; the port (the chosen one when `email_smtp_port` is 0)."""
        host = self.settings.email_smtp_host
        listener = f"{host}:{self.settings.email_smtp_port}"
        handler = IntakeHandler(self.config, self.sink, listener, self.live)
        self.handler = handler
        loop = asyncio.get_running_loop()

        def protocol() -> Any:
            return SMTP(
                handler, data_size_limit=self.config.max_bytes, enable_SMTPUTF8=True,
                decode_data=False, timeout=SESSION_TIMEOUT_S, loop=loop,
            )  # fmt: skip

        self._server = await loop.create_server(protocol, host, self.settings.email_smtp_port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("smtp_listening", host=host, port=self.port)
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
