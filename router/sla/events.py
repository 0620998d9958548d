"""Builders of the records the lifecycle publishes, and their replay-stable ids."""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from typing import Final, NamedTuple

from router.sla import clocks
from router.sla.clocks import MetricClock
from router.sla.state import (
    LifecycleState,
    SlaEventOut,
    SlaRecord,
    TicketEventFields,
    TicketEventOut,
)
from schemas.sla import SlaEventKind, SlaMetric
from schemas.ticket import Priority, TicketEventKind

# Enum members read per call, as Final constants: compiled, `SlaMetric.RESOLUTION` is an
# attribute lookup on the enum class each time (~140 ns); a Final constant is a C static.
_BREACHED: Final = SlaEventKind.BREACHED
_MET: Final = SlaEventKind.MET
_ROUTED: Final = TicketEventKind.ROUTED
_WARNING: Final = SlaEventKind.WARNING

# `actor` of the `routed` events this stage emits; it skips them when they come back.
LIFECYCLE_ACTOR: Final = "lifecycle"

# The context of an SLA event: (policy, queue, priority) of the ticket when it fired, before
# any escalation action. A plain tuple: built on every firing.
SlaContext = tuple[str, str | None, Priority]


def context_of(state: LifecycleState) -> SlaContext:
    return (state.policy, state.queue, state.priority)


class _MarkerFacts(NamedTuple):
    kind: SlaEventKind
    level: int
    id_kind: str  # how the event id names the kind and level
    id_level: str


def _facts(marker: str) -> _MarkerFacts:
    level = clocks.marker_level(marker)
    kind = {clocks.WARNING: _WARNING, clocks.MET: _MET}.get(
        marker, _BREACHED
    )
    id_kind = "breached" if marker.startswith("breached:") else marker
    return _MarkerFacts(kind, level, id_kind, str(level))


METRIC_NAMES: Final = {m: m.value for m in SlaMetric}
_FACTS: Final = {
    m: _facts(m) for m in (clocks.WARNING, clocks.MET, *map(clocks.breach_marker, range(17)))
}


def _facts_of(marker: str) -> _MarkerFacts:
    facts = _FACTS.get(marker)
    return _facts(marker) if facts is None else facts


def is_late(fired_us: int, due_us: int, grace_seconds: float) -> bool:
    """`fired_at - due_at` beyond the policy file's grace (both given in epoch us)."""
    # Same float as (fired_at - due_at).total_seconds(): microseconds over 10**6.
    return (fired_us - due_us) / 1_000_000 > grace_seconds


# `router.ids.derive_id` of the same parts (a unit test holds them equal), cheaper: the hasher
# is copied from a template rather than built from keyword arguments, and the parts after the
# ticket id of an SLA event id are joined once per (metric, cycle, marker).
_HASHER: Final = hashlib.blake2b(digest_size=16)
# marker -> metric -> cycle -> suffix: nested, as a (metric, cycle, marker) key would cost a
# tuple and its hash per firing
_SLA_ID_SUFFIXES: Final[dict[str, dict[SlaMetric, dict[int, bytes]]]] = {}
_CYCLES_CACHED: Final = 64  # per (marker, metric): later cycles (many messages) are rare


# The hasher's methods taken once: compiled, `hasher.copy()` looks the name up on every call.
_COPY: Final = type(_HASHER).copy
_UPDATE: Final = type(_HASHER).update
_DIGEST: Final = type(_HASHER).digest
_HEXDIGEST: Final = type(_HASHER).hexdigest
# The hex of each byte value, and the same followed by the dash (after bytes 4, 6, 8 and 10)
_HEX: Final = tuple([f"{b:02x}" for b in range(256)])
_HEX_DASH: Final = tuple([f"{b:02x}-" for b in range(256)])


