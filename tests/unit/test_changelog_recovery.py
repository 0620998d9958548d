"""streams.kafka.changelog_recovery without a broker: the store writes, the loader's offset
bookkeeping, the faust internals it hooks into, and the index entries taken while loading."""

from __future__ import annotations

import asyncio
import functools
import inspect
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.types import TP

from router.clock import FakeClock
from router.sla.state import LifecycleState, encode_state, index_entry_from_json
from streams.kafka.changelog_recovery import (
    ChangelogLoader,
    FastRecovery,
    apply_records,
    install_fast_recovery,
    loadable,
)
from streams.settings import RouterSettings
from streams.stages import deadlines as lifecycle_deadlines
from streams.stages.deadlines import Deadlines

TOPIC = "app-t-changelog"


@dataclass
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None


def state(ticket: str, due: float | None) -> bytes:
    return encode_state(LifecycleState(
        ticket_id=ticket, policy="standard", calendar="always", opened_at=datetime.now(UTC),
        clock_at_us=0, next_due_ts=due))


class Table:
    """What apply_records touches: a faust memory store, and the optional hook."""

    def __init__(self) -> None:
        self.data = MemoryStore("memory://", None, SimpleNamespace(name="t"))
        self.loaded: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []

    def changelog_loaded(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self.loaded.append((partition, records))


def test_apply_records_does_what_faust_memory_store_does() -> None:
    records = [Rec(0, b"a", b"1"), Rec(1, b"b", b"2"), Rec(2, b"a", b"3"), Rec(3, b"b", None),
               Rec(4, b"c", b"4"), Rec(5, b"c", None), Rec(6, b"c", b"5"), Rec(7, None, b"x")]
    ours = Table()
    apply_records(ours, 2, records)
    theirs = MemoryStore("memory://", None, SimpleNamespace(name="t"))
    events = [SimpleNamespace(key=r.key, value=r.value,
                              message=SimpleNamespace(partition=2, value=r.value))
              for r in records if r.key is not None]
    theirs.apply_changelog_batch(events, to_key=lambda k: k, to_value=lambda v: v)
    assert ours.data.data == theirs.data == {b"a": b"3", b"c": b"5"}
    assert ours.data._key_partition == theirs._key_partition == {b"a": 2, b"c": 2}
    assert ours.loaded == [(2, [(r.key, r.value) for r in records if r.key is not None])]


def test_only_raw_bytes_memory_tables_are_loadable() -> None:
    app = faust.App("unit-loadable", broker="kafka://127.0.0.1:1", store="memory://")
    assert loadable(app.Table("raw", key_type=bytes, value_type=bytes))
    assert not loadable(app.Table("json", key_type=str, value_type=int))
    assert not loadable(app.GlobalTable("glob", key_type=bytes, value_type=bytes))

    async def on_event(event: Any) -> None:
        return None

    assert not loadable(app.Table("cb", key_type=bytes, value_type=bytes,
                                  on_changelog_event=on_event))

    class Derived(faust.Table):  # type: ignore[misc]
        def apply_changelog_batch(self, batch: Any) -> None:
            super().apply_changelog_batch(batch)

    class Hooked(Derived):
        def changelog_loaded(self, partition: int, records: Any) -> None:
            return None

    assert not loadable(app.tables.add(Derived(app, name="derived", key_type=bytes,
                                               value_type=bytes)))
    assert loadable(app.tables.add(Hooked(app, name="hooked", key_type=bytes, value_type=bytes)))


class FakeConsumer:
    """Serves each partition's records in fetches of `per_fetch`; `fail_after` fetches, raises.

    Past a partition's last record the position moves to `log_end` (default: the last
    record's offset + 1), as it does over a compacted tail or a transaction marker."""

    def __init__(self, logs: dict[int, list[Rec]], per_fetch: int, fail_after: int = -1,
                 log_end: dict[int, int] | None = None) -> None:
        self.logs, self.per_fetch, self.fail_after = logs, per_fetch, fail_after
        self.log_end = {p: log[-1].offset + 1 for p, log in logs.items()} | (log_end or {})
        self.positions: dict[TopicPartition, int] = {}
        self.fetches = 0
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int
    ) -> dict[TopicPartition, list[Rec]]:
        if self.fetches == self.fail_after:
            raise ConnectionError("broker gone")
        self.fetches += 1
        out = {}
        for tp in tps:
            log = [r for r in self.logs[tp.partition] if r.offset >= self.positions[tp]]
            got = log[: self.per_fetch]
            if got:
                out[tp] = got
                more = log[self.per_fetch :]
                self.positions[tp] = more[0].offset if more else self.log_end[tp.partition]
        return out


def load(consumer: FakeConsumer, tables: dict[TP, Any], applied: dict[TP, int],
         ends: dict[TP, int], budget: float = 60.0, progress: list[TP] | None = None) -> int:
    seen = progress if progress is not None else []
    loader = ChangelogLoader(RouterSettings(), progress=seen.append)
    loader._consumer = lambda: consumer  # type: ignore[method-assign]
    appliers = {tp: functools.partial(apply_records, table) for tp, table in tables.items()}
    return asyncio.run(loader.load(appliers, applied, ends, budget))


