"""Backtests (`router simulate`): replay inbound records through the engine's own routing
processor, pure and offline, for a candidate ruleset and optionally a baseline.

Each ruleset runs a `router.stages.routing.RoutingProcessor` over an in-memory ticket table,
so a backtest has the engine's semantics by construction, not by copy: the same decoding and
dead letters (invalid JSON, schema violations, oversize records at the engine's
`max_record_bytes`, a channel/topic mismatch), threading by `thread_ref`, routing decided
once when a ticket opens with follow-ups joining the ticket on its queue, duplicate ids
adding nothing, and a record keyed by anything but its thread re-keyed and then routed (the
engine's re-published copy is read again at once).

What the backtest supplies is what a worker reads from Kafka: the vendor directory and buyer
history come from a context snapshot (`rules.inputs.Context`; its `orders` table has no
engine counterpart, since order facts come from the message); the decision clock is the
event's `time`, else the message's `sent_at`, else the record's timestamp, else
`rules.inputs.DEFAULT_NOW` (the engine uses the time it reads the record).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from router.routing import BuyerHistory, Decision, RoutingContext
from router.rules_policy import RulesetPolicy, decision_of
from router.stages.contract import InRecord
from router.stages.routing import PolicyHolder, RoutingProcessor
from router.tickets import BuyerLookup
from rules.compile import CompiledRuleset
from rules.inputs import DEFAULT_NOW, Context
from schemas.ticket import TICKET_ROUTED
from schemas.topics import CHANNELS

# The logical topic of a file line that names no channel: the engine's topic check is off.
INPUT_TOPIC = "input"
MAX_DEAD_LETTER_SAMPLES = 100
ROUTED = frozenset({"opened", "followup", "replayed"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the engine did with one inbound record."""

    outcome: str  # opened | followup | duplicate | rejected | replayed
    inbound_id: str | None
    ticket_id: str | None = None
    queue: str | None = None  # where the record's ticket was published (routed outcomes)
    priority: str | None = None
    rule_id: str | None = None
    reason: str | None = None  # dead-letter reason (rejected)
    error: str | None = None
    fallback: bool = False  # the ticket opened on a vendor route's fallback queue


class _Observed:
    """The ruleset policy, noting whether its last decision fell back (the engine's
    `Decision` does not say). Decides as `RulesetPolicy.decide`: evaluate, `decision_of`."""

    __slots__ = ("fell_back", "inner")

    def __init__(self, inner: RulesetPolicy) -> None:
        self.inner = inner
        self.fell_back = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return self.inner.version

    def decide(self, ctx: RoutingContext) -> Decision:
        res = self.inner.evaluate(ctx)
        self.fell_back = res.fallback is not None
        return decision_of(res)


def _buyer_lookup(context: Context) -> BuyerLookup:
    def lookup(buyer_id: str, _now: datetime) -> BuyerHistory | None:
        b = context.buyers.get(buyer_id)
        if b is None:
            return None
        return BuyerHistory(b.open_tickets, b.recent_tickets, b.lifetime_orders, b.vip)

    return lookup


class Lane:
    """One ruleset's replay: the engine's routing processor over its own ticket table."""

    def __init__(self, compiled: CompiledRuleset, context: Context, max_record_bytes: int):
        self.policy = _Observed(RulesetPolicy(compiled))
        self.table: dict[bytes, bytes] = {}
        self.processor = RoutingProcessor(
            self.table, PolicyHolder(self.policy), max_record_bytes=max_record_bytes,
            vendors=context.vendors.get, buyers=_buyer_lookup(context),
        )  # fmt: skip

    def run(self, record: InRecord, now: datetime) -> Outcome:
        counts = self.processor.counts
        for _ in range(2):  # a re-keyed record comes back keyed by its thread, once
            before = dict(counts)
            self.policy.fell_back = False
            out = self.processor.process(record, now)
            notes, self.processor.notes = self.processor.notes, []
            kind = next(k for k, n in counts.items() if n != before.get(k, 0))
            if kind == "rekeyed":
                record = record._replace(key=out[0].key)
                continue
            if kind == "duplicate":
                fields = notes[-1].fields
                return Outcome(kind, fields["inbound_id"], ticket_id=fields["ticket_id"])
            if kind == "rejected":
                data = orjson.loads(out[0].value)["data"]
                return Outcome(kind, _peek_id(record.value), reason=data["reason"],
                               error=data["error"])  # fmt: skip
            # routed: the queue record comes first (router.outputs.render)
            doc = orjson.loads(out[0].value)
            assert doc["type"] == TICKET_ROUTED, doc["type"]
            data = doc["data"]
            return Outcome(
                kind, data["messages"][-1]["inbound_id"], ticket_id=data["ticket_id"],
                queue=data["queue"], priority=data["priority"], rule_id=data["rule_id"],
                fallback=self.policy.fell_back and kind == "opened",
            )  # fmt: skip
        raise AssertionError("a re-keyed record was re-keyed again")


