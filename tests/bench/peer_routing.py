"""The quixstreams peer's per-record step, kept free of quixstreams so that a unit test in the
engine's venv can check it (`tests/unit/test_bench_peer.py`).

It is the engine's own routing processor (`router.stages.routing.RoutingProcessor`, the pure
core the engine's routing stage runs), with the peer's state (quixstreams `State`, keyed by
thread) as its ticket table and the policy the engine worker runs without `--rules`. Not
here: lifecycle re-routes, the vendor directory and buyer history.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from router.default_policy import DefaultPolicy
from router.inbound import DEFAULT_MAX_RECORD_BYTES
from router.records import OutRecord
from router.stages.contract import InRecord
from router.stages.routing import PolicyHolder, RoutingProcessor

POLICY = DefaultPolicy()  # what `python -m router worker` decides with, given no ruleset


class TicketTable(Protocol):
    """The part of quixstreams' `State` the step uses (values: `TicketState.to_bytes()`)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...

    def set(self, key: bytes, value: Any) -> None: ...


class StateTable(MutableMapping[bytes, bytes]):
    """A quixstreams `State` as the processor's table (it only gets and sets)."""

    def __init__(self, state: TicketTable) -> None:
        self.state = state

    def __getitem__(self, key: bytes) -> bytes:
        value = self.state.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.state.set(key, value)

    def __delitem__(self, key: bytes) -> None:
        raise NotImplementedError("the routing stage never deletes a ticket")

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError("quixstreams' State is not iterable")

    def __len__(self) -> int:
        raise NotImplementedError("quixstreams' State is not sized")


def state_dumps(value: Any) -> bytes:
    """The store's encoder. Ticket states are kept as the bytes `TicketState.to_bytes` gives,
    as the engine's table keeps them; quixstreams' default JSON-encodes values (and refuses
    bytes). Anything else (the state prefix of a record without a key) as JSON."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


def state_loads(raw: bytes) -> bytes:
    """The store's decoder: the bytes as stored; `TicketState.from_bytes` reads them."""
    return raw


def route_record(
    logical: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    state: TicketTable,
) -> list[OutRecord]:
    """One channel record -> the records it produces, on logical topics."""
    processor = RoutingProcessor(
        StateTable(state), PolicyHolder(POLICY), max_record_bytes=DEFAULT_MAX_RECORD_BYTES
    )
    timestamp = timestamp_ms / 1000 if timestamp_ms else None
    record = InRecord(logical, partition, offset, key, value, timestamp)
    return processor.process(record, datetime.now(UTC))
