"""Run the engine as a long-lived worker process."""

from __future__ import annotations

import asyncio

import faust
import structlog

from router.routing import RoutingPolicy
from schemas.topics import QUEUE_DEPT
from streams.app import create_engine
from streams.compacted import catch_up_followers
from streams.logs import configure_logging
from streams.metrics import engine_registry, serve_metrics
from streams.settings import RouterSettings
from streams.topics import ensure_core_topics

log = structlog.get_logger("router.worker")


async def _prepare_topics(settings: RouterSettings, policy: RoutingPolicy) -> None:
    """Core topics plus every department queue the policy names: no creation on the hot path."""
    manager = await ensure_core_topics(settings)
    departments = getattr(policy, "departments", ())
    await manager.ensure([QUEUE_DEPT.of(d) for d in departments])


def run_worker(settings: RouterSettings, policy: RoutingPolicy | None = None) -> None:
    """Create topics, then hand the loop to faust's worker (SIGTERM/SIGINT stop it cleanly)."""
    configure_logging(settings.log_level)
    log.info("worker_starting", settings=settings.masked())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = create_engine(settings, policy)
    serve_metrics(
        engine_registry(engine, settings.logical), settings.metrics_host, settings.metrics_port
    )
    loop.run_until_complete(_prepare_topics(settings, engine.policy.policy))
    # Latest good ruleset and the vendor directory in place before any record is processed.
    loop.run_until_complete(catch_up_followers(engine.app))
    worker = faust.Worker(
        engine.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.execute_from_commandline()
