"""The compiled evaluator: a hash index picks candidate rules, generated code checks the rest.

Compiled once per ruleset version: each rule's indexable tests go into the candidate index
(`rules.index`), its other conditions into one generated function (`rules.codegen`), its
actions into precomputed values. Per decision: build the fact view, select candidates,
run them in evaluation order until the first terminal match. The semantics (order,
merging of priority / SLA / tags, vendor fallback) are those of `rules.result`, and the
decisions equal the reference evaluator's (`rules.naive`), which a property test checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rules.ast import Rule, Ruleset
from rules.codegen import Check, CodeGen
from rules.facts import Facts, InputView, words
from rules.index import CACHE_MAX, CandidateIndex, conjuncts, plan
from rules.operators import Phrase
from rules.result import (
    MAX_TRACE_CONTINUE,
    MAX_TRACE_UNMATCHED,
    NO_SLA,
    PRIORITIES,
    RuleResult,
    explanation,
    resolve_route,
    summary,
)
from rules.textmatch import Matchers
from schemas.ticket import RuleTrace


@dataclass(slots=True)
class _Compiled:
    rule: Rule
    id: str
    check: Check | None  # residual conditions: None, or the trace entry of the first failing
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


class _Derive:
    """Intents from the phrase hits of `message.text` (one matching pass per decision)."""

    def __init__(self, ruleset: Ruleset, matchers: Matchers) -> None:
        self._text = matchers.of("message.text", Facts.text)  # the method: one call less
        self._intents_by_hits: dict[frozenset[int], frozenset[str]] = {}
        self._intent_of: dict[int, list[str]] = {}
        for intent, phrases in ruleset.intents.table.items():
            for phrase in phrases:
                toks = tuple(words(phrase))
                if toks:
                    pid = self._text.add_phrase(Phrase(phrase, toks, " " + " ".join(toks) + " "))
                    self._intent_of.setdefault(pid, []).append(intent)

    def intents(self, facts: Facts) -> frozenset[str]:
        phrases = facts.phrase_hits(self._text)
        known = self._intents_by_hits.get(phrases)
        if known is not None:
            return known
        found: set[str] = set()
        for pid in phrases:
            names = self._intent_of.get(pid)
            if names:
                found.update(names)
        known = frozenset(found)
        if len(self._intents_by_hits) >= CACHE_MAX:
            self._intents_by_hits.clear()
        self._intents_by_hits[phrases] = known
        return known


# A RuleResult from a tuple of all its fields: skips the Python-level NamedTuple __new__.
_new_result = tuple.__new__


def _distinct(tags: list[str]) -> tuple[str, ...]:
    """Tags in first-seen order without repeats (short lists skip building a dict)."""
    if len(tags) < 2 or (len(tags) == 2 and tags[0] != tags[1]):
        return tuple(tags)
    return tuple(dict.fromkeys(tags))


class CompiledRuleset:
    """A validated ruleset compiled once; `evaluate` is pure and deterministic."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.name = ruleset.name
        self.version = ruleset.version
        matchers = Matchers()
        self._derive = _Derive(ruleset, matchers)
        gen = CodeGen(matchers)
        plans, low, high = plan(ruleset.rules)
        self._rules = tuple(
            _compile_rule(r, p.settled, gen, ruleset.sla_policies)
            for r, p in zip(ruleset.rules, plans, strict=True)
        )
        key = gen.key([*low, *high], f"{ruleset.name} index key")
        self._index = CandidateIndex(self._rules, plans, low, high, key)
        self._key = key
        self._candidates = self._index.cached  # the hit path of `select`: a bound dict.get
        matchers.build()
        self.indexed_rules = sum(p.lookup is not None for p in plans)
        self.index_fields = tuple(s.path for s in (*low, *high))
        # Indexed by rank / SLA rank; the last entry is the default (rank -1, no SLA).
        self._priorities = (*PRIORITIES, ruleset.default_priority)
        self._slas = (*ruleset.sla_policies, ruleset.default_sla)
        self._no_sla = len(ruleset.sla_policies)
        self._explanations: dict[tuple[str, ...], str] = {}  # by matched rules, no fallback

    def candidates(self, inp: InputView) -> tuple[str, ...]:
        """Rule ids the index selects for an input, in order (for tests and tools)."""
        return tuple(c.id for c in self._index.select(Facts(inp, self._derive)))

    def evaluate(self, inp: InputView) -> RuleResult:
        f = Facts(inp, self._derive)
        rank = -1
        sla_rank = self._no_sla
        tags: list[str] = []
        matched: list[str] = []
        trace: list[RuleTrace] = []
        room = MAX_TRACE_UNMATCHED  # failed rules the trace still has room for
        continued = 0
        key = self._key(f)
        cands = self._candidates(key)
        if cands is None:
            cands = self._index.select_key(key)
        for c in cands:
            check = c.check
            if check is not None:
                failed = check(f)
                if failed is not None:
                    if room:
                        trace.append(failed)
                        room -= 1
                    continue
            matched.append(c.id)
            if c.rank > rank:
                rank = c.rank
            if c.sla_rank < sla_rank:
                sla_rank = c.sla_rank
            if c.tags:
                tags.extend(c.tags)
            elif c.renders:
                for render in c.renders:
                    rendered = render(f)
                    if rendered is not None:
                        tags.append(rendered)
            if not c.terminal:
                if continued < MAX_TRACE_CONTINUE:
                    trace.append(c.continue_trace)
                    continued += 1
                continue
            done = tuple(matched)
            if c.queue is not None:
                queue, fallback = c.queue, None
            else:
                queue, fallback = resolve_route(c.rule.then, f, c.contract)
            if fallback is None:
                trace.append(c.match_trace)
                text = self._explanations.get(done)
                if text is None:
                    text = self._explain(c, matched)
            else:
                reason = f"matched; {fallback}: {queue}"
                trace.append(RuleTrace(rule_id=c.id, matched=True, reason=reason))
                text = explanation(c.rule, matched, queue, fallback, c.start)
            return _new_result(
                RuleResult,
                (
                    self.name,
                    self.version,
                    queue,
                    self._priorities[rank],
                    self._slas[sla_rank],
                    c.id,
                    _distinct(tags),
                    text,
                    tuple(trace),
                    done,
                    fallback,
                ),
            )
        raise AssertionError("validated rulesets end with a catch-all")

    def _explain(self, c: _Compiled, matched: list[str]) -> str:
        """The explanation of a decision without fallback: it depends on the matched rules
        only, so it is kept per list of them."""
        text = explanation(c.rule, matched, c.queue or "", None, c.start)
        if len(self._explanations) >= CACHE_MAX:
            self._explanations.clear()
        self._explanations[tuple(matched)] = text
        return text


