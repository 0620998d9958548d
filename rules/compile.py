"""The compiled evaluator: a hash index picks candidate rules, generated code checks the rest.

Compiled once per ruleset version: each rule's indexable tests go into the candidate index
(`rules.index`), its other conditions into one generated function (`rules.codegen`), its
actions into precomputed values. Per decision: build the fact view, read the index key,
find the key's chain of candidates (`rules.chain`, cached per key), run their checks in
evaluation order until the first terminal match, and take the decision the chain keeps
for that outcome. The semantics (order, merging of priority / SLA / tags, vendor
fallback) are those of `rules.result`, and the decisions equal the reference evaluator's
(`rules.naive`), which a property test checks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from rules.ast import Rule, Ruleset
from rules.chain import Chain, CompiledRule, Header, Pending, fixed_tags
from rules.codegen import CodeGen
from rules.facts import Facts, InputView, words
from rules.fields import Kind
from rules.index import CACHE_MAX, CandidateIndex, conjuncts, plan
from rules.operators import Phrase
from rules.result import NO_SLA, PRIORITIES, DisputeRequest, RuleResult, summary
from rules.textmatch import Matchers
from schemas.ticket import RuleTrace


class _Derive:
    """Intents from the phrase hits of `message.text` (one matching pass per decision)."""

    def __init__(self, ruleset: Ruleset, matchers: Matchers) -> None:
        self._text = matchers.of("message.text", Facts.text)  # the method: one call less
        for intent, phrases in ruleset.intents.table.items():
            for phrase in phrases:
                toks = tuple(words(phrase))
                if toks:
                    pid = self._text.add_phrase(Phrase(phrase, toks, " " + " ".join(toks) + " "))
                    self._text.intent_of.setdefault(pid, []).append(intent)

    def intents(self, facts: Facts) -> frozenset[str]:
        return facts.phrase_hits(self._text).intents


class CompiledRuleset:
    """A validated ruleset compiled once; `evaluate` is pure and deterministic."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.name = ruleset.name
        self.version = ruleset.version
        matchers = Matchers()
        self._derive = _Derive(ruleset, matchers)
        gen = CodeGen(matchers)
        plans, low, high = plan(ruleset.rules, matchers.index_test)
        self._rules = tuple(
            _compile_rule(r, p.settled, gen, ruleset.sla_policies)
            for r, p in zip(ruleset.rules, plans, strict=True)
        )
        key = gen.key([*low, *high], f"{ruleset.name} index key")
        self._index = CandidateIndex(self._rules, plans, low, high, key)
        self._key = key
        matchers.build()
        self.indexed_rules = sum(p.lookup is not None for p in plans)
        self.index_fields = tuple(s.path for s in (*low, *high))
        # Indexed by rank / SLA rank; the last entry is the default (rank -1, no SLA).
        self._head = Header(
            ruleset.name,
            ruleset.version,
            (*PRIORITIES, ruleset.default_priority),
            (*ruleset.sla_policies, ruleset.default_sla),
            len(ruleset.sla_policies),
        )
        self._chains: dict[Hashable, Chain] = {}  # by index key; cleared when full
        self._shared: dict[Hashable, Chain] = {}  # by candidates and key-rendered tags
        # Key positions of the string fields: tags inserting only these render per chain.
        kinds = (Kind.STR, Kind.TEXT)
        self._string_slots = {s.path: i for i, s in enumerate((*low, *high)) if s.kind in kinds}
        # The rules that open a dispute, by id (most rulesets have none: nothing to look up).
        self.dispute_claims = {
            r.id: r.then.open_dispute for r in ruleset.rules if r.then.open_dispute is not None
        }

    def dispute_request(self, inp: InputView, matched: Sequence[str]) -> DisputeRequest | None:
        """The `open_dispute` of the first matching rule that has one, read from the input."""
        for rule_id in matched:
            claim = self.dispute_claims.get(rule_id)
            if claim is not None:
                amount, currency, category = claim.values(Facts(inp, self._derive))
                return DisputeRequest(rule_id, claim.reason, amount, currency, category)
        return None

    def candidates(self, inp: InputView) -> tuple[str, ...]:
        """Rule ids the index selects for an input, in order (for tests and tools)."""
        return tuple(c.id for c in self._index.select(Facts(inp, self._derive)))

    def _chain(self, key: tuple[Any, ...]) -> Chain:
        positions = self._index.positions(key)
        rules = tuple(self._rules[p] for p in positions)
        fixed = fixed_tags(rules, key, self._string_slots)
        chain = self._shared.get((positions, fixed))
        if chain is None:
            if len(self._shared) >= CACHE_MAX:
                self._shared.clear()
            chain = self._shared[positions, fixed] = Chain(rules, self._head, fixed)
        if len(self._chains) >= CACHE_MAX:
            self._chains.clear()
        self._chains[key] = chain
        return chain

    def evaluate(self, inp: InputView) -> RuleResult:
        f = Facts(inp, self._derive)
        key = self._key(f)
        chain = self._chains.get(key)  # compiled: a direct dict read, not a bound-method call
        if chain is None:
            chain = self._chain(key)
        state = 0
        for check, shift, terminal in chain.steps:
            code = check(f)
            if code is None:
                if terminal:
                    break
            else:
                state |= code << shift
        out = chain.outcomes.get(state)
        if out is None:
            out = chain.outcome(state)
        if type(out) is Pending:
            return out.finish(f)
        return out  # type: ignore[return-value]  # not Pending: a RuleResult


def _compile_rule(
    rule: Rule, settled: frozenset[int], gen: CodeGen, sla_order: tuple[str, ...]
) -> CompiledRule:
    residual = [c for i, c in enumerate(conjuncts(rule.when)) if i not in settled]
    fails = tuple(RuleTrace(rule_id=rule.id, matched=False, reason=c.text) for c in residual)
    codes = range(1, len(residual) + 1)  # the check returns the failing conjunct's code
    check = gen.check(residual, f"rule {rule.id}", codes) if residual else None
    then = rule.then
    contract = gen.check(conjuncts(then.contract), f"contract of rule {rule.id}") if (
        then.contract is not None) else None  # fmt: skip
    fixed = then.route.text if then.route is not None and not then.to_vendor else None
    constant = all(t.constant for t in then.tags)
    return CompiledRule(
        rule=rule,
        id=rule.id,
        check=check,
        width=len(residual).bit_length(),
        fails=fails,
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
