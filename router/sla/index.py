"""In-memory index of due times: which tickets to look at on the next timer tick.

The durable truth is the per-ticket state in the table; this index is a cache rebuilt from it
on partition assignment. It holds one entry per key (the latest due time given for it): `add`
with a new time supersedes the old entry, which stays in the heap until it surfaces and is
skipped (lazy cancellation). The heap is compacted when superseded entries outnumber live
ones, so memory stays within twice the live set. A tick with nothing due reads one heap slot.

Callers still re-check the table before firing: the index may be stale, the table is not.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

_COMPACT_SLACK = 1024  # superseded entries tolerated beyond the live count before compacting


class DeadlineIndex:
    __slots__ = ("_due_by_key", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due_by_key: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due_by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._due_by_key

    @property
    def stored_entries(self) -> int:
        """Heap entries held, superseded ones included (a gauge for memory use)."""
        return len(self._heap)

    def due_of(self, key: str) -> float | None:
        return self._due_by_key.get(key)

    def next_due(self) -> float | None:
        """Earliest live due time (drops superseded entries it finds on top)."""
        heap, live = self._heap, self._due_by_key
        while heap:
            due, key = heap[0]
            if live.get(key) == due:
                return due
            heapq.heappop(heap)
        return None

    def add(self, due_ts: float, key: str) -> None:
        """Schedule `key` at `due_ts` (epoch seconds), replacing any earlier entry for it."""
        if self._due_by_key.get(key) == due_ts:
            return
        self._due_by_key[key] = due_ts
        heapq.heappush(self._heap, (due_ts, key))
        if len(self._heap) > 2 * len(self._due_by_key) + _COMPACT_SLACK:
            self._compact()

    def discard(self, key: str) -> None:
        """Forget `key` (its heap entry is dropped lazily)."""
        self._due_by_key.pop(key, None)

    def pop_due(self, now_ts: float, limit: int | None = None) -> list[str]:
        """Keys due at or before `now_ts`, earliest first, removed from the index.

        `limit` bounds one tick's work; the rest stay for the next call.
        """
        heap, live = self._heap, self._due_by_key
        out: list[str] = []
        pop = heapq.heappop
        while heap and heap[0][0] <= now_ts:
            if limit is not None and len(out) >= limit:
                break
            due, key = pop(heap)
            if live.get(key) == due:
                del live[key]
                out.append(key)
        return out

    def rebuild(self, entries: Iterable[tuple[float, str] | None]) -> None:
        """Replace the contents with `entries` (None entries, i.e. nothing pending, skipped)."""
        live: dict[str, float] = {}
        for entry in entries:
            if entry is not None:
                live[entry[1]] = entry[0]
        self._due_by_key = live
        self._heap = [(due, key) for key, due in live.items()]
        heapq.heapify(self._heap)

    def _compact(self) -> None:
        self._heap = [(due, key) for key, due in self._due_by_key.items()]
        heapq.heapify(self._heap)


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
