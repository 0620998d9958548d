"""Golden cases: every example ruleset has a cases file, and all of its cases pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import load_ruleset_file
from rules.golden import format_outcome, load_cases, run_cases
from rules.source import parse_text
from tests.unit.rules.rules_support import EXAMPLES, parse

CASE_FILES = sorted(EXAMPLES.glob("*.cases.yaml"))
RULESETS = sorted(
    p
    for p in [*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*.json")]
    if p.name.count(".") == 1
        and p.name not in ("context.yaml", "vendors.yaml", "message.json")  # inputs, not rulesets
)


def test_every_example_ruleset_has_golden_cases() -> None:
    assert len(RULESETS) >= 3  # two marketplace versions (YAML) and a JSON starter
    covered = {
        (EXAMPLES / str(load_cases(parse_text(p.read_text(), str(p))).ruleset)).resolve()
        for p in CASE_FILES
    }
    assert covered == {p.resolve() for p in RULESETS}


@pytest.mark.parametrize("cases_file", CASE_FILES, ids=lambda p: Path(p).name)
def test_golden_cases_pass(cases_file: Path) -> None:
    src = parse_text(cases_file.read_text(encoding="utf-8"), str(cases_file))
    ruleset_file = EXAMPLES / str(load_cases(src).ruleset)
    compiled = load_ruleset_file(ruleset_file)
    assert not isinstance(compiled, list), "\n".join(map(str, compiled))
    outcomes = run_cases(compiled, src)
    assert len(outcomes) >= 10
    failures = [
        line for o in outcomes if not o.passed for line in format_outcome(o, str(cases_file))
    ]
    assert not failures, "\n".join(failures)


def test_a_failing_case_prints_a_diff_per_field() -> None:
    from rules.compile import CompiledRuleset

    ruleset = parse(
        """\
        - id: refunds
          when: {field: message.intent, contains: refund}
          then: {route: "dept:payments", tags: [money]}
        - id: catch-all
          then: {route: "dept:general"}
        """
    )
    text = """\
cases:
  - name: refund goes to disputes (wrong on purpose)
    message: {body: "refund please"}
    expect: {queue: dept:disputes, priority: normal, tags: [money, extra], rule: refunds}
  - name: ok
    message: {body: "hello"}
    expect: {queue: dept:general, tags_exclude: [money]}
  - name: broken input
    message: {channel: fax, body: "x"}
    expect: {queue: dept:general}
"""
    outcomes = run_cases(CompiledRuleset(ruleset), parse_text(text, "c.yaml"))
    assert [o.passed for o in outcomes] == [False, True, False]
    lines = format_outcome(outcomes[0], "c.yaml")
    assert lines[0] == "FAIL refund goes to disputes (wrong on purpose) (c.yaml:2)"
    assert "    queue:" in lines
    assert "    - expected: dept:disputes" in lines
    assert "    + actual:   dept:payments" in lines
    assert "    - expected: extra, money" in lines
    assert not any(line.strip() == "priority:" for line in lines)  # equal fields: no diff
    assert "bad case: channel" in format_outcome(outcomes[2], "c.yaml")[1]


def test_the_reference_documents_every_field_and_operator() -> None:
    from rules.fields import STATIC_FIELDS
    from rules.model import OPERATOR_NAMES

    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    assert [p for p in STATIC_FIELDS if f"| `{p}` |" not in readme] == []
    assert [op for op in OPERATOR_NAMES if f"`{op}`" not in readme] == []
