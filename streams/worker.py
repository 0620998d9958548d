"""Run the engine as a long-lived worker process."""

from __future__ import annotations

import asyncio
import gc
import os

import structlog

from router.routing import RoutingPolicy
from schemas.topics import QUEUE_DEPT
from streams.app import create_engine
from streams.health import WorkerHealth
from streams.kafka.compacted import catch_up_followers
from streams.kafka.topics import ensure_core_topics
from streams.logs import configure_logging
from streams.metrics import engine_registry, serve_worker_http
from streams.settings import RouterSettings
from streams.shutdown import BoundedWorker, EarlySignals

log = structlog.get_logger("router.worker")

# A batch allocates tens of thousands of short-lived containers. At CPython's default first
# threshold (700) many of them outlive a collection or two while the batch is in flight and
# reach the oldest generation, whose full collections then come every few seconds and walk
# every object start-up built (~120k: modules, schemas, the compiled ruleset), 60-130 ms each
# on the 2-core bench machine (~6% of the routing worker's CPU).
YOUNG_GENERATION_THRESHOLD = 10_000


def settle_heap() -> int:
    """Once start-up is done: collect, leave every object it built out of later collections
    (`gc.freeze`), and collect the young generation less often. Returns the objects frozen."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
    return gc.get_freeze_count()


def yield_cpu(niceness: int) -> int:
    """Raise this process's niceness to at least `niceness` (never lower it: that takes
    privileges, and an operator's `nice` on the command line stays). Returns the niceness."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > current:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)


async def _prepare_topics(settings: RouterSettings, policy: RoutingPolicy) -> None:
    """Core topics plus every department queue the policy names: no creation on the hot path."""
    manager = await ensure_core_topics(settings)
    departments = getattr(policy, "departments", ())
    await manager.ensure([QUEUE_DEPT.of(d) for d in departments])


def run_worker(settings: RouterSettings, policy: RoutingPolicy | None = None) -> None:
    """Create topics, then hand the loop to faust's worker (SIGTERM/SIGINT stop it cleanly,
    within `shutdown_timeout_s`: streams/shutdown.py)."""
    configure_logging(settings.log_level)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    early = EarlySignals(loop)  # SIGTERM before faust's worker runs: stop, exit 0
    log.info("worker_starting", settings=settings.masked())
    if settings.cpu_niceness:
        log.info("cpu_niceness", niceness=yield_cpu(settings.cpu_niceness))
    engine = create_engine(settings, policy)
    health = WorkerHealth(
        engine, loop, commit_stall_s=settings.health_commit_stall_s,
        loop_timeout_s=settings.health_loop_timeout_s,
    )  # fmt: skip
    registry = engine_registry(
        engine, settings.logical, health, per_vendor=settings.scores_vendor_metrics
    )
    serve_worker_http(registry, health, settings.metrics_host, settings.metrics_port)
    if not early.run(_prepare_topics(settings, engine.policy.policy)):
        return
    # Latest good ruleset and the vendor directory in place before any record is processed.
    if not early.run(catch_up_followers(engine.app)):
        return
    health.followers_loaded = True
    log.info("heap_settled", frozen_objects=settle_heap())
    worker = BoundedWorker(
        engine.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        early=early,
    )
    worker.execute_from_commandline()
