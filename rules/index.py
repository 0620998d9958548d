"""The candidate index of the compiled evaluator.

Indexable tests are top-level conjuncts of a rule's `when` that test a discriminating
field for membership: `eq` / `in` on a scalar field (channel, sender role, language,
vendor id, vendor tier/status), `contains` / `contains_any` on a set field (intents,
ticket tags), `eq` on a boolean field (buyer.vip...) and `exists` on any field (as the
boolean field `<path>?`). A rule with such tests cannot match unless the message's value
is in each test's value set, so those tests are settled by table look-ups, not run.

Fields split by how many distinct values the ruleset tests them against: "low" fields (at
most LOW_CARDINALITY values: channel, role, language, intents...) and "high" fields
(vendor ids). Per decision:

1. read the low fields, then the high ones, into one key (one generated function); the
   evaluator caches what it makes of the candidates per key (`rules.chain`); on a miss:
2. the rules that survive every low-field test of theirs (and the rules with no indexable
   test) are cached per low part of the key, as sorted positions;
3. add the rules whose chosen test is on a high field and the message's value, filtered by
   their low-field tests.

Each rule is looked up by one test (its most selective high-field test if it has one,
else its most selective low-field test); every other low-field test of it is a filter;
its other high-field tests stay in its residual check. A rule the index leaves out cannot
match, so decisions equal the reference evaluator's (property-tested).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

from rules.ast import AllOf, Cond, Rule, Test
from rules.facts import Facts
from rules.fields import FieldSpec, Kind
from rules.operators import present

LOW_CARDINALITY = 64
CACHE_MAX = 16384  # candidate lists kept per key combination (cleared when full)
_PREFERENCE = (
    "message.vendor_id", "message.intent", "message.language", "message.language_base",
    "ticket.tags", "vendor.tier", "vendor.status", "sender.role", "message.channel",
    "buyer.vip",
)  # fmt: skip

T = TypeVar("T")


def conjuncts(cond: Cond | None) -> list[Cond]:
    """Top-level conjuncts, nested `all` flattened (first-failure order is kept)."""
    if cond is None:
        return []
    if isinstance(cond, AllOf):
        return [c for item in cond.items for c in conjuncts(item)]
    return [cond]


@lru_cache(maxsize=1024)
def presence(spec: FieldSpec) -> FieldSpec:
    """`<path>?`: whether a field is present, as an indexable boolean (for `exists` tests)."""
    get = spec.getter

    def present_of(f: Facts) -> bool:
        return present(get(f))

    return FieldSpec(f"{spec.path}?", Kind.BOOL, present_of, f"{spec.path} exists")


def index_test(cond: Cond) -> tuple[FieldSpec, frozenset[Hashable]] | None:
    """The field and values an indexable test accepts, or None when it is not indexable."""
    if not isinstance(cond, Test):
        return None
    spec, kind, op = cond.spec, cond.spec.kind, cond.op
    if op == "exists":
        return presence(spec), frozenset((cond.lit,))
    if kind is Kind.BOOL and op == "eq":
        return spec, frozenset((cond.lit,))
    if not spec.indexable:
        return None
    if (kind is Kind.STR and op == "eq") or (kind is Kind.SET and op == "contains"):
        return spec, frozenset((cond.lit,))
    if (kind is Kind.STR and op == "in") or (kind is Kind.SET and op == "contains_any"):
        return spec, frozenset(cond.lit)
    return None


@dataclass(frozen=True, slots=True)
class Constraint:
    spec: FieldSpec
    values: frozenset[Hashable]
    conjunct: int  # position among the rule's conjuncts


@dataclass(frozen=True, slots=True)
class RulePlan:
    lookup: Constraint | None  # the test the rule is found by (None: always a candidate)
    filters: tuple[Constraint, ...]  # low-field tests checked when candidates are built
    settled: frozenset[int]  # conjunct positions the index decides (not in the residual)


def _preference(path: str) -> tuple[int, str]:
    return (_PREFERENCE.index(path) if path in _PREFERENCE else len(_PREFERENCE), path)


IndexTest = Callable[[Cond], tuple[FieldSpec, frozenset[Hashable]] | None]


def _constraints(conds: list[Cond], test: IndexTest) -> tuple[list[Constraint], list[Constraint]]:
    """A rule's indexable tests: the most selective one per field, and all of them."""
    per_field: dict[str, Constraint] = {}
    every: list[Constraint] = []
    for pos, cond in enumerate(conds):
        found = test(cond)
        if found is not None:
            c = Constraint(*found, pos)
            every.append(c)
            kept = per_field.get(c.spec.path)
            if kept is None or len(c.values) < len(kept.values):
                per_field[c.spec.path] = c
    return list(per_field.values()), every


