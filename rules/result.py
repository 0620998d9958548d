"""The outcome of evaluating a ruleset, and the action semantics both evaluators share.

Evaluation, in the order fixed by validation (priority, higher first, then file order):
  - a rule whose `when` fails is skipped (the trace keeps its first failing condition);
  - a matching `continue` rule adds its tags, priority and SLA, and evaluation goes on;
  - the first matching terminal rule adds its own, picks the queue and ends evaluation.
Priority is the highest any matching rule set (the ruleset default when none did); the SLA
policy is the strictest any matching rule named, `sla_policies` being listed strictest
first (the default when none did); tags keep first-seen order. Both merges are
order-independent, so an enrichment rule and the terminal rule compose predictably.

A vendor route falls back to the rule's `fallback` department when the vendor id is
missing or malformed, when no profile is known for it, when it is not active, or when the
rule's `contract` condition does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from rules.ast import Action, Rule, Ruleset
from rules.facts import Facts
from schemas.message import VENDOR_ID_PATTERN
from schemas.ticket import Priority, RuleTrace
from schemas.vendor import VendorStatus

MAX_TRACE_UNMATCHED = 12  # rules tried and failed, in order, before the rest are elided
MAX_TRACE = 32  # hard bound on trace entries: failed + matched `continue` rules + terminal
MAX_TRACE_CONTINUE = MAX_TRACE - MAX_TRACE_UNMATCHED - 1

_VENDOR_ID = re.compile(VENDOR_ID_PATTERN)
PRIORITIES = tuple(sorted(Priority, key=lambda p: p.rank))
NO_SLA = 1 << 30  # rank meaning "no rule named an SLA policy"


class RuleResult(NamedTuple):
    ruleset: str
    ruleset_version: str
    queue: str
    priority: Priority
    sla_policy: str
    rule_id: str  # the terminal rule that chose the queue
    tags: tuple[str, ...]
    explanation: str
    trace: tuple[RuleTrace, ...]  # compact: first failing condition per tried rule
    matched: tuple[str, ...]  # every matching rule, continue rules first, in order
    fallback: str | None = None  # why a vendor route fell back, when it did


class DisputeRequest(NamedTuple):
    """A matching rule's `open_dispute` with its values as the input gave them (None where
    absent): the router checks them and writes the command."""

    rule_id: str
    reason: str
    amount: Any
    currency: Any
    category: Any


def resolve_route(
    then: Action, facts: Facts, contract_failure: Callable[[Facts], str | None] | None
) -> tuple[str, str | None]:
    """(queue, fallback reason or None) for a terminal rule's action."""
    route = then.route
    if route is None:  # validation guarantees terminal rules route
        raise ValueError("terminal rule without a route")
    if not then.to_vendor:
        return route.text, None
    fallback = then.fallback or ""
    rendered = route.render(facts)
    if rendered is None:
        return fallback, "no vendor id"
    vendor_id = rendered[len("vendor:") :]
    if not _VENDOR_ID.match(vendor_id):
        return fallback, f"bad vendor id {vendor_id!r}"
    profile = facts.vendor
    if profile is None or profile.vendor_id != vendor_id:
        return fallback, f"vendor {vendor_id} unknown"
    if profile.status is not VendorStatus.ACTIVE:
        return fallback, f"vendor {vendor_id} {profile.status.value}"
    if contract_failure is not None:
        failed = contract_failure(facts)
        if failed is not None:
            return fallback, f"vendor {vendor_id} out of contract ({failed})"
    return f"vendor:{vendor_id}", None


def summary(rule: Rule) -> str:
    """`rule <id> matched (<condition>)`: the start of every explanation by this rule."""
    return f"rule {rule.id} matched ({rule.when.text if rule.when is not None else 'catch-all'})"


def explanation(
    rule: Rule, matched: list[str], queue: str, fallback: str | None, start: str | None = None
) -> str:
    text = start if start is not None else summary(rule)
    if fallback is not None:
        text += f"; {fallback}: fallback to {queue}"
    if len(matched) > 1:
        text += "; also applied " + ", ".join(matched[:-1])
    return text


def finish(
    ruleset: Ruleset,
    rule: Rule,
    queue: str,
    fallback: str | None,
    rank: int,
    sla_rank: int,
    tags: list[str],
    trace: list[RuleTrace],
    matched: list[str],
    start: str | None = None,
) -> RuleResult:
    return RuleResult(
        ruleset.name,
        ruleset.version,
        queue,
        PRIORITIES[rank] if rank >= 0 else ruleset.default_priority,
        ruleset.sla_policies[sla_rank] if sla_rank != NO_SLA else ruleset.default_sla,
        rule.id,
        tuple(dict.fromkeys(tags)),
        start
        if start is not None and fallback is None and len(matched) == 1
        else explanation(rule, matched, queue, fallback, start),
        tuple(trace),
        tuple(matched),
        fallback,
    )
