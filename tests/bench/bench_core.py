"""Per-message cost of the pure core, stage by stage, and where its time goes (cProfile).

    python tests/bench/bench_core.py [--messages N] [--seed S]

Stages, as the inbound agent runs them: build the source position, parse (pydantic straight
from bytes), load the ticket state (follow-ups only), thread + route, save the state, render
the output records. Each stage is timed alone over the whole mix (least CPU time of
`--repeat` runs), so the figures add up to the core's share of a worker's CPU per message.
Then the whole routing stage runner on the same mix, with a dict for the table and a send
that completes at once: the core plus the streams glue, still without faust or Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `router`, `tests` importable
    sys.path.insert(0, str(REPO))

from router.clock import SystemClock  # noqa: E402
from router.default_policy import DefaultPolicy  # noqa: E402
from router.inbound import Rejected, parse_inbound  # noqa: E402
from router.outputs import render  # noqa: E402
from router.stages.routing import PolicyHolder, RoutingProcessor  # noqa: E402
from router.tickets import Threaded, TicketState, state_key, thread_message  # noqa: E402
from router.traffic import MarketplaceTraffic, TrafficRecord  # noqa: E402
from schemas.dead_letter import SourcePosition  # noqa: E402
from schemas.topics import CHANNEL_TOPICS  # noqa: E402
from streams.kafka.emit import Emitter, KeyedSender  # noqa: E402
from streams.logs import configure_logging  # noqa: E402
from streams.settings import RouterSettings  # noqa: E402
from streams.stages.runner import BatchTable, StageRunner  # noqa: E402

# Records the worker writes per inbound message besides render's: the table changelog entry.
CHANGELOG_RECORDS_PER_MESSAGE = 1


@dataclass
class CoreFigures:
    messages: int
    stage_us: dict[str, float]  # stage -> µs per inbound message (averaged over the whole mix)
    orjson_loads_us: float  # the baseline's decode, for comparison
    processor_us: float  # the routing stage runner: the core plus the streams glue, no Kafka
    records_per_message: float  # records the worker produces per inbound, changelog included
    bytes_out_per_message: float
    profile_top: list[tuple[str, float]] = field(default_factory=list)  # (function, own share)

    @property
    def total_us(self) -> float:
        return sum(self.stage_us.values())


@dataclass
class _Prepared:
    """The inputs of every stage, from one sequential pass over the mix."""

    positions: list[SourcePosition]
    parsed: list[Any]
    valid: list[tuple[Any, TrafficRecord, SourcePosition]]
    raw_states: list[bytes]  # the state a follow-up loads (new tickets load nothing)
    states_before: list[TicketState | None]
    threaded: list[Threaded]


def _position(index: int, record: TrafficRecord) -> SourcePosition:
    return SourcePosition(
        topic=f"channel.{record.channel}",
        partition=0,
        offset=index,
        timestamp_ms=1_700_000_000_000 + index,
    )


def _parse(record: TrafficRecord, position: SourcePosition, now: datetime) -> Any:
    return parse_inbound(
        record.value, record.key, position, now, expected_channel=CHANNEL_TOPICS[position.topic]
    )


def _prepare(records: Sequence[TrafficRecord], now: datetime) -> _Prepared:
    policy = DefaultPolicy()
    positions = [_position(i, r) for i, r in enumerate(records)]
    parsed = [_parse(r, p, now) for r, p in zip(records, positions, strict=True)]
    prepared = _Prepared(positions, parsed, [], [], [], [])
    table: dict[bytes, bytes] = {}
    for event, record, position in zip(parsed, records, positions, strict=True):
        if isinstance(event, Rejected):
            continue
        key = state_key(event.data.channel, event.data.thread_ref)
        raw = table.get(key)
        state = TicketState.from_bytes(raw) if raw is not None else None
        result = thread_message(event, record.key, position, state, policy, now)
        assert isinstance(result, Threaded), f"unexpected {type(result).__name__}"
        table[key] = result.state.to_bytes()
        if raw is not None:
            prepared.raw_states.append(raw)
        prepared.valid.append((event, record, position))
        prepared.states_before.append(state)
        prepared.threaded.append(result)
    return prepared


def expected_queues(records: Sequence[TrafficRecord]) -> dict[str, str]:
    """Inbound id -> the queue the built-in policy routes its ticket to (`dept:payments`)."""
    prep = _prepare(records, datetime.now(UTC))
    return {
        event.id: threaded.state.queue
        for (event, _, _), threaded in zip(prep.valid, prep.threaded, strict=True)
    }


def _best_of(repeat: int, run: Callable[[], object]) -> float:
    """Least CPU time of `repeat` runs (other processes on the machine do not count), with the
    cyclic GC off as timeit does: its cost depends on the heap, not on the stage."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
        finally:
            gc.enable()
    return best


