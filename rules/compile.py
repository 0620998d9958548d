"""The compiled evaluator: a hash index picks candidate rules, closures check the rest.

Each rule is indexed by at most one of its top-level conjuncts: an `eq` / `in` test on a
discriminating scalar field (channel, vendor, sender role, language, vendor tier/status)
or a `contains` / `contains_any` test on a discriminating set field (intent, ticket tags).
Among a rule's candidates the most selective is chosen (fewest values relative to the
values that field takes across the ruleset). Rules without one are always candidates.

Per decision: read the indexed fields once, look the combination up in a bounded cache of
candidate lists (built from the per-field tables on a miss), then run each candidate's
residual closure in evaluation order. A rule the index leaves out cannot match, so the
decision equals the reference evaluator's (`rules.naive`); a property test checks that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from rules.ast import AllOf, Cond, Rule, Ruleset, Template, Test
from rules.closures import Check, RegexSets, all_of, compile_condition
from rules.facts import Facts, RuleInput, TextView
from rules.fields import FieldSpec, Kind, resolve
from rules.result import MAX_TRACE, MAX_TRACE_UNMATCHED, RuleResult, finish, resolve_route
from schemas.ticket import RuleTrace

CACHE_MAX = 8192  # candidate lists kept per combination of indexed field values
_PREFERENCE = (
    "message.vendor_id", "message.intent", "message.language", "message.language_base",
    "ticket.tags", "vendor.tier", "vendor.status", "sender.role", "message.channel",
)  # fmt: skip


@dataclass(slots=True)
class _Compiled:
    rule: Rule
    id: str
    check: Check | None  # residual condition after the index; None: nothing left to test
    contract: Check | None
    rank: int
    sla: str | None
    tags: tuple[str | Template, ...]
    terminal: bool
    queue: str | None  # fixed queue when no vendor logic is involved
    match_trace: RuleTrace
    continue_trace: RuleTrace
    fail_traces: dict[str, RuleTrace] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _IndexKey:
    path: str
    values: frozenset[Hashable]
    conjunct: int


class _Derive:
    def __init__(self, ruleset: Ruleset, regexes: RegexSets) -> None:
        self._intents = ruleset.intents
        self._regexes = regexes

    def intents_of(self, view: TextView) -> frozenset[str]:
        return self._intents.intents_of(view)

    def regex_hits(self, field_path: str, text: str) -> frozenset[int]:
        return self._regexes.hits(field_path, text)


def _preference(path: str) -> tuple[int, str]:
    return (_PREFERENCE.index(path) if path in _PREFERENCE else len(_PREFERENCE), path)


def _spec(path: str) -> FieldSpec:
    spec = resolve(path)
    if spec is None:
        raise ValueError(f"index on unknown field {path}")
    return spec


def _conjuncts(cond: Cond | None) -> list[Cond]:
    if cond is None:
        return []
    if isinstance(cond, AllOf):
        return [c for item in cond.items for c in _conjuncts(item)]
    return [cond]


def _index_values(cond: Cond) -> frozenset[Hashable] | None:
    if not isinstance(cond, Test) or not cond.spec.indexable:
        return None
    kind, op = cond.spec.kind, cond.op
    if kind is Kind.STR and op == "eq":
        return frozenset((cond.lit,))
    if kind is Kind.STR and op == "in":
        return frozenset(cond.lit)
    if kind is Kind.SET and op == "contains":
        return frozenset((cond.lit,))
    if kind is Kind.SET and op == "contains_any":
        return frozenset(cond.lit)
    return None


def choose_index(rules: tuple[Rule, ...]) -> dict[str, _IndexKey]:
    """The index key of each rule that has one (rule id -> key)."""
    distinct: dict[str, set[Hashable]] = {}
    options: dict[str, list[_IndexKey]] = {}
    for rule in rules:
        for pos, cond in enumerate(_conjuncts(rule.when)):
            values = _index_values(cond)
            if values is not None and isinstance(cond, Test):
                distinct.setdefault(cond.spec.path, set()).update(values)
                options.setdefault(rule.id, []).append(_IndexKey(cond.spec.path, values, pos))
    chosen: dict[str, _IndexKey] = {}
    for rule_id, keys in options.items():
        chosen[rule_id] = min(
            keys,
            key=lambda k: (
                len(k.values) / len(distinct[k.path]),
                _preference(k.path),
                k.conjunct,
            ),
        )
    return chosen


class CompiledRuleset:
    """A validated ruleset compiled once; `evaluate` is pure and deterministic."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.name = ruleset.name
        self.version = ruleset.version
        regexes = RegexSets()
        keys = choose_index(ruleset.rules)
        self._rules = [self._compile_rule(r, keys.get(r.id), regexes) for r in ruleset.rules]
        regexes.build()
        self._derive = _Derive(ruleset, regexes)
        paths = sorted({k.path for k in keys.values()}, key=_preference)
        specs = [_spec(p) for p in paths]
        self._getters: tuple[Callable[[Facts], Any], ...] = tuple(s.getter for s in specs)
        self._is_set = tuple(s.kind is Kind.SET for s in specs)
        self._tables: tuple[dict[Hashable, list[int]], ...] = tuple({} for _ in paths)
        always: list[int] = []
        for order, rule in enumerate(ruleset.rules):
            key = keys.get(rule.id)
            if key is None:
                always.append(order)
                continue
            table = self._tables[paths.index(key.path)]
            for value in key.values:
                table.setdefault(value, []).append(order)
        self._always = tuple(always)
        self._cache: dict[Hashable, tuple[_Compiled, ...]] = {}
        self.indexed_rules = len(ruleset.rules) - len(always)
        self.index_fields = tuple(paths)

    @staticmethod
    def _compile_rule(rule: Rule, key: _IndexKey | None, regexes: RegexSets) -> _Compiled:
        conjuncts = _conjuncts(rule.when)
        residual = [c for i, c in enumerate(conjuncts) if key is None or i != key.conjunct]
        check = all_of(compile_condition(c, regexes) for c in residual) if residual else None
        then = rule.then
        contract = compile_condition(then.contract, regexes) if then.contract else None
        fixed = then.route.text if then.route is not None and not then.to_vendor else None
        return _Compiled(
            rule=rule,
            id=rule.id,
            check=check,
            contract=contract,
            rank=then.priority.rank if then.priority is not None else -1,
            sla=then.sla,
            tags=tuple(t.text if t.constant else t for t in then.tags),
            terminal=then.terminal,
            queue=fixed,
            match_trace=RuleTrace(rule_id=rule.id, matched=True, reason="matched"),
            continue_trace=RuleTrace(rule_id=rule.id, matched=True, reason="continue"),
        )

    def _candidates(self, key: tuple[Any, ...]) -> tuple[_Compiled, ...]:
        found = set(self._always)
        for value, is_set, table in zip(key, self._is_set, self._tables, strict=True):
            if value is None:
                continue
            for v in value if is_set else (value,):
                hit = table.get(v)
                if hit:
                    found.update(hit)
        rules = self._rules
        cands = tuple(rules[i] for i in sorted(found))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = cands
        return cands

    def candidates(self, inp: RuleInput) -> tuple[str, ...]:
        """Rule ids the index selects for an input (for tests and `explain`)."""
        f = Facts(inp, self._derive)
        return tuple(c.id for c in self._candidates(tuple(g(f) for g in self._getters)))

    def evaluate(self, inp: RuleInput) -> RuleResult:
        f = Facts(inp, self._derive)
        key = tuple([g(f) for g in self._getters])
        cands = self._cache.get(key)
        if cands is None:
            cands = self._candidates(key)
        rank = -1
        sla: str | None = None
        tags: list[str] = []
        matched: list[str] = []
        trace: list[RuleTrace] = []
        unmatched = 0
        for c in cands:
            check = c.check
            if check is not None:
                failed = check(f)
                if failed is not None:
                    if unmatched < MAX_TRACE_UNMATCHED and len(trace) < MAX_TRACE:
                        entry = c.fail_traces.get(failed)
                        if entry is None:
                            entry = RuleTrace(rule_id=c.id, matched=False, reason=failed)
                            c.fail_traces[failed] = entry
                        trace.append(entry)
                    unmatched += 1
                    continue
            matched.append(c.id)
            if c.rank > rank:
                rank = c.rank
            if c.sla is not None:
                sla = c.sla
            for t in c.tags:
                if isinstance(t, str):
                    tags.append(t)
                else:
                    rendered = t.render(f)
                    if rendered is not None:
                        tags.append(rendered)
            if not c.terminal:
                if len(trace) < MAX_TRACE - 1:
                    trace.append(c.continue_trace)
                continue
            if c.queue is not None:
                trace.append(c.match_trace)
                return finish(self.ruleset, c.rule, c.queue, None, rank, sla, tags, trace, matched)
            queue, fallback = resolve_route(c.rule.then, f, c.contract)
            if fallback is None:
                trace.append(c.match_trace)
            else:
                reason = f"matched; {fallback}: {queue}"
                trace.append(RuleTrace(rule_id=c.id, matched=True, reason=reason))
            return finish(self.ruleset, c.rule, queue, fallback, rank, sla, tags, trace, matched)
        raise AssertionError("validated rulesets end with a catch-all")
