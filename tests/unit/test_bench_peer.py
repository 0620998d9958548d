"""The benchmark's quixstreams peer does the engine's job: record for record, its per-record step
(`tests/bench/peer_routing.py`, no quixstreams needed) over a quixstreams-like State writes
what the engine's routing stage writes over its table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from router.default_policy import DefaultPolicy
from router.inbound import DEFAULT_MAX_RECORD_BYTES
from router.records import OutRecord
from router.stages.contract import InRecord
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.tickets import TicketState
from router.traffic import MarketplaceTraffic, TrafficRecord
from tests.bench.peer_routing import route_record, state_dumps, state_loads


class StoreLikeState:
    """quixstreams' State over a store: values go through the store's dumps and loads."""

    def __init__(self) -> None:
        self.stored: dict[bytes, bytes] = {}

    def get(self, key: bytes, default: Any = None) -> Any:
        raw = self.stored.get(state_dumps(key))
        return default if raw is None else state_loads(raw)

    def set(self, key: bytes, value: Any) -> None:
        self.stored[state_dumps(key)] = state_dumps(value)


def _mix() -> list[TrafficRecord]:
    records = MarketplaceTraffic("peer-vs-engine", malformed_ratio=0.05).take(300)
    valid = next(r for r in records if r.inbound_id)
    return [
        *records,
        valid,  # a connector's retry: same id in another record, adds nothing
        valid._replace(key=b"not-the-thread"),  # republished keyed by its thread
        valid._replace(key=None),
        valid._replace(value=b""),
    ]


def _engine_outputs(records: list[TrafficRecord]) -> list[list[tuple[Any, ...]]]:
    """What the engine's routing stage writes for each record, its table a dict."""
    processor = RoutingProcessor(
        {}, PolicyHolder(DefaultPolicy()), max_record_bytes=DEFAULT_MAX_RECORD_BYTES
    )
    return [
        [
            _summary(out)
            for out in processor.process(
                InRecord(f"channel.{r.channel}", 0, offset, r.key, r.value, 1.7e9),
                datetime.now(UTC),
            )
        ]
        for offset, r in enumerate(records)
    ]


def _summary(record: OutRecord) -> tuple[Any, ...]:
    """Everything but times (each side reads its own clock): topic, key, headers, CloudEvent
    id, type, subject, the queue and the ticket's inbound ids."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return (record.topic, record.key, record.headers, record.value)
    data = doc.get("data") or {}
    inbound = [m.get("inbound_id") for m in data.get("messages", [])] if "messages" in data else []
    return (
        record.topic,
        record.key,
        record.headers,
        doc.get("id"),
        doc.get("type"),
        doc.get("subject"),
        data.get("queue"),
        data.get("reason"),
        tuple(inbound),
    )


def test_the_peer_step_writes_what_the_engine_writes() -> None:
    records = _mix()
    state = StoreLikeState()
    peer = [
        [
            _summary(out)
            for out in route_record(
                f"channel.{r.channel}", 0, offset, r.key, r.value, 1_700_000_000_000, state
            )
        ]
        for offset, r in enumerate(records)
    ]
    engine = _engine_outputs(records)
    assert peer == engine
    kinds = {out[0].split(".")[0] for outs in peer for out in outs}
    assert kinds == {"queue", "tickets", "channel"}  # routed, dead-lettered and republished
    assert peer[-4] == []  # the retry


def test_ticket_state_survives_the_peer_store_codec() -> None:
    records = MarketplaceTraffic("codec").take(50)
    state = StoreLikeState()
    for offset, r in enumerate(records):
        route_record(f"channel.{r.channel}", 0, offset, r.key, r.value, None, state)
    assert state.stored
    for raw in state.stored.values():
        ticket = TicketState.from_bytes(state_loads(raw))
        assert state_loads(state_dumps(ticket.to_bytes())) == ticket.to_bytes()
