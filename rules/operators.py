"""Operators: which field kinds each accepts, literal checking, and the reference semantics.

`prepare_literal` turns a document value into the form evaluators use (normalised strings,
tokenised phrases, compiled RE2 patterns, aware datetimes, calendars) or explains why it
cannot. `holds` is the reference meaning of every operator, used by the naive evaluator;
the compiled evaluator re-implements each one as a specialised closure and a property test
holds the two together.

Absent values (None): `eq`, `in`, `contains*`, `matches`, comparisons and `within_hours`
are false; `ne` and `not_in` are their exact negations (so true); `exists: false` is true.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import re2

from rules.calendar import WeeklyCalendar
from rules.facts import Facts, words
from rules.fields import FieldSpec, Kind

ALL_KINDS = frozenset(Kind)
OP_KINDS: dict[str, frozenset[Kind]] = {
    "eq": frozenset({Kind.STR, Kind.TEXT, Kind.NUM, Kind.BOOL, Kind.TIME, Kind.ANY}),
    "ne": frozenset({Kind.STR, Kind.TEXT, Kind.NUM, Kind.BOOL, Kind.TIME, Kind.ANY}),
    "in": frozenset({Kind.STR, Kind.TEXT, Kind.NUM, Kind.ANY}),
    "not_in": frozenset({Kind.STR, Kind.TEXT, Kind.NUM, Kind.ANY}),
    "exists": ALL_KINDS,
    "contains": frozenset({Kind.STR, Kind.TEXT, Kind.SET}),
    "contains_any": frozenset({Kind.STR, Kind.TEXT, Kind.SET}),
    "matches": frozenset({Kind.STR, Kind.TEXT, Kind.ANY}),
    "gt": frozenset({Kind.NUM, Kind.TIME, Kind.ANY}),
    "gte": frozenset({Kind.NUM, Kind.TIME, Kind.ANY}),
    "lt": frozenset({Kind.NUM, Kind.TIME, Kind.ANY}),
    "lte": frozenset({Kind.NUM, Kind.TIME, Kind.ANY}),
    "within_hours": frozenset({Kind.TIME}),
}
COMPARISONS = ("gt", "gte", "lt", "lte")
MAX_PATTERN = 2000

RE2_OPTIONS = re2.Options()
RE2_OPTIONS.log_errors = False
RE2_OPTIONS.max_mem = 8 << 20


@dataclass(frozen=True, slots=True)
class Phrase:
    """A word-boundary phrase: normalised tokens, and joined as ' a b ' for substring tests."""

    text: str
    tokens: tuple[str, ...]
    joined: str


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str
    compiled: Any  # re2._Regexp: the re2 package ships no type information


@dataclass(frozen=True, slots=True)
class LiteralScope:
    """Ruleset names a literal may refer to."""

    intents: frozenset[str] | None  # None: the intents section did not parse
    calendars: Mapping[str, WeeklyCalendar]
    broken_calendars: AbstractSet[str] = frozenset()  # declared but invalid ("*": all)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()} (in YAML yes/no/on/off are booleans: quote them)"
    return f"{type(v).__name__} {v!r}"


def _scalar(spec: FieldSpec, raw: Any, scope: LiteralScope) -> tuple[Any, str | None]:
    kind = spec.kind
    if kind in (Kind.STR, Kind.TEXT):
        if not isinstance(raw, str):
            return None, f"{spec.path} is a {kind.value}: expected a string, got {_type_name(raw)}"
        value = raw.lower() if spec.lower else raw
        if spec.values is not None and value not in spec.values:
            return None, (
                f"unknown value {raw!r} for {spec.path}; expected one of "
                f"{', '.join(sorted(spec.values))}"
            )
        return value, None
    if kind is Kind.NUM:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None, f"{spec.path} is a number: expected a number, got {_type_name(raw)}"
        return _finite(spec, raw)
    if kind is Kind.BOOL:
        if not isinstance(raw, bool):
            return None, f"{spec.path} is a boolean: expected true/false, got {_type_name(raw)}"
        return raw, None
    if kind is Kind.TIME:
        ts = _timestamp(raw)
        if ts is None:
            return None, (
                f"{spec.path} is a timestamp: expected an ISO-8601 time "
                f"(2024-06-01T09:00:00Z), got {_type_name(raw)}"
            )
        return ts, None
    if kind is Kind.ANY:
        if raw is None or not isinstance(raw, str | int | float | bool):
            return None, f"{spec.path}: expected a string, number or boolean, got {_type_name(raw)}"
        return _finite(spec, raw) if isinstance(raw, float) else (raw, None)
    return None, f"{spec.path} is a set: test it with contains / contains_any / exists"


def _finite(spec: FieldSpec, raw: float) -> tuple[Any, str | None]:
    """NaN never compares true and infinity is no one's count: both are typos or bugs."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, f"{spec.path}: expected a finite number, got {raw!r}"
    return raw, None