def _each(items: Sequence[Any], step: Callable[..., object]) -> Callable[[], None]:
    """A timed loop that drops each result, as a streaming worker does (keeping 5000 results
    alive would time the allocator and page faults instead of the stage)."""

    def run() -> None:
        for item in items:
            step(*item)

    return run


def measure_core(records: Sequence[TrafficRecord], repeat: int = 3) -> CoreFigures:
    """CPU µs per inbound message for each core stage, over this exact mix."""
    now = datetime.now(UTC)
    prep = _prepare(records, now)
    policy = DefaultPolicy()
    ticket_inputs = [
        (event, record.key, position, state, policy, now)
        for (event, record, position), state in zip(prep.valid, prep.states_before, strict=True)
    ]
    render_inputs = [
        (t, event.id, now) for t, (event, _, _) in zip(prep.threaded, prep.valid, strict=True)
    ]
    stage_seconds = {
        "source position": _best_of(repeat, _each(list(enumerate(records)), _position)),
        "parse (validate JSON)": _best_of(
            repeat,
            _each([(r, p, now) for r, p in zip(records, prep.positions, strict=True)], _parse),
        ),
        "state load": _best_of(
            repeat, _each([(raw,) for raw in prep.raw_states], TicketState.from_bytes)
        ),
        "thread + route": _best_of(repeat, _each(ticket_inputs, thread_message)),
        "state save": _best_of(
            repeat, _each([(t.state,) for t in prep.threaded], TicketState.to_bytes)
        ),
        "render outputs": _best_of(repeat, _each(render_inputs, render)),
    }
    valid_values = [(r.value,) for r in records if r.inbound_id is not None]
    loads = _best_of(repeat, _each(valid_values, orjson.loads))
    count = len(records)
    outputs = [render(*args) for args in render_inputs]
    produced = sum(len(o) + CHANGELOG_RECORDS_PER_MESSAGE for o in outputs) + (count - len(outputs))
    out_bytes = sum(len(r.value) for o in outputs for r in o)
    return CoreFigures(
        messages=count,
        stage_us={name: seconds / count * 1e6 for name, seconds in stage_seconds.items()},
        orjson_loads_us=loads / max(1, len(valid_values)) * 1e6,
        processor_us=min(measure_processor(records) for _ in range(repeat)) / count * 1e6,
        records_per_message=produced / count,
        bytes_out_per_message=out_bytes / count,
        profile_top=profile_core(records, now),
    )


class _TopicsExist:
    """Stands in for the TopicManager: every queue topic exists already."""

    async def ensure(self, logical: object, configs: object = None) -> None:
        return None


class _Delivered:
    """Stands in for aiokafka's producer: every send is delivered at once."""

    class client:
        class cluster:
            @staticmethod
            def partitions_for_topic(topic: str) -> set[int]:
                return {0}

    async def send(self, topic: str, value: bytes | None = None, **kwargs: object) -> object:
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float
    headers: tuple[()] = ()


@dataclass
class _Event:
    message: _Message


def measure_processor(records: Sequence[TrafficRecord], batch: int = 500) -> float:
    """CPU seconds of the routing stage's runner over the mix, in batches, with dicts for the
    ticket table and a producer that delivers at once: the worker's glue around the core
    (batching, coalesced table writes, the emitter), minus Kafka."""
    settings = RouterSettings(KAFKA_BOOTSTRAP_SERVERS="unused:9092")
    configure_logging("ERROR")  # the worker logs each rejected record; not the point here
    events = [
        _Event(_Message(f"channel.{r.channel}", 0, offset, r.key, r.value, 1.7e9))
        for offset, r in enumerate(records)
    ]

    async def drive() -> float:
        producer = _Delivered()
        emitter = Emitter(settings, KeyedSender(lambda: producer), _TopicsExist())  # type: ignore[arg-type,return-value]
        table = BatchTable({}, {}, "tickets-changelog")
        processor = RoutingProcessor(
            table, PolicyHolder(DefaultPolicy()), max_record_bytes=settings.max_record_bytes
        )
        runner = StageRunner(processor, [table], emitter, SystemClock(), settings.logical)
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            for at in range(0, len(events), batch):
                await runner.run(events[at : at + batch])
            return time.process_time() - started
        finally:
            gc.enable()

    return asyncio.run(drive())


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":  # a builtin: cProfile puts the description in `name`
        return name.replace("pydantic_core._pydantic_core.", "")
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else filename
    return f"{short}:{line} {name}"


