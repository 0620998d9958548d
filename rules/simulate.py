"""Backtesting: replay inbound messages through a ruleset (and a baseline), pure and offline.

Messages are threaded into tickets by `thread_ref`, in input order, so that ticket facts
(message count, channel mix, age, current queue, priority and tags) evolve as they would
in the engine; each ruleset keeps its own ticket history. The clock of each decision is
the event's `time` (else the message's `sent_at`). Lines that are not inbound events are
counted as skipped with a reason, never fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from rules.compile import CompiledRuleset
from rules.facts import TicketInfo
from rules.inputs import DEFAULT_NOW, Context
from rules.result import RuleResult
from schemas.message import MESSAGE_RECEIVED, InboundEvent
from schemas.ticket import Priority

MAX_SKIPPED_KEPT = 100


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
    queues: Counter[str] = field(default_factory=Counter)
    priorities: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0

    def add(self, res: RuleResult) -> None:
        self.queues[res.queue] += 1
        self.priorities[res.priority.value] += 1
        self.rules[res.rule_id] += 1
        self.fallbacks += res.fallback is not None


@dataclass
class SimulationReport:
    ruleset: str
    baseline: str | None
    total: int = 0
    skipped: int = 0
    skipped_samples: list[tuple[str, str]] = field(default_factory=list)
    candidate: Distribution = field(default_factory=Distribution)
    previous: Distribution | None = None
    changes: list[Change] = field(default_factory=list)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (old, new) queue
    priority_pairs: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class _Ticket:
    opened_at: datetime
    count: int = 0
    channels: frozenset[str] = frozenset()
    queue: str | None = None
    priority: Priority | None = None
    tags: tuple[str, ...] = ()


class _Replayer:
    """One ruleset's view of the replay: its own ticket states."""

    def __init__(self, compiled: CompiledRuleset, context: Context) -> None:
        self.compiled = compiled
        self.context = context
        self.tickets: dict[str, _Ticket] = {}

    def decide(self, event: InboundEvent, now: datetime) -> RuleResult:
        msg = event.data
        key = msg.thread_ref
        state = self.tickets.get(key)
        if state is None:
            state = self.tickets[key] = _Ticket(opened_at=now)
        state.count += 1
        state.channels = state.channels | {msg.channel.value}
        age = max(0.0, (now - state.opened_at).total_seconds())
        ticket = TicketInfo(
            ticket_id=key,
            is_new=state.count == 1,
            message_count=state.count,
            channels=state.channels,
            opened_at=state.opened_at,
            age_seconds=age,
            queue=state.queue,
            priority=state.priority,
            tags=state.tags,
        )
        res = self.compiled.evaluate(self.context.input_for(msg, now, ticket))
        state.queue, state.priority, state.tags = res.queue, res.priority, res.tags
        return res


class Backtest:
    """Feed events (or JSON lines) one at a time; read `.report` at any point."""

    def __init__(
        self,
        candidate: CompiledRuleset,
        baseline: CompiledRuleset | None = None,
        context: Context | None = None,
    ) -> None:
        ctx = context or Context()
        self._new = _Replayer(candidate, ctx)
        self._old = _Replayer(baseline, ctx) if baseline is not None else None
        self.report = SimulationReport(
            ruleset=f"{candidate.name}@{candidate.version}",
            baseline=f"{baseline.name}@{baseline.version}" if baseline is not None else None,
            previous=Distribution() if baseline is not None else None,
        )

    def skip(self, where: str, reason: str) -> None:
        self.report.skipped += 1
        if len(self.report.skipped_samples) < MAX_SKIPPED_KEPT:
            self.report.skipped_samples.append((where, reason))

    def add_line(self, line: bytes | str, where: str) -> None:
        if not line.strip():
            return
        try:
            event = InboundEvent.model_validate(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            self.skip(where, f"invalid JSON: {exc}")
            return
        except ValidationError as exc:
            err = exc.errors()[0]
            self.skip(
                where, f"not an inbound event: {'.'.join(map(str, err['loc']))}: {err['msg']}"
            )
            return
        self.add_event(event, where)

    def add_event(self, event: InboundEvent, where: str = "") -> None:
        if event.type != MESSAGE_RECEIVED:
            self.skip(where or event.id, f"event type {event.type!r} is not {MESSAGE_RECEIVED}")
            return
        now = event.time or event.data.sent_at or DEFAULT_NOW
        rep = self.report
        rep.total += 1
        new = self._new.decide(event, now)
        rep.candidate.add(new)
        if self._old is None or rep.previous is None:
            return
        old = self._old.decide(event, now)
        rep.previous.add(old)
        if old.priority != new.priority:
            rep.priority_pairs[(old.priority.value, new.priority.value)] += 1
        if old.queue != new.queue:
            rep.pairs[(old.queue, new.queue)] += 1
            rep.changes.append(
                Change(
                    ticket=event.data.thread_ref,
                    event_id=event.id,
                    old_queue=old.queue,
                    new_queue=new.queue,
                    old_rule=old.rule_id,
                    new_rule=new.rule_id,
                    old_priority=old.priority.value,
                    new_priority=new.priority.value,
                )
            )


def simulate(
    lines: Iterable[bytes | str],
    candidate: CompiledRuleset,
    baseline: CompiledRuleset | None = None,
    context: Context | None = None,
    on_progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> SimulationReport:
    """Replay JSON lines (inbound CloudEvents); `on_progress(bytes)` after each line."""
    bt = Backtest(candidate, baseline, context)
    for n, line in enumerate(lines, start=1):
        bt.add_line(line, f"{source}:{n}")
        if on_progress is not None:
            on_progress(len(line))
    return bt.report


def report_dict(rep: SimulationReport, limit: int = 50) -> dict[str, Any]:
    """The report as JSON-ready data (at most `limit` changed tickets listed)."""
    out: dict[str, Any] = {
        "ruleset": rep.ruleset,
        "baseline": rep.baseline,
        "total": rep.total,
        "skipped": rep.skipped,
        "queues": dict(rep.candidate.queues),
        "priorities": dict(rep.candidate.priorities),
        "rules": dict(rep.candidate.rules),
        "fallbacks": rep.candidate.fallbacks,
    }
    if rep.previous is not None:
        out["baseline_queues"] = dict(rep.previous.queues)
        out["baseline_priorities"] = dict(rep.previous.priorities)
        out["changed"] = len(rep.changes)
        out["pairs"] = [{"from": a, "to": b, "count": n} for (a, b), n in rep.pairs.most_common()]
        out["priority_pairs"] = [
            {"from": a, "to": b, "count": n} for (a, b), n in rep.priority_pairs.most_common()
        ]
        out["changes"] = [asdict(c) for c in rep.changes[:limit]]
    return out
