"""Runs a stage processor a batch of records at a time, on a faust stream (`install_stage`)
or on a plain consumer group (`streams.stages.direct`).

Per batch: each record goes through the processor in order (its reads see the batch's own
writes), then every output is handed to the producer, then each table key written in the
batch is stored and sent to the changelog once, with the last value. Nothing is awaited per
delivery: the runtime flushes the producer before it commits the batch's input offsets, so a
crash before the commit replays the batch (outputs come first, so a replay finds what it needs).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import structlog

from router.clock import Clock
from router.records import OutRecord
from router.stages.contract import NO_HEADERS, InRecord, Note, Processor
from streams.kafka.changelog_recovery import store_records
from streams.kafka.emit import Emitter
from streams.kafka.faust_internals import memory_store
from streams.stages.progress import input_progress

log = structlog.get_logger("router.stage")



class BatchTable(MutableMapping[bytes, bytes]):
    """A table's local data (raw bytes: faust's `memory://` store, or plain dicts) seen
    through one batch's pending writes; `flush` applies them to the store and its changelog.
    `owner` maps each key to its partition: what a revocation drops."""

    def __init__(
        self, data: MutableMapping[bytes, bytes], owner: MutableMapping[bytes, int], changelog: str
    ) -> None:
        self._data, self._owner, self.changelog = data, owner, changelog
        self._pending: dict[bytes, tuple[bytes | None, int]] = {}
        self.partition = 0  # of the record being processed: its writes go to that partition
        # partition -> the changelog end offset the data matches: set by a whole load, moved
        # one per record written (the direct runtime keeps a partition handed back to it when
        # its changelog still ends there: no other worker wrote it meanwhile)
        self.ends: dict[int, int] = {}

    @classmethod
    def over(cls, table: Any) -> BatchTable:
        """Over a faust table: its store's dicts and its changelog topic."""
        data, owner = memory_store(table)
        return cls(data, owner, table.changelog_topic.get_topic_name())

    def load(self, partition: int, records: Sequence[Any]) -> None:
        """Changelog records of one partition (aiokafka's, in offset order) into the store."""
        store_records(self._data, self._owner, partition, records)

    def drop_partitions(self, partitions: Collection[int]) -> int:
        """Forget the stored keys of these partitions (no longer this worker's); how many."""
        owner = self._owner
        gone = [key for key, partition in owner.items() if partition in partitions]
        for key in gone:
            self._data.pop(key, None)
            del owner[key]
        for partition in partitions:
            self.ends.pop(partition, None)
        return len(gone)

    def get(self, key: bytes, default: Any = None) -> Any:
        pending = self._pending.get(key)
        if pending is not None:
            return pending[0] if pending[0] is not None else default
        return self._data.get(key, default)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[key] = (value, self.partition)

    def __delitem__(self, key: bytes) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._pending[key] = (None, self.partition)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        for key in list(self._data):
            if key not in self._pending:
                yield key
        for key, (value, _) in list(self._pending.items()):
            if value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def discard(self) -> None:
        """Forget the writes since the last flush."""
        self._pending = {}

    async def flush(self, emitter: Emitter) -> None:
        """Store and log each key written since the last flush."""
        pending, self._pending = self._pending, {}
        data, owner, ends = self._data, self._owner, self.ends
        for key, (value, partition) in pending.items():
            if value is None:
                data.pop(key, None)
                owner.pop(key, None)
            else:
                data[key] = value
                owner[key] = partition
            await emitter.send_raw(self.changelog, key, value, partition)
            if partition in ends:
                ends[partition] += 1


class StageRunner:
    """A processor, its tables and the one emitter: `run` processes one batch of events."""

    def __init__(
        self,
        processor: Processor,
        tables: Sequence[BatchTable],
        emitter: Emitter,
        clock: Clock,
        logical: Any,  # physical topic name -> logical (settings.logical)
        *,
        with_headers: bool = False,
    ) -> None:
        self.processor = processor
        self.tables = tables
        self.emitter = emitter
        self.clock = clock
        self._logical = logical
        self._with_headers = with_headers

    async def run(self, events: Sequence[Any]) -> None:
        """faust events in (their `.message`; timestamps in seconds)."""
        await self.run_messages([event.message for event in events], 1.0)

    async def run_messages(self, messages: Iterable[Any], seconds_per_unit: float) -> None:
        """Consumed messages in (faust's or aiokafka's: topic, partition, offset, key, value,
        timestamp in units of `seconds_per_unit`, headers), outputs and table writes out."""
        await self.send(self.process_messages(messages, seconds_per_unit))

    def process_messages(self, messages: Iterable[Any], seconds_per_unit: float) -> list[OutRecord]:
        """The processor over the messages: their outputs; the tables' writes stay pending
        until `send` (or `discard`)."""
        out: list[OutRecord] = []
        process, tables, now = self.processor.process, self.tables, self.clock.now
        logical, with_headers = self._logical, self._with_headers
        for m in messages:
            for table in tables:
                table.partition = m.partition
            stamp = m.timestamp
            record = InRecord(
                logical(m.topic), m.partition, m.offset, m.key, m.value,
                None if stamp is None else stamp * seconds_per_unit,
                headers_of(m.headers) if with_headers else NO_HEADERS,
            )  # fmt: skip
            out.extend(process(record, now()))
        return out

    async def send(self, out: list[OutRecord]) -> None:
        """The outputs, then the tables' pending writes (stored and logged)."""
        await self.emitter.emit(out)  # first: a replay finds these pending if the state is stored
        for table in self.tables:
            await table.flush(self.emitter)
        write_notes(self.processor.notes)

    def discard(self) -> None:
        """Forget a processed batch's table writes and notes (its outputs are the caller's to
        drop): the tables read as before it, and processing it again notes it again."""
        for table in self.tables:
            table.discard()
        self.processor.notes.clear()


def install_stage(
    app: Any, topic: Any, name: str, runner: StageRunner, max_records: int, max_wait_s: float
) -> None:
    """Run `runner` as the faust agent `name` on `topic`, a batch of events at a time."""
    progress = input_progress(app)

    async def stage(stream: Any) -> None:
        async for events in stream.take_events(max_records, max_wait_s):
            await runner.run(events)
            progress.saw(events)

    app.agent(topic, name=name)(stage)


def write_notes(notes: list[Note]) -> None:
    """Log what a processor noted, and forget it."""
    if not notes:
        return
    for note in notes:
        getattr(log, note.level)(note.event, **note.fields)
    notes.clear()


def headers_of(headers: Any) -> Mapping[str, bytes]:
    """faust's message headers (a list of pairs, or a mapping) as a mapping."""
    if not headers:
        return NO_HEADERS
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name): bytes(value) for name, value in items if value is not None}
