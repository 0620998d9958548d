"""Candidate chains: the rules one index key selects, and the decisions they can reach.

For one index key the candidate rules are fixed, so a decision depends only on which of
their checks pass and, for a failing one, on which conjunct failed first (the trace names
it); templated tags and vendor routes add what they render. Each check returns None or
the 1-based position of its first failing conjunct. The evaluator packs these codes into
one int, the *state* (rule k's code at bit `shift_k`), and the decision for a state is
built once per chain by replaying the evaluation order (`Chain.outcome`), then reused:
per decision only the checks run. Chains are cached per key (`rules.compile`).

Decisions are built exactly as `rules.result` says (property-tested against
`rules.naive`): a failed rule adds its trace entry (at most MAX_TRACE_UNMATCHED), a
`continue` rule its tags, priority, SLA and trace entry, the first matching terminal rule
its own and the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rules.ast import Rule
from rules.facts import Facts
from rules.result import (
    MAX_TRACE_CONTINUE,
    MAX_TRACE_UNMATCHED,
    RuleResult,
    explanation,
    resolve_route,
)
from schemas.ticket import Priority, RuleTrace

Check = Callable[[Facts], Any]
PENDING_MAX = 1024  # results kept per dynamic outcome (by rendered values; cleared when full)


@dataclass(slots=True)
class CompiledRule:
    rule: Rule
    id: str
    check: Check | None  # residual conditions: None, or the code of the first failing one
    width: int  # bits of its codes in a chain's state
    fails: tuple[RuleTrace, ...]  # trace entry per failing code (code 1 -> fails[0])
    contract: Check | None  # None, or the text of the first failing contract condition
    rank: int
    sla_rank: int
    tags: tuple[str, ...]  # all of them when constant, else ()
    renders: tuple[Callable[[Facts], str | None], ...]  # when some are templated
    terminal: bool
    queue: str | None  # fixed queue when no vendor logic is involved
    start: str  # start of the explanation
    match_trace: RuleTrace
    continue_trace: RuleTrace


@dataclass(frozen=True, slots=True)
class Header:
    """What every decision of one compiled ruleset shares."""

    name: str
    version: str
    priorities: tuple[Priority, ...]  # by rank; the last one is the default (rank -1)
    slas: tuple[str, ...]  # by SLA rank; the last one is the default
    no_sla: int


def _distinct(tags: list[str]) -> tuple[str, ...]:
    """Tags in first-seen order without repeats."""
    return tuple(dict.fromkeys(tags))


def _result(
    head: Header,
    terminal: CompiledRule,
    queue: str,
    fallback: str | None,
    matched: list[str],
    trace: list[RuleTrace],
    tags: list[str],
    rank: int,
    sla_rank: int,
) -> RuleResult:
    if fallback is None:
        last = terminal.match_trace
    else:
        last = RuleTrace(rule_id=terminal.id, matched=True, reason=f"matched; {fallback}: {queue}")
    text = explanation(terminal.rule, matched, queue, fallback, terminal.start)
    return RuleResult(
        head.name,
        head.version,
        queue,
        head.priorities[rank],
        head.slas[sla_rank],
        terminal.id,
        _distinct(tags),
        text,
        (*trace, last),
        tuple(matched),
        fallback,
    )


class Pending:
    """An outcome whose result also depends on the facts: templated tags, a vendor route.

    `parts` lists the tags in order: a string is a constant tag, an int the position of a
    render in `renders` (None renders are left out). Results are kept per rendered values."""

    __slots__ = ("_head", "_matched", "_memo", "_parts", "_rank", "_sla", "_trace", "renders",
                 "terminal")  # fmt: skip

    def __init__(
        self,
        head: Header,
        terminal: CompiledRule,
        matched: list[str],
        trace: list[RuleTrace],
        parts: list[str | int],
        renders: list[Callable[[Facts], str | None]],
        rank: int,
        sla_rank: int,
    ) -> None:
        self._head = head
        self.terminal = terminal
        self._matched = matched
        self._trace = trace
        self._parts = parts
        self.renders = tuple(renders)
        self._rank = rank
        self._sla = sla_rank
        self._memo: dict[tuple[Any, ...], RuleResult] = {}

    def finish(self, f: Facts) -> RuleResult:
        c = self.terminal
        values: list[Any] = [render(f) for render in self.renders]
        if c.queue is None:
            values.extend(resolve_route(c.rule.then, f, c.contract))
        else:
            values.extend((c.queue, None))
        key = tuple(values)
        res = self._memo.get(key)
        if res is None:
            res = self._build(values)
            if len(self._memo) >= PENDING_MAX:
                self._memo.clear()
            self._memo[key] = res
        return res

    def _build(self, values: list[Any]) -> RuleResult:
        tags: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                tags.append(part)
            elif values[part] is not None:
                tags.append(values[part])
        queue, fallback = values[-2], values[-1]
        return _result(self._head, self.terminal, queue, fallback, self._matched, self._trace,
                       tags, self._rank, self._sla)  # fmt: skip


Outcome = RuleResult | Pending


class Chain:
    """The candidates of one index key, in evaluation order, and their outcomes by state.

    `steps` are the checks to run, in order, as (check, shift, terminal), up to the first
    candidate that always matches and ends evaluation (the catch-all at the latest).
    `fixed` holds, per candidate, its tags when the key alone renders them (None: they are
    constant, or read other fields)."""

    __slots__ = ("_fixed", "_head", "_rules", "outcomes", "steps")

    def __init__(
        self,
        rules: tuple[CompiledRule, ...],
        head: Header,
        fixed: tuple[tuple[str, ...] | None, ...],
    ) -> None:
        self._rules = rules
        self._head = head
        self._fixed = fixed
        steps: list[tuple[Check, int, bool]] = []
        shift = 0
        for c in rules:
            if c.check is None:
                if c.terminal:
                    break
                continue
            steps.append((c.check, shift, c.terminal))
            shift += c.width
        self.steps = tuple(steps)
        self.outcomes: dict[int, Outcome] = {}

    def outcome(self, state: int) -> Outcome:
        """Replay the evaluation for the check codes packed in `state`; kept per state."""
        rank, sla_rank = -1, self._head.no_sla
        tags: list[str | int] = []
        renders: list[Callable[[Facts], str | None]] = []
        matched: list[str] = []
        trace: list[RuleTrace] = []
        room, continued, shift = MAX_TRACE_UNMATCHED, 0, 0
        for c, fixed in zip(self._rules, self._fixed, strict=True):
            if c.check is not None:
                code = state >> shift & ((1 << c.width) - 1)
                shift += c.width
                if code:
                    if room:
                        trace.append(c.fails[code - 1])
                        room -= 1
                    continue
            matched.append(c.id)
            rank = max(rank, c.rank)
            sla_rank = min(sla_rank, c.sla_rank)
            if c.tags or fixed is not None:
                tags.extend(c.tags or fixed or ())
            else:
                for render in c.renders:
                    tags.append(len(renders))
                    renders.append(render)
            if not c.terminal:
                if continued < MAX_TRACE_CONTINUE:
                    trace.append(c.continue_trace)
                    continued += 1
                continue
            out: Outcome
            if c.queue is not None and not renders:
                constant = [t for t in tags if isinstance(t, str)]
                out = _result(self._head, c, c.queue, None, matched, trace, constant, rank,
                              sla_rank)  # fmt: skip
            else:
                out = Pending(self._head, c, matched, trace, tags, renders, rank, sla_rank)
            self.outcomes[state] = out
            return out
        raise AssertionError("validated rulesets end with a catch-all")


def fixed_tags(
    rules: tuple[CompiledRule, ...], key: tuple[Any, ...], slots: dict[str, int]
) -> tuple[tuple[str, ...] | None, ...]:
    """Per rule, its templated tags rendered from the index key, when every field they
    insert is a string field of the key (`slots`: path -> position); else None. Rendered
    as `rules.codegen` renders: an absent or empty value leaves the tag out."""
    out: list[tuple[str, ...] | None] = []
    for c in rules:
        templates = c.rule.then.tags
        fields = [p for t in templates for p in t.parts if not isinstance(p, str)]
        if c.tags or not fields or any(f.path not in slots for f in fields):
            out.append(None)
            continue
        rendered: list[str] = []
        for t in templates:
            pieces: list[str] = []
            for part in t.parts:
                value = part if isinstance(part, str) else key[slots[part.path]]
                if value is None or value == "":
                    break
                pieces.append(str(value))  # str of a StrEnum is its value
            else:
                rendered.append("".join(pieces))
        out.append(tuple(rendered))
    return tuple(out)
