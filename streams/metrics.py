"""Prometheus metrics of one worker process: `GET http://<metrics_host>:<metrics_port>/metrics`
(the same port answers `/healthz` and `/readyz`: streams/health.py).

Everything is read at scrape time from state the stages keep anyway (their outcome
counters, the live policy, the consumer's offsets), so the hot path pays nothing for it.
Scrapes run on prometheus-client's HTTP thread: they copy what they read and skip a value
that changed under them rather than fail the scrape.

Series (README "Metrics" has the table for operators):
- `router_inbound_records_total{outcome}`: opened, followup, duplicate, replayed, rekeyed,
  rejected, moved, receipt, receipt_without_ticket;
- `router_dead_letters_total{reason}`; `router_records_sent_total{topic}` (logical topic,
  vendor and department queues folded into `queue.vendor` / `queue.dept`);
- `router_lifecycle_records_total{outcome}`, `router_sla_events_total{kind}` (warning,
  breached, met),
  `router_sla_deadlines_pending` (this worker's index: active partitions only),
  `router_sla_firing_held_seconds` (streams/stages/horizon.py; 0 unless a backlog holds it);
- `router_ruleset_info{ruleset,version}` (1 for the live policy);
- `router_worker_ready`: 1 when `/readyz` answers 200 (streams/health.py);
- `router_consumer_committed_offset{topic,partition}`: what it committed;
- `router_consumer_lag{topic,partition}`: high watermark minus committed offset;
- `router_consumer_time_lag_seconds{topic,partition}`: how long the oldest unprocessed record
  has waited (0 when caught up): now minus the timestamp of the last record processed there, an
  upper bound exact to within the gap between two records; absent until a partition with a
  backlog has processed one record;
- scores stage: `router_scores_records_total{step,outcome}`,
  `router_vendor_tier_changes_total{previous,tier}`, `router_vendors_by_tier{tier}`, and per
  queue (department queues by name, every vendor queue folded into `vendor:*` unless
  `scores_vendor_metrics`): `router_support_backlog{queue}`, and for department queues
  `router_support_first_response_seconds{queue,quantile}`, `router_support_sla_attainment`,
  `router_support_csat` (each queue's latest day, from the books this worker holds);
  `router_vendor_score{vendor}` only with `scores_vendor_metrics`;
- `process_*`: CPU, memory, open files of the worker.

Cardinality stays bounded: no vendor id, ticket id or buyer id appears in a label (vendor ids
only when `scores_vendor_metrics` asks for them).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import structlog
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector

from schemas.scores import ScoreTier, SupportDay
from schemas.sla import SLA_BREACHED, SLA_MET, SLA_WARNING
from schemas.topics import QUEUE_DEPT, QUEUE_VENDOR
from streams.health import WorkerHealth, answer
from streams.kafka.faust_internals import committed_offsets, started_consumer
from streams.stages.progress import input_progress

SLA_EVENT_KINDS = tuple(t.rsplit(".", 1)[1] for t in (SLA_WARNING, SLA_BREACHED, SLA_MET))
K = TypeVar("K")
V = TypeVar("V")

log = structlog.get_logger("router.metrics")


def topic_family(logical: str) -> str:
    """`queue.vendor.acme` -> `queue.vendor`: one series per kind of queue, not per vendor."""
    for family in (QUEUE_VENDOR, QUEUE_DEPT):
        if family.matches(logical):
            return family.prefix[:-1]
    return logical


def _copy(counts: Mapping[K, V]) -> dict[K, V]:
    """A snapshot of a dict another thread may be growing (retry, then give up quietly)."""
    for _ in range(3):
        try:
            return dict(counts)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return {}


class EngineCollector(Collector):
    """Reads the engine's own state at scrape time (see the module doc for the series)."""

    def __init__(
        self,
        engine: Any,
        logical: Callable[[str], str],
        health: WorkerHealth | None = None,
        *,
        per_vendor: bool = False,
    ) -> None:
        self.engine = engine
        self.logical = logical
        self.health = health
        self.per_vendor = per_vendor

    def collect(self) -> Iterable[Metric]:
        yield from self._processor()
        yield from self._lifecycle()
        yield from self._scores()
        yield from self._ruleset()
        yield from self._ready()
        yield from self._lag()

    def _processor(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "router_records_sent", "Records this worker wrote, changelogs aside.", labels=["topic"]
        )
        for topic, n in sorted(_copy(self.engine.emitter.sent).items()):
            sent.add_metric([topic], n)
        yield sent
        processor = self.engine.processor
        if processor is None:  # a lifecycle-only worker
            return
        inbound = CounterMetricFamily(
            "router_inbound_records", "Inbound channel records by outcome.", labels=["outcome"]
        )
        for outcome, n in sorted(_copy(processor.counts).items()):
            inbound.add_metric([outcome], n)
        yield inbound
        dlq = CounterMetricFamily(
            "router_dead_letters", "Records sent to the dead-letter topic.", labels=["reason"]
        )
        for reason, n in sorted(_copy(processor.dead_letters).items()):
            dlq.add_metric([reason], n)
        yield dlq

    def _lifecycle(self) -> Iterator[Metric]:
        stage = self.engine.lifecycle
        if stage is None:
            return
        counts: Counter[str] = Counter(_copy(getattr(stage, "counts", {})))
        records = CounterMetricFamily(
            "router_lifecycle_records",
            "Records of the SLA / lifecycle stage by outcome.",
            labels=["outcome"],
        )
        for outcome, n in sorted(counts.items()):
            if not outcome.startswith("sla_"):
                records.add_metric([outcome], n)
        yield records
        sla = CounterMetricFamily("router_sla_events", "SLA events written.", labels=["kind"])
        for kind in SLA_EVENT_KINDS:
            sla.add_metric([kind], counts.get(f"sla_{kind}", 0))
        yield sla
        pending = _pending_deadlines(stage)
        if pending is not None:
            yield GaugeMetricFamily(
                "router_sla_deadlines_pending",
                "Deadlines in this worker's index (its active partitions).",
                value=pending,
            )
        watermark = getattr(stage, "watermark", None)
        if watermark is not None:
            yield GaugeMetricFamily(
                "router_sla_firing_held_seconds",
                "How far behind now the timer fires while actions/events have a backlog "
                "(0 when caught up).",
                value=watermark.behind_seconds,
            )

    def _scores(self) -> Iterator[Metric]:
        stage = getattr(self.engine, "scores", None)
        if stage is None:
            return
        tickets, books = stage
        records = CounterMetricFamily(
            "router_scores_records", "Records of the scores stage by step and outcome.",
            labels=["step", "outcome"],
        )  # fmt: skip
        for step, processor in (("tickets", tickets), ("books", books)):
            for outcome, n in sorted(_copy(processor.counts).items()):
                records.add_metric([step, outcome], n)
        yield records
        changes = CounterMetricFamily(
            "router_vendor_tier_changes", "Vendors that moved tier.", labels=["previous", "tier"]
        )
        for (previous, tier), n in sorted(_copy(books.tier_changes).items()):
            changes.add_metric([previous, tier], n)
        yield changes
        tiers = _copy(books.tiers)
        by_tier = GaugeMetricFamily(
            "router_vendors_by_tier", "Vendors scored here, by tier.", labels=["tier"]
        )
        for tier in ScoreTier:
            by_tier.add_metric([tier.value], sum(1 for t in tiers.values() if t is tier))
        yield by_tier
        yield from self._support(_copy(books.latest_days))
        if self.per_vendor:
            score = GaugeMetricFamily(
                "router_vendor_score", "A vendor's responsiveness score.", labels=["vendor"]
            )
            for vendor, value in sorted(_copy(books.scores).items()):
                if value is not None:
                    score.add_metric([vendor], value)
            yield score

    def _support(self, latest: Mapping[str, SupportDay]) -> Iterator[Metric]:
        backlog: Counter[str] = Counter()
        frt = GaugeMetricFamily(
            "router_support_first_response_seconds",
            "First-response time of a queue's latest day, business seconds.",
            labels=["queue", "quantile"],
        )
        sla = GaugeMetricFamily(
            "router_support_sla_attainment", "SLA targets met of a queue's latest day.",
            labels=["queue"],
        )  # fmt: skip
        csat = GaugeMetricFamily(
            "router_support_csat", "CSAT average of a queue's latest day.", labels=["queue"]
        )
        for queue, day in sorted(latest.items()):
            folded = not self.per_vendor and queue.startswith("vendor:")
            backlog["vendor:*" if folded else queue] += day.backlog
            if folded:
                continue
            for quantile, value in (("0.5", day.frt_p50), ("0.9", day.frt_p90)):
                if value is not None:
                    frt.add_metric([queue, quantile], value)
            if day.sla_attainment is not None:
                sla.add_metric([queue], day.sla_attainment)
            if day.csat_avg is not None:
                csat.add_metric([queue], day.csat_avg)
        open_tickets = GaugeMetricFamily(
            "router_support_backlog", "Open tickets at the end of a queue's latest day.",
            labels=["queue"],
        )  # fmt: skip
        for queue, n in sorted(backlog.items()):
            open_tickets.add_metric([queue], n)
        yield from (open_tickets, frt, sla, csat)

    def _ruleset(self) -> Iterator[Metric]:
        policy = self.engine.policy.policy
        info = GaugeMetricFamily(
            "router_ruleset_info", "The live routing policy.", labels=["ruleset", "version"]
        )
        info.add_metric([str(policy.name), str(policy.version)], 1)
        yield info

    def _ready(self) -> Iterator[Metric]:
        if self.health is None:
            return
        ready = all(check.ok for check in self.health.readiness())
        yield GaugeMetricFamily(
            "router_worker_ready", "1 when /readyz answers 200.", value=1 if ready else 0
        )

    def _lag(self) -> Iterator[Metric]:
        done = GaugeMetricFamily(
            "router_consumer_committed_offset",
            "The offset committed, per assigned partition (stands still when commits stall).",
            labels=["topic", "partition"],
        )
        for topic, partition, offset in committed_positions(self.engine.app):
            done.add_metric([self.logical(topic), str(partition)], offset)
        yield done
        lag = GaugeMetricFamily(
            "router_consumer_lag",
            "High watermark minus committed offset, per assigned partition.",
            labels=["topic", "partition"],
        )
        for topic, partition, behind in consumer_lag(self.engine.app):
            lag.add_metric([self.logical(topic), str(partition)], behind)
        yield lag
        waited = GaugeMetricFamily(
            "router_consumer_time_lag_seconds",
            "Age of the oldest unprocessed record per assigned partition (0 when caught up).",
            labels=["topic", "partition"],
        )
        for topic, partition, seconds in time_lag(self.engine.app, time.time()):
            waited.add_metric([self.logical(topic), str(partition)], seconds)
        yield waited


