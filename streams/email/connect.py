"""`router connect email`: the IMAP intake, the SMTP intake, or both, in one process, until
SIGTERM/SIGINT; both share one Kafka producer."""

from __future__ import annotations

import asyncio
import signal

import structlog

from router.email.config import EmailConfig
from streams.email.imap import ImapIntake
from streams.email.smtp import SmtpIntake
from streams.gateway.sink import ChannelSink
from streams.logs import configure_logging
from streams.settings import RouterSettings

log = structlog.get_logger("router.email")


async def connect_email(
    settings: RouterSettings, config: EmailConfig, stop: asyncio.Event, *, imap: bool, smtp: bool
) -> None:
    sink = ChannelSink(settings, settings.email_ack_timeout_s, client_id="router-email")
    await sink.start()
    smtp_intake = SmtpIntake(settings, config, sink) if smtp else None
    try:
        if smtp_intake is not None:
            await smtp_intake.start()
        if imap:
            await ImapIntake(settings, config, sink).run(stop)
        else:
            await stop.wait()
    finally:
        if smtp_intake is not None:
            await smtp_intake.stop()
        await sink.stop()
        log.info("email_connector_stopped")


def run_connect_email(settings: RouterSettings, config: EmailConfig, *, imap: bool,
                      smtp: bool) -> None:  # fmt: skip
    configure_logging(settings.log_level)
    log.info("email_connector_starting", imap=imap, smtp=smtp, settings=settings.masked())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await connect_email(settings, config, stop, imap=imap, smtp=smtp)

    asyncio.run(main())
