"""Fault scenarios on a three-broker cluster: steady load, a fault in the middle, and the
promises checked on everything the engine wrote.

Each scenario produces a paced mix (new threads, follow-ups and poison records) while the
fault happens, then reads every queue and the dead-letter topic and counts: inbound records
lost, inbound records on a queue under two different CloudEvents ids (a duplicate that
dedup by id cannot remove), tickets found on two queues, and poison records missing from the
DLQ or on it under two ids. Each outcome joins the table `write_table` prints at the end of
the session (the README's table comes from it).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tests.factories import inbound_bytes
from tests.harness import Output, accounted_inbound_ids
from tests.integration.conftest import EngineUnderTest

CHANNELS = ("email", "chat", "social")
CLUSTER_NODES = 3
SESSION_TIMEOUT_S = 10.0  # the workers' consumer session timeout on the cluster
REQUEST_TIMEOUT_S = 15.0  # and their consumer request timeout
PAUSE_S = REQUEST_TIMEOUT_S + 5
TABLE = Path(__file__).resolve().parents[2] / "build" / "fault-table.md"


@dataclass
class Outcome:
    scenario: str
    inbound: int
    poison: int
    lost: int
    duplicates: int
    split_tickets: int
    poison_missing: int
    poison_repeated: int

    @property
    def clean(self) -> bool:
        return not (
            self.lost or self.duplicates or self.split_tickets
            or self.poison_missing or self.poison_repeated
        )  # fmt: skip

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.inbound} | {self.lost} | {self.duplicates} | "
            f"{self.split_tickets} | {self.poison} | "
            f"{self.poison_missing} missing, {self.poison_repeated} repeated |"
        )


OUTCOMES: list[Outcome] = []
# Each scenario's line in the table (and in the README's copy of it)
SCENARIOS = {
    "broker_killed": "a broker killed (SIGKILL), then restarted",
    "broker_killed_split": (
        "split layout (routing on its own aiokafka consumer): a broker killed (SIGKILL), "
        "then restarted"
    ),
    "broker_paused": (
        f"a broker paused (SIGSTOP) {PAUSE_S:.0f} s, past the session ({SESSION_TIMEOUT_S:.0f} s) "
        f"and request ({REQUEST_TIMEOUT_S:.0f} s) timeouts, then resumed"
    ),
    "cluster_restarted": "the whole cluster stopped and started again",
    "workers_scaled": "workers scaled 1 -> 3 -> 1, then a rolling restart",
    "reload_in_rebalance": "a hot rules reload while a worker joins (rebalance)",
    "sla_in_failover": "SLA breaches falling due while a broker is down (breaches as inbound)",
}


def write_table(path: Path = TABLE) -> Path | None:
    """The session's outcomes as the README's markdown table (nothing when none ran)."""
    if not OUTCOMES:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "| scenario | inbound | lost | duplicates after dedup | tickets on two queues "
        "| poison records | poison on the DLQ |\n|---|---|---|---|---|---|---|\n"
    )
    path.write_text(header + "\n".join(o.row() for o in OUTCOMES) + "\n")
    return path


@dataclass
class Load:
    """A paced producer in a thread of its own: `rate` records a second until stopped, each
    retried until the cluster acknowledges it (a fault must not make the test lose input)."""

    bootstrap: str
    prefix: str
    rate: float = 100.0
    poison_every: int = 50
    threads: int = 150
    seed: int = 11
    sent: list[str] = field(default_factory=list)  # inbound ids acknowledged
    poison: list[str] = field(default_factory=list)  # keys of poison records acknowledged
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 120.0) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load producer did not finish"

    def wait_sent(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sent) + len(self.poison) < count:
            assert time.monotonic() < deadline, f"only {len(self.sent)} records acknowledged"
            time.sleep(0.05)  # wait-ok: poll interval of a loop bounded by a deadline

    async def _run(self) -> None:
        rng = random.Random(self.seed)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            request_timeout_ms=15000, retry_backoff_ms=200, metadata_max_age_ms=2000,
        )  # fmt: skip
        await producer.start()
        try:
            n = 0
            started = time.monotonic()
            while not self._stop.is_set():
                n += 1
                channel = rng.choice(CHANNELS)
                if n % self.poison_every == 0:
                    key, value, poison = f"poison-{n}".encode(), b"{not json", True
                else:
                    thread = f"{channel}-th-{rng.randrange(self.threads)}"
                    vendor = f"v{rng.randrange(6)}" if rng.random() < 0.7 else None
                    key, poison = thread.encode(), False
                    value = inbound_bytes(
                        f"fault-{n}", channel=channel, thread_ref=thread, vendor_id=vendor,
                        body=f"message {n} about my order",
                    )  # fmt: skip
                topic = f"{self.prefix}channel.{channel}"
                await self._send_until_acked(producer, topic, key, value)
                (self.poison if poison else self.sent).append(
                    key.decode() if poison else f"fault-{n}"
                )
                delay = started + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing, not synchronisation
        finally:
            await producer.stop()

    async def _send_until_acked(
        self, producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes
    ) -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                await (await producer.send(topic, value, key=key))
                return
            except KafkaError as exc:  # the record may or may not be written: send again
                self.errors.append(repr(exc))
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)  # wait-ok: backoff before sending again


def drive(
    engine: EngineUnderTest,
    scenario: str,
    fault: Callable[[Load], None],
    *,
    rate: float = 100.0,
    settle_timeout: float = 300.0,
) -> Outcome:
    """Load on, `fault(load)` (it returns when the fault is over), load off; then every
    acknowledged record must come out. Returns (and records) the counts."""
    load = Load(engine.bootstrap, engine.prefix, rate=rate).start()
    try:
        fault(load)
    finally:
        load.stop()
    expected = set(load.sent)
    poison = set(load.poison)
    collector = engine.collector("queue.*", "channel.dlq")

    def accounted(outs: list[Output]) -> bool:
        dlq_keys = {o.key.decode() for o in outs if o.topic == "channel.dlq" and o.key}
        return expected <= accounted_inbound_ids(outs) and poison <= dlq_keys

    outputs = collector.poll_until(
        accounted, settle_timeout, f"every record of {scenario} on a queue or the DLQ",
        describe=lambda outs: outcome_of(scenario, expected, poison, outs).row(),
    )  # fmt: skip
    outcome = outcome_of(scenario, expected, poison, outputs)
    OUTCOMES.append(outcome)
    return outcome


def outcome_of(scenario: str, expected: set[str], poison: set[str], outs: list[Output]) -> Outcome:
    ids_per_inbound: dict[str, set[str]] = defaultdict(set)
    queues_per_ticket: dict[str, set[str]] = defaultdict(set)
    dlq_ids: dict[str, set[str]] = defaultdict(set)
    for out in outs:
        if out.topic.startswith("queue."):
            data = out.value["data"]
            ids_per_inbound[data["messages"][-1]["inbound_id"]].add(out.value["id"])
            queues_per_ticket[data["ticket_id"]].add(out.topic)
        elif out.topic == "channel.dlq" and out.key is not None:
            dlq_ids[out.key.decode()].add(out.value["id"])
    return Outcome(
        scenario=scenario,
        inbound=len(expected),
        poison=len(poison),
        lost=len(expected - set(ids_per_inbound)),
        duplicates=sum(1 for ids in ids_per_inbound.values() if len(ids) > 1),
        split_tickets=sum(1 for queues in queues_per_ticket.values() if len(queues) > 1),
        poison_missing=len(poison - set(dlq_ids)),
        poison_repeated=sum(1 for key in poison if len(dlq_ids.get(key, ())) > 1),
    )