def _pending_deadlines(stage: Any) -> int | None:
    index = getattr(getattr(stage, "deadlines", None), "index", None)
    try:
        return len(index) if index is not None else None
    except TypeError:
        return None


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One assigned partition as this worker's consumer sees it."""

    topic: str
    partition: int
    committed: int | None
    high: int | None  # the high watermark; None before the first fetch


# (topic, partition, committed, high watermark) per assigned partition
Positions = Callable[[], list[tuple[str, int, int | None, int | None]]]
_OWN_CONSUMERS: weakref.WeakKeyDictionary[Any, Positions] = weakref.WeakKeyDictionary()


def report_positions(app: Any, positions: Positions) -> None:
    """A stage that consumes on its own group (streams/stages/direct.py) rather than through
    faust's consumer: its positions are `app`'s consumer figures."""
    _OWN_CONSUMERS[app] = positions


def assigned_partitions(app: Any) -> list[PartitionState]:
    """The consumer's assigned partitions, read from another thread at scrape time: empty
    while there is no consumer (none is created here) or a rebalance changes it under us."""
    try:
        own = _OWN_CONSUMERS.get(app)
    except TypeError:  # not weakly referenceable (a test's stand-in): nothing registered it
        own = None
    if own is not None:
        return [PartitionState(*position) for position in own()]
    consumer = started_consumer(app)
    if consumer is None:
        return []
    try:
        assigned = sorted(consumer.assignment())
        committed = _copy(committed_offsets(consumer))
    except Exception:  # not started, or being rebalanced: no figures this scrape
        return []
    out = []
    for tp in assigned:
        try:
            high = consumer.highwater(tp)
        except Exception:
            high = None
        done = committed.get(tp)
        out.append(PartitionState(tp.topic, tp.partition, None if done is None else int(done),
                                  None if high is None else int(high)))  # fmt: skip
    return out


