"""What the lifecycle table stores per ticket: the state, and the outputs not yet safe.

A step's outputs (`sla.events`, `tickets.events`, queues) and the table's changelog record
live on different partitions, so a crash can leave either durable without the other. Input
offsets are committed only after both are, so the input is read again; the state then tells
whether it was applied. When it was, the outputs it produced are re-sent from the `pending`
list kept next to the state, with their original ids. An entry is dropped at the next write
of the ticket once its input offset is committed (the outputs are durable by then).

Stored bytes: `encode_state(state)`, then, only when outputs are pending, a newline and a JSON
list of `[source, [[topic, key, value, [[header, value], ...]], ...]]` (bytes as latin-1
text, exact). Compact JSON never holds a raw newline, so the state part is found by splitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from router.records import OutRecord

SEPARATOR = b"\n"
# A bound for pathological cases; in practice an entry lives for one commit interval.
MAX_PENDING = 32


@dataclass(frozen=True, slots=True)
class Pending:
    """Records produced by the input read at `source` (`topic:partition:offset`, logical)."""

    source: str
    records: tuple[OutRecord, ...]


def source_key(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def parse_source_key(source: str) -> tuple[str, int, int]:
    topic, partition, offset = source.rsplit(":", 2)
    return topic, int(partition), int(offset)


def state_part(raw: bytes) -> bytes:
    """The encoded state alone (what `index_entry_from_json` and `decode_state` read)."""
    return raw.partition(SEPARATOR)[0]


def split_stored(raw: bytes) -> tuple[bytes, list[Pending]]:
    state, _, rest = raw.partition(SEPARATOR)
    if not rest:
        return state, []
    pending = [
        Pending(
            source,
            tuple(
                OutRecord(
                    topic,
                    None if key is None else key.encode("latin-1"),
                    value.encode("latin-1"),
                    tuple((name, text.encode("latin-1")) for name, text in headers),
                )
                for topic, key, value, headers in records
            ),
        )
        for source, records in orjson.loads(rest)
    ]
    return state, pending


def join_stored(state: bytes, pending: Sequence[Pending]) -> bytes:
    if not pending:
        return state
    document = [
        [
            entry.source,
            [
                [
                    r.topic,
                    None if r.key is None else r.key.decode("latin-1"),
                    r.value.decode("latin-1"),
                    [[name, value.decode("latin-1")] for name, value in r.headers],
                ]
                for r in entry.records
            ],
        ]
        for entry in pending
    ]
    return state + SEPARATOR + orjson.dumps(document)


def find_pending(pending: Sequence[Pending], source: str) -> Pending | None:
    for entry in pending:
        if entry.source == source:
            return entry
    return None


def prune(
    pending: Sequence[Pending], committed: Callable[[str, int], int | None]
) -> list[Pending]:
    """Keep the entries whose input is not yet committed (`committed(topic, partition)` is the
    group's committed offset: the next offset to read, None when unknown)."""
    kept = []
    for entry in pending:
        topic, partition, offset = parse_source_key(entry.source)
        done = committed(topic, partition)
        if done is None or offset >= done:
            kept.append(entry)
    return kept


def open_stored(
    raw: bytes | None, position: str
) -> tuple[bytes | None, list[Pending], Pending | None]:
    """A key's stored value read for the input at `position`: the encoded state, the pending
    entries, and the entry of that very input when it was applied before (a replay)."""
    state, pending = split_stored(raw) if raw is not None else (None, [])
    return state, pending, replay_of(state, pending, position)


def replay_of(state: bytes | None, pending: Sequence[Pending], position: str) -> Pending | None:
    """The pending entry of the input at `position`, when a stored state says it was applied."""
    return find_pending(pending, position) if pending and state is not None else None


def next_stored(
    state: bytes,
    pending: Sequence[Pending],
    position: str,
    records: Sequence[OutRecord],
    committed: Callable[[str, int], int | None],
) -> bytes:
    """The value to store after the input at `position` produced `records`: the new state,
    the entries not yet committed, and this input's."""
    return join_stored(state, next_pending(pending, position, records, committed))


def next_pending(
    pending: Sequence[Pending],
    position: str,
    records: Sequence[OutRecord],
    committed: Callable[[str, int], int | None],
) -> list[Pending]:
    """The entries to store after the input at `position` produced `records`."""
    kept = prune(pending, committed)
    if records:
        kept.append(Pending(position, tuple(records)))
    return kept[-MAX_PENDING:]
