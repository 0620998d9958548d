"""In-memory index of due times: which tickets to look at on the next timer tick.

The durable truth is the per-ticket state in the table; this index is a cache rebuilt from it
on partition assignment. It holds one entry per key (the latest due time given for it): `add`
with a new time supersedes the old entry, which stays stored until its bucket is drained and
is skipped then (lazy cancellation). Storage is compacted when superseded entries outnumber
live ones, so memory stays within twice the live set.

Entries are kept in buckets of `BUCKET_SECONDS` of due time (a timing wheel without a fixed
horizon): `add` appends to a bucket, a heap orders the bucket numbers, and draining sorts one
bucket at a time. Against one heap of all entries this makes `add` O(1) and a pop a slice of
a sort, instead of O(log n) tuple comparisons scattered over memory each. A bulk load (rebuild,
compaction) goes into one heap instead, as fast to build as it gets in Python, and is moved
into buckets as their turn comes. A tick with nothing due reads two heads.

Callers still re-check the table before firing: the index may be stale, the table is not.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Final

_COMPACT_SLACK: Final = 1024  # superseded entries tolerated beyond the live count before compacting
# Wide enough that a bucket holds several entries (bucket overhead stays small per entry at
# realistic densities), narrow enough that sorting the current bucket each tick is cheap.
BUCKET_SECONDS: Final = 64

Entry = tuple[float, str]


def _bucket_of(due_ts: float) -> int:
    return int(due_ts // BUCKET_SECONDS)


class DeadlineIndex:
    __slots__ = ("_buckets", "_bulk", "_due_by_key", "_order", "_stored")

    def __init__(self) -> None:
        self._due_by_key: dict[str, float] = {}
        self._buckets: dict[int, list[Entry]] = {}  # bucket number -> entries, unsorted
        self._order: list[int] = []  # heap of the bucket numbers in `_buckets`
        self._bulk: list[Entry] = []  # heap of bulk-loaded entries not in a bucket yet
        self._stored = 0

    def __len__(self) -> int:
        return len(self._due_by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._due_by_key

    @property
    def stored_entries(self) -> int:
        """Entries held, superseded ones included (a gauge for memory use)."""
        return self._stored

    def due_of(self, key: str) -> float | None:
        return self._due_by_key.get(key)

    def next_due(self) -> float | None:
        """Earliest live due time (drops buckets holding only superseded entries)."""
        live, buckets, order, bulk = self._due_by_key, self._buckets, self._order, self._bulk
        while bulk and live.get(bulk[0][1]) != bulk[0][0]:
            heapq.heappop(bulk)
            self._stored -= 1
        loaded = bulk[0][0] if bulk else None
        while order:
            entries = buckets[order[0]]
            earliest = min((due for due, key in entries if live.get(key) == due), default=None)
            if earliest is not None:
                return earliest if loaded is None else min(earliest, loaded)
            del buckets[heapq.heappop(order)]
            self._stored -= len(entries)
        return loaded

    def add(self, due_ts: float, key: str) -> None:
        """Schedule `key` at `due_ts` (epoch seconds), replacing any earlier entry for it."""
        live = self._due_by_key
        if live.get(key) == due_ts:
            return
        live[key] = due_ts
        number = int(due_ts // BUCKET_SECONDS)
        bucket = self._buckets.get(number)
        if bucket is None:
            self._buckets[number] = [(due_ts, key)]
            heapq.heappush(self._order, number)
        else:
            bucket.append((due_ts, key))
        self._stored += 1
        if self._stored > 2 * len(live) + _COMPACT_SLACK:
            self._load(live)

    def discard(self, key: str) -> None:
        """Forget `key` (its stored entry is dropped lazily)."""
        self._due_by_key.pop(key, None)

    def pop_due(self, now_ts: float, limit: int | None = None) -> list[str]:
        """Keys due at or before `now_ts`, earliest first, removed from the index.

        `limit` bounds one tick's work; the rest stay for the next call.
        """
        live, buckets, order = self._due_by_key, self._buckets, self._order
        out: list[str] = []
        last = _bucket_of(now_ts)
        bulk = self._bulk
        if bulk and bulk[0][0] < (last + 1) * BUCKET_SECONDS:
            self._unload(last)
        room = len(live) if limit is None else limit
        while order and order[0] <= last and len(out) < room:
            entries = buckets[order[0]]
            entries.sort()  # (due, key): the order a heap of all entries would pop them in
            taken = 0
            for due, key in entries:
                if due > now_ts or len(out) >= room:
                    break
                taken += 1
                if live.get(key) == due:
                    del live[key]
                    out.append(key)
            self._stored -= taken
            if taken < len(entries):
                del entries[:taken]  # not due yet, or over the limit: stays for later
                break
            del buckets[heapq.heappop(order)]
        return out

    def rebuild(self, entries: Iterable[tuple[float, str] | None]) -> None:
        """Replace the contents with `entries` (None entries, i.e. nothing pending, skipped)."""
        live: dict[str, float] = {}
        for entry in entries:
            if entry is not None:
                live[entry[1]] = entry[0]
        self._due_by_key = live
        self._load(live)

    def _load(self, live: dict[str, float]) -> None:
        """Store exactly the live entries, as one bulk heap (rebuild and compaction)."""
        self._bulk = [(due, key) for key, due in live.items()]
        heapq.heapify(self._bulk)
        self._buckets = {}
        self._order = []
        self._stored = len(live)

    def _unload(self, last: int) -> None:
        """Move the bulk entries of buckets up to `last` into them."""
        bulk, buckets, order = self._bulk, self._buckets, self._order
        end = (last + 1) * BUCKET_SECONDS
        while bulk and bulk[0][0] < end:
            entry = heapq.heappop(bulk)
            number = _bucket_of(entry[0])
            bucket = buckets.get(number)
            if bucket is None:
                buckets[number] = [entry]
                heapq.heappush(order, number)
            else:
                bucket.append(entry)


class PartitionedDeadlineIndex:
    """One index per assigned table partition, so a revoked partition stops firing at once."""

    __slots__ = ("_partitions",)

    def __init__(self) -> None:
        self._partitions: dict[int, DeadlineIndex] = {}

    def __len__(self) -> int:
        return sum(len(index) for index in self._partitions.values())

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._partitions)

    def assign(self, partition: int, entries: Iterable[tuple[float, str] | None]) -> None:
        index = DeadlineIndex()
        index.rebuild(entries)
        self._partitions[partition] = index

    def revoke(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def add(self, partition: int, due_ts: float, key: str) -> None:
        """Ignored for a partition not assigned here (e.g. a standby replica)."""
        index = self._partitions.get(partition)
        if index is not None:
            index.add(due_ts, key)

    def discard(self, partition: int, key: str) -> None:
        index = self._partitions.get(partition)
        if index is not None:
            index.discard(key)

    def next_due(self) -> float | None:
        """Earliest live due time over every assigned partition."""
        dues = [due for index in self._partitions.values() if (due := index.next_due()) is not None]
        return min(dues) if dues else None

    def pop_due(self, now_ts: float, limit: int | None = None) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for partition, index in self._partitions.items():
            remaining = None if limit is None else limit - len(out)
            if remaining is not None and remaining <= 0:
                break
            out.extend((partition, key) for key in index.pop_due(now_ts, remaining))
        return out
