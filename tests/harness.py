"""Real-process, real-broker test harness: run engine workers, produce, collect outputs.

Workers are separate processes (so a test can SIGKILL one), started with
PR_SET_PDEATHSIG so none outlives the test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.local.install import die_with_parent

REPO = Path(__file__).resolve().parent.parent
# SIGTERM to exit: a worker finishes its in-flight records, flushes and commits within this.
STOP_DEADLINE_S = 10.0


class WorkerHung(AssertionError):
    """A worker did not exit within the deadline after SIGTERM."""


@dataclass
class Output:
    topic: str  # logical, prefix removed
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    timestamp_ms: int


@dataclass
class WorkerProcess:
    bootstrap: str
    prefix: str
    data_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ROUTER_TOPIC_PREFIX": self.prefix,
            "ROUTER_PARTITIONS": "3",
            "ROUTER_DATA_DIR": str(self.data_dir),
            "ROUTER_COMMIT_INTERVAL_S": "0.5",
            "ROUTER_METRICS_PORT": "0",  # a free port per worker (logged as metrics_serving)
            "PYTHONPATH": str(REPO),
            **self.extra_env,
        }
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router", "worker", *self.args],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(os.getpid()),
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit, no flush."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self, timeout: float = STOP_DEADLINE_S) -> int:
        """SIGTERM and wait; always closes the log file. A worker still running at the deadline
        is a failure: its asyncio tasks are dumped to its log (mode's SIGUSR1 handler), then it
        is killed and WorkerHung carries the tail of the log."""
        try:
            if self.proc is None:
                return 0
            if self.proc.poll() is not None:
                return self.proc.returncode
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._dump_tasks()
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise WorkerHung(
                    f"worker pid {self.proc.pid} still running {timeout:.0f}s after SIGTERM "
                    f"(killed); log tail:\n{self.log_text(20000)}"
                ) from None
        finally:
            if not self.log.closed:
                self.log.close()

    def _dump_tasks(self) -> None:
        """Ask the hung worker for its threads' and tasks' stacks, for the failure message."""
        assert self.proc is not None
        before = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):  # a blocked loop cannot answer: kill anyway
            wait_for(lambda: b"TASKS" in self._log_bytes_from(before), 5, "a task dump", 0.1)

    def _log_bytes_from(self, offset: int) -> bytes:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read()

    def log_text(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def metrics_url(self) -> str | None:
        """Where the worker serves /metrics (its `metrics_serving` log line), once it does."""
        return metrics_url_in(self.log_path)


def metrics_url_in(log_path: Path) -> str | None:
    """Where a router process serves /metrics (its `metrics_serving` log line), once it does."""
    for line in log_path.read_text(errors="replace").splitlines():
        if '"metrics_serving"' in line:
            doc = orjson.loads(line[line.find("{") :])
            return str(doc["url"])
    return None


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One Prometheus scrape: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll a condition until it holds or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def topics_exist(bootstrap: str, names: Iterable[str]) -> bool:
    async def check() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return set(names) <= set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(check())


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


class Collector:
    """Reads output topics from the beginning and keeps everything it has seen."""

    def __init__(self, bootstrap: str, prefix: str, logical_topics: Iterable[str]) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.topics = [f"{prefix}{t}" for t in logical_topics]
        self.outputs: list[Output] = []

    def poll_until(
        self,
        done: Callable[[list[Output]], bool],
        timeout: float,
        what: str,
        describe: Callable[[list[Output]], str] | None = None,
    ) -> list[Output]:
        async def run() -> bool:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=500,
            )
            await consumer.start()
            try:
                existing = set(await consumer.topics())
                consumer.subscribe(pattern=_pattern(self.topics, existing))
                deadline = time.monotonic() + timeout
                self.outputs.clear()
                # A pattern subscription re-assigns when a new topic appears and may fetch a
                # partition again from the start: keep each (topic, partition, offset) once.
                positions: set[tuple[str, int, int]] = set()
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=300)
                    for tp, records in batch.items():
                        for r in records:
                            if (tp.topic, tp.partition, r.offset) in positions:
                                continue
                            positions.add((tp.topic, tp.partition, r.offset))
                            self.outputs.append(
                                Output(
                                    tp.topic[len(self.prefix) :],
                                    tp.partition,
                                    r.offset,
                                    r.key,
                                    orjson.loads(r.value),
                                    r.timestamp,
                                )
                            )
                    if done(self.outputs):
                        return True
                return False
            finally:
                await consumer.stop()

        if not asyncio.run(run()):
            detail = describe(self.outputs) if describe else f"{len(self.outputs)} records seen"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {detail}")
        return self.outputs


def _pattern(topics: list[str], _existing: set[str]) -> str:
    import re

    # A pattern subscription also picks up queue topics created while we wait.
    return "|".join(re.escape(t).replace(r"\*", ".*") for t in topics)


def accounted_inbound_ids(outputs: list[Output]) -> set[str]:
    """Inbound ids that reached a queue (as the newest message) or the dead-letter topic."""
    ids: set[str] = set()
    for out in outputs:
        data = out.value.get("data", {})
        if out.topic.startswith("queue."):
            ids.add(data["messages"][-1]["inbound_id"])
        elif out.topic == "channel.dlq":
            original = data["original"]
            if original["value_encoding"] == "utf-8":
                try:
                    ids.add(orjson.loads(original["value"])["id"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    ids.add(f"dlq:{data['source']['partition']}:{data['source']['offset']}")
    return ids


@contextlib.contextmanager
def router_command(
    args: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m router <args>` in the background (environment: ours plus `env`), its output
    in `log_path`. Leaving the block normally SIGTERMs it and requires exit 0 within 30 s; on
    an error it is killed. The log is printed either way (pytest shows it on failure)."""
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", *args], env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(os.getpid()),
    )  # fmt: skip
    try:
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, f"router {' '.join(args)} did not exit 0 after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
        print(log_path.read_text(errors="replace"))