def _uuid_text(data: bytes) -> str:
    hasher = _COPY(_HASHER)
    _UPDATE(hasher, data)
    d: bytes = _DIGEST(hasher)
    h, s = _HEX, _HEX_DASH
    # Compiled, byte reads and table picks are native: cheaper than hexdigest() cut in 5
    # (and 16 parts, the dashes in the table, build faster than 20)
    return (
        f"{h[d[0]]}{h[d[1]]}{h[d[2]]}{s[d[3]]}{h[d[4]]}{s[d[5]]}{h[d[6]]}{s[d[7]]}"
        f"{h[d[8]]}{s[d[9]]}{h[d[10]]}{h[d[11]]}{h[d[12]]}{h[d[13]]}{h[d[14]]}{h[d[15]]}"
    )


def _uuid_text_interpreted(data: bytes) -> str:
    hasher = _COPY(_HASHER)
    _UPDATE(hasher, data)
    h: str = _HEXDIGEST(hasher)
    return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


if __file__.endswith(".py"):  # interpreted, 32 subscripts cost more than 5 slices
    _uuid_text = _uuid_text_interpreted


def _sla_id_suffix(metric: SlaMetric, cycle: int, marker: str) -> bytes:
    facts = _facts_of(marker)
    parts = ("", "sla", METRIC_NAMES[metric], str(cycle), facts.id_kind, facts.id_level)
    suffix = "\x1f".join(parts).encode()
    by_cycle = _SLA_ID_SUFFIXES.setdefault(marker, {}).setdefault(metric, {})
    if len(by_cycle) < _CYCLES_CACHED:
        by_cycle[cycle] = suffix
    return suffix


def sla_event_id(ticket_id: str, clock: MetricClock, marker: str) -> str:
    """The same (ticket, metric, cycle, kind, level) always yields the same record id."""
    suffix = None
    by_metric = _SLA_ID_SUFFIXES.get(marker)
    if by_metric is not None:
        by_cycle = by_metric.get(clock.metric)
        if by_cycle is not None:
            suffix = by_cycle.get(clock.cycle)
    if suffix is None:
        suffix = _sla_id_suffix(clock.metric, clock.cycle, marker)
    return _uuid_text(ticket_id.encode() + suffix)


def output_id(ticket_id: str, cause: str, what: str) -> str:
    """Id of a record caused by an input or a firing (`cause`): stable across replays."""
    return _uuid_text(f"{ticket_id}\x1f{cause}\x1f{what}".encode())




def sla_event_out(
    event_id: str,
    ticket_id: str,
    clock: MetricClock,
    marker: str,
    context: SlaContext,
    deadline_us: int,
    due_us: int,
    due_tz: tzinfo | None,  # None: UTC
    fired_at: datetime,
    elapsed: float,
    action_taken: str,
    late: bool,
    new_priority: Priority | None = None,
    new_queue: str | None = None,
) -> SlaEventOut:
    """The record of `marker` firing on `clock`: what it reports beyond clock and context."""
    facts = _facts_of(marker)
    policy, queue, priority = context
    record = SlaRecord(
        ticket_id, facts.kind, policy, clock.metric, facts.level, clock.cycle, deadline_us,
        due_us, due_tz, fired_at, late, queue, priority, action_taken, new_priority, new_queue,
        clock.target, 0.0 if elapsed < 0.0 else elapsed,  # max(elapsed, 0.0)
    )
    return SlaEventOut(event_id, record)


def ticket_event_out(
    state: LifecycleState,
    kind: TicketEventKind,
    at: datetime,
    *,
    event_id: str,
    actor: str | None,
    sender_role: str | None = None,
) -> TicketEventOut:
    """replied / resolved / reopened; `routed` (queue or priority change) carries the ticket."""
    routed = kind is _ROUTED
    fields = TicketEventFields(
        state.ticket_id,
        kind,
        at,
        state.queue,
        LIFECYCLE_ACTOR if routed else actor,  # actor
        sender_role,
        state.priority,
        state.policy,  # sla_policy
        state.snapshot if routed else None,  # ticket
    )
    return TicketEventOut(event_id, fields=fields)
