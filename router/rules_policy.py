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

from collections.abc import Collection
from pathlib import Path

from router.routing import Decision, RoutingContext
from rules import CompiledRuleset, Problem, RuleResult, load_ruleset_document, load_ruleset_file


class RulesetPolicy:
    """Pure and deterministic: same ruleset version and context give the same decision."""

    __slots__ = ("_compiled",)

    def __init__(self, compiled: CompiledRuleset) -> None:
        self._compiled = compiled

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
        res = self.evaluate(ctx)
        return Decision(
            queue=res.queue,
            priority=res.priority,
            sla_policy=res.sla_policy,
            rule_id=res.rule_id,
            ruleset=res.ruleset,
            ruleset_version=res.ruleset_version,
            tags=res.tags,
            explanation=res.explanation,
            trace=res.trace,
        )


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
    value: bytes, *, source: str = "routing.rules", sla_policies: Collection[str] | None = None
) -> RulesetPolicy | list[Problem]:
    """Hot reload: a `routing.rules` record value -> a policy to swap in, or the problems
    (keep the current policy and report them)."""
    loaded = load_ruleset_document(value, source=source, sla_policies=sla_policies)
    return loaded if isinstance(loaded, list) else RulesetPolicy(loaded)