def _timestamp(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if isinstance(raw, date) or not isinstance(raw, str):
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _member(spec: FieldSpec, raw: Any, scope: LiteralScope) -> tuple[Any, str | None]:
    """One literal of contains / contains_any."""
    if not isinstance(raw, str):
        return None, f"contains on {spec.path}: expected a string, got {_type_name(raw)}"
    if spec.kind is Kind.SET:
        if spec.path == "message.intent" and scope.intents is not None and raw not in scope.intents:
            known = ", ".join(sorted(scope.intents)) or "none declared"
            return None, f"unknown intent {raw!r} (intents: {known})"
        if spec.values is not None and raw not in spec.values:
            return None, (
                f"unknown value {raw!r} for {spec.path}; expected one of "
                f"{', '.join(sorted(spec.values))}"
            )
        return raw, None
    toks = tuple(words(raw))
    if not toks:
        return None, f"phrase {raw!r} has no words to match"
    return Phrase(raw, toks, " " + " ".join(toks) + " "), None


def compile_regex(pattern: str) -> tuple[Regex | None, str | None]:
    if len(pattern) > MAX_PATTERN:
        return None, f"regex longer than {MAX_PATTERN} characters"
    try:
        compiled = re2.compile(pattern, RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return None, (
            f"invalid regex {pattern!r}: {detail} (RE2 syntax: linear time, "
            f"no backreferences or look-around)"
        )
    return Regex(pattern, compiled), None


def prepare_literal(
    op: str, spec: FieldSpec, raw: Any, scope: LiteralScope
) -> tuple[Any, str | None]:
    """(prepared literal, None) or (None, problem message)."""
    if spec.kind not in OP_KINDS[op]:
        return None, _wrong_kind(op, spec)
    if op in ("eq", "ne"):
        return _scalar(spec, raw, scope)
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            return None, f"{op} expects a non-empty list, got {_type_name(raw)}"
        items = []
        for item in raw:
            value, err = _scalar(spec, item, scope)
            if err:
                return None, err
            items.append(value)
        return (frozenset(items) if spec.kind in (Kind.STR, Kind.TEXT) else tuple(items)), None
    if op == "exists":
        if not isinstance(raw, bool):
            return None, f"exists expects true or false, got {_type_name(raw)}"
        return raw, None
    if op == "contains":
        return _member(spec, raw, scope)
    if op == "contains_any":
        if not isinstance(raw, list) or not raw:
            return None, f"contains_any expects a non-empty list, got {_type_name(raw)}"
        members = []
        for item in raw:
            value, err = _member(spec, item, scope)
            if err:
                return None, err
            members.append(value)
        return tuple(members), None
    if op == "matches":
        if not isinstance(raw, str):
            return None, f"matches expects a regex string, got {_type_name(raw)}"
        return compile_regex(raw)
    if op in COMPARISONS:
        if spec.kind is Kind.TIME:
            return _scalar(spec, raw, scope)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None, f"{op} on {spec.path} expects a number, got {_type_name(raw)}"
        return _finite(spec, raw)
    # within_hours
    broken = scope.broken_calendars
    if isinstance(raw, str) and (raw in broken or "*" in broken):
        return None, None  # already reported where the calendar is declared
    if not isinstance(raw, str) or raw not in scope.calendars:
        known = ", ".join(sorted(scope.calendars)) or "none declared"
        return None, f"within_hours expects the name of a calendar (calendars: {known})"
    return scope.calendars[raw], None


def _wrong_kind(op: str, spec: FieldSpec) -> str:
    fits = {
        Kind.STR: "eq, ne, in, not_in, exists, contains, contains_any, matches",
        Kind.TEXT: "contains, contains_any, matches, eq, ne, in, not_in, exists",
        Kind.NUM: "eq, ne, in, not_in, gt, gte, lt, lte, exists",
        Kind.BOOL: "eq, ne, exists",
        Kind.TIME: "gt, gte, lt, lte, within_hours, eq, ne, exists",
        Kind.SET: "contains, contains_any, exists",
        Kind.ANY: "eq, ne, in, not_in, matches, gt, gte, lt, lte, exists",
    }[spec.kind]
    return f"operator {op} does not apply to {spec.path} ({spec.kind.value}); use {fits}"


# --- reference semantics --------------------------------------------------------------------


def same(actual: Any, expected: Any) -> bool:
    """Equality that never confuses booleans with numbers."""
    if actual is None or isinstance(actual, bool) is not isinstance(expected, bool):
        return False
    return bool(actual == expected)


def present(actual: Any) -> bool:
    if actual is None or actual == "":
        return False
    return not (isinstance(actual, frozenset | set | tuple | list) and not actual)


def has_phrase(tokens: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


def _compare(op: str, actual: Any, lit: Any) -> bool:
    if isinstance(lit, datetime):
        if not isinstance(actual, datetime):
            return False
    elif isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    if op == "gt":
        return bool(actual > lit)
    if op == "gte":
        return bool(actual >= lit)
    if op == "lt":
        return bool(actual < lit)
    return bool(actual <= lit)


def holds(op: str, spec: FieldSpec, lit: Any, facts: Facts) -> bool:
    """Reference meaning of one test on one decision's facts."""
    actual = spec.getter(facts)
    if op == "eq":
        return same(actual, lit)
    if op == "ne":
        return not same(actual, lit)
    if op == "in":
        return any(same(actual, x) for x in lit)
    if op == "not_in":
        return not any(same(actual, x) for x in lit)
    if op == "exists":
        return present(actual) is lit
    if op in ("contains", "contains_any"):
        members = (lit,) if op == "contains" else lit
        if actual is None:
            return False
        if spec.kind is Kind.SET:
            return any(m in actual for m in members)
        tokens = facts.view(spec.path, spec.getter).tokens
        return any(has_phrase(tokens, m.tokens) for m in members)
    if op == "matches":
        return isinstance(actual, str) and lit.compiled.search(actual) is not None
    if op in COMPARISONS:
        return _compare(op, actual, lit)
    vendor_tz = facts.vendor.timezone if facts.vendor is not None else None
    return isinstance(actual, datetime) and bool(lit.contains(actual, vendor_tz))


def short(value: Any, limit: int = 3) -> str:
    if isinstance(value, list):
        head = ", ".join(short(v) for v in value[:limit])
        more = f", +{len(value) - limit} more" if len(value) > limit else ""
        return f"[{head}{more}]"
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."


def describe(path: str, op: str, raw: Any) -> str:
    return f"{path} {op} {short(raw)}"
