"""Validation: every problem in a ruleset document, each with file, line, rule id and message.

Errors are data: `validate_source` returns the prepared `Ruleset` or the full list of
`Problem`s; it never stops at the first one. Evaluation order is fixed here: rules sort by
`priority` (higher first), then by position in the file. The first unconditional terminal
rule in that order is the catch-all: one is required, and every rule after it is shadowed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rules.ast import IntentTable, Rule, Ruleset
from rules.calendar import WeeklyCalendar, build_calendar
from rules.facts import words
from rules.model import QUEUE_NAME, RuleDoc, RulesetDoc, RulesetHeader
from rules.operators import LiteralScope
from rules.prepare import Preparer
from rules.source import Path, SourceDoc

_INTENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KNOWN_KEYS = (
    "name", "version", "description", "departments", "sla_policies", "defaults", "intents",
    "calendars", "rules", "id", "priority", "when", "then", "route", "fallback", "contract",
    "tags", "sla", "continue", "all", "any", "not", "field", "timezone", "fallback_timezone",
    "hours",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        rule = f" rule {self.rule_id}:" if self.rule_id else ""
        return f"{where}:{rule} {self.message}"


class _Collector:
    def __init__(self, src: SourceDoc) -> None:
        self.src = src
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str, rule_id: str | None = None) -> None:
        self.problems.append(Problem(self.src.file, self.src.line(path), rule_id, message))

    def pydantic(self, exc: ValidationError, base: Path, rule_id: str | None) -> None:
        for err in exc.errors():
            loc = (*base, *err["loc"])
            where = _dotted(self.src, loc[len(base) :], base)
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                near = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
                msg = f"unknown key {key!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                where = _dotted(self.src, loc[len(base) : -1], base)
            elif err["type"] == "missing":
                msg = f"missing required key {str(err['loc'][-1])!r}"
                where = _dotted(self.src, loc[len(base) : -1], base)
            self.add(loc, f"{where}: {msg}" if where else msg, rule_id)


def _dotted(src: SourceDoc, rel: tuple[Any, ...], base: Path) -> str:
    """`when.all[1].eq` for a pydantic loc, dropping union tags that are not in the data."""
    node: Any = src.data
    for part in base:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    out = ""
    for part in rel:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out += f".{part}" if out else str(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out += f"[{part}]"
        elif isinstance(node, dict) and isinstance(part, str) and part not in (
            "all", "any", "not", "test"
        ):  # fmt: skip
            out += f".{part}" if out else part  # a key that is missing from the data
    return out


def validate_source(
    src: SourceDoc, *, sla_policies: Collection[str] | None = None
) -> tuple[Ruleset | None, list[Problem]]:
    """Check a parsed document. `sla_policies`: the engine's policies, when known."""
    out = _Collector(src)
    data = src.data
    if not isinstance(data, dict):
        out.add((), "a ruleset is a mapping with name, version, departments, ... and rules")
        return None, out.problems
    header, broken = _header(out, data)
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        out.add(("rules",), "`rules` must be a non-empty list (ending with a catch-all)")
        raw_rules = []
    docs: list[tuple[int, RuleDoc]] = []
    for i, raw in enumerate(raw_rules):
        rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        try:
            docs.append((i, RuleDoc.model_validate(raw)))
        except ValidationError as exc:
            out.pydantic(exc, ("rules", i), rid)
    if header is None:
        return None, sorted(out.problems, key=lambda p: p.line or 0)
    allowed_sla = _sla_policies(out, header, sla_policies, broken)
    calendars, bad_calendars = _calendars(out, header)
    _intents(out, header)
    # A section that failed to parse is not used to judge references into it: one problem
    # at its source, not one more at every rule that names it.
    prep = Preparer(
        LiteralScope(
            None if "intents" in broken else frozenset(header.intents),
            calendars,
            bad_calendars | ({"*"} if "calendars" in broken else set()),
        ),
        None if "departments" in broken else frozenset(header.departments),
        None if "sla_policies" in broken else allowed_sla,
    )
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, doc in docs:
        base: Path = ("rules", i)
        line = src.line(base)
        if doc.id in seen:
            out.add(
                (*base, "id"),
                f"duplicate rule id {doc.id!r} (first at line {seen[doc.id]})",
                doc.id,
            )
        else:
            seen[doc.id] = line or 0
        prep.problems.clear()
        when = prep.condition(doc.when, (*base, "when")) if doc.when is not None else None
        then = prep.action(doc.then, (*base, "then"))
        for path, message in prep.problems:
            out.add(path, message, doc.id)
        if not prep.problems and then is not None:
            rules.append(Rule(doc.id, 0, i, doc.priority, line, when, then, doc.description))
    ordered = _order(out, docs, rules, len(docs) == len(raw_rules))
    if out.problems:
        return None, sorted(out.problems, key=lambda p: p.line or 0)
    full = RulesetDoc.model_construct(**dict(header), rules=[d for _, d in docs])
    return Ruleset(
        name=header.name,
        version=header.version,
        description=header.description,
        file=src.file,
        departments=frozenset(header.departments),
        sla_policies=allowed_sla,
        default_priority=header.defaults.priority,
        default_sla=header.defaults.sla,
        intents=IntentTable(header.intents),
        calendars=calendars,
        rules=ordered,
        doc=full,
    ), []


