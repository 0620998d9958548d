"""The quixstreams peer's per-record step, kept free of quixstreams so that a unit test in the
engine's venv can hold it to what the engine writes (`tests/unit/test_bench_peer.py`).

What `streams.processor.InboundProcessor.handle` does for a channel record, on the same pure
core (`router.inbound`, `router.tickets`, `router.outputs`) and the policy the engine worker
runs without `--rules`, with the peer's state (quixstreams `State`, keyed by thread) as the
ticket table. Not here: lifecycle re-routes, the vendor directory and buyer history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from router.default_policy import DefaultPolicy
from router.inbound import CHANNEL_TOPICS, Rejected, dead_letter, parse_inbound, source_position
from router.outputs import render
from router.records import OutRecord
from router.tickets import Duplicate, Rekey, TicketState, state_key, thread_message
from schemas.dead_letter import RejectReason, SourcePosition

POLICY = DefaultPolicy()  # what `python -m router worker` decides with, given no ruleset


class TicketTable(Protocol):
    """The part of quixstreams' `State` the step uses (values: `TicketState.to_bytes()`)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...

    def set(self, key: bytes, value: Any) -> None: ...


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
    """One channel record -> the records it produces, on logical topics (a bug dead-letters
    the record and processing goes on, as in the engine)."""
    now = datetime.now(UTC)
    timestamp = timestamp_ms / 1000 if timestamp_ms else None
    source = source_position(logical, partition, offset, timestamp)
    try:
        return thread(logical, source, key, value, now, state)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        return [
            dead_letter(RejectReason.PROCESSING_ERROR, error, [], source, key, value or b"", now)
        ]


def thread(
    logical: str,
    source: SourcePosition,
    key: bytes | None,
    value: bytes | None,
    now: datetime,
    state: TicketTable,
) -> list[OutRecord]:
    """Decode, thread into the ticket, route a new one, render (`InboundProcessor._handle`)."""
    parsed = parse_inbound(value, key, source, now, expected_channel=CHANNEL_TOPICS.get(logical))
    if isinstance(parsed, Rejected):
        return [parsed.record]
    msg = parsed.data
    skey = state_key(msg.channel, msg.thread_ref)
    raw_state = state.get(skey)
    ticket = TicketState.from_bytes(raw_state) if raw_state is not None else None
    result = thread_message(parsed, key, source, ticket, POLICY, now)
    if isinstance(result, Rekey):  # republished keyed by thread, routed when it comes back
        assert value is not None  # parse_inbound rejected empty values
        return [OutRecord(logical, result.key, value)]
    if isinstance(result, Duplicate):  # a connector sent the same id again: nothing to add
        return []
    if not result.replayed:
        state.set(skey, result.state.to_bytes())
    return render(result, parsed.id, now)
