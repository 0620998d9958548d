"""Explanations: which rules were tried for one input, which condition failed and why.

Built on the reference semantics (every rule, in order, every condition evaluated), so it
shows actual field values next to each test. `render_explanation` gives plain text lines.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.ast import AllOf, AnyOf, Cond, NotOf, Rule, Ruleset, Test
from rules.facts import Facts, InputView
from rules.fields import Kind
from rules.naive import NaiveEvaluator
from rules.operators import holds, short
from rules.result import RuleResult


@dataclass(frozen=True, slots=True)
class CondNode:
    text: str
    ok: bool
    actual: str | None  # the field value, for tests
    children: tuple[CondNode, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleStep:
    rule: Rule
    outcome: str  # "continue" | "matched" | "failed" | "not reached"
    reason: str | None  # first failing condition (failed), fallback note (matched)
    when: CondNode | None


@dataclass(frozen=True, slots=True)
class Explanation:
    ruleset: Ruleset
    result: RuleResult
    steps: tuple[RuleStep, ...]
    intents: frozenset[str]


def _actual(t: Test, facts: Facts) -> str:
    value = t.spec.getter(facts)
    if value is None:
        return "absent"
    if t.spec.kind is Kind.TEXT and t.op in ("contains", "contains_any"):
        return f"{len(facts.view(t.spec.path, t.spec.getter).tokens)} words"
    if isinstance(value, AbstractSet):
        return "{" + ", ".join(sorted(map(str, value))) + "}"
    if isinstance(value, datetime):
        return value.isoformat()
    return short(str(value) if not isinstance(value, bool | int | float) else value)


def evaluate_tree(cond: Cond, facts: Facts) -> CondNode:
    """Every node of a condition with its outcome (no short-circuit, for display)."""
    if isinstance(cond, Test):
        ok = holds(cond.op, cond.spec, cond.lit, facts)
        return CondNode(cond.text, ok, _actual(cond, facts))
    if isinstance(cond, NotOf):
        inner = evaluate_tree(cond.item, facts)
        return CondNode("not", not inner.ok, None, (inner,))
    items = tuple(evaluate_tree(c, facts) for c in cond.items)
    if isinstance(cond, AllOf):
        return CondNode("all of", all(i.ok for i in items), None, items)
    if isinstance(cond, AnyOf):
        return CondNode("any of", any(i.ok for i in items), None, items)
    raise TypeError(f"not a condition: {cond!r}")


def _first_failed_test(node: CondNode) -> CondNode:
    """The test to blame for a failed node (the first failing leaf under all-of)."""
    if node.ok or not node.children or node.text != "all of":
        return node
    return _first_failed_test(next(c for c in node.children if not c.ok))


def explain(ruleset: Ruleset, inp: InputView) -> Explanation:
    evaluator = NaiveEvaluator(ruleset)
    result = evaluator.evaluate(inp, full_trace=True)
    facts = evaluator.facts(inp)
    reasons = {t.rule_id: t for t in result.trace}
    steps: list[RuleStep] = []
    done = False
    for rule in ruleset.rules:
        tree = evaluate_tree(rule.when, facts) if rule.when is not None else None
        entry = reasons.get(rule.id)
        if done or entry is None:
            steps.append(RuleStep(rule, "not reached", None, tree))
        elif not entry.matched:
            steps.append(RuleStep(rule, "failed", entry.reason, tree))
        elif rule.then.terminal:
            steps.append(RuleStep(rule, "matched", result.fallback, tree))
            done = True
        else:
            steps.append(RuleStep(rule, "continue", None, tree))
    return Explanation(ruleset, result, tuple(steps), facts.intents())


def _tree_lines(node: CondNode, depth: int) -> list[str]:
    mark = "ok  " if node.ok else "FAIL"
    actual = f"   (actual: {node.actual})" if node.actual is not None else ""
    lines = [f"{'    ' * depth}{mark} {node.text}{actual}"]
    for child in node.children:
        lines.extend(_tree_lines(child, depth + 1))
    return lines


def render_explanation(expl: Explanation, *, verbose: bool = False) -> list[str]:
    rs, res = expl.ruleset, expl.result
    out = [f"ruleset {rs.name} {rs.version} ({rs.file}), {len(rs.rules)} rules"]
    out.append("intents detected: " + (", ".join(sorted(expl.intents)) or "none"))
    out.append("rules tried, in evaluation order (priority, then file order):")
    unreached = 0
    for step in expl.steps:
        rule = step.rule
        head = f"  {rule.id} (line {rule.line}, priority {rule.priority})"
        if step.outcome == "not reached":
            unreached += 1
            if verbose:
                out.append(f"{head}: not reached")
            continue
        if step.outcome == "failed" and step.when is not None:
            blame = _first_failed_test(step.when)
            actual = f" (actual: {blame.actual})" if blame.actual is not None else ""
            out.append(f"{head}: no match, {step.reason} is false{actual}")
        elif step.outcome == "continue":
            out.append(f"{head}: MATCHED, continue (adds {_adds(rule)})")
        else:
            note = f"; {step.reason}: fallback" if step.reason else ""
            out.append(f"{head}: MATCHED, terminal{note}")
        if verbose and step.when is not None:
            out.extend(_tree_lines(step.when, 2))
    if unreached and not verbose:
        out.append(f"  ... {unreached} later rules not reached (--verbose lists them)")
    out.append(
        f"decision: queue {res.queue}, priority {res.priority.value}, sla {res.sla_policy}, "
        f"rule {res.rule_id}, tags [{', '.join(res.tags)}]"
    )
    out.append(f"explanation: {res.explanation}")
    return out


def _adds(rule: Rule) -> str:
    then = rule.then
    parts: list[Any] = []
    if then.tags:
        parts.append("tags " + ", ".join(t.text for t in then.tags))
    if then.priority is not None:
        parts.append(f"priority {then.priority.value}")
    if then.sla is not None:
        parts.append(f"sla {then.sla}")
    if then.open_dispute is not None:
        parts.append(f"open_dispute {then.open_dispute.reason}")
    return "; ".join(parts) or "nothing"