def consumer_lag(app: Any) -> list[tuple[str, int, int]]:
    """(topic, partition, lag) for the partitions assigned to this worker's consumer."""
    return [(p.topic, p.partition, max(0, p.high - p.committed)) for p in assigned_partitions(app)
            if p.high is not None and p.committed is not None]  # fmt: skip


def committed_positions(app: Any) -> list[tuple[str, int, int]]:
    """(topic, partition, committed offset) for the assigned partitions with a commit."""
    return [(p.topic, p.partition, p.committed) for p in assigned_partitions(app)
            if p.committed is not None]  # fmt: skip


def time_lag(app: Any, now: float) -> list[tuple[str, int, float]]:
    """(topic, partition, seconds the oldest unprocessed record has waited) per assigned
    partition whose figure is known (see the module docstring)."""
    partitions = assigned_partitions(app)
    if not partitions:  # no consumer yet: nothing processed either
        return []
    last = _copy(input_progress(app).last)
    out = []
    for p in partitions:
        if p.high is None:
            continue
        seen = last.get((p.topic, p.partition))
        done = seen[0] + 1 if seen is not None else p.committed
        if done is not None and p.high <= done:
            out.append((p.topic, p.partition, 0.0))
        elif seen is not None and seen[1] is not None:
            out.append((p.topic, p.partition, max(0.0, now - seen[1])))
    return out


