"""Condition trees compiled to closures: `check(facts) -> None` when the condition holds,
else the text of the first failing condition (the compact trace reason, built at compile
time so that failing costs nothing).

Each operator is specialised by field kind; regex tests share one RE2 set per field, run
at most once per decision. `rules.operators.holds` is the reference these must agree with.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import re2

from rules.ast import AllOf, AnyOf, Cond, NotOf, Test
from rules.facts import Facts, TextView
from rules.fields import Kind
from rules.operators import RE2_OPTIONS, Phrase, Regex, present, same

Check = Callable[[Facts], str | None]
REGEX_SET_CHUNK = 32  # patterns per RE2 set: keeps each set's DFA well inside its memory budget


class RegexSets:
    """All `matches` patterns of a ruleset, grouped by field into RE2 sets."""

    def __init__(self) -> None:
        self._patterns: dict[str, list[str]] = {}
        self._sets: dict[str, list[Any]] = {}

    def add(self, path: str, regex: Regex) -> int:
        patterns = self._patterns.setdefault(path, [])
        if regex.pattern in patterns:
            return patterns.index(regex.pattern)
        patterns.append(regex.pattern)
        return len(patterns) - 1

    def build(self) -> None:
        for path, patterns in self._patterns.items():
            chunks = []
            for start in range(0, len(patterns), REGEX_SET_CHUNK):
                rset = re2.Set.SearchSet(RE2_OPTIONS)
                for pattern in patterns[start : start + REGEX_SET_CHUNK]:
                    rset.Add(pattern)
                rset.Compile()
                chunks.append((start, rset))
            self._sets[path] = chunks

    def hits(self, path: str, text: str) -> frozenset[int]:
        data = text.encode("utf-8")
        found: list[int] = []
        for start, rset in self._sets.get(path, ()):
            matched = rset.Match(data)
            if matched:
                found.extend(start + i for i in matched)
        return frozenset(found)


def compile_condition(cond: Cond, regexes: RegexSets) -> Check:
    if isinstance(cond, Test):
        return _test(cond, regexes)
    if isinstance(cond, AllOf):
        return all_of([compile_condition(c, regexes) for c in cond.items])
    if isinstance(cond, AnyOf):
        return _any_of([compile_condition(c, regexes) for c in cond.items], cond.text)
    if isinstance(cond, NotOf):
        inner = compile_condition(cond.item, regexes)
        text = cond.text

        def check_not(f: Facts) -> str | None:
            return text if inner(f) is None else None

        return check_not
    raise TypeError(f"not a condition: {cond!r}")


def _pass(f: Facts) -> str | None:
    return None


def all_of(checks: Iterable[Check]) -> Check:
    items = tuple(checks)
    if not items:
        return _pass
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        first, second = items

        def check_two(f: Facts) -> str | None:
            return first(f) or second(f)

        return check_two

    def check_all(f: Facts) -> str | None:
        for check in items:
            failed = check(f)
            if failed is not None:
                return failed
        return None

    return check_all


def _any_of(checks: list[Check], text: str) -> Check:
    items = tuple(checks)

    def check_any(f: Facts) -> str | None:
        for check in items:
            if check(f) is None:
                return None
        return text

    return check_any


def _test(t: Test, regexes: RegexSets) -> Check:
    get = t.spec.getter
    lit = t.lit
    fail = t.text
    kind = t.spec.kind
    op = t.op
    if op in ("eq", "ne"):
        if kind is Kind.ANY:
            pred: Callable[[Any], bool] = lambda v: same(v, lit)  # noqa: E731
        elif kind is Kind.BOOL:
            pred = lambda v: v is lit  # noqa: E731
        else:
            pred = lambda v: v is not None and v == lit  # noqa: E731
        return _pred(get, pred, fail, negate=op == "ne")
    if op in ("in", "not_in"):
        if kind is Kind.ANY:
            pred = lambda v: any(same(v, x) for x in lit)  # noqa: E731
        else:
            members = frozenset(lit)
            pred = lambda v: v in members  # noqa: E731
        return _pred(get, pred, fail, negate=op == "not_in")
    if op == "exists":
        want = bool(lit)
        return _pred(get, lambda v: present(v) is want, fail)
    if op in ("contains", "contains_any"):
        members_list = (lit,) if op == "contains" else tuple(lit)
        if kind is Kind.SET:
            wanted = frozenset(members_list)
            return _pred(get, lambda v: v is not None and not wanted.isdisjoint(v), fail)
        return _phrases(t.spec.path, get, members_list, fail)
    if op == "matches":
        path = t.spec.path
        index = regexes.add(path, lit)

        def check_regex(f: Facts) -> str | None:
            v = get(f)
            if isinstance(v, str) and index in f.regex_hits(path, v):
                return None
            return fail

        return check_regex
    if op in ("gt", "gte", "lt", "lte"):
        return _pred(get, _comparison(op, lit, kind), fail)
    calendar = lit  # within_hours

    def check_hours(f: Facts) -> str | None:
        v = get(f)
        tz = f.vendor.timezone if f.vendor is not None else None
        return None if isinstance(v, datetime) and calendar.contains(v, tz) else fail

    return check_hours


def _pred(
    get: Callable[[Facts], Any], pred: Callable[[Any], bool], fail: str, negate: bool = False
) -> Check:
    if negate:

        def check_neg(f: Facts) -> str | None:
            return fail if pred(get(f)) else None

        return check_neg

    def check(f: Facts) -> str | None:
        return None if pred(get(f)) else fail

    return check


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _comparison(op: str, lit: Any, kind: Kind) -> Callable[[Any], bool]:
    cmp = _COMPARE[op]
    if isinstance(lit, datetime):

        def ok_time(v: Any) -> bool:
            return isinstance(v, datetime) and bool(cmp(v, lit))

        return ok_time
    if kind is Kind.NUM:
        return lambda v: v is not None and bool(cmp(v, lit))

    def ok_any(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | float) and bool(cmp(v, lit))

    return ok_any


def _phrases(
    path: str, get: Callable[[Facts], Any], phrases: tuple[Phrase, ...], fail: str
) -> Check:
    singles = frozenset(p.tokens[0] for p in phrases if len(p.tokens) == 1)
    multis = tuple(p.joined for p in phrases if len(p.tokens) > 1)

    def check_phrases(f: Facts) -> str | None:
        view: TextView = f.view(path, get)
        if not view.token_set.isdisjoint(singles):
            return None
        joined = view.joined
        for m in multis:
            if m in joined:
                return None
        return fail

    return check_phrases
