"""`RulesetPolicy`: a compiled ruleset behind the router's `RoutingPolicy` interface.

The rule engine (`rules/`) knows nothing of the router; this adapter turns a
`RoutingContext` into a `rules.RuleInput` (no copying: the router's ticket and buyer
dataclasses already fit the engine's protocols; `RoutingContext` itself is a valid
`rules.facts.InputView`) and the engine's result into a `Decision`.

Hot reload: build a new `RulesetPolicy` from `rules.load_ruleset_document(record_bytes)`
and swap the worker's reference to it; a single assignment is atomic, and a policy is
immutable once built, so a decision never sees half of one ruleset and half of another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from router.routing import Decision, RoutingContext
from rules import CompiledRuleset, Problem, RuleResult, load_ruleset_document, load_ruleset_file
from schemas.topics import ROUTING_RULES

# `Decision` is a frozen slots dataclass: its generated __init__ sets each field through
# object.__setattr__ and costs about as much as a whole rules decision. The decision is
# built here by writing its slots directly; a test holds this equal to `Decision(...)`.
_DECISION_FIELDS = ("queue", "priority", "sla_policy", "rule_id", "ruleset", "ruleset_version",
                    "tags", "explanation", "trace", "dispute")  # fmt: skip
_SLOT_SETTERS: tuple[Callable[[Decision, Any], None], ...] = tuple(
    getattr(Decision, name).__set__ for name in _DECISION_FIELDS
)
_SET_Q, _SET_P, _SET_S, _SET_R, _SET_RS, _SET_V, _SET_T, _SET_E, _SET_TR, _SET_D = _SLOT_SETTERS
_new_object = object.__new__


def decision_of(res: RuleResult) -> Decision:
    """The router's `Decision` for an engine result."""
    d: Decision = _new_object(Decision)
    _SET_Q(d, res.queue)
    _SET_P(d, res.priority)
    _SET_S(d, res.sla_policy)
    _SET_R(d, res.rule_id)
    _SET_RS(d, res.ruleset)
    _SET_V(d, res.ruleset_version)
    _SET_T(d, res.tags)
    _SET_E(d, res.explanation)
    _SET_TR(d, res.trace)
    _SET_D(d, None)
    return d


assert tuple(f.name for f in dataclasses.fields(Decision)) == _DECISION_FIELDS, "Decision changed"
assert not hasattr(Decision, "__post_init__"), "Decision validates: build it with Decision(...)"


DECISIONS_MAX = 16384  # decisions kept per engine result (cleared when full)


class RulesetPolicy:
    """Pure and deterministic: same ruleset version and context give the same decision."""

    __slots__ = ("_compiled", "_decisions")

    def __init__(self, compiled: CompiledRuleset) -> None:
        self._compiled = compiled
        # The compiled evaluator hands out one shared result per outcome (`rules.chain`), so
        # the decision for it is built once too. Keyed by identity: an entry holds its result,
        # whose id therefore cannot be reused while the entry is there.
        self._decisions: dict[int, tuple[RuleResult, Decision]] = {}

    @property
    def name(self) -> str:
        return self._compiled.name

    @property
    def version(self) -> str:
        return self._compiled.version

    @property
    def compiled(self) -> CompiledRuleset:
        return self._compiled

    @property
    def departments(self) -> tuple[str, ...]:
        """Every department the ruleset may route to: the worker creates their
        `queue.dept.<name>` topics before the policy goes live."""
        return tuple(sorted(self._compiled.ruleset.departments))

    def evaluate(self, ctx: RoutingContext) -> RuleResult:
        """The engine's full result (with every matched rule), for audit and tools."""
        return self._compiled.evaluate(ctx)

    def decide(self, ctx: RoutingContext) -> Decision:
        res = self._compiled.evaluate(ctx)
        known = self._decisions.get(id(res))
        if known is not None and known[0] is res:
            decision = known[1]
        else:
            decision = decision_of(res)
            if len(self._decisions) >= DECISIONS_MAX:
                self._decisions.clear()
            self._decisions[id(res)] = (res, decision)
        if self._compiled.dispute_claims:  # per message: never part of the shared decision
            request = self._compiled.dispute_request(ctx, res.matched)
            if request is not None:
                return dataclasses.replace(decision, dispute=request)
        return decision


class RulesetError(ValueError):
    """A ruleset that does not validate; `problems` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def policy_from_file(
    path: str | Path, *, sla_policies: Collection[str] | None = None
) -> RulesetPolicy:
    """A policy from a ruleset file; raises RulesetError with every problem."""
    loaded = load_ruleset_file(path, sla_policies=sla_policies)
    if isinstance(loaded, list):
        raise RulesetError(loaded)
    return RulesetPolicy(loaded)


def policy_from_record(
    value: bytes, *, source: str = ROUTING_RULES.name, sla_policies: Collection[str] | None = None
) -> RulesetPolicy | list[Problem]:
    """Hot reload: a `routing.rules` record value -> a policy to swap in, or the problems
    (keep the current policy and report them)."""
    loaded = load_ruleset_document(value, source=source, sla_policies=sla_policies)
    return loaded if isinstance(loaded, list) else RulesetPolicy(loaded)
