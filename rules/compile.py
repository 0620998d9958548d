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
from rules.facts import Facts, Hits, InputView, text_of, words
from rules.index import CandidateIndex, conjuncts, plan
from rules.operators import Phrase
from rules.result import (
    MAX_TRACE_CONTINUE,
    MAX_TRACE_UNMATCHED,
    NO_SLA,
    RuleResult,
    finish,
    resolve_route,
    summary,
)
from rules.textmatch import Matchers
from schemas.ticket import RuleTrace


@dataclass(slots=True)
class _Compiled:
    rule: Rule
    id: str
    check: Check | None  # residual conditions after the index; None: nothing left to test
    contract: Check | None
    rank: int
    sla_rank: int
    tags: tuple[str, ...]  # all of them when constant, else ()
    renders: tuple[Callable[[Facts], str | None], ...]  # when some are templated
    terminal: bool
    queue: str | None  # fixed queue when no vendor logic is involved
    start: str  # start of the explanation
    match_trace: RuleTrace
    continue_trace: RuleTrace
    fail_traces: dict[str, RuleTrace]  # by failure text, one per residual conjunct


class _Derive:
    """Intents and text matches from the ruleset's RE2 sets (one pass per field)."""

    def __init__(self, ruleset: Ruleset, matchers: Matchers) -> None:
        self._matchers = matchers
        self.matchers: dict[str, Callable[[str], Hits]] = {}
        self._intents_by_hits: dict[frozenset[int], frozenset[str]] = {}
        text = matchers.of("message.text")
        self._intent_of: dict[int, list[str]] = {}
        for intent, phrases in ruleset.intents.table.items():
            for phrase in phrases:
                toks = tuple(words(phrase))
                if toks:
                    pid = text.add_phrase(Phrase(phrase, toks, " " + " ".join(toks) + " "))
                    self._intent_of.setdefault(pid, []).append(intent)

    def intents(self, facts: Facts) -> frozenset[str]:
        phrases = facts.hits("message.text", text_of).phrases
        known = self._intents_by_hits.get(phrases)
        if known is not None:
            return known
        found: set[str] = set()
        for pid in phrases:
            names = self._intent_of.get(pid)
            if names:
                found.update(names)
        known = frozenset(found)
        if len(self._intents_by_hits) >= 4096:
            self._intents_by_hits.clear()
        self._intents_by_hits[phrases] = known
        return known

    def build(self) -> None:
        """After every phrase and regex is registered: build the sets, bind the matchers."""
        self._matchers.build()
        self.matchers = {path: m.match for path, m in self._matchers.fields.items()}


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
        self._index = CandidateIndex(
            self._rules,
            plans,
            low,
            high,
            gen.key(low, f"{ruleset.name} low key"),
            gen.key(high, f"{ruleset.name} high key"),
        )
        self._derive.build()
        self.indexed_rules = sum(p.lookup is not None for p in plans)
        self.index_fields = tuple(s.path for s in (*low, *high))

    def candidates(self, inp: InputView) -> tuple[str, ...]:
        """Rule ids the index selects for an input, in order (for tests and tools)."""
        return tuple(c.id for c in self._index.select(Facts(inp, self._derive)))

    def evaluate(self, inp: InputView) -> RuleResult:
        f = Facts(inp, self._derive)
        cands = self._index.select(f)
        rank = -1
        sla_rank = NO_SLA
        tags: list[str] = []
        matched: list[str] = []
        trace: list[RuleTrace] = []
        room = MAX_TRACE_UNMATCHED  # failed rules the trace still has room for
        continued = 0
        for c in cands:
            check = c.check
            if check is not None:
                failed = check(f)
                if failed is not None:
                    if room:
                        trace.append(c.fail_traces[failed])
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
            if c.queue is not None:
                queue, fallback = c.queue, None
            else:
                queue, fallback = resolve_route(c.rule.then, f, c.contract)
            if fallback is None:
                trace.append(c.match_trace)
            else:
                reason = f"matched; {fallback}: {queue}"
                trace.append(RuleTrace(rule_id=c.id, matched=True, reason=reason))
            return finish(self.ruleset, c.rule, queue, fallback, rank, sla_rank, tags, trace,
                          matched, c.start)  # fmt: skip
        raise AssertionError("validated rulesets end with a catch-all")


def _compile_rule(
    rule: Rule, settled: frozenset[int], gen: CodeGen, sla_order: tuple[str, ...]
) -> _Compiled:
    residual = [c for i, c in enumerate(conjuncts(rule.when)) if i not in settled]
    check = gen.check(residual, f"rule {rule.id}") if residual else None
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
        fail_traces={
            c.text: RuleTrace(rule_id=rule.id, matched=False, reason=c.text) for c in residual
        },
    )