def _header(out: _Collector, data: dict[str, Any]) -> tuple[RulesetHeader | None, set[str]]:
    """The header, and the top-level keys that failed (replaced by defaults to go on)."""
    fields = {k: v for k, v in data.items() if k != "rules"}
    broken: set[str] = set()
    try:
        header = RulesetHeader.model_validate(fields)
    except ValidationError as exc:
        out.pydantic(exc, (), None)
        broken = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        kept = {k: v for k, v in fields.items() if k not in broken}
        kept.setdefault("name", "invalid")
        kept.setdefault("version", "invalid")
        try:
            header = RulesetHeader.model_validate(kept)
        except ValidationError:
            return None, broken
    for key in ("departments", "sla_policies"):
        names: list[str] = getattr(header, key)
        for i, name in enumerate(names):
            if not QUEUE_NAME.match(name):
                out.add((key, i), f"bad name {name!r} in {key}: use [a-z0-9_-], at most 64")
            if names.index(name) != i:
                out.add((key, i), f"{name!r} is listed twice in {key}")
    return header, broken


def _sla_policies(
    out: _Collector, header: RulesetHeader, engine: Collection[str] | None, broken: set[str]
) -> tuple[str, ...]:
    """The policies rules may name, strictest first (declared order, else the engine's)."""
    declared = tuple(header.sla_policies)
    if engine is not None:
        known = frozenset(engine)
        for i, name in enumerate(header.sla_policies):
            if name not in known:
                out.add(
                    ("sla_policies", i),
                    f"SLA policy {name!r} is unknown to the engine "
                    f"(engine policies: {', '.join(sorted(known))})",
                )
        allowed = tuple(n for n in declared if n in known) if declared else tuple(engine)
    else:
        allowed = declared
    if header.defaults.sla not in allowed and not broken & {"sla_policies", "defaults"}:
        names = ", ".join(sorted(allowed)) or "none declared"
        out.add(
            ("defaults", "sla"),
            f"unknown SLA policy {header.defaults.sla!r} (sla_policies: {names})",
        )
    return allowed


def _calendars(
    out: _Collector, header: RulesetHeader
) -> tuple[dict[str, WeeklyCalendar], set[str]]:
    calendars: dict[str, WeeklyCalendar] = {}
    bad: set[str] = set()
    for name, cal in header.calendars.items():
        built = build_calendar(name, cal.timezone, cal.fallback_timezone, cal.hours)
        if isinstance(built, WeeklyCalendar):
            calendars[name] = built
            continue
        bad.add(name)
        for key, message in built:
            parts = tuple(key.split(".", 1))
            out.add(("calendars", name, *parts), f"calendar {name!r}: {message}")
    return calendars, bad


def _intents(out: _Collector, header: RulesetHeader) -> None:
    for name, phrases in header.intents.items():
        if not _INTENT_NAME.match(name):
            out.add(("intents", name), f"bad intent name {name!r}: use [a-z0-9_-]")
        if not phrases:
            out.add(("intents", name), f"intent {name!r} has no phrases")
        for i, phrase in enumerate(phrases):
            if not words(phrase):
                out.add(("intents", name, i), f"intent {name!r}: phrase {phrase!r} has no words")


def _order(
    out: _Collector, docs: list[tuple[int, RuleDoc]], rules: list[Rule], complete: bool
) -> tuple[Rule, ...]:
    """Sort into evaluation order; report a missing catch-all and shadowed rules.

    Judged on every rule that parsed, even one with other problems, so that a missing or
    misplaced catch-all is reported together with everything else."""
    order = sorted(docs, key=lambda d: (-d[1].priority, d[0]))
    catch_all: tuple[int, RuleDoc] | None = None
    for position, doc in order:
        if catch_all is not None:
            out.add(
                ("rules", position),
                f"can never match: catch-all {catch_all[1].id!r} (line "
                f"{out.src.line(('rules', catch_all[0]))}) runs before it (rules run by "
                "priority, higher first, then file order)",
                doc.id,
            )
        elif doc.when is None and not doc.then.continue_:
            catch_all = (position, doc)
    if catch_all is None and complete and docs:
        out.add(
            ("rules",),
            "no catch-all: the last rule to run must have no `when` and route "
            "(e.g. `then: {route: dept:general}`)",
        )
    ordered = sorted(rules, key=lambda r: (-r.priority, r.position))
    return tuple(_renumber(r, i) for i, r in enumerate(ordered))


def _renumber(rule: Rule, order: int) -> Rule:
    return Rule(
        rule.id,
        order,
        rule.position,
        rule.priority,
        rule.line,
        rule.when,
        rule.then,
        rule.description,
    )
