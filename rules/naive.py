"""The reference evaluator: every rule, in order, interpreting the condition tree each time.

Slow on purpose and easy to read. It is the specification the compiled evaluator is
tested against (same decisions on random rulesets and inputs), and what `explain` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from rules.ast import AllOf, AnyOf, Cond, NotOf, Ruleset, Test
from rules.facts import Facts, Hits, InputView, text_of
from rules.operators import holds
from rules.result import (
    MAX_TRACE_CONTINUE,
    MAX_TRACE_UNMATCHED,
    NO_SLA,
    RuleResult,
    finish,
    resolve_route,
)
from schemas.ticket import RuleTrace


class _Derive:
    """Intents straight from the keyword table over the word tokens; no shared matching."""

    def __init__(self, ruleset: Ruleset) -> None:
        self._intents = ruleset.intents

    @property
    def matchers(self) -> Mapping[str, Callable[[str], Hits]]:
        return {}  # the reference evaluator tests each phrase and regex on its own

    def intents(self, facts: Facts) -> frozenset[str]:
        return self._intents.intents_of(facts.view("message.text", text_of))


def first_failure(cond: Cond, facts: Facts) -> str | None:
    """None when `cond` holds, else the text of the first condition that failed."""
    if isinstance(cond, Test):
        return None if holds(cond.op, cond.spec, cond.lit, facts) else cond.text
    if isinstance(cond, AllOf):
        for item in cond.items:
            failed = first_failure(item, facts)
            if failed is not None:
                return failed
        return None
    if isinstance(cond, AnyOf):
        ok = any(first_failure(item, facts) is None for item in cond.items)
        return None if ok else cond.text
    if isinstance(cond, NotOf):
        return cond.text if first_failure(cond.item, facts) is None else None
    raise TypeError(f"not a condition: {cond!r}")


def _contract_failure(contract: Cond, facts: Facts) -> str | None:
    return first_failure(contract, facts)


class NaiveEvaluator:
    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.name = ruleset.name
        self.version = ruleset.version
        self._derive = _Derive(ruleset)

    def facts(self, inp: InputView) -> Facts:
        return Facts(inp, self._derive)

    def evaluate(self, inp: InputView, *, full_trace: bool = False) -> RuleResult:
        """Decide. `full_trace`: keep every tried rule in the trace (no compaction)."""
        facts = self.facts(inp)
        rank = -1
        sla_rank = NO_SLA
        sla_order = self.ruleset.sla_policies
        tags: list[str] = []
        matched: list[str] = []
        trace: list[RuleTrace] = []
        unmatched = 0
        continued = 0
        for rule in self.ruleset.rules:
            failed = first_failure(rule.when, facts) if rule.when is not None else None
            if failed is not None:
                if full_trace or unmatched < MAX_TRACE_UNMATCHED:
                    trace.append(RuleTrace(rule_id=rule.id, matched=False, reason=failed))
                unmatched += 1
                continue
            then = rule.then
            matched.append(rule.id)
            if then.priority is not None:
                rank = max(rank, then.priority.rank)
            if then.sla is not None:
                sla_rank = min(sla_rank, sla_order.index(then.sla))
            for template in then.tags:
                tag = template.render(facts)
                if tag is not None:
                    tags.append(tag)
            if not then.terminal:
                if full_trace or continued < MAX_TRACE_CONTINUE:
                    trace.append(RuleTrace(rule_id=rule.id, matched=True, reason="continue"))
                continued += 1
                continue
            contract = then.contract
            check = None if contract is None else partial(_contract_failure, contract)
            queue, fallback = resolve_route(then, facts, check)
            reason = "matched" if fallback is None else f"matched; {fallback}: {queue}"
            trace.append(RuleTrace(rule_id=rule.id, matched=True, reason=reason))
            return finish(self.ruleset, rule, queue, fallback, rank, sla_rank, tags, trace, matched)
        raise AssertionError("validated rulesets end with a catch-all")