@dataclass(frozen=True, slots=True)
class Change:
    ticket: str
    event_id: str
    old_queue: str
    new_queue: str
    old_rule: str
    new_rule: str
    old_priority: str
    new_priority: str


@dataclass
class Distribution:
    """Per inbound record: outcomes; per routed message: the queue, priority and deciding rule
    of its ticket; per dead letter: its reason."""

    outcomes: Counter[str] = field(default_factory=Counter)
    queues: Counter[str] = field(default_factory=Counter)
    priorities: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0  # tickets opened on a vendor route's fallback queue

    def add(self, o: Outcome) -> None:
        self.outcomes[o.outcome] += 1
        if o.reason is not None:
            self.dead_letters[o.reason] += 1
        if o.queue is None or o.priority is None or o.rule_id is None:
            return
        self.queues[o.queue] += 1
        self.priorities[o.priority] += 1
        self.rules[o.rule_id] += 1
        self.fallbacks += o.fallback


@dataclass
class SimulationReport:
    ruleset: str
    baseline: str | None
    total: int = 0  # inbound records read
    candidate: Distribution = field(default_factory=Distribution)
    previous: Distribution | None = None
    dead_letter_samples: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    changes: list[Change] = field(default_factory=list)  # routed messages on another queue
    changed_tickets: set[str] = field(default_factory=set)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (old, new) queue
    priority_pairs: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def routed(self) -> int:
        return sum(self.candidate.queues.values())


