"""SLA policy files: the bundled example loads, and mistakes are named."""

from __future__ import annotations

import pytest
import yaml

from router.sla.calendar import BusinessHours, FollowTheSun
from router.sla.policy import (
    MetricTerms,
    Rung,
    load_sla_config,
    parse_duration,
    parse_sla_config,
)
from schemas.sla import SlaMetric
from schemas.ticket import Priority
from tests.unit.sla.sla_support import POLICY_YAML


def test_bundled_default_policies_load() -> None:
    config = load_sla_config()
    assert set(config.policies) == {"standard", "vip", "vendor_standard", "disputes", "priority"}
    assert isinstance(config.calendars["follow_the_sun"], FollowTheSun)
    assert isinstance(config.calendars["platform_eu"], BusinessHours)
    assert config.policy_for_queue("vendor:acme") == "vendor_standard"
    assert config.policy_for_queue("dept:vip_escalations") == "vip"
    assert config.policy_for_queue("dept:payments") == "standard"


def test_metric_overrides_policy_ladder_and_warning() -> None:
    config = load_sla_config()
    vendor = config.policy("standard").terms(SlaMetric.VENDOR_RESPONSE, Priority.HIGH)
    first = config.policy("standard").terms(SlaMetric.FIRST_RESPONSE, Priority.URGENT)
    assert vendor is not None
    assert first is not None
    assert (vendor.target_seconds, vendor.warning_fraction, len(vendor.ladder)) == (28_800, 0.75, 2)
    assert vendor.ladder[1].reroute == "dept:disputes"
    assert vendor.rung_threshold(2, anchor_seconds=28_800) == 57_600
    assert first.target_seconds == 3_600
    assert first.ladder[0].raise_priority


def test_unknown_policy_name_falls_back_to_the_default() -> None:
    assert load_sla_config().policy("nope").name == "standard"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("45m", 2_700), ("8h", 28_800), ("1h30m", 5_400), (600, 600), (1.5, 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "-5m", "8 hours", True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _mutated(path: list[str], value: object) -> str:
    document = yaml.safe_load(POLICY_YAML)
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return yaml.safe_dump(document)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["default_policy"], "missing", "default_policy 'missing' is not defined"),
        (["policies", "basic", "calendar"], "nowhere", "unknown calendar 'nowhere'"),
        (["policies", "basic", "warning_at"], 1.5, "less than 1"),
        (
            ["policies", "basic", "metrics", "first_response", "targets"],
            {"low": "1h", "normal": "1h", "high": "1h"},
            "targets missing for priorities",
        ),
        (["policies", "escalating", "escalation", 0], {"after": "1h"}, "first rung"),
        (["policies", "escalating", "escalation", 1], {"reroute": "dept:x"}, "positive `after`"),
        (["policies", "basic", "escalation"], [{"reroute": "nowhere"}], "String should match"),
        (["calendars", "berlin_office", "timezone"], "Mars/Olympus", "unknown time zone"),
        (["calendars", "berlin_office", "weekly", "mon"], ["17:00-09:00"], "bad shift"),
        (["calendars", "berlin_office", "holidays"], {"country": "XX"}, "XX"),
        (["calendars", "sun"], {"kind": "follow_the_sun", "members": ["x"]}, "member 'x'"),
        (["queue_policies"], [{"queue": "dept:*", "policy": "ghost"}], "unknown policy 'ghost'"),
        (["version"], 2, "version"),
    ],
)
def test_mistakes_are_rejected_with_their_reason(
    path: list[str], value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sla_config(_mutated(path, value))


def test_rungs_accumulate_their_delays() -> None:
    ladder = (Rung(), Rung(after=3_600), Rung(after=7_200))
    terms = MetricTerms(target_seconds=600, warning_fraction=0.5, ladder=ladder)
    thresholds = [terms.rung_threshold(level, anchor_seconds=600) for level in (1, 2, 3)]
    assert thresholds == [600, 4_200, 11_400]
