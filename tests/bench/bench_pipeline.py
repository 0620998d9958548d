"""End to end on one broker: the engine against a raw aiokafka pass-through, on the same mix.

    python tests/bench/bench_pipeline.py [--messages 20000] [--rate 500] [--seconds 10]

Baseline: consume -> orjson.loads -> orjson.dumps -> produce, in a process of its own (acks=all,
idempotence, linger 5 ms, the engine's compression, sends not awaited one by one; flush, then
commit, per batch).
Engine: `python -m router worker` on a fresh topic prefix. Each drains the same preloaded mix
(throughput = the middle half of the outputs over the time between their timestamps, so
neither startup nor a first batch written at once counts), then
takes the same paced load for latency. The baseline drains in about a second, so one run of it
swings with whatever else the machine does: it drains `BASELINE_DRAINS` times, each on topics
of its own, and the ratios use the median run (all are printed). CPU per message:
/proc/<pid>/stat of the process under test. Every input must come out: valid inbound ids on
a queue (engine) or the output topic (baseline), malformed records on the DLQ, found by their
key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `router`, `streams`, `tests` importable
    sys.path.insert(0, str(REPO))

from router.default_policy import DefaultPolicy  # noqa: E402
from router.records import queue_topic  # noqa: E402
from router.traffic import MarketplaceTraffic, TrafficRecord  # noqa: E402
from streams.kafka.topics import TopicManager, ensure_core_topics  # noqa: E402
from streams.local.broker import kafka_for_tests  # noqa: E402
from streams.local.install import die_with_parent  # noqa: E402
from streams.settings import RouterSettings  # noqa: E402
from streams.tools import group_offsets  # noqa: E402
from tests.bench import bench_core  # noqa: E402
from tests.bench.peer_venv import VENV as PEER_VENV  # noqa: E402
from tests.bench.peer_venv import PeerEnv, ensure_peer_venv  # noqa: E402
from tests.harness import WorkerProcess  # noqa: E402

CHANNELS = ("email", "chat", "social")
PRODUCER_SETTINGS = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "compression_type": RouterSettings.model_fields["producer_compression"].default,
    "max_batch_size": 256 * 1024,
    "max_request_size": 8 * 1024 * 1024,
}
STARTUP_TIMEOUT_S = 120
BASELINE_DRAINS = 3  # the baseline's drain runs; the median one is the ratios' denominator
FAUST = "-faust"  # a layout whose workers run `runtime: faust` (the floor)
LAYOUTS = ("split", "single", "routing", "split-faust", "routing-faust")
TokenOf = Callable[[str, bytes | None, bytes], str]


def process_times(pid: int) -> tuple[float, float]:
    """(CPU seconds, seconds runnable but waiting for a CPU) of a process and all its threads:
    utime + stime from /proc/<pid>/stat, run-queue wait from each thread's schedstat."""
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    waited_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that just ended
            waited_ns += int((task / "schedstat").read_text().split()[1])
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), waited_ns / 1e9


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def malformed_token(key: bytes | None) -> str:
    return "key:" + (key or b"").decode(errors="replace")


def expected_token(record: TrafficRecord) -> str:
    """What proves a record came out: its inbound id, or for a malformed one its unique key."""
    return record.inbound_id or malformed_token(record.key)


@dataclass
class Output:
    topic: str
    key: bytes | None
    value: bytes | None  # dropped once the token is read
    timestamp_ms: int  # CreateTime set by the process under test
    seen_ms: float  # when the measuring consumer got it


@dataclass
class Result:
    name: str
    drained: int = 0
    drain_seconds: float = float("nan")  # first to last output
    rate_outputs: int = 0  # the middle half of the outputs ...
    rate_seconds: float = float("nan")  # ... and the time they took
    cpu_seconds: float = 0.0
    sla_cpu_before: float = 0.0  # a separate SLA worker's CPU seconds at the first output
    cpu_messages: int = 0
    busy_share: float = float("nan")  # CPU seconds per wall second while draining
    runqueue_share: float = float("nan")  # seconds runnable but waiting for a CPU, per second
    paced_rate: float = 0.0
    latency_ms: list[float] = field(default_factory=list)  # output - input CreateTime
    seen_latency_ms: list[float] = field(default_factory=list)  # consumer got it - input time
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    misrouted: int = 0

    @property
    def msg_per_s(self) -> float:
        return self.rate_outputs / self.rate_seconds if self.rate_seconds else float("nan")

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu_seconds / max(1, self.cpu_messages) * 1e6


