"""The faust application: topics, the ticket table and the inbound agent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
import structlog

from router.default_policy import DefaultPolicy
from router.routing import RoutingPolicy
from schemas.topics import CHANNEL_TOPICS, TICKETS_CHANGELOG, TICKETS_REROUTES, TICKETS_TABLE
from streams.buyers import install_buyers
from streams.fast_send import KeyedSender
from streams.kafka_client import client_kwargs
from streams.lifecycle import LifecycleStage, install_lifecycle
from streams.processor import InboundProcessor, PolicyHolder
from streams.rules_reload import install_rules_reload
from streams.settings import RouterSettings
from streams.ticket_index import install_ticket_index
from streams.topics import TopicManager
from streams.transport import RouterApp
from streams.vendor_directory import install_vendor_directory

log = structlog.get_logger("router.app")



@dataclass
class Engine:
    app: faust.App
    processor: InboundProcessor
    topics: TopicManager
    policy: PolicyHolder
    lifecycle: LifecycleStage | None = None


def _credentials(settings: RouterSettings) -> Any:
    if not settings.security_protocol.startswith("SASL"):
        return None
    kwargs = client_kwargs(settings)
    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"],
        password=kwargs["sasl_plain_password"],
        mechanism=settings.sasl_mechanism,
    )


def create_engine(settings: RouterSettings, policy: RoutingPolicy | None = None) -> Engine:
    compression = None if settings.producer_compression == "none" else settings.producer_compression
    app = RouterApp(
        f"{settings.topic_prefix}{settings.app_id}",
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
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.consumer_group_instance_id,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host="127.0.0.1",
        processing_guarantee="at_least_once",
    )
    topics = TopicManager(settings)
    holder = PolicyHolder(policy or DefaultPolicy())
    table = app.Table(
        TICKETS_TABLE,
        default=None,
        # bytes in, bytes out: faust picks the "raw" codec for both the live table and the
        # changelog recovery path (a faust Schema alone leaves recovery decoding JSON).
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        extra_topic_configs=dict(TICKETS_CHANGELOG.configs),
    )
    inbound = app.topic(
        # lifecycle re-routes arrive keyed by thread, co-partitioned with the channel topics
        *(settings.topic(name) for name in (*CHANNEL_TOPICS, TICKETS_REROUTES.name)),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    crashing: set[asyncio.Future[Any]] = set()  # keep a reference until the crash runs

    def crash(exc: BaseException) -> None:
        # A produce that failed for good: stop before faust commits past the input record.
        crashing.add(asyncio.ensure_future(app.crash(exc)))

    send = KeyedSender(app)

    processor = InboundProcessor(
        settings, table, send, topics, holder, on_delivery_failure=crash
    )
    processor.vendors = install_vendor_directory(app, settings).get  # every worker, whole topic
    processor.buyers = install_buyers(app, settings).history  # open / recent tickets per buyer
    install_ticket_index(app, settings)  # feeds buyer history and lifecycle re-routes
    install_rules_reload(app, settings, holder, topics)  # hot reload from routing.rules

    @app.agent(inbound, name="route-inbound")
    async def route_inbound(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            await processor.handle(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                message.timestamp,
            )

    lifecycle = install_lifecycle(app, settings, topics, vendors=processor.vendors)
    return Engine(app=app, processor=processor, topics=topics, policy=holder, lifecycle=lifecycle)
