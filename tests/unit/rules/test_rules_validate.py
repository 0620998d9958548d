"""Validation reports every problem with file, line, rule id and a specific message."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest
import yaml

from rules import Problem
from rules.load import parse_ruleset_file, parse_ruleset_text
from tests.unit.rules.rules_support import EXAMPLES, HEADER, parse, problems, ruleset_text

CATCH_ALL = """\
- id: catch-all
  then: {route: "dept:general"}
"""


def one(found: list[Problem], needle: str) -> Problem:
    hits = [p for p in found if needle in p.message]
    assert len(hits) == 1, f"{needle!r} in {[str(p) for p in found]}"
    return hits[0]


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in [*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*.json")]
        # context, vendors and message files are inputs, not rulesets
        if p.name.count(".") == 1
        and p.name not in ("context.yaml", "vendors.yaml", "message.json")
    ),
    ids=lambda p: p.name,
)
def test_example_rulesets_are_valid(path: object) -> None:
    parsed = parse_ruleset_file(str(path))
    assert not isinstance(parsed, list), "\n".join(map(str, parsed))


def test_unknown_field_path_names_line_rule_and_suggestion() -> None:
    found = problems(
        dedent("""\
        - id: social
          when: {field: message.chanel, eq: social}
          then: {route: "dept:general"}
        """)
        + CATCH_ALL
    )
    p = one(found, "unknown field path 'message.chanel'")
    assert p.rule_id == "social"
    assert p.file == "test.yaml"
    assert p.line == HEADER.count("\n") + 3  # the `when` line
    assert "did you mean message.channel" in p.message


def test_unknown_operator_lists_the_operators() -> None:
    found = problems(
        dedent("""\
        - id: a
          when: {field: message.channel, equals: social}
          then: {route: "dept:general"}
        """)
        + CATCH_ALL
    )
    p = one(found, "unknown operator 'equals'")
    assert p.rule_id == "a"
    assert "eq, ne, in" in p.message


@pytest.mark.parametrize(
    ("test", "needle"),
    [
        ("{field: buyer.open_tickets, gt: three}", "expects a number, got str 'three'"),
        ("{field: message.channel, eq: fax}", "unknown value 'fax' for message.channel"),
        ("{field: message.language, in: [no, sv]}", "boolean false (in YAML yes/no/on/off"),
        ("{field: buyer.vip, eq: 'yes'}", "buyer.vip is a boolean"),
        ("{field: message.intent, contains: refunds}", "unknown intent 'refunds'"),
        ("{field: message.body, gt: 3}", "operator gt does not apply to message.body"),
        ("{field: message.sent_at, gt: yesterday}", "expected an ISO-8601 time"),
        ("{field: now, within_hours: weekend}", "within_hours expects the name of a calendar"),
        ("{field: message.text, contains_any: []}", "contains_any expects a non-empty list"),
        ("{field: message.text, contains: '!!!'}", "has no words to match"),
        ("{field: message.vendor_id, exists: 1}", "exists expects true or false"),
    ],
)
def test_wrong_value_types_are_reported(test: str, needle: str) -> None:
    found = problems(f"- id: r\n  when: {test}\n  then: {{route: 'dept:general'}}\n" + CATCH_ALL)
    assert one(found, needle).rule_id == "r"


def test_invalid_regex_explains_the_re2_limits() -> None:
    found = problems(
        dedent("""\
        - id: backref
          when: {field: message.body, matches: '(a)\\1'}
          then: {route: "dept:general"}
        """)
        + CATCH_ALL
    )
    p = one(found, "invalid regex")
    assert "no backreferences or look-around" in p.message
    assert p.rule_id == "backref"


def test_duplicate_rule_id_points_at_the_first() -> None:
    found = problems(
        dedent("""\
        - id: twin
          when: {field: message.channel, eq: chat}
          then: {route: "dept:general"}
        - id: twin
          when: {field: message.channel, eq: social}
          then: {route: "dept:general"}
        """)
        + CATCH_ALL
    )
    p = one(found, "duplicate rule id 'twin'")
    first = HEADER.count("\n") + 2
    assert p.line == first + 3
    assert f"first at line {first}" in p.message


def test_missing_catch_all() -> None:
    found = problems(
        "- id: a\n  when: {field: message.channel, eq: chat}\n  then: {route: dept:general}\n"
    )
    assert one(found, "no catch-all").rule_id is None


def test_rule_shadowed_by_an_earlier_catch_all() -> None:
    found = problems(
        CATCH_ALL
        + dedent("""\
        - id: never
          when: {field: message.channel, eq: chat}
          then: {route: "dept:general"}
        """)
    )
    p = one(found, "can never match")
    assert p.rule_id == "never"
    assert "catch-all 'catch-all'" in p.message


def test_priority_decides_shadowing_not_file_order() -> None:
    parse(
        CATCH_ALL.replace("id: catch-all", "id: catch-all\n  priority: -10")
        + dedent("""\
        - id: later-but-first
          when: {field: message.channel, eq: chat}
          then: {route: "dept:general"}
        """)
    )


def test_unknown_department_and_sla_policy() -> None:
    found = problems(
        dedent("""\
        - id: a
          when: {field: message.channel, eq: chat}
          then: {route: "dept:nowhere", sla: gold}
        """)
        + CATCH_ALL
    )
    assert one(found, "unknown department 'nowhere'").rule_id == "a"
    assert one(found, "unknown SLA policy 'gold'").rule_id == "a"


def test_sla_policies_can_be_checked_against_the_engine() -> None:
    found = problems(CATCH_ALL, sla_policies=["standard", "vip"])
    assert one(found, "SLA policy 'urgent_sla' is unknown to the engine")


def test_action_rules() -> None:
    found = problems(
        dedent("""\
        - id: no-route
          when: {field: message.channel, eq: chat}
          then: {priority: high}
        - id: routes-and-continues
          when: {field: message.channel, eq: chat}
          then: {route: "dept:general", continue: true}
        - id: vendor-without-fallback
          when: {field: message.vendor_id, exists: true}
          then: {route: "vendor:{message.vendor_id}"}
        - id: bad-template
          when: {field: message.vendor_id, exists: true}
          then: {route: "vendor:{message.vendorid}", fallback: "dept:general"}
        - id: dept-fallback
          when: {field: message.channel, eq: chat}
          then: {route: "dept:general", fallback: "dept:disputes"}
        """)
        + CATCH_ALL
    )
    assert one(found, "a terminal rule must route").rule_id == "no-route"
    assert one(found, "a `continue` rule cannot route").rule_id == "routes-and-continues"
    assert one(found, "a vendor route needs `fallback").rule_id == "vendor-without-fallback"
    assert one(found, "unknown field path 'message.vendorid'").rule_id == "bad-template"
    assert one(found, "`fallback` only applies to vendor routes").rule_id == "dept-fallback"


def test_rule_priority_must_be_an_integer_with_a_hint() -> None:
    found = problems("- id: a\n  priority: high\n  then: {route: dept:general}\n")
    assert (
        "to set the ticket priority write `then: {priority: high}`"
        in one(found, "evaluation order").message
    )


def test_unknown_key_suggests_the_right_one() -> None:
    found = problems("- id: a\n  then: {rout: dept:general}\n")
    assert one(found, "unknown key 'rout'; did you mean 'route'?").rule_id == "a"


def test_every_problem_is_reported_not_just_the_first() -> None:
    header = HEADER.replace('version: "1"', "version: 1.10").replace(
        "timezone: Europe/Berlin", "timezone: Europe/Berlinn"
    )
    found = problems(
        dedent("""\
        - id: a
          when: {field: nope, eq: 1}
          then: {route: "dept:general"}
        - id: b
          when: {field: message.body, matches: '(?<=x)y'}
          then: {route: "dept:general"}
        """)
        + CATCH_ALL,
        header=header,
    )
    messages = " | ".join(p.message for p in found)
    assert "quote the version" in messages
    assert "unknown time zone 'Europe/Berlinn'" in messages
    assert "unknown field path 'nope'" in messages
    assert "invalid regex" in messages
    lines = [p.line or 0 for p in found]
    assert lines == sorted(lines)


def test_a_broken_section_is_reported_once_not_at_every_reference() -> None:
    header = HEADER.replace("departments: [general, disputes, payments, vendors_desk, desk_de]",
                            "departments: general")  # fmt: skip
    found = problems(CATCH_ALL, header=header)
    assert [p.message for p in found if "department" in p.message] == [
        "departments: Input should be a valid list"
    ]


def test_json_rulesets_get_line_numbers_too() -> None:
    import yaml as _yaml

    doc = _yaml.safe_load(ruleset_text("- id: a\n  when: {field: message.chanel, eq: chat}\n"
                                       "  then: {route: dept:general}\n" + CATCH_ALL))  # fmt: skip
    text = json.dumps(doc, indent=2)
    found = parse_ruleset_text(text, "rules.json")
    assert isinstance(found, list)
    p = one(found, "unknown field path")
    lines = text.splitlines()
    assert p.line is not None
    assert '"field": "message.chanel"' in lines[p.line - 1]


def test_syntax_errors_carry_their_line() -> None:
    found = parse_ruleset_text("name: x\nrules: [\n  {id: a\n", "broken.yaml")
    assert isinstance(found, list)
    assert found[0].line is not None
    assert "invalid YAML" in found[0].message
    found = parse_ruleset_text('{\n "name": "x",\n "rules": [,]\n}', "broken.json")
    assert isinstance(found, list)
    assert found[0].line == 3
    assert "invalid JSON" in found[0].message


def test_a_document_round_trips_through_its_canonical_form() -> None:
    first = parse_ruleset_file(EXAMPLES / "marketplace-v2.yaml")
    assert not isinstance(first, list)
    doc = first.doc.to_document()
    again = parse_ruleset_text(json.dumps(doc), "again.json")
    assert not isinstance(again, list), "\n".join(map(str, again))
    assert again.doc.to_document() == doc
    assert [r.id for r in again.rules] == [r.id for r in first.rules]
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc


def test_yaml_aliases_are_refused() -> None:
    found = parse_ruleset_text("a: &x [1, 2]\nb: [*x, *x, *x]\n", "bomb.yaml")
    assert isinstance(found, list)
    assert found[0].line == 2
    assert "aliases (*name) are not allowed" in found[0].message
