"""Numbers at the entry points are finite and sane: NaN, infinities and absurd magnitudes are
refused where they are read, with the field named, instead of failing later (or never
matching, or coming out as `null`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from router.cli_rules import rules_app
from router.inbound import Rejected, parse_inbound
from router.sla.policy import MAX_DURATION_SECONDS, SlaPolicyError, parse_duration, parse_sla_config
from schemas import RejectReason, SourcePosition
from schemas.vendor import VendorProfile
from tests.factories import inbound_event
from tests.unit.rules.rules_support import EXAMPLES, problems
from tests.unit.sla.sla_support import POLICY_YAML

TARGET = "first_response: {targets: {low: 8h, normal: 4h, high: 2h, urgent: 1h}}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (".nan", "not a finite number"),
        (".inf", "not a finite number"),
        ("-.inf", "not a finite number"),
        ("-5", "negative"),
        ("1.0e+300", "longer than a year"),
        ("99999999h", "longer than a year"),
        ("1" + "0" * 400, "longer than a year"),  # an int too large for a float
    ],
)
def test_sla_targets_must_be_finite_and_sane(value: str, message: str) -> None:
    text = POLICY_YAML.replace(TARGET, TARGET.replace("low: 8h", f"low: {value}"), 1)
    assert text != POLICY_YAML
    with pytest.raises(SlaPolicyError) as caught:
        parse_sla_config(text, "sla.yaml")
    (line,) = str(caught.value).splitlines()
    assert "sla.yaml:" in line
    assert "policies.basic.metrics.first_response.targets.low" in line
    assert message in line


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("warning_at: 0.5", "warning_at: .nan", "policies.basic.warning_at"),
        ("late_grace_seconds: 60", "late_grace_seconds: .inf", "late_grace_seconds"),
        ("late_grace_seconds: 60", "late_grace_seconds: 1.0e+300", "late_grace_seconds"),
    ],
)
def test_other_sla_numbers_must_be_finite(old: str, new: str, field: str) -> None:
    with pytest.raises(SlaPolicyError, match=rf"sla.yaml:\d+: {field}: "):
        parse_sla_config(POLICY_YAML.replace(old, new, 1), "sla.yaml")


def test_durations_at_the_bounds() -> None:
    assert parse_duration(MAX_DURATION_SECONDS) == MAX_DURATION_SECONDS
    assert parse_duration("8784h") == MAX_DURATION_SECONDS
    with pytest.raises(ValueError, match="longer than a year"):
        parse_duration(MAX_DURATION_SECONDS + 1)


def test_validate_with_a_non_finite_sla_target_fails_cleanly(tmp_path: Path) -> None:
    builtin = Path(__file__).parents[2] / "router/sla/policies/default.yaml"
    sla = tmp_path / "sla.yaml"
    sla.write_text(builtin.read_text().replace("low: 24h", "low: .nan", 1))
    app = typer.Typer()
    app.add_typer(rules_app, name="rules")
    res = CliRunner().invoke(
        app, ["rules", "validate", str(EXAMPLES / "marketplace.yaml"), "--sla-config", str(sla)]
    )
    assert res.exit_code == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "cannot load SLA policies" in res.stderr
    assert "targets.low: Value error, " not in res.stderr
    assert "targets.low: duration nan is not a finite number" in res.stderr


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ("{field: ticket.message_count, gt: .nan}", "expected a finite number, got nan"),
        ("{field: ticket.message_count, gte: .inf}", "expected a finite number, got inf"),
        ("{field: ticket.message_count, eq: -.inf}", "expected a finite number, got -inf"),
        ("{field: ticket.message_count, in: [1, .nan]}", "expected a finite number, got nan"),
        ("{field: message.attributes.score, lt: .nan}", "expected a finite number, got nan"),
        ("{field: message.attributes.score, eq: .nan}", "expected a finite number, got nan"),
    ],
)
def test_rule_literals_must_be_finite(test: str, message: str) -> None:
    found = problems(f"- id: a\n  when: {test}\n  then: {{route: 'dept:general'}}\n"
                     "- {id: all, priority: -1, then: {route: 'dept:general'}}\n")  # fmt: skip
    assert [p.rule_id for p in found] == ["a"]
    assert message in found[0].message


def test_rule_priority_is_bounded() -> None:
    found = problems("- {id: a, priority: 1000000000000, then: {route: 'dept:general'}}\n")
    assert any("priority` is between" in p.message for p in found)


@pytest.mark.parametrize("hours", [float("inf"), float("nan"), 1e300, 0, -1])
def test_vendor_response_hours_must_be_finite_and_sane(hours: float) -> None:
    with pytest.raises(ValidationError, match="response_hours"):
        VendorProfile(vendor_id="acme", response_hours=hours)
    assert VendorProfile(vendor_id="acme", response_hours=8784).response_hours == 8784


@pytest.mark.parametrize(
    "raw",
    [b'"x": NaN', b'"x": Infinity', b'"x": -Infinity', b'"x": 1e999',
     b'"x": 99999999999999999999999'],
)  # fmt: skip
def test_inbound_attributes_that_json_cannot_carry_are_dead_lettered(raw: bytes) -> None:
    good = orjson.dumps(inbound_event("n-1", attributes={"x": 1}))
    value = good.replace(b'"x":1', raw)
    assert value != good
    source = SourcePosition(topic="channel.email", partition=0, offset=7)
    parsed = parse_inbound(value, b"k", source, datetime(2026, 1, 1, tzinfo=UTC))
    assert isinstance(parsed, Rejected)
    assert parsed.reason is RejectReason.SCHEMA_VIOLATION
    assert "data.attributes.x" in parsed.error
    assert "\n" not in parsed.error
