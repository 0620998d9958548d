"""Dispute policy files: validated with `file:line: field: message` errors; the example
policy's golden cases pass, and a wrong expectation is reported with its line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app
from router.disputes.policy import (
    DisputePolicyError,
    newest_valid,
    parse_dispute_policy,
    published_policy,
    published_value,
    read_published,
)
from router.sla.calendar import AlwaysOpen
from schemas.claim import ReasonCode
from schemas.dispute import Outcome
from schemas.vendor import VendorTier
from tests.unit.disputes.dispute_support import EXAMPLE_POLICY, MONDAY, calendars, policy

CASES = EXAMPLE_POLICY.with_name("policy.cases.yaml")
VALID = EXAMPLE_POLICY.read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(DisputePolicyError) as info:
        parse_dispute_policy(text, calendars(), "p.yaml")
    return info.value.problems


def test_the_example_policy_loads() -> None:
    pol = policy()
    assert pol.currency == "EUR"
    assert pol.buyer_silence is Outcome.ACCEPTED
    assert pol.seller_window(ReasonCode.ITEM_NOT_RECEIVED, VendorTier.GOLD) == 24 * 3600
    assert pol.seller_window(ReasonCode.ITEM_NOT_RECEIVED, VendorTier.SILVER) == 16 * 3600
    assert pol.buyer_window(ReasonCode.UNAUTHORISED_CHARGE) == 48 * 3600
    assert pol.protects(ReasonCode.DAMAGED, None, Decimal("150.00"))
    assert not pol.protects(ReasonCode.DAMAGED, None, Decimal("150.01"))
    assert pol.protects(ReasonCode.NOT_AS_DESCRIBED, "toys", Decimal("50"))
    assert not pol.protects(ReasonCode.NOT_AS_DESCRIBED, "garden", Decimal("5"))
    assert pol.calendar_for_seller("platform_us") == "platform_us"
    assert pol.calendar_for_seller("no-such-calendar") == "vendor_default"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("currency: EUR", "currency: euro",
         "p.yaml:6: currency: String should match pattern '^[A-Z]{3}$'"),
        ("seller_calendar: vendor_default", "seller_calendar: mars_time",
         "p.yaml:7: seller_calendar: unknown calendar 'mars_time'"),
        ("buyer_silence: accept", "buyer_silence: ignore",
         "p.yaml:10: buyer_silence: Input should be 'accept' or 'withdraw'"),
        ("    buyer_window: 48h", "    buyer_window: 2d",
         "p.yaml:25: reasons.unauthorised_charge.buyer_window: bad duration '2d'"),
        ("    seller_window: {default: 8h}", "    seller_window: {gold: 8h}",
         "p.yaml:23: reasons.unauthorised_charge: seller_window needs `default` or every tier"),
        ("    seller_window: {default: 8h}", "    seller_window: {default: 0s}",
         "p.yaml:23: reasons.unauthorised_charge: seller_window durations must be positive"),
        ('    max_amount: "150.00"', '    max_amount: "-1"',
         "p.yaml:31: buyer_protection[0].max_amount: Input should be greater than 0"),
        ("  - reasons: [item_not_received, damaged]", "  - reasons: [lost_in_space]",
         "p.yaml:30: buyer_protection[0].reasons[0]: Input should be"),
        ("  unauthorised_charge:", "  unauthorised_charges:",
         "p.yaml:23: reasons.unauthorised_charges.[key]: Input should be"),
        ("currency: EUR", "currency: EUR\ncurrency: USD",
         "p.yaml:7: currency: duplicate key at lines 6 and 7"),
        ("version: 1", "version: 1\nwindows: 3h",
         "p.yaml:6: windows: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_problems_name_file_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in VALID
    found = problems(VALID.replace(old, new, 1))
    assert any(p.startswith(expected) for p in found), found


def test_every_reason_code_needs_terms() -> None:
    text = VALID.split("  damaged:")[0] + "buyer_protection: []\n"
    (problem,) = problems(text)
    assert problem.startswith("p.yaml:5: <document>: terms missing for reason codes")
    assert "damaged" in problem
    assert "unauthorised_charge" in problem


def test_buyer_silence_withdraw() -> None:
    assert policy(buyer_silence="withdraw").buyer_silence is Outcome.WITHDRAWN


def test_cli_validates_and_runs_the_golden_cases() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["disputes", "validate", str(EXAMPLE_POLICY)])
    assert ok.exit_code == 0, ok.output
    result = runner.invoke(app, ["disputes", "test", str(CASES)])
    assert result.exit_code == 0, result.output
    assert "11 passed, 0 failed" in result.output


def test_a_wrong_expectation_fails_with_its_line(tmp_path: Path) -> None:
    text = CASES.read_text().replace(
        "deadlines: {seller_response: 2026-01-06T22:00:00Z}",
        "deadlines: {seller_response: 2026-01-06T21:00:00Z}",
    )
    (tmp_path / "disputes").mkdir()
    cases = tmp_path / "disputes" / "policy.cases.yaml"
    cases.write_text(text)
    (tmp_path / "disputes" / "policy.yaml").write_text(VALID)
    (tmp_path / "vendors.yaml").write_text((EXAMPLE_POLICY.parents[1] / "vendors.yaml").read_text())
    result = CliRunner().invoke(app, ["disputes", "test", str(cases)])
    assert result.exit_code == 1
    assert "10 passed, 1 failed" in result.output
    assert (f"{cases}:12: step 1: deadlines: expected {{seller_response: "
            "2026-01-06T21:00:00+00:00}, got {seller_response: 2026-01-06T22:00:00+00:00}"
            ) in result.output.replace("\n  ", " ").replace("\n", "")  # fmt: skip


def test_an_invalid_policy_fails_the_cli(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(VALID.replace("currency: EUR", "currency: 12"))
    result = CliRunner().invoke(app, ["disputes", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:6: currency: Input should be a valid string" in result.output


def test_missing_calendars_run_as_the_fallback_only_when_one_is_given() -> None:
    only_always = {"always": AlwaysOpen()}
    with pytest.raises(DisputePolicyError) as info:
        parse_dispute_policy(VALID, only_always, "p.yaml")
    assert info.value.problems[0].startswith("p.yaml:7: seller_calendar: unknown calendar")
    fallback = AlwaysOpen("fallback")
    pol = parse_dispute_policy(VALID, only_always, "p.yaml", fallback=fallback)
    assert pol.calendar("vendor_default") is fallback
    assert pol.calendar("always") is only_always["always"]


def test_a_published_policy_round_trips_and_is_validated_like_a_file() -> None:
    value = published_value(VALID, "policy.yaml", MONDAY)
    assert published_policy(value, "t[0]@1", calendars()).fingerprint == policy().fingerprint
    assert read_published(value, "t[0]@1").file == "policy.yaml"
    broken = published_value(VALID.replace("buyer_silence: accept", "buyer_silence: maybe"),
                             "policy.yaml", MONDAY)  # fmt: skip
    with pytest.raises(DisputePolicyError) as info:
        published_policy(broken, "t[0]@2", calendars())
    (problem,) = info.value.problems
    assert problem.startswith("t[0]@2:policy.yaml:")
    assert ": buyer_silence: " in problem
    with pytest.raises(DisputePolicyError) as info:
        read_published(b'{"specversion": "1.0"}', "t[0]@3")
    assert info.value.problems[0] == "t[0]@3: id: Field required"


def test_the_newest_valid_record_wins_and_newer_bad_ones_are_reported() -> None:
    good = published_value(VALID, "a.yaml", MONDAY)
    other = published_value(VALID.replace("buyer_silence: accept", "buyer_silence: withdraw"),
                            "b.yaml", MONDAY)  # fmt: skip
    bad = b"{}"
    choice = newest_valid([("@0", good), ("@1", other), ("@2", bad), ("@3", None)], calendars())
    assert choice.where == "@1"
    assert choice.policy is not None
    assert choice.policy.buyer_silence is Outcome.WITHDRAWN
    assert [where for where, _ in choice.refused] == ["@2"]
    nothing = newest_valid([("@0", bad)], calendars())
    assert (nothing.policy, nothing.where) == (None, None)
    assert [where for where, _ in nothing.refused] == ["@0"]


def test_publishing_an_invalid_policy_prints_its_problems_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "disputes.yaml"
    path.write_text(VALID.replace("currency: EUR", "currency: euro"))
    # no broker is reachable here: the refusal happens before any connection
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    result = CliRunner().invoke(app, ["disputes", "policy", "publish", str(path)], env=env)
    assert result.exit_code == 1
    assert f"{path}:6: currency: String should match pattern" in result.output
    assert "published" not in result.output
