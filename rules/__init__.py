"""The routing-rule language: load, validate, compile, evaluate, explain, test.

Public API (what the worker and the CLI use):

- `load_ruleset_document(bytes)` / `load_ruleset_file(path)` -> `CompiledRuleset` or a list
  of `Problem`s (file, line, rule id, message).
- `parse_ruleset_text` / `parse_ruleset_file` -> validated `Ruleset` (or problems), and
  `compile_ruleset(Ruleset)` -> `CompiledRuleset`.
- `CompiledRuleset.evaluate(InputView) -> RuleResult`: `RuleInput`, or any record with
  `message, now, ticket, vendor, buyer, order` (the router's `RoutingContext` is one).
  `NaiveEvaluator` is the reference it is property-tested against.
- `ruleset_record(ruleset, at=...)`: the CloudEvent bytes for `routing.rules`.

Only `schemas` is imported from this project, and the `router` package itself, first: its
`__init__` checks the native build (`router/native.py`), which also compiles the decision
path here, before a compiled module can load. `router/rules_policy.py` wraps a compiled
ruleset as a `RoutingPolicy`. The language itself is described in `rules/README.md`.
"""

import router  # noqa: F401  # the native build's stale check runs before rules.* load
from rules.ast import Ruleset
from rules.compile import CompiledRuleset
from rules.facts import BuyerInfo, InputView, RuleInput, TicketInfo
from rules.load import (
    compile_ruleset,
    load_ruleset_document,
    load_ruleset_file,
    parse_ruleset_file,
    parse_ruleset_text,
    ruleset_record,
)
from rules.naive import NaiveEvaluator
from rules.result import DisputeRequest, RuleResult
from rules.validate import Problem
from schemas.rules_event import RULESET_PUBLISHED

__all__ = [
    "RULESET_PUBLISHED",
    "BuyerInfo",
    "CompiledRuleset",
    "DisputeRequest",
    "InputView",
    "NaiveEvaluator",
    "Problem",
    "RuleInput",
    "RuleResult",
    "Ruleset",
    "TicketInfo",
    "compile_ruleset",
    "load_ruleset_document",
    "load_ruleset_file",
    "parse_ruleset_file",
    "parse_ruleset_text",
    "ruleset_record",
]
