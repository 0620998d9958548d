"""The routing-rule language: load, validate, compile, evaluate, explain, test, backtest.

Public API (what the worker and the CLI use):

- `load_ruleset_document(bytes)` / `load_ruleset_file(path)` -> `CompiledRuleset` or a list
  of `Problem`s (file, line, rule id, message).
- `parse_ruleset_text` / `parse_ruleset_file` -> validated `Ruleset` (or problems), and
  `compile_ruleset(Ruleset)` -> `CompiledRuleset`.
- `CompiledRuleset.evaluate(RuleInput) -> RuleResult`; `NaiveEvaluator` is the reference.
- `ruleset_record(ruleset, at=...)`: the CloudEvent bytes for `routing.rules`.

Only `schemas` is imported from this project; the router adapts `RoutingContext` to
`RuleInput` in `router/rules_policy.py`.
"""

from rules.ast import Ruleset
from rules.compile import CompiledRuleset
from rules.facts import BuyerInfo, RuleInput, TicketInfo
from rules.load import (
    RULESET_PUBLISHED,
    compile_ruleset,
    load_ruleset_document,
    load_ruleset_file,
    parse_ruleset_file,
    parse_ruleset_text,
    ruleset_record,
)
from rules.naive import NaiveEvaluator
from rules.result import RuleResult
from rules.validate import Problem

__all__ = [
    "RULESET_PUBLISHED",
    "BuyerInfo",
    "CompiledRuleset",
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