def profile_core(
    records: Sequence[TrafficRecord], now: datetime, top: int = 10
) -> list[tuple[str, float]]:
    """One pass of the whole core under cProfile: the `top` functions by own time, as shares."""
    policy = DefaultPolicy()
    table: dict[bytes, bytes] = {}

    def one_pass() -> None:
        for index, record in enumerate(records):
            position = _position(index, record)
            event = _parse(record, position, now)
            if isinstance(event, Rejected):
                continue
            key = state_key(event.data.channel, event.data.thread_ref)
            raw = table.get(key)
            state = TicketState.from_bytes(raw) if raw is not None else None
            result = thread_message(event, record.key, position, state, policy, now)
            assert isinstance(result, Threaded)
            table[key] = result.state.to_bytes()
            render(result, event.id, now)

    profiler = cProfile.Profile()
    profiler.runcall(one_pass)
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]  # (cc, nc, tottime, cumtime, callers)
    total = sum(entry[2] for entry in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)
    ours = [(func, entry) for func, entry in ranked if func[0] != __file__]  # not this harness
    return [(_label(func), entry[2] / total) for func, entry in ours[:top]]


def core_report(figures: CoreFigures) -> list[str]:
    lines = [f"pure core, µs per inbound message ({figures.messages} messages of the mix):"]
    for stage, micros in figures.stage_us.items():
        share = micros / figures.total_us * 100
        lines.append(f"  {stage:<24}{micros:8.1f} µs  {share:5.1f}%")
    lines.append(f"  {'total':<24}{figures.total_us:8.1f} µs")
    lines.append(
        f"  routing stage runner, same mix, dict table, no Kafka: "
        f"{figures.processor_us:.1f} µs (core + streams glue)"
    )
    lines.append(f"  (for scale: orjson.loads of the same record {figures.orjson_loads_us:.1f} µs)")
    lines.append(
        f"  records written per inbound: {figures.records_per_message:.2f} "
        f"(queue, events, decision, changelog), "
        f"{figures.bytes_out_per_message / 1024:.1f} KiB of output"
    )
    lines.append("cProfile, top functions by own time over one pass of the core:")
    lines.extend(f"  {share * 100:5.1f}%  {label}" for label, share in figures.profile_top)
    return lines


def where_the_time_goes(
    figures: CoreFigures,
    engine_cpu_us: float | None = None,
    baseline_cpu_us: float | None = None,
) -> list[str]:
    """Guidance from the figures, layer by layer when a worker's and the baseline's CPU per
    message are known (from bench_pipeline.py)."""
    ranked = sorted(figures.stage_us.items(), key=lambda item: item[1], reverse=True)
    (first, first_us), (second, second_us) = ranked[0], ranked[1]
    pydantic = sum(share for label, share in figures.profile_top if "Schema" in label) * 100
    lines = [
        "where the time goes:",
        f"  - in the core, {first} ({first_us:.0f} µs) and {second} ({second_us:.0f} µs) lead; "
        f"pydantic's validators and serializers alone take {pydantic:.0f}% of the core's time "
        "(cProfile, own time)",
    ]
    glue_us = figures.processor_us - figures.total_us
    if engine_cpu_us is None or baseline_cpu_us is None:
        lines.append(
            f"  - the streams glue adds {glue_us:.0f} µs; run bench_pipeline.py for the "
            "worker's CPU per message"
        )
        return lines
    rest_us = engine_cpu_us - figures.processor_us - baseline_cpu_us
    layers = [
        ("the pure core", figures.total_us),
        ("streams glue around it (stage runner, no Kafka)", glue_us),
        ("Kafka client floor, 1 record in + 1 out (the baseline)", baseline_cpu_us),
        (
            "the runtime (consumer, producer batches), the table changelog and "
            f"{figures.records_per_message - 1:.1f} more records produced per inbound",
            rest_us,
        ),
    ]
    lines.append(f"  - of {engine_cpu_us:.0f} µs worker CPU per message:")
    lines += [
        f"      {micros:7.0f} µs {micros / engine_cpu_us * 100:4.0f}%  {name}"
        for name, micros in layers
    ]
    biggest = max(layers, key=lambda layer: layer[1])[0]
    lines.append(
        f"  - so start with {biggest}; the core alone would allow "
        f"~{1e6 / figures.total_us:,.0f} msg/s per core"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--seed", default="bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    records = MarketplaceTraffic(args.seed).take(args.messages)
    figures = measure_core(records, repeat=args.repeat)
    print("\n".join([*core_report(figures), *where_the_time_goes(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
