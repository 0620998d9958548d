"""Actions that arrive before their ticket: parked until its `routed` event, or refused.

The lifecycle agent reads `tickets.events` and `tickets.commands` (forwarded actions) as two
topics, so a reply can be read before the `opened` / `routed` event of its ticket, e.g. when
both have a backlog after an outage. Applying it then would start clocks for a ticket the
stage has not seen (under the default policy, from the action's time), and a typo'd ticket id
would start clocks that nothing ever stops. So an action for a ticket without lifecycle state
is parked in the `lifecycle-parked` table (same key and partition as the `lifecycle` table),
and so is a later one while some wait (the ticket's `opened` came, its `routed` not yet):

- the ticket's `routed` event (it carries the ticket, which a move publishes) applies its
  parked actions next, in arrival order;
- parked longer than `ttl_seconds` with still no ticket, they are refused to the dead-letter
  topic (`action_refused`, "unknown ticket") and forgotten;
- at most `max_per_ticket` wait per ticket; later ones are refused at once.

The stage's timer sweeps the parked table of its active partitions now and then and sends a
`due` command for each entry to settle (expired, or whose ticket exists after a crash
between storing a new state and applying its parked actions).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import orjson

from router.stages.contract import LocalData
from schemas.dead_letter import SourcePosition

PARK_TTL_SECONDS = 900.0
MAX_PARKED_PER_TICKET = 100
SWEEP_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ParkedAction:
    """A forwarded action command as it was read: where from, its value and headers."""

    topic: str  # logical
    partition: int
    offset: int
    value: bytes
    headers: dict[str, bytes]

    @property
    def source(self) -> SourcePosition:
        return SourcePosition(topic=self.topic, partition=self.partition, offset=self.offset)


@dataclass(frozen=True, slots=True)
class Parked:
    since: float  # epoch seconds when the first of them was parked
    actions: tuple[ParkedAction, ...]


def encode_parked(parked: Parked) -> bytes:
    # Bytes as latin-1 text, like the outbox (router.sla.outbox): lossless, JSON-safe.
    return orjson.dumps({
        "since": parked.since,
        "actions": [
            [a.topic, a.partition, a.offset, a.value.decode("latin-1"),
             [[name, value.decode("latin-1")] for name, value in a.headers.items()]]
            for a in parked.actions
        ],
    })


def decode_parked(raw: bytes) -> Parked:
    doc = orjson.loads(raw)
    return Parked(
        since=float(doc["since"]),
        actions=tuple(
            ParkedAction(topic, partition, offset, value.encode("latin-1"),
                         {name: text.encode("latin-1") for name, text in headers})
            for topic, partition, offset, value, headers in doc["actions"]
        ),
    )


class ParkingLot:
    """The parked table (written only from the lifecycle agent) and its local data."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        local: LocalData | None = None,
        ttl_seconds: float = PARK_TTL_SECONDS,
        max_per_ticket: int = MAX_PARKED_PER_TICKET,
    ) -> None:
        self.table = table
        self.local = local
        self.ttl_seconds = ttl_seconds
        self.max_per_ticket = max_per_ticket

    def __contains__(self, key: bytes) -> bool:
        return self.table.get(key) is not None

    def park(self, key: bytes, action: ParkedAction, now: float) -> bool:
        """Park `action` under its ticket; False when the ticket already has its fill."""
        raw = self.table.get(key)
        parked = decode_parked(raw) if raw is not None else Parked(now, ())
        if any(a.topic == action.topic and a.partition == action.partition
               and a.offset == action.offset for a in parked.actions):
            return True  # read again after a crash: parked already
        if len(parked.actions) >= self.max_per_ticket:
            return False
        self.table[key] = encode_parked(Parked(parked.since, (*parked.actions, action)))
        return True

    def peek(self, key: bytes) -> tuple[ParkedAction, ...]:
        """The ticket's parked actions, oldest first."""
        raw = self.table.get(key)
        return decode_parked(raw).actions if raw is not None else ()

    def drop(self, key: bytes) -> None:
        if self.table.get(key) is not None:
            del self.table[key]

    def expired(self, key: bytes, now: float) -> bool:
        raw = self.table.get(key)
        return raw is not None and now - decode_parked(raw).since >= self.ttl_seconds

    def to_settle(
        self, partitions: set[int], now: float, has_state: LocalData
    ) -> Iterator[tuple[int, str]]:
        """(partition, ticket id) of local entries that are expired or whose ticket exists."""
        if self.local is None:
            return
        for partition, keys in self.local.keys_by_partition(partitions).items():
            for key in keys:
                raw = self.local.get(key)
                if raw is None:
                    continue
                if has_state.get(key) is not None or now - decode_parked(raw).since >= (
                    self.ttl_seconds
                ):
                    yield partition, key.decode()
