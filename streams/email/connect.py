"""`router connect email`: the IMAP intake, the SMTP intake, or both, in one process, until
SIGTERM/SIGINT; both share one Kafka producer. Counts by outcome on `/metrics`
(`metrics_host:metrics_port`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from router.email.config import EmailConfig
from router.email.intake import LiveIntake
from schemas.topics import EMAIL_THREADS
from streams.email.imap import ImapIntake
from streams.email.live import live_intake, memory_follower
from streams.email.smtp import SmtpIntake
from streams.gateway.sink import ChannelSink
from streams.kafka.topics import TopicManager
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


# how long the intake waits at start for the thread memory before taking mail without it
THREADS_LOAD_WAIT_S = 15.0


async def remember_threads(
    settings: RouterSettings, live: LiveIntake, loaded: asyncio.Event
) -> None:
    """Read `email.threads` whole (then set `loaded`), then follow it. In the background: the
    memory is a hint for headerless replies, and the intake must answer (451 included) while
    Kafka is away."""
    delay = 0.5
    while True:
        try:
            await TopicManager(settings).ensure([EMAIL_THREADS.name])
            follower = memory_follower(settings, live.memory)
            await follower.catch_up()
            loaded.set()
            log.info("email_threads_loaded", threads=len(live.memory.entries))
            await follower.follow()
            return
        except (KafkaError, OSError, LookupError, TimeoutError) as exc:
            log.warning("email_threads_unavailable", error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)  # wait-ok: backoff before reading the topic again
            delay = min(delay * 2, 30.0)


async def connect_email(
    settings: RouterSettings, config: EmailConfig, stop: asyncio.Event, *, imap: bool, smtp: bool
) -> None:
    sink = ChannelSink(settings, settings.email_ack_timeout_s, client_id="router-email")
    await sink.start()
    live = live_intake(settings, config)
    loaded = asyncio.Event()
    following = asyncio.create_task(remember_threads(settings, live, loaded), name="email-threads")
    with contextlib.suppress(TimeoutError):  # Kafka away: take mail now, remember later
        await asyncio.wait_for(loaded.wait(), THREADS_LOAD_WAIT_S)
    smtp_intake = SmtpIntake(settings, config, sink, live) if smtp else None
    imap_intake = ImapIntake(settings, config, sink, live) if imap else None
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
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
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