def _compile_rule(
    rule: Rule, settled: frozenset[int], gen: CodeGen, sla_order: tuple[str, ...]
) -> _Compiled:
    residual = [c for i, c in enumerate(conjuncts(rule.when)) if i not in settled]
    fails = [RuleTrace(rule_id=rule.id, matched=False, reason=c.text) for c in residual]
    check = gen.check(residual, f"rule {rule.id}", fails) if residual else None
    then = rule.then
    contract = gen.check(conjuncts(then.contract), f"contract of rule {rule.id}") if (
        then.contract is not None) else None  # fmt: skip
    fixed = then.route.text if then.route is not None and not then.to_vendor else None
    constant = all(t.constant for t in then.tags)
    return _Compiled(
        rule=rule,
        id=rule.id,
        check=check,
        contract=contract,
        rank=then.priority.rank if then.priority is not None else -1,
        sla_rank=NO_SLA if then.sla is None else sla_order.index(then.sla),
        tags=tuple(t.text for t in then.tags) if constant else (),
        renders=()
        if constant
        else tuple(gen.template(t, f"tag {t.text!r} of rule {rule.id}") for t in then.tags),
        terminal=then.terminal,
        queue=fixed,
        start=summary(rule),
        match_trace=RuleTrace(rule_id=rule.id, matched=True, reason="matched"),
        continue_trace=RuleTrace(rule_id=rule.id, matched=True, reason="continue"),
    )
