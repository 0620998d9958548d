"""The engine: one faust app per worker process, with the stages its `stage` setting names.

- `routing`: channel topics -> ticket table -> queues, decisions, ticket events (consumer
  group `<app_id>`);
- `lifecycle`: SLA clocks, desk actions, the ticket index and buyer history, on
  `tickets.events` / `tickets.commands` / `tickets.actions` (group `<app_id>-lifecycle`);
- `all`: both in one process and group (the default, and what the demo runs);
- `scores`: only the scores stage (`streams/stages/scores.py`, group `<app_id>-scores`), which
  also runs in an `all` or `lifecycle` worker when `scores_enabled` is set.

Where the stages run is the `runtime` setting (`streams.stages.host`): `direct` (the
default) puts every stage of the worker on one plain aiokafka consumer in the worker's group
(`streams/stages/direct.py`), faust still running the followers, timers of the app and web
server; `faust` runs each stage as a faust agent on faust's consumer.

Table changelogs are named after `<app_id>` whichever group hosts the table, so the same
state serves a worker of either layout.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from faust.app.base import BootStrategy

from router.clock import Clock, SystemClock
from router.default_policy import DefaultPolicy
from router.routing import RoutingPolicy
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.stages.scores import ScoreBooksProcessor, ScoreTicketsProcessor
from streams.kafka.client import client_kwargs
from streams.kafka.emit import Emitter, KeyedSender
from streams.kafka.faust_internals import aiokafka_producer
from streams.kafka.topics import TopicManager
from streams.kafka.transport import RouterApp
from streams.settings import RouterSettings
from streams.stages.buyers import install_buyers
from streams.stages.direct import DirectStage, OwnProducer
from streams.stages.disputes import DisputesStage, install_disputes
from streams.stages.host import DirectHost, FaustHost, StageHost
from streams.stages.lifecycle import LifecycleStage, install_lifecycle
from streams.stages.routing import install_routing, routing_runner
from streams.stages.rules_reload import install_rules_reload
from streams.stages.runner import StageRunner
from streams.stages.scores import install_scores, install_standings
from streams.stages.vendor_directory import install_vendor_directory

log = structlog.get_logger("router.app")

__all__ = ["Engine", "create_engine"]


@dataclass
class Engine:
    app: faust.App
    emitter: Emitter
    topics: TopicManager
    policy: PolicyHolder
    routing: StageRunner | None = None
    lifecycle: LifecycleStage | None = None
    disputes: DisputesStage | None = None
    scores: tuple[ScoreTicketsProcessor, ScoreBooksProcessor] | None = None
    direct: DirectStage | None = None  # the stages' own consumer group (`runtime: direct`)

    @property
    def processor(self) -> RoutingProcessor | None:
        """The routing stage's processor (counts for metrics and the demo), if this worker
        runs it."""
        if self.routing is None:
            return None
        processor = self.routing.processor
        assert isinstance(processor, RoutingProcessor)
        return processor


def _credentials(settings: RouterSettings) -> Any:
    if not settings.security_protocol.startswith("SASL"):
        return None
    kwargs = client_kwargs(settings)
    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"],
        password=kwargs["sasl_plain_password"],
        mechanism=settings.sasl_mechanism,
    )


def create_engine(
    settings: RouterSettings, policy: RoutingPolicy | None = None, clock: Clock | None = None
) -> Engine:
    clock = clock or SystemClock()
    compression = None if settings.producer_compression == "none" else settings.producer_compression
    app = RouterApp(
        settings.group_id(),
        changelog_base_id=settings.group_id("routing"),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=settings.table_standby_replicas,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_max_request_size=8 * 1024 * 1024,
        producer_compression_type=compression,
        broker_max_poll_records=settings.consumer_max_poll_records,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_request_timeout=settings.consumer_request_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.consumer_group_instance_id,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host="127.0.0.1",
        processing_guarantee="at_least_once",
    )
    direct = settings.direct_runtime
    if direct:  # the stages consume on their own consumer: faust's consumes nothing
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    topics = TopicManager(settings)
    holder = PolicyHolder(policy or DefaultPolicy())
    crashing: set[asyncio.Future[Any]] = set()  # keep a reference until the crash runs

    def crash(exc: BaseException) -> None:
        # A produce that failed for good: stop before anything commits past the input record.
        crashing.add(asyncio.ensure_future(app.crash(exc)))

    producer = OwnProducer(settings) if direct else None  # the direct stage's, not faust's
    sender = KeyedSender(producer or (lambda: aiokafka_producer(app)))
    emitter = Emitter(settings, sender, topics, crash)
    host: StageHost = (
        DirectHost(settings, emitter, clock, producer, topics, crash) if producer is not None
        else FaustHost(app, settings, emitter, clock)
    )  # fmt: skip
    vendors = install_vendor_directory(app, settings).get  # every worker, whole topic
    engine = Engine(app=app, emitter=emitter, topics=topics, policy=holder)
    routing = settings.routes
    lifecycle = settings.stage in ("all", "lifecycle")
    # the buyers table lives with the ticket index; the routing stage follows its changelog
    buyers = install_buyers(app, settings, host if lifecycle else None, follow=routing)
    if routing:
        assert buyers is not None  # followed wherever routing runs
        install_rules_reload(app, settings, holder, topics)  # hot reload from routing.rules
        standings = install_standings(app, settings)  # `vendor.score*` facts
        runner_for = functools.partial(
            routing_runner, settings=settings, emitter=emitter, policy=holder, clock=clock,
            vendors=vendors, buyers=buyers.history, standings=standings.get,
        )  # fmt: skip
        engine.routing = install_routing(host, runner_for)
    if lifecycle:
        engine.lifecycle = install_lifecycle(host, vendors=vendors)
        engine.disputes = install_disputes(app, host, vendors=vendors)
    if settings.stage == "scores" or (settings.scores_enabled and lifecycle):
        engine.scores = install_scores(host, vendors)
    if isinstance(host, DirectHost):
        engine.direct = host.start_in(app)
    return engine