class OutputWatch:
    """Reads the outputs of the process under test from the start; one token per input."""

    def __init__(self, bootstrap: str, pattern: str, token_of: TokenOf) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._pattern, self._token_of = pattern, token_of
        self.outputs: list[Output] = []
        self.first: dict[str, Output] = {}  # token -> its first output
        self.duplicates = 0
        self._positions: set[tuple[str, int, int]] = set()
        self._accounted = 0

    async def __aenter__(self) -> OutputWatch:
        await self._consumer.start()
        self._consumer.subscribe(pattern=self._pattern)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _collect(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            seen_ms = time.time() * 1000
            for tp, records in batch.items():
                for r in records:
                    # A pattern subscription may fetch a partition again after a reassignment.
                    if (tp.topic, tp.partition, r.offset) not in self._positions:
                        self._positions.add((tp.topic, tp.partition, r.offset))
                        self.outputs.append(Output(tp.topic, r.key, r.value, r.timestamp, seen_ms))

    def _account(self) -> None:
        for out in self.outputs[self._accounted :]:
            token = self._token_of(out.topic, out.key, out.value or b"")
            out.value = None
            if token in self.first:
                self.duplicates += 1
            else:
                self.first[token] = out
        self._accounted = len(self.outputs)

    async def wait_for_any(self, timeout: float, alive: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        while not self.outputs and time.monotonic() < deadline and alive():
            await asyncio.sleep(0.02)  # wait-ok: poll interval of a loop bounded by a deadline
        return bool(self.outputs)

    async def wait_for(
        self, tokens: set[str], timeout: float, alive: Callable[[], bool]
    ) -> list[str]:
        """Poll until every token came out, the deadline passed or the process under test
        died; return the missing tokens."""
        deadline = time.monotonic() + timeout
        while True:
            missing = tokens - self.first.keys()
            expired = time.monotonic() > deadline or not alive()
            # Each input yields at least one output: parse only once the count could be complete.
            if len(self.outputs) - self._accounted >= len(missing) or expired:
                self._account()
                missing = tokens - self.first.keys()
                if not missing or expired:
                    return sorted(missing)
            await asyncio.sleep(0.02)  # wait-ok: poll interval of a loop bounded by a deadline


def spawn(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A child process of the bench (killed with it), its output appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(os.getpid()),
        )  # fmt: skip


def terminate(proc: subprocess.Popen[bytes] | None) -> int:
    """SIGTERM, 30 s to exit, then SIGKILL; the exit code (0 when never started)."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else 0
    proc.terminate()
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


@dataclass
class PassthroughProcess:
    """The baseline program (`passthrough` below) as a process; WorkerProcess's interface."""

    bootstrap: str
    prefix: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PassthroughProcess:
        base = self.prefix
        command = [
            sys.executable,
            __file__,
            "_passthrough",
            self.bootstrap,
            f"{base}group",
            f"{base}out",
            f"{base}dlq",
            *(f"{base}channel.{c}" for c in CHANNELS),
        ]
        self.proc = spawn(command, self.log_path)
        return self

    def stop(self) -> int:
        return terminate(self.proc)


@dataclass
class PeerProcess:
    """The quixstreams peer (`peer_quixstreams.py`) as a process of its own venv's Python."""

    python: Path
    bootstrap: str
    prefix: str
    partitions: int
    state_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PeerProcess:
        command = [
            str(self.python),
            str(Path(__file__).with_name("peer_quixstreams.py")),
            self.bootstrap,
            self.prefix,
            f"{self.prefix}group",
            str(self.state_dir),
            f"--partitions={self.partitions}",
            f"--compression={PRODUCER_SETTINGS['compression_type']}",
        ]
        # the core from this checkout
        self.proc = spawn(command, self.log_path, {**os.environ, "PYTHONPATH": str(REPO)})
        return self

    def stop(self) -> int:
        return terminate(self.proc)  # quixstreams stops on SIGTERM after a last checkpoint

    def core_build(self) -> str:
        """Which build of the core the peer ran (its `peer-core:` log line)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("peer-core: "):
                return line.removeprefix("peer-core: ")
        return "unknown (no peer-core line in its log)"


@dataclass
class Subject:
    """A process under test, where its inputs go, and the watch on what it wrote."""

    result: Result
    process: EngineProcesses | PassthroughProcess | PeerProcess
    input_prefix: str
    watch: OutputWatch

    def alive(self) -> bool:
        return self.process.proc is not None and self.process.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.stop()


async def produce_all(
    bootstrap: str, topic_prefix: str, records: Sequence[TrafficRecord], rate: float | None = None
) -> dict[str, int]:
    """Send the records (paced at `rate` per second if given); token -> input CreateTime."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    await producer.start()
    sent_at: dict[str, int] = {}
    try:
        loop = asyncio.get_running_loop()
        started, futures = loop.time(), []
        for index, record in enumerate(records):
            if rate is not None and (delay := started + index / rate - loop.time()) > 0:
                await asyncio.sleep(delay)  # pacing the load, not synchronisation
            sent_at[expected_token(record)] = now_ms = int(time.time() * 1000)
            futures.append(
                await producer.send(
                    f"{topic_prefix}channel.{record.channel}",
                    record.value,
                    key=record.key,
                    timestamp_ms=now_ms,
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent_at


async def measure_drain(subject: Subject, bootstrap: str, drain: list[TrafficRecord]) -> None:
    """Preload, start the process, then time the drain and the CPU it took (startup excluded)."""
    result, watch = subject.result, subject.watch
    await produce_all(bootstrap, subject.input_prefix, drain)
    subject.process.start()
    assert subject.process.proc is not None
    pid = subject.process.proc.pid
    if not await watch.wait_for_any(STARTUP_TIMEOUT_S, subject.alive):
        tail = subject.process.log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{result.name} wrote nothing within {STARTUP_TIMEOUT_S} s:\n{tail}")
    (cpu_before, waited_before), wall_before = process_times(pid), time.time()
    if isinstance(subject.process, EngineProcesses) and subject.process.lifecycle:
        second = subject.process.lifecycle.proc  # from here too: its set-up is no cost per inbound
        result.sla_cpu_before = process_times(second.pid)[0] if second else 0.0
    tokens = {expected_token(r) for r in drain}
    result.lost = await watch.wait_for(tokens, STARTUP_TIMEOUT_S + len(drain) / 50, subject.alive)
    (cpu_after, waited_after), wall = process_times(pid), time.time() - wall_before
    result.cpu_seconds = cpu_after - cpu_before
    result.busy_share = result.cpu_seconds / wall
    result.runqueue_share = (waited_after - waited_before) / wall
    stamps = sorted(watch.first[t].timestamp_ms for t in tokens if t in watch.first)
    result.drained = len(stamps)
    result.drain_seconds = (stamps[-1] - stamps[0]) / 1000
    # The rate over the middle half of the outputs: a first batch written at once, or a slow
    # tail, does not move it, so it does not grow with the batch size
    first, last = len(stamps) // 4, len(stamps) * 3 // 4
    result.rate_outputs, result.rate_seconds = last - first, (stamps[last] - stamps[first]) / 1000
    result.cpu_messages = sum(1 for s in stamps if s > wall_before * 1000)


async def measure_latency(
    subject: Subject, bootstrap: str, paced: list[TrafficRecord], rate: float
) -> None:
    result, watch = subject.result, subject.watch
    result.paced_rate = rate
    sent_at = await produce_all(bootstrap, subject.input_prefix, paced, rate)
    result.lost += await watch.wait_for(set(sent_at), 60, subject.alive)
    for token, input_ms in sent_at.items():
        if (out := watch.first.get(token)) is not None:
            result.latency_ms.append(out.timestamp_ms - input_ms)
            result.seen_latency_ms.append(out.seen_ms - input_ms)
    result.duplicates = watch.duplicates


async def ensure_topics(
    bootstrap: str, prefix: str, partitions: int, logical: list[str], core: bool = False
) -> None:
    settings = RouterSettings(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap, topic_prefix=prefix, partitions=partitions
    )
    if core:
        await ensure_core_topics(settings)
    await TopicManager(settings).ensure(logical)


async def open_subject(
    stack: AsyncExitStack,
    name: str,
    process: EngineProcesses | PassthroughProcess | PeerProcess,
    prefix: str,
    outputs_pattern: str,
    token_of: TokenOf,
) -> Subject:
    """Watch the outputs (from the start) before the process runs; stop it with the stack."""
    pattern = f"^{prefix.replace('.', '[.]')}{outputs_pattern}$"
    watch = await stack.enter_async_context(OutputWatch(process.bootstrap, pattern, token_of))
    subject = Subject(Result(name), process, prefix, watch)
    stack.callback(subject.stop)
    return subject


async def baseline_subject(
    stack: AsyncExitStack,
    bootstrap: str,
    base: str,
    partitions: int,
    log_path: Path,
    valid_ids: set[str],
) -> Subject:
    await ensure_topics(
        bootstrap, base, partitions, [f"channel.{c}" for c in CHANNELS] + ["out", "dlq"]
    )

    def token_of(topic: str, key: bytes | None, value: bytes) -> str:
        with contextlib.suppress(orjson.JSONDecodeError):
            if topic == f"{base}out" and (event_id := orjson.loads(value).get("id")) in valid_ids:
                return str(event_id)
        return malformed_token(key)

    process = PassthroughProcess(bootstrap, base, log_path)
    return await open_subject(stack, "baseline", process, base, "(out|dlq)", token_of)


async def measure_baseline(
    bootstrap: str,
    prefix: str,
    partitions: int,
    workdir: Path,
    valid_ids: set[str],
    drain: list[TrafficRecord],
    paced: list[TrafficRecord],
    rate: float,
) -> tuple[Result, list[float]]:
    """The baseline's figures: its median drain of `BASELINE_DRAINS` runs (each on topics of
    its own, the same records), the paced load's latency from the first; and every run's
    drain rate. Outputs lost in any run count."""
    runs: list[Result] = []
    for n in range(BASELINE_DRAINS):
        async with AsyncExitStack() as stack:
            subject = await baseline_subject(
                stack, bootstrap, f"{prefix}baseline{n}.", partitions,
                workdir / f"baseline{n}.log", valid_ids,
            )  # fmt: skip
            await measure_drain(subject, bootstrap, drain)
            if n == 0:
                await measure_latency(subject, bootstrap, paced, rate)
            runs.append(subject.result)
    median = sorted(runs, key=lambda r: r.msg_per_s)[len(runs) // 2]
    first = runs[0]
    result = replace(
        median,
        paced_rate=first.paced_rate,
        latency_ms=first.latency_ms,
        seen_latency_ms=first.seen_latency_ms,
        lost=[token for run in runs for token in run.lost],
        duplicates=sum(run.duplicates for run in runs),
    )
    return result, [run.msg_per_s for run in runs]


@dataclass
class EngineProcesses:
    """The engine as the bench runs it: with `layout` "split", a routing worker (the process
    under test) and a lifecycle worker in its own consumer group; "single": one worker."""

    routing: WorkerProcess
    lifecycle: WorkerProcess | None

    @property
    def bootstrap(self) -> str:
        return self.routing.bootstrap

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.routing.proc

    @property
    def log_path(self) -> Path:
        return self.routing.log_path

    def start(self) -> EngineProcesses:
        self.routing.start()
        if self.lifecycle is not None:
            self.lifecycle.start()
        return self

    def stop(self) -> int:
        if self.lifecycle is not None:
            self.lifecycle.stop()
        return self.routing.stop()


async def engine_subject(
    stack: AsyncExitStack,
    bootstrap: str,
    prefix: str,
    partitions: int,
    workdir: Path,
    routes: dict[str, str],
    layout: str = "split",
    name: str = "engine",
    sla_niceness: int = 0,
) -> Subject:
    # Vendor queues exist before their first ticket in production (`router vendors provision`).
    queues = sorted({queue_topic(q) for q in routes.values()})
    await ensure_topics(bootstrap, prefix, partitions, queues, core=True)

    def token_of(topic: str, key: bytes | None, value: bytes) -> str:
        if topic == f"{prefix}channel.dlq":
            return malformed_token(key)
        return str(orjson.loads(value)["data"]["messages"][-1]["inbound_id"])

    env = {"ROUTER_PARTITIONS": str(partitions), "ROUTER_COMMIT_INTERVAL_S": "1.0"}
    runtime = {"ROUTER_RUNTIME": "faust"} if layout.endswith(FAUST) else {}
    layout = layout.removesuffix(FAUST)

    def worker(stage: str) -> WorkerProcess:
        # a lifecycle worker of its own yields the CPU to the routing worker (cpu_niceness)
        nice = {"ROUTER_CPU_NICENESS": str(sla_niceness)} if stage == "lifecycle" else {}
        return WorkerProcess(
            bootstrap, prefix, workdir / f"data-{name}-{stage}",
            workdir / f"worker-{name}-{stage}.log",
            extra_env={**env, "ROUTER_STAGE": stage, **runtime, **nice},
        )  # fmt: skip

    if layout in ("split", "routing"):
        process = EngineProcesses(
            worker("routing"), worker("lifecycle") if layout == "split" else None
        )
    else:
        process = EngineProcesses(worker("all"), None)
    return await open_subject(
        stack, name, process, prefix, "(queue[.].*|channel[.]dlq)", token_of
    )


async def lifecycle_lag(bootstrap: str, prefix: str, layout: str) -> int:
    """Records the SLA stage has not committed yet, over its input topics."""
    settings = RouterSettings(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap, topic_prefix=prefix,
        stage="lifecycle" if layout.removesuffix(FAUST) == "split" else "all",
    )  # fmt: skip
    rows = await group_offsets(settings, [settings.group_id()])
    inputs = {settings.topic(t) for t in ("tickets.events", "tickets.commands", "tickets.actions")}
    return sum(row.lag for row in rows if row.topic in inputs)


@dataclass
class EngineRun:
    """One layout's figures; the SLA stage's as (lag in records, seconds until all committed,
    None past the deadline) when routing's drain ended and when the paced load stopped."""

    layout: str
    result: Result
    sla_after_drain: tuple[int | None, float | None]
    sla_after_paced: tuple[int | None, float | None]
    sla_cpu_s: float | None  # a lifecycle worker of its own, from the first output on


def sla_report(run: EngineRun, inbound: int, niceness: int) -> str:
    where = (
        f"its own worker group, at niceness {niceness}" if run.layout.startswith("split")
        else "same process"
    )  # fmt: skip

    def caught_up(lag_and_time: tuple[int | None, float | None], when: str) -> str:
        lag, seconds = lag_and_time
        done = "not all committed within the deadline" if seconds is None else (
            f"all committed {seconds:.1f} s later"
        )  # fmt: skip
        return f"lag {lag} records (committed offsets) when {when}, {done}"

    line = (
        f"SLA stage ({where}): {caught_up(run.sla_after_drain, 'the drain ended')}; "
        f"{caught_up(run.sla_after_paced, 'the paced load stopped')}"
    )
    if run.sla_cpu_s is None:
        return line
    per_inbound = run.sla_cpu_s / inbound * 1e6
    return f"{line}; its worker's CPU from the first output until then {per_inbound:.0f} µs/inbound"


async def sla_catch_up(
    bootstrap: str, prefix: str, layout: str, deadline_s: float = 60.0
) -> tuple[int, float | None]:
    """The SLA stage's lag when the paced load stops, and how long it then takes to commit
    everything (None: not within `deadline_s`). Lag counts committed offsets, which trail
    what was processed by up to a commit interval of input."""
    at_end = await lifecycle_lag(bootstrap, prefix, layout)
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if await lifecycle_lag(bootstrap, prefix, layout) == 0:
            return at_end, time.monotonic() - started
        await asyncio.sleep(0.2)  # wait-ok: polling the lag with a deadline
    return at_end, None


async def peer_subject(
    stack: AsyncExitStack,
    bootstrap: str,
    prefix: str,
    partitions: int,
    workdir: Path,
    routes: dict[str, str],
    python: Path,
) -> Subject:
    """The routing stage as a quixstreams application (`peer_quixstreams.py`), on topics of its
    own: the engine's core topics and queues (its departments and the mix's vendors, which the
    engine worker creates at startup or finds provisioned) under `<prefix>peer.`."""
    base = f"{prefix}peer."
    queues = {queue_topic(q) for q in routes.values()}
    queues |= {queue_topic(f"dept:{d}") for d in DefaultPolicy().departments}
    await ensure_topics(bootstrap, base, partitions, sorted(queues), core=True)

    def token_of(topic: str, key: bytes | None, value: bytes) -> str:
        if topic == f"{base}channel.dlq":
            return malformed_token(key)
        return str(orjson.loads(value)["data"]["messages"][-1]["inbound_id"])

    process = PeerProcess(
        python, bootstrap, base, partitions, workdir / "peer-state", workdir / "peer.log"
    )
    return await open_subject(stack, "peer", process, base, "(queue[.].*|channel[.]dlq)", token_of)


def misrouted(subject: Subject, routes: dict[str, str]) -> int:
    """Valid inputs whose first output is not on the queue the built-in policy names."""
    return sum(
        1
        for inbound_id, out in subject.watch.first.items()
        if inbound_id in routes
        and out.topic != subject.input_prefix + queue_topic(routes[inbound_id])
    )


def report(
    baseline: Result,
    engine: Result,
    args: argparse.Namespace,
    peer: Result | None = None,
    peer_notes: Sequence[str] = (),
) -> list[str]:
    """The table: baseline and engine, and the quixstreams peer when it ran."""
    subjects = [baseline, engine, *([peer] if peer else [])]

    def row(label: str, cells: Sequence[str], ratios: Sequence[str] = ()) -> str:
        ratios = [*ratios, *[""] * (1 + (peer is not None) - len(ratios))]
        return (
            f"{label:30}" + "".join(f"{c:>12}" for c in cells) + "".join(f"{r:>13}" for r in ratios)
        )

    def each(value: Callable[[Result], str]) -> list[str]:
        return [value(r) for r in subjects]

    def ratios(value: Callable[[Result], float], digits: int) -> list[str]:
        of_engine = value(engine)
        return [f"{of_engine / value(r):.{digits}f}" for r in (baseline, peer) if r is not None]

    lines = [
        row("", each(lambda r: r.name), ["engine/base", *(["engine/peer"] if peer else [])]),
        row(
            "throughput, drain (msg/s)",
            each(lambda r: f"{r.msg_per_s:,.0f}"),
            ratios(lambda r: r.msg_per_s, 3),
        ),
        row(
            "CPU per message (µs)",
            each(lambda r: f"{r.cpu_us_per_msg:.0f}"),
            ratios(lambda r: r.cpu_us_per_msg, 1 if peer is None else 2),
        ),
        row("busy, share of one core", each(lambda r: f"{r.busy_share:.2f}")),
        row("waiting for a CPU, share", each(lambda r: f"{r.runqueue_share:.2f}")),
    ]
    def quantile_of(attr: str, q: float) -> Callable[[Result], str]:
        return lambda r: f"{percentile(getattr(r, attr), q):.1f}"

    for label, attr in (("record ts", "latency_ms"), ("consumer", "seen_latency_ms")):
        for q in (0.5, 0.99):
            lines.append(row(f"latency p{q * 100:.0f} {label} (ms)", each(quantile_of(attr, q))))
    names = " / ".join(r.name for r in subjects)
    return [
        *lines,
        row("lost / duplicate outputs", each(lambda r: f"{len(r.lost)} / {r.duplicates}")),
        f"drain: {args.messages} preloaded messages; "
        + ", ".join(f"{r.name} {r.drain_seconds:.2f} s" for r in subjects)
        + " (first to last output timestamp; throughput over the middle half of the outputs)",
        f"latency: {engine.paced_rate:.0f} msg/s for {args.seconds:.0f} s (--rate {args.rate:.0f}, "
        "capped at half the engine's drain rate so the load does not saturate it); 'record ts' = "
        "output minus input CreateTime, 'consumer' = when a consumer got it minus input CreateTime",
        f"CPU: utime+stime of the process under test over the drain "
        f"({' / '.join(str(r.cpu_messages) for r in subjects)} messages, {names}); this "
        f"{os.cpu_count()}-core machine also runs the broker and the measuring consumer; load "
        f"average now {os.getloadavg()[0]:.1f}",
        *peer_notes,
        f"engine outputs on an unexpected queue: {engine.misrouted}",
        *([f"peer outputs on an unexpected queue: {peer.misrouted}"] if peer else []),
        f"baseline lost: {len(baseline.lost)}",
        *(
            [f"peer lost: {len(peer.lost)}" + (f" (e.g. {peer.lost[:3]})" if peer.lost else "")]
            if peer
            else []
        ),
        f"lost: {len(engine.lost)}" + (f" (e.g. {engine.lost[:3]})" if engine.lost else ""),
    ]


async def measure_peer(
    bootstrap: str,
    args: argparse.Namespace,
    prefix: str,
    workdir: Path,
    routes: dict[str, str],
    drain: list[TrafficRecord],
    paced: list[TrafficRecord],
    rate: float,
    env: PeerEnv,
) -> tuple[Result | None, list[str]]:
    """The peer through the same drain and paced load; its result (None when it could not
    run: the lines say why) and the report's lines about it."""
    if env.python is None:
        return None, [f"peer: skipped, {env.reason}"]
    async with AsyncExitStack() as stack:
        peer = await peer_subject(
            stack, bootstrap, prefix, args.partitions, workdir, routes, env.python
        )
        assert isinstance(peer.process, PeerProcess)
        try:
            await measure_drain(peer, bootstrap, drain)
        except RuntimeError as exc:  # wrote nothing: report it, keep the other figures
            return None, [f"peer: FAILED, {exc}"]
        print(f"peer drained at {peer.result.msg_per_s:,.0f} msg/s", flush=True)
        await measure_latency(peer, bootstrap, paced, rate)
        peer.stop()
        peer.result.misrouted = misrouted(peer, routes)
        core = peer.process.core_build()
    notes = [
        f"peer: the routing stage as a quixstreams app (tests/bench/peer_quixstreams.py; "
        f"{env.versions}, engine's pydantic {pydantic.VERSION}; {PEER_VENV.relative_to(REPO)}), "
        f"core {core}; RocksDB state with changelogs; the engine's own routing processor "
        "(router.stages.routing). Not in the peer: the re-route topic, the vendor directory and "
        "buyer history the engine's routing worker also follows (and with --layout single, the "
        "SLA stage). Its checkpoints wait for every delivery (one produce request per "
        "partition): trust its CPU per message more than its drain rate"
    ]
    if peer.result.msg_per_s < 2 * rate:
        notes.append(
            f"peer: the paced load ({rate:.0f} msg/s) is over half its drain rate; its latency "
            "includes queueing"
        )
    return peer.result, notes


async def bench(bootstrap: str, args: argparse.Namespace) -> int:
    traffic = MarketplaceTraffic(
        args.seed, message_bytes=args.bytes, malformed_ratio=args.malformed
    )
    drain, paced_pool = traffic.take(args.messages), traffic.take(int(args.rate * args.seconds))
    print(
        f"mix: {len(drain)} + up to {len(paced_pool)} paced records, {dict(traffic.counts)}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    routes = bench_core.expected_queues(drain + paced_pool)
    # Before any measurement: creating the peer's venv the first time takes a while.
    peer_env = PeerEnv(None, "--no-peer") if args.no_peer else ensure_peer_venv()
    if peer_env.python is None:
        print(f"peer: skipped, {peer_env.reason}", flush=True)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    layouts = [args.layout, *([args.compare] if args.compare else [])]
    engines: list[EngineRun] = []
    rate, paced = float(args.rate), paced_pool
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for n, layout in enumerate(layouts):
            # each engine on topics of its own: the same records, no offsets or state shared
            engine_prefix = prefix if n == 0 else f"{prefix}{layout}."
            async with AsyncExitStack() as stack:
                engine = await engine_subject(
                    stack, bootstrap, engine_prefix, args.partitions, Path(tmp), routes, layout,
                    name=layout if len(layouts) > 1 else "engine", sla_niceness=args.sla_niceness,
                )  # fmt: skip
                await measure_drain(engine, bootstrap, drain)
                print(f"{layout} drained at {engine.result.msg_per_s:,.0f} msg/s", flush=True)
                with_sla = layout.removesuffix(FAUST) != "routing"
                # the paced phase starts once the SLA stage has caught up with the drain
                after_drain = (
                    await sla_catch_up(bootstrap, engine_prefix, layout, deadline_s=120.0)
                    if with_sla
                    else (None, None)
                )
                if n == 0:  # every subject takes the same paced load
                    rate = min(args.rate, engine.result.msg_per_s / 2)
                    paced = paced_pool[: int(rate * args.seconds)]
                await measure_latency(engine, bootstrap, paced, rate)
                sla_lag, sla_caught_up = (
                    await sla_catch_up(bootstrap, engine_prefix, layout)
                    if with_sla
                    else (None, None)
                )
                assert isinstance(engine.process, EngineProcesses)
                second = engine.process.lifecycle
                sla_cpu = (
                    process_times(second.proc.pid)[0] - engine.result.sla_cpu_before
                    if second and second.proc
                    else None
                )
                engine.stop()
                engine.result.misrouted = sum(
                    1
                    for inbound_id, out in engine.watch.first.items()
                    if inbound_id in routes
                    and out.topic != engine_prefix + queue_topic(routes[inbound_id])
                )
                engines.append(
                    EngineRun(layout, engine.result, after_drain, (sla_lag, sla_caught_up), sla_cpu)
                )
        valid_ids = {r.inbound_id for r in drain + paced if r.inbound_id}
        baseline, baseline_rates = await measure_baseline(
            bootstrap, prefix, args.partitions, Path(tmp), valid_ids, drain, paced, rate
        )
        print(
            "baseline drained at " + " / ".join(f"{r:,.0f}" for r in baseline_rates)
            + " msg/s; the median run is the baseline below",
            flush=True,
        )
        peer, peer_notes = await measure_peer(
            bootstrap, args, prefix, Path(tmp), routes, drain, paced, rate, peer_env
        )
    inbound = len(drain) + len(paced)
    for n, run in enumerate(engines):
        print(f"\n--layout {run.layout}", flush=True)
        shown = (peer, peer_notes) if n == 0 else (None, ())
        print("\n".join(report(baseline, run.result, args, *shown)), flush=True)
        if run.layout.removesuffix(FAUST) != "routing":
            print(sla_report(run, inbound, args.sla_niceness), flush=True)
    engine_result = engines[0].result
    if not args.no_core:
        # In a thread: the streams-glue figure runs an event loop of its own.
        figures = await asyncio.to_thread(bench_core.measure_core, drain[:5000])
        print(
            "\n".join(
                [
                    *bench_core.core_report(figures),
                    *bench_core.where_the_time_goes(
                        figures, engine_result.cpu_us_per_msg, baseline.cpu_us_per_msg
                    ),
                ]
            )
        )
    peer_failed = peer_env.python is not None and (peer is None or bool(peer.lost))
    engine_lost = any(run.result.lost for run in engines)
    return 1 if engine_lost or baseline.lost or peer_failed else 0


async def passthrough(bootstrap: str, group: str, out: str, dlq: str, inputs: list[str]) -> None:
    """The baseline under test: what any consume-transform-produce loop costs at least."""
    consumer = AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batch.values():
                for r in records:
                    try:
                        await producer.send(out, orjson.dumps(orjson.loads(r.value)), key=r.key)
                    except orjson.JSONDecodeError:
                        await producer.send(dlq, r.value, key=r.key)
            if batch:
                await producer.flush()
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_passthrough"]:
        bootstrap, group, out, dlq, *inputs = argv[1:]
        asyncio.run(passthrough(bootstrap, group, out, dlq, inputs))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="preloaded drain size")
    parser.add_argument("--bytes", type=int, default=1024, help="mean inbound record size")
    parser.add_argument("--rate", type=float, default=500, help="paced load, msg/s")
    parser.add_argument("--seconds", type=float, default=60, help="paced load duration")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="split",
        help="split: routing and SLA stages in their own worker groups (the routing worker is "
        "measured); single: one worker runs both; routing: the routing worker alone; "
        "-faust: the workers run `runtime: faust` (each stage a faust agent) instead of "
        "the direct runtime",
    )  # fmt: skip
    parser.add_argument(
        "--compare", choices=LAYOUTS, default=None,
        help="a second engine layout measured in the same run, on the same records and paced "
        "load, against the same baseline",
    )  # fmt: skip
    parser.add_argument(
        "--sla-niceness", type=int, choices=range(20), default=10, metavar="0-19",
        help="ROUTER_CPU_NICENESS of a split layout's lifecycle worker, which shares the "
        "machine's CPUs with the routing worker (0: the same priority)",
    )  # fmt: skip
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--malformed", type=float, default=0.01, help="share of bad records")
    parser.add_argument("--seed", default="bench")
    parser.add_argument("--no-core", action="store_true", help="skip the pure-core breakdown")
    parser.add_argument(
        "--no-peer", action="store_true", help="skip the quixstreams peer (and its venv)"
    )
    args = parser.parse_args(argv)
    # Fresh partitions answer NOT_LEADER for a moment; aiokafka retries but logs each one.
    # The benchmark checks delivery itself (`lost:`), so keep the output to the figures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with kafka_for_tests() as bootstrap:
        return asyncio.run(bench(bootstrap, args))


if __name__ == "__main__":
    sys.exit(main())