def plan(
    rules: Sequence[Rule], text_test: IndexTest | None = None
) -> tuple[list[RulePlan], list[FieldSpec], list[FieldSpec]]:
    """Per rule: how the index handles it; and the low and the high fields, in key order.

    `text_test` makes phrase and regex tests indexable (`rules.textmatch`), only for rules
    with no other indexable test: once in the key, a text is matched on every decision,
    which such a rule would otherwise cost anyway (it would be tried on every decision)."""
    found: list[list[Constraint]] = []
    distinct: dict[str, set[Hashable]] = {}
    specs: dict[str, FieldSpec] = {}
    for rule in rules:
        conds = conjuncts(rule.when)
        constraints, every = _constraints(conds, index_test)
        if not constraints and text_test is not None:
            constraints, every = _constraints(conds, text_test)
        for c in every:
            specs[c.spec.path] = c.spec
            distinct.setdefault(c.spec.path, set()).update(c.values)
        found.append(constraints)
    high = {p for p, vals in distinct.items() if len(vals) > LOW_CARDINALITY}

    def selectivity(c: Constraint) -> tuple[float, tuple[int, str], int]:
        path = c.spec.path
        return (len(c.values) / len(distinct[path]), _preference(path), c.conjunct)

    plans: list[RulePlan] = []
    for constraints in found:
        if not constraints:
            plans.append(RulePlan(None, (), frozenset()))
            continue
        highs = [c for c in constraints if c.spec.path in high]
        lookup = min(highs or constraints, key=selectivity)
        lows = tuple(c for c in constraints if c.spec.path not in high and c is not lookup)
        settled = frozenset([lookup.conjunct, *(c.conjunct for c in lows)])
        plans.append(RulePlan(lookup, lows, settled))
    low_specs = [specs[p] for p in sorted(set(specs) - high, key=_preference)]
    high_specs = [specs[p] for p in sorted(high, key=_preference)]
    return plans, low_specs, high_specs


class CandidateIndex(Generic[T]):
    """Selects, per decision, the rules (items of type T, in evaluation order) to run."""

    def __init__(
        self,
        items: Sequence[T],
        plans: Sequence[RulePlan],
        low: Sequence[FieldSpec],
        high: Sequence[FieldSpec],
        key: Callable[[Facts], tuple[Any, ...]],
    ) -> None:
        """`key` reads the values of the `low` fields, then those of the `high` ones."""
        self._items = tuple(items)
        self._key = key
        self._n_low = len(low)
        low_slot = {s.path: i for i, s in enumerate(low)}
        high_slot = {s.path: i for i, s in enumerate(high)}
        self._low_sets = tuple(s.kind is Kind.SET for s in low)
        self._high_sets = tuple(s.kind is Kind.SET for s in high)
        self._low_tables: tuple[dict[Hashable, list[int]], ...] = tuple({} for _ in low)
        self._high_tables: tuple[dict[Hashable, list[int]], ...] = tuple({} for _ in high)
        self._filters: list[tuple[tuple[int, frozenset[Hashable], bool], ...]] = []
        always: list[int] = []
        for pos, p in enumerate(plans):
            self._filters.append(
                tuple((low_slot[c.spec.path], c.values, c.spec.kind is Kind.SET)
                      for c in p.filters)
            )  # fmt: skip
            if p.lookup is None:
                always.append(pos)
                continue
            path = p.lookup.spec.path
            table = (
                self._high_tables[high_slot[path]]
                if path in high_slot
                else self._low_tables[low_slot[path]]
            )
            for value in p.lookup.values:
                table.setdefault(value, []).append(pos)
        self._always = tuple(always)
        self._low_cache: dict[Hashable, tuple[int, ...]] = {}

    @staticmethod
    def _lookup(
        key: tuple[Any, ...], sets: tuple[bool, ...], tables: tuple[dict[Hashable, list[int]], ...]
    ) -> set[int]:
        found: set[int] = set()
        for value, is_set, table in zip(key, sets, tables, strict=True):
            if value is None:
                continue
            for v in value if is_set else (value,):
                hit = table.get(v)
                if hit:
                    found.update(hit)
        return found

    def _passes(self, pos: int, low: tuple[Any, ...]) -> bool:
        for slot, values, is_set in self._filters[pos]:
            actual = low[slot]
            if actual is None:
                return False
            if is_set:
                if values.isdisjoint(actual):
                    return False
            elif actual not in values:
                return False
        return True

    def _low_positions(self, low: tuple[Any, ...]) -> tuple[int, ...]:
        found = self._lookup(low, self._low_sets, self._low_tables)
        found.update(self._always)
        kept = tuple(sorted(p for p in found if self._passes(p, low)))
        if len(self._low_cache) >= CACHE_MAX:
            self._low_cache.clear()
        self._low_cache[low] = kept
        return kept

    def select(self, f: Facts) -> tuple[T, ...]:
        """The candidates for one input, in evaluation order (uncached: tests and tools)."""
        return tuple(self._items[p] for p in self.positions(self._key(f)))

    def positions(self, key: tuple[Any, ...]) -> tuple[int, ...]:
        """Positions of the candidates for a key read by the `key` function, in order."""
        low, high = key[: self._n_low], key[self._n_low :]
        base = self._low_cache.get(low)
        if base is None:
            base = self._low_positions(low)
        extra = [p for p in self._lookup(high, self._high_sets, self._high_tables)
                 if self._passes(p, low)]  # fmt: skip
        return tuple(sorted(set(base).union(extra))) if extra else base
