"""`router connect email`: the IMAP intake, the SMTP intake, or both, in one process, until
SIGTERM/SIGINT; both share one Kafka producer. Counts by outcome on `/metrics`
(`metrics_host:metrics_port`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator, Mapping

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from router.email.config import EmailConfig
from streams.email.imap import ImapIntake
from streams.email.smtp import SmtpIntake
from streams.gateway.sink import ChannelSink
from streams.logs import configure_logging
from streams.metrics import serve_worker_http
from streams.settings import RouterSettings

log = structlog.get_logger("router.email")


class EmailCollector(Collector):
    """`router_email_messages_total{intake,outcome}`: messages taken in (imap, smtp) by outcome
    (record, refused, auto_reply, bounce; deferred: SMTP answered 451)."""

    def __init__(self, counts: Mapping[str, Callable[[], Mapping[str, int]]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "router_email_messages", "Email messages taken in, by intake and outcome",
            labels=["intake", "outcome"],
        )
        for intake, read in self.counts.items():
            for outcome, n in sorted(dict(read()).items()):
                family.add_metric([intake, outcome], n)
        yield family


async def connect_email(
    settings: RouterSettings, config: EmailConfig, stop: asyncio.Event, *, imap: bool, smtp: bool
) -> None:
    sink = ChannelSink(settings, settings.email_ack_timeout_s, client_id="router-email")
    await sink.start()
    smtp_intake = SmtpIntake(settings, config, sink) if smtp else None
    imap_intake = ImapIntake(settings, config, sink) if imap else None
    counts: dict[str, Callable[[], Mapping[str, int]]] = {}
    if imap_intake is not None:
        counts["imap"] = lambda: imap_intake.counts
    if smtp_intake is not None:
        counts["smtp"] = lambda: smtp_intake.handler.counts if smtp_intake.handler else {}
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(EmailCollector(counts))
    serve_worker_http(registry, None, settings.metrics_host, settings.metrics_port)
    try:
        if smtp_intake is not None:
            await smtp_intake.start()
        if imap_intake is not None:
            await imap_intake.run(stop)
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
