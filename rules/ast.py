"""A validated ruleset, ready to evaluate: typed conditions, actions and rules in order.

Built only by `rules.validate` (so every literal is already checked and normalised) and
read by both evaluators, `rules.naive` (the reference) and `rules.compile` (the fast one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.calendar import WeeklyCalendar
from rules.facts import Facts, TextView, words
from rules.fields import FieldSpec
from rules.model import RulesetDoc
from rules.source import Path
from schemas.ticket import Priority


@dataclass(frozen=True, slots=True)
class Test:
    """`{field: <path>, <op>: <value>}` with its prepared literal."""

    spec: FieldSpec
    op: str
    lit: Any
    raw: Any
    text: str  # "message.channel eq 'social'"
    path: Path  # where it sits in the document


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Cond, ...]
    text: str
    path: Path


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Cond, ...]
    text: str
    path: Path


@dataclass(frozen=True, slots=True)
class NotOf:
    item: Cond
    text: str
    path: Path


Cond = Test | AllOf | AnyOf | NotOf


@dataclass(frozen=True, slots=True)
class Template:
    """Text with `{field.path}` placeholders; `render` gives None when a field is absent."""

    text: str
    parts: tuple[str | FieldSpec, ...]

    @property
    def constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, facts: Facts) -> str | None:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.getter(facts)
            if value is None or value == "":
                return None
            out.append(str(value).lower() if isinstance(value, bool) else str(value))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class DisputeClaim:
    """A rule's `open_dispute`: the reason, and where the claim's values come from."""

    reason: str  # a `schemas.dispute.ReasonCode` value
    amount: FieldSpec
    currency: FieldSpec | str  # a field, or a fixed ISO 4217 code
    category: FieldSpec | None

    def values(self, facts: Facts) -> tuple[Any, Any, Any]:
        """(amount, currency, category) for one input, as found (None where absent)."""
        currency = self.currency if isinstance(self.currency, str) else self.currency.getter(facts)
        category = self.category.getter(facts) if self.category is not None else None
        return self.amount.getter(facts), currency, category


@dataclass(frozen=True, slots=True)
class Action:
    route: Template | None  # "dept:..." (constant) or "vendor:..." (maybe templated)
    to_vendor: bool
    fallback: str | None  # "dept:<name>"
    contract: Cond | None
    priority: Priority | None
    tags: tuple[Template, ...]
    sla: str | None
    terminal: bool
    open_dispute: DisputeClaim | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    order: int  # position in evaluation order
    position: int  # position in the file
    priority: int
    line: int | None
    when: Cond | None  # None: matches everything
    then: Action
    description: str | None

    @property
    def catch_all(self) -> bool:
        return self.when is None and self.then.terminal


class IntentTable:
    """Keyword -> intent table: an intent is present when one of its phrases is in the text."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = {name: tuple(phrases) for name, phrases in table.items()}
        self.names = frozenset(table)
        by_first: dict[str, list[tuple[str, str, bool]]] = {}
        for intent, phrases in table.items():
            for phrase in phrases:
                toks = words(phrase)
                if toks:
                    joined = " " + " ".join(toks) + " "
                    by_first.setdefault(toks[0], []).append((joined, intent, len(toks) == 1))
        self._by_first = by_first
        self._firsts = frozenset(by_first)

    def intents_of(self, view: TextView) -> frozenset[str]:
        found: set[str] = set()
        for tok in view.token_set & self._firsts:
            for joined, intent, single in self._by_first[tok]:
                if intent not in found and (single or joined in view.joined):
                    found.add(intent)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Ruleset:
    name: str
    version: str
    description: str | None
    file: str
    departments: frozenset[str]
    sla_policies: tuple[str, ...]  # strictest first
    default_priority: Priority
    default_sla: str
    intents: IntentTable
    calendars: Mapping[str, WeeklyCalendar]
    rules: tuple[Rule, ...]  # in evaluation order
    doc: RulesetDoc

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
