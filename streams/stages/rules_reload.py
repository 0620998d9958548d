"""Hot reload of routing rulesets from the compacted `routing.rules` topic, on every worker.

Every worker reads `routing.rules` itself, from the beginning, with a groupless consumer
(`streams.kafka.compacted`): a faust agent on that 1-partition topic would run on one worker of
the group only.

- Startup (`catch_up`, awaited by `run_worker` before faust starts): the records up to the
  topic's end are considered newest first; the newest one that validates becomes the live
  policy, so a restarted worker routes its first channel record with the latest good
  version, never with the built-in policy or an older file. Records newer than it were
  refused: each is reported again (log line and event, same event id as the first time).
- Then (`follow`, an app task): each new record is validated; a good one is swapped in,
  a bad one is refused and the last good policy stays.

Which records count: a worker started with a ruleset (`--rules FILE`, ruleset name N)
follows the records keyed N only, and the topic's newest good version of N wins over the
file; a worker on the built-in policy follows the newest good record of any name.
Tombstones (null values) are ignored: deleting a ruleset never leaves a worker without one.

Switching: the department queues of the new ruleset are created first (no topic creation on
the hot path), then `PolicyHolder.swap` replaces the policy between two records (the agent
decides each record synchronously, so no decision mixes two versions), and the worker logs
`ruleset_activated` (ruleset, version, previous version, topic offset).

Refusing: the worker logs `ruleset_refused` with every problem and publishes a CloudEvent
`support.routing.ruleset_refused` on `routing.rules.events` (key: the ruleset name; id
derived from the refused record's position, so the events of several workers, or of one
worker restarting, dedupe on `id`).

Which records count, and the refusal record, are the core's (`router.ruleset_records`); this
module reads the topic (`streams.kafka.compacted.CompactedFollower`), swaps and publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord

from router.engine_sla import engine_sla_policies
from router.records import OutRecord
from router.rules_policy import RulesetPolicy, policy_from_record
from router.ruleset_records import (
    ignored,
    mismatch,
    peek,
    record_key,
    refusal,
    same_document,
    same_version,
)
from router.stages.routing import PolicyHolder
from rules import Problem
from schemas.topics import QUEUE_DEPT, ROUTING_RULES, ROUTING_RULES_EVENTS
from streams.kafka.client import producer_kwargs
from streams.kafka.compacted import CompactedFollower, install_follower
from streams.kafka.emit import track_topics
from streams.kafka.faust_internals import aiokafka_producer
from streams.kafka.topics import TopicManager
from streams.settings import RouterSettings

log = structlog.get_logger("router.rules")

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class RulesReload:
    """Keeps `holder` on the newest good ruleset of `routing.rules` (see the module doc)."""

    def __init__(
        self,
        settings: RouterSettings,
        holder: PolicyHolder,
        topics: TopicManager,
        app: Any = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.holder = holder
        self.topics = topics
        self.follower = CompactedFollower(
            settings, ROUTING_RULES.name, "rules", load=self._on_catch_up, update=self._on_records
        )
        # A ruleset naming an SLA policy this worker lacks is refused like any bad ruleset.
        self.sla_policies = engine_sla_policies(settings.sla_policies_file)
        initial = holder.policy
        # A worker started on a ruleset sticks to that ruleset's name.
        self.pinned: str | None = initial.name if isinstance(initial, RulesetPolicy) else None

    @property
    def caught_up(self) -> bool:
        return self.follower.caught_up

    async def _on_catch_up(self, read: Sequence[Record]) -> None:
        await self.topics.ensure([ROUTING_RULES_EVENTS.name])
        records = [r for r in read if self._follows(r)]
        # newest first (by write time, should the topic have been given several partitions)
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        refused: list[tuple[Record, list[Problem]]] = []
        activated = False
        for record in reversed(records):  # the newest good one wins
            loaded = await self._load(record)
            if isinstance(loaded, list):
                refused.append((record, loaded))
                continue
            await self._activate(record, loaded)
            activated = True
            break
        for record, problems in reversed(refused):  # reported against the policy kept
            await self._refuse(record, problems)
        policy = self.holder.policy
        log.info(
            "rules_caught_up",
            ruleset=policy.name,
            version=policy.version,
            source="topic" if activated else "startup",
            records=len(records),
            follows=self.pinned or "any",
        )

    async def _on_records(self, records: Sequence[Record]) -> None:
        for record in records:
            if self._follows(record):
                await self._consider(record)

    def _follows(self, record: Record) -> bool:
        key = record_key(record.key)
        why = ignored(self.pinned, key, record.value)
        if why == "tombstone":
            log.info("ruleset_tombstone_ignored", key=key, offset=record.offset)
        elif why is not None:
            log.info("ruleset_ignored", key=key, offset=record.offset, follows=self.pinned)
        return why is None

    async def _consider(self, record: Record) -> bool:
        """Activate the record's ruleset, or refuse it; True when activated."""
        loaded = await self._load(record)
        if isinstance(loaded, list):
            await self._refuse(record, loaded)
            return False
        await self._activate(record, loaded)
        return True

    async def _load(self, record: Record) -> RulesetPolicy | list[Problem]:
        assert record.value is not None
        where = f"{self.follower.reader.topic}[{record.partition}]@{record.offset}"
        # Compiling a large ruleset takes a while: off the event loop, so the agent goes on.
        loaded = await asyncio.to_thread(
            policy_from_record, record.value, source=where, sla_policies=self.sla_policies
        )
        if isinstance(loaded, list):
            return loaded
        return mismatch(where, record_key(record.key), loaded) or loaded

    async def _activate(self, record: Record, loaded: RulesetPolicy) -> None:
        queues = [QUEUE_DEPT.of(d) for d in loaded.departments]
        await self.topics.ensure(queues)
        await self._warm_producer(queues)
        previous = self.holder.policy
        if same_version(previous, loaded) and not same_document(previous, loaded):
            log.warning(
                "ruleset_version_reused", ruleset=loaded.name, version=loaded.version,
                offset=record.offset,
            )  # fmt: skip
        self.holder.swap(loaded)
        log.info(
            "ruleset_activated",
            ruleset=loaded.name,
            version=loaded.version,
            previous=f"{previous.name} {previous.version}",
            partition=record.partition,
            offset=record.offset,
            rules=len(loaded.compiled.ruleset.rules),
        )

    async def _warm_producer(self, queues: list[str]) -> None:
        """Have the engine's producer fetch the metadata of the new ruleset's queues before
        the swap (`track_topics`: without narrowing the topics it keeps metadata for), so the
        first ticket routed to a new queue waits for nothing. Before faust starts (catch-up)
        there is nothing to warm: the producer starts later."""
        if self.app is None or not self.caught_up:
            return
        try:
            producer = aiokafka_producer(self.app)
        except Exception as exc:  # only a missed optimisation: sends fetch metadata themselves
            log.warning("producer_metadata_warmup_failed", error=repr(exc))
            return
        await track_topics(producer, [self.settings.topic(q) for q in queues])

    async def _refuse(self, record: Record, problems: list[Problem]) -> None:
        name, version = peek(record.value or b"")
        name = name or record_key(record.key) or "?"
        active = self.holder.policy
        log.warning(
            "ruleset_refused",
            ruleset=name,
            version=version,
            partition=record.partition,
            offset=record.offset,
            problems=[str(p) for p in problems],
            kept=f"{active.name} {active.version}",
        )
        event = refusal(
            name, version, record.partition, record.offset, record.timestamp, problems, active,
            datetime.now(UTC),
        )  # fmt: skip
        try:
            await self._publish(event)
        except Exception as exc:  # the log line above stays the record of the refusal
            log.error("ruleset_refusal_event_failed", ruleset=name, error=repr(exc))

    async def _publish(self, record: OutRecord) -> None:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        await producer.start()
        try:
            await producer.send_and_wait(
                self.settings.topic(record.topic), record.value, key=record.key,
                headers=list(record.headers),
            )  # fmt: skip
        finally:
            await producer.stop()


def install_rules_reload(
    app: Any, settings: RouterSettings, holder: PolicyHolder, topics: TopicManager
) -> RulesReload:
    """Follow `routing.rules` on this worker: caught up by `run_worker` before faust starts
    (`streams.kafka.compacted.catch_up_followers`), then followed by an app task."""
    reload = RulesReload(settings, holder, topics, app)
    install_follower(app, reload.follower)
    return reload