def _peek(value: bytes | None) -> dict[str, Any] | None:
    """Best-effort look at a record for what a connector or Kafka would supply (topic, key,
    clock, id); the processor does the real decoding and rejects what does not fit."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _peek_id(value: bytes | None) -> str | None:
    doc = _peek(value)
    event_id = doc.get("id") if doc is not None else None
    return event_id if isinstance(event_id, str) else None


def _data(doc: dict[str, Any] | None) -> dict[str, Any]:
    data = doc.get("data") if doc is not None else None
    return data if isinstance(data, dict) else {}


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def decision_clock(value: bytes | None, timestamp: float | None = None) -> datetime:
    """The event's `time`, else `data.sent_at`, else the record's timestamp, else DEFAULT_NOW."""
    doc = _peek(value)
    found = _instant(doc.get("time") if doc else None) or _instant(_data(doc).get("sent_at"))
    if found is not None:
        return found
    if timestamp is not None:
        return datetime.fromtimestamp(timestamp, UTC)
    return DEFAULT_NOW


def file_record(line: bytes, offset: int) -> InRecord:
    """A line of a file of inbound CloudEvents as a connector would produce it: on its
    channel's topic, keyed by its thread (a line naming neither still goes to the engine,
    which dead-letters or re-keys it)."""
    data = _data(_peek(line))
    channel = data.get("channel")
    topic = next((t.name for c, t in CHANNELS.items() if c.value == channel), INPUT_TOPIC)
    key = None
    thread_ref = data.get("thread_ref")
    if isinstance(thread_ref, str):
        key = thread_ref.encode()
    return InRecord(topic, 0, offset, key, line)


class Backtest:
    """Feed records (or file lines) one at a time; read `.report` at any point."""

    def __init__(
        self,
        candidate: CompiledRuleset,
        baseline: CompiledRuleset | None = None,
        context: Context | None = None,
        *,
        max_record_bytes: int,
        on_outcome: Callable[[str, InRecord, Outcome, Outcome | None], None] | None = None,
    ) -> None:
        ctx = context or Context()
        self._new = Lane(candidate, ctx, max_record_bytes)
        self._old = Lane(baseline, ctx, max_record_bytes) if baseline is not None else None
        self._lines = 0
        self.on_outcome = on_outcome
        self.report = SimulationReport(
            ruleset=f"{candidate.name}@{candidate.version}",
            baseline=f"{baseline.name}@{baseline.version}" if baseline is not None else None,
            previous=Distribution() if baseline is not None else None,
        )

    def add_line(self, line: bytes, where: str) -> None:
        """One line of a file; blank lines are not records."""
        if not line.strip():
            return
        self._lines += 1
        self.add(file_record(line.rstrip(b"\r\n"), self._lines - 1), where)

    def add(self, record: InRecord, where: str) -> None:
        rep = self.report
        rep.total += 1
        now = decision_clock(record.value, record.timestamp)
        new = self._new.run(record, now)
        rep.candidate.add(new)
        if new.reason is not None and len(rep.dead_letter_samples) < MAX_DEAD_LETTER_SAMPLES:
            rep.dead_letter_samples.append((where, f"{new.reason}: {new.error}"))
        old = None
        if self._old is not None and rep.previous is not None:
            old = self._old.run(record, now)
            rep.previous.add(old)
            self._compare(old, new)
        if self.on_outcome is not None:
            self.on_outcome(where, record, new, old)

    def _compare(self, old: Outcome, new: Outcome) -> None:
        if old.queue is None or new.queue is None:
            return
        rep = self.report
        old_priority, new_priority = old.priority or "", new.priority or ""
        if old_priority != new_priority:
            rep.priority_pairs[(old_priority, new_priority)] += 1
        if old.queue != new.queue:
            rep.pairs[(old.queue, new.queue)] += 1
            rep.changed_tickets.add(new.ticket_id or "")
            rep.changes.append(Change(
                ticket=new.ticket_id or "", event_id=new.inbound_id or "",
                old_queue=old.queue, new_queue=new.queue, old_rule=old.rule_id or "",
                new_rule=new.rule_id or "", old_priority=old_priority, new_priority=new_priority,
            ))  # fmt: skip


def simulate(
    lines: Iterable[bytes],
    candidate: CompiledRuleset,
    baseline: CompiledRuleset | None = None,
    context: Context | None = None,
    *,
    max_record_bytes: int,
    on_progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> SimulationReport:
    """Replay the lines of a file of inbound CloudEvents; `on_progress(bytes)` after each."""
    bt = Backtest(candidate, baseline, context, max_record_bytes=max_record_bytes)
    for n, line in enumerate(lines, start=1):
        bt.add_line(line, f"{source}:{n}")
        if on_progress is not None:
            on_progress(len(line))
    return bt.report


def outcome_dict(
    where: str, record: InRecord, new: Outcome, old: Outcome | None
) -> dict[str, Any]:
    """One line of `router simulate --outcomes`: the record (where, topic, key) and what the
    engine does with it (with --baseline, under both rulesets)."""
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    out: dict[str, Any] = {"where": where, "topic": record.topic, "key": key, **asdict(new)}
    if old is not None:
        out["baseline"] = {"outcome": old.outcome, "queue": old.queue,
                           "priority": old.priority, "rule_id": old.rule_id}  # fmt: skip
    return out


def report_dict(rep: SimulationReport, limit: int = 50) -> dict[str, Any]:
    """The report as JSON-ready data (at most `limit` changed messages listed)."""
    cand = rep.candidate
    out: dict[str, Any] = {
        "ruleset": rep.ruleset,
        "baseline": rep.baseline,
        "total": rep.total,
        "routed": rep.routed,
        "outcomes": dict(cand.outcomes),
        "dead_letters": dict(cand.dead_letters),
        "queues": dict(cand.queues),
        "priorities": dict(cand.priorities),
        "rules": dict(cand.rules),
        "fallbacks": cand.fallbacks,
    }
    if rep.previous is not None:
        out["baseline_queues"] = dict(rep.previous.queues)
        out["baseline_priorities"] = dict(rep.previous.priorities)
        out["changed"] = len(rep.changes)
        out["changed_tickets"] = len(rep.changed_tickets)
        out["pairs"] = [{"from": a, "to": b, "count": n} for (a, b), n in rep.pairs.most_common()]
        out["priority_pairs"] = [
            {"from": a, "to": b, "count": n} for (a, b), n in rep.priority_pairs.most_common()
        ]
        out["changes"] = [asdict(c) for c in rep.changes[:limit]]
    return out
