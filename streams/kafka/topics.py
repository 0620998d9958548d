"""Creating the engine's topics through the admin API (names and configs: `schemas.topics`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import resolved, topic_of
from streams.kafka.client import client_kwargs
from streams.settings import RouterSettings

_TOPIC_ALREADY_EXISTS = 36


def core_topics(settings: RouterSettings) -> dict[str, dict[str, str]]:
    """Logical name -> creation config of every topic the engine creates at start-up
    (`schemas.topics`: the queue families come on demand, faust makes its own)."""
    return {
        name: creation_configs(settings, name)
        for name, topic in resolved(settings.app_id).items()
        if topic.creation == "startup"
    }


def creation_configs(settings: RouterSettings, logical: str) -> dict[str, str]:
    """The configs a topic is created with: its registry entry's (cleanup, retention...), and
    `min.insync.replicas` when replicated; none for a name the registry does not know."""
    topic = topic_of(logical, settings.app_id)
    configs = topic.topic_configs() if topic is not None else {}
    if settings.replication_factor > 1:
        configs["min.insync.replicas"] = str(settings.min_insync_replicas)
    return configs


def partitions_of(settings: RouterSettings, logical: str) -> int:
    """How many partitions a topic is created with: the registry's count, else the setting."""
    topic = topic_of(logical, settings.app_id)
    count = topic.partitions if topic is not None else None
    return count if count is not None else settings.partitions


@dataclass
class TopicManager:
    """Creates topics once and remembers which exist, so queue topics can appear on demand."""

    settings: RouterSettings
    known: set[str] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure(
        self, logical: Iterable[str], configs: dict[str, dict[str, str]] | None = None
    ) -> None:
        """Create the topics missing among `logical`, each with `configs[name]` when given,
        else with what the registry says of it (`creation_configs`)."""
        wanted = [name for name in logical if self.settings.topic(name) not in self.known]
        if not wanted:
            return
        async with self._lock:
            admin = AIOKafkaAdminClient(**client_kwargs(self.settings))
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                self.known |= existing
                missing = [n for n in wanted if self.settings.topic(n) not in existing]
                if missing:
                    await self._create(admin, missing, configs or {})
            finally:
                await admin.close()

    async def _create(
        self, admin: AIOKafkaAdminClient, names: list[str], configs: dict[str, dict[str, str]]
    ) -> None:
        new = [
            NewTopic(
                name=self.settings.topic(n),
                num_partitions=partitions_of(self.settings, n),
                replication_factor=self.settings.replication_factor,
                topic_configs=configs[n] if n in configs else creation_configs(self.settings, n),
            )
            for n in names
        ]
        response = await admin.create_topics(new)
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = entry[2] if len(entry) > 2 else ""
                raise RuntimeError(f"creating topic {topic!r} failed: error {code} {message}")
            self.known.add(topic)
        await self._wait_for_metadata(admin, {t.name for t in new})

    @staticmethod
    async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str]) -> None:
        """Until every partition of the new topics has a leader: producing earlier fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            described = await admin.describe_topics(sorted(names))
            if all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.05)  # polling a condition with a deadline
        raise TimeoutError(f"topics have no leader after 30 s: {sorted(names)}")


async def ensure_core_topics(settings: RouterSettings) -> TopicManager:
    manager = TopicManager(settings)
    configs = core_topics(settings)
    await manager.ensure(configs, configs)
    return manager


def raw_topic(app: Any, settings: RouterSettings, *logical: str) -> Any:
    """A faust topic (or several, one stream) of raw bytes: decoding is the agent's own job,
    so faust never skips a record it cannot decode."""
    return app.topic(
        *(settings.topic(name) for name in logical), key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
    )  # fmt: skip