def engine_registry(
    engine: Any,
    logical: Callable[[str], str],
    health: WorkerHealth | None = None,
    *,
    per_vendor: bool = False,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(EngineCollector(engine, logical, health, per_vendor=per_vendor))
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds: no access log."""


def worker_http_app(registry: CollectorRegistry, health: WorkerHealth | None) -> Any:
    """`/metrics`, and with `health` also `/healthz` and `/readyz` (streams/health.py)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if health is not None and path in ("/healthz", "/readyz"):
            checks = health.liveness() if path == "/healthz" else health.readiness()
            status, body = answer(checks)
            start_response(f"{status} {HTTPStatus(status).phrase}",
                           [("Content-Type", "application/json")])  # fmt: skip
            return [orjson.dumps(body)]
        return metrics(environ, start_response)

    return app


def serve_worker_http(
    registry: CollectorRegistry, health: WorkerHealth | None, host: str, port: int
) -> int | None:
    """Serve `/metrics`, `/healthz` and `/readyz` on a daemon thread; the bound port, or None
    when disabled or busy (a worker without them still routes: a busy port is a warning, not a
    crash)."""
    if port < 0:
        return None
    try:
        server = make_server(host, port, worker_http_app(registry, health), _Server, _QuietHandler)
    except OSError as exc:
        log.warning("metrics_unavailable", host=host, port=port, error=str(exc))
        return None
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    bound = int(server.server_port)
    log.info("metrics_serving", url=f"http://{host}:{bound}/metrics",
             health=f"http://{host}:{bound}/healthz" if health is not None else None)  # fmt: skip
    return bound