def test_loader_reads_to_the_end_offsets_and_moves_faust_offsets() -> None:
    tp0, tp1, tp2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    # partition 0: compacted gaps; 1: a record written after the highwater faust took
    logs = {0: [Rec(o, b"k%d" % o, b"v") for o in (0, 3, 4, 9)],
            1: [Rec(o, b"j%d" % o, b"v") for o in range(6)],
            2: [Rec(0, b"x", b"v")]}
    table = Table()
    applied = {tp0: -1, tp1: 1, tp2: 0}  # faust's "last offset applied"
    ends = {tp0: 11, tp1: 5, tp2: 1}  # 11: the last batch of partition 0 ends on a marker
    consumer, progress = FakeConsumer(logs, per_fetch=2, log_end={0: 11}), []
    assert load(consumer, {tp0: table, tp1: table, tp2: table}, applied, ends,
                progress=progress) == 4 + 3
    assert progress == [tp0, tp1, tp0, tp1]  # each batch applied
    assert applied == {tp0: 10, tp1: 4, tp2: 0}
    assert set(table.data.data) == {b"k0", b"k3", b"k4", b"k9", b"j2", b"j3", b"j4"}


def test_a_failed_load_leaves_faust_exact_offsets_to_go_on_from() -> None:
    tp = TP(TOPIC, 0)
    logs = {0: [Rec(o, b"k%d" % o, b"v") for o in range(10)]}
    table, applied = Table(), {tp: -1}
    consumer = FakeConsumer(logs, per_fetch=3, fail_after=2)
    assert load(consumer, {tp: table}, applied, {tp: 10}) == 6
    assert applied == {tp: 5}
    assert len(table.data.data) == 6
    assert consumer.stopped
    budget_spent = {tp: -1}
    assert load(FakeConsumer(logs, per_fetch=3), {tp: Table()}, budget_spent, {tp: 10},
                budget=-1.0) == 0
    assert budget_spent == {tp: -1}


def test_faust_recovery_still_calls_the_hook_where_this_module_expects_it() -> None:
    """faust 0.15.3: highwaters, then `_build_offsets(..., "active")`, then the seek."""
    source = inspect.getsource(Recovery._restart_recovery.fun)  # a mode ServiceTask
    highwaters = source.index("self._build_highwaters")
    build = source.index("self._build_offsets")
    seek = source.index("self._seek_offsets")
    assert highwaters < build < seek
    assert '"active"' in source[build:seek]
    params = list(inspect.signature(Recovery._build_offsets).parameters)
    assert params == ["self", "consumer", "tps", "destination", "title"]
    assert "need_recovery()" in source[seek:]


def test_install_replaces_faust_recovery_before_start() -> None:
    app = faust.App("unit-install", broker="kafka://127.0.0.1:1", store="memory://")
    recovery = install_fast_recovery(app, RouterSettings())
    assert app.tables.recovery is recovery
    assert isinstance(recovery, FastRecovery)
    assert install_fast_recovery(app, RouterSettings()) is recovery


class Local:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.partition: dict[bytes, int] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def keys_by_partition(self, partitions: set[int]) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        for key, partition in self.partition.items():
            if partition in partitions and key in self.data:
                out.setdefault(partition, []).append(key)
        return out


async def _no_send(partition: int, ticket_id: str, now: float) -> None:
    return None


@pytest.mark.parametrize("kept", [False, True])
def test_index_entries_taken_while_loading_unless_the_store_changed_since(
    kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = Local()
    deadlines = Deadlines(local, _no_send)
    if kept:  # partition 1 already indexed: the loaded keys are refreshed
        asyncio.run(deadlines.on_recovered({1}))
    loaded = [(b"T-1", state("T-1", 100.0)), (b"T-2", state("T-2", 200.0)),
              (b"T-3", state("T-3", 300.0)), (b"T-3", None), (b"T-4", state("T-4", None))]
    for key, value in loaded:
        if value is None:
            local.data.pop(key, None)
        else:
            local.data[key], local.partition[key] = value, 1
    deadlines.changelog_loaded(1, loaded)
    changed = local.data[b"T-2"] = state("T-2", 250.0)  # written after the load: read again
    read_again: list[bytes] = []

    def parse(raw: bytes) -> tuple[float, str] | None:
        read_again.append(raw)
        return index_entry_from_json(raw)

    monkeypatch.setattr(lifecycle_deadlines, "index_entry_from_json", parse)
    asyncio.run(deadlines.on_recovered({1}))
    assert read_again == [changed]
    index = deadlines.index._partitions[1]
    assert {key: index.due_of(key) for key in ("T-1", "T-2", "T-3", "T-4")} == {
        "T-1": 100.0, "T-2": 250.0, "T-3": None, "T-4": None}
    assert deadlines.last_rebuild["changelog_records"] == len(loaded)
    assert deadlines.firing


def test_deadlines_fire_by_the_stage_clock_not_the_wall_clock() -> None:
    clock = FakeClock(datetime.fromtimestamp(1_000.0, UTC))
    sent: list[tuple[int, str, float]] = []

    async def send(partition: int, ticket_id: str, now: float, until: float | None) -> None:
        sent.append((partition, ticket_id, now))

    async def scenario() -> None:
        local = Local()
        deadlines = Deadlines(local, send, clock=clock)
        await deadlines.on_recovered({0})
        deadlines.update(0, "T-early", (900.0, "T-early"))
        deadlines.update(0, "T-later", (1_500.0, "T-later"))
        assert await deadlines.fire_due() == 1  # the wall clock is decades past both
        clock.advance(600)
        assert await deadlines.fire_due() == 1

    asyncio.run(scenario())
    assert sent == [(0, "T-early", 1_000.0), (0, "T-later", 1_600.0)]
