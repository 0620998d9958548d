"""SLA policy files (YAML): calendars, policies with per-priority targets, escalation ladders.

Durations are business time, written as `90s`, `45m`, `8h`, `1h30m` or a number of seconds.
There is deliberately no `d` unit: "a day" of business time is ambiguous. See
`policies/default.yaml` for a commented example.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from router.ids import derive_id
from router.sla.calendar import AlwaysOpen, BusinessHours, Calendar, CalendarError, FollowTheSun
from schemas.sla import SlaMetric
from schemas.ticket import QUEUE_PATTERN, Priority

DEFAULT_POLICY_FILE = Path(__file__).parent / "policies" / "default.yaml"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SHIFT = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_duration(value: object) -> float:
    """Seconds from `8h`, `1h30m`, `90s` or a bare number."""
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and value.strip():
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    else:
        raise ValueError(f"bad duration {value!r}: use e.g. 90s, 45m, 8h, 1h30m")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


def _parse_shift(text: object) -> tuple[int, int]:
    """`09:00-17:30` as local seconds of the day."""
    match = _SHIFT.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"bad shift {text!r}: use HH:MM-HH:MM (24:00 ends at midnight)")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if m1 > 59 or m2 > 59 or not 0 <= start < end <= 86_400:
        raise ValueError(f"bad shift {text!r}: start must be before end, within one day")
    return start, end


Duration = Annotated[float, BeforeValidator(parse_duration)]
QueueName = Annotated[str, Field(pattern=QUEUE_PATTERN)]
ShiftText = Annotated[tuple[int, int], BeforeValidator(_parse_shift)]


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HolidaySource(_Strict):
    country: Annotated[str, Field(min_length=2, max_length=3)]
    subdivision: str | None = None


class AlwaysSpec(_Strict):
    kind: Literal["always"]


class BusinessHoursSpec(_Strict):
    kind: Literal["business_hours"]
    timezone: str
    # Days left out are closed. Overnight work is two shifts: "22:00-24:00" and "00:00-06:00".
    weekly: dict[Weekday, list[ShiftText]]
    holidays: HolidaySource | None = None
    closed_dates: list[date] = []


class FollowTheSunSpec(_Strict):
    kind: Literal["follow_the_sun"]
    members: Annotated[list[str], Field(min_length=1)]


CalendarSpec = Annotated[
    AlwaysSpec | BusinessHoursSpec | FollowTheSunSpec, Field(discriminator="kind")
]


class EscalationStep(_Strict):
    """One rung of the ladder. Every rung publishes `support.sla.breached`.

    Rung 1 fires at the deadline; rung n fires `after` business time past rung n-1.
    """

    after: Duration = 0.0
    raise_priority: bool = False
    set_priority: Priority | None = None
    reroute: QueueName | None = None
    # Policy for the new queue; by default the file's `queue_policies`, else unchanged.
    reroute_policy: str | None = None


class MetricSpec(_Strict):
    targets: dict[Priority, Duration]
    warning_at: Annotated[float, Field(gt=0, lt=1)] | None = None
    escalation: Annotated[list[EscalationStep], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _every_priority_has_a_positive_target(self) -> MetricSpec:
        missing = [p.value for p in Priority if p not in self.targets]
        if missing:
            raise ValueError(f"targets missing for priorities {missing}")
        if any(seconds <= 0 for seconds in self.targets.values()):
            raise ValueError("targets must be positive")
        return self


class PolicySpec(_Strict):
    calendar: str
    warning_at: Annotated[float, Field(gt=0, lt=1)] = 0.75
    metrics: Annotated[dict[SlaMetric, MetricSpec], Field(min_length=1)]
    escalation: Annotated[list[EscalationStep], Field(min_length=1)] = [EscalationStep()]


class QueuePolicy(_Strict):
    queue: str  # glob over queue names, e.g. "vendor:*"
    policy: str


class SlaPolicyFile(_Strict):
    version: Literal[1]
    default_policy: str
    # A firing later than this after its due time is marked late (the engine was down).
    late_grace_seconds: Annotated[float, Field(ge=0)] = 60.0
    calendars: Annotated[dict[str, CalendarSpec], Field(min_length=1)]
    policies: Annotated[dict[str, PolicySpec], Field(min_length=1)]
    queue_policies: list[QueuePolicy] = []

    @model_validator(mode="after")
    def _references_resolve(self) -> SlaPolicyFile:
        if self.default_policy not in self.policies:
            raise ValueError(f"default_policy {self.default_policy!r} is not defined")
        for name, spec in self.calendars.items():
            if isinstance(spec, FollowTheSunSpec):
                for member in spec.members:
                    if not isinstance(self.calendars.get(member), BusinessHoursSpec | AlwaysSpec):
                        raise ValueError(
                            f"calendar {name!r}: member {member!r} must be a defined"
                            " business_hours or always calendar"
                        )
        for name, policy in self.policies.items():
            if policy.calendar not in self.calendars:
                raise ValueError(f"policy {name!r}: unknown calendar {policy.calendar!r}")
            ladders = [policy.escalation] + [m.escalation for m in policy.metrics.values()]
            for ladder in ladders:
                if ladder is None:
                    continue
                if ladder[0].after != 0:
                    raise ValueError(f"policy {name!r}: the first rung fires at the deadline")
                if any(step.after <= 0 for step in ladder[1:]):
                    raise ValueError(f"policy {name!r}: later rungs need a positive `after`")
                for step in ladder:
                    target = step.reroute_policy
                    if target is not None and target not in self.policies:
                        raise ValueError(f"policy {name!r}: unknown reroute_policy {target!r}")
        for rule in self.queue_policies:
            if rule.policy not in self.policies:
                raise ValueError(f"queue_policies: unknown policy {rule.policy!r}")
        return self


@dataclass(frozen=True, slots=True)
class MetricTerms:
    """What a clock needs: its target, when to warn, and the ladder past the deadline."""

    target_seconds: float
    warning_fraction: float
    ladder: tuple[EscalationStep, ...]
    # Business seconds from rung 1 to rung n (index n - 1), summed once.
    rung_offsets: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        offsets = tuple(accumulate(step.after for step in self.ladder[1:]))
        object.__setattr__(self, "rung_offsets", (0.0, *offsets))  # frozen dataclass

    def rung_threshold(self, level: int, anchor_seconds: float) -> float:
        """Business seconds elapsed at which rung `level` (1-based) fires."""
        return anchor_seconds + self.rung_offsets[level - 1]


class SlaPolicy:
    """One named policy, with the terms of every (metric, priority) worked out up front."""

    def __init__(self, name: str, spec: PolicySpec) -> None:
        self.name = name
        self.calendar = spec.calendar
        self._terms = {
            (metric, priority): MetricTerms(
                target_seconds=target,
                warning_fraction=metric_spec.warning_at or spec.warning_at,
                ladder=tuple(metric_spec.escalation or spec.escalation),
            )
            for metric, metric_spec in spec.metrics.items()
            for priority, target in metric_spec.targets.items()
        }

    def terms(self, metric: SlaMetric, priority: Priority) -> MetricTerms | None:
        """None when this policy does not track `metric`."""
        return self._terms.get((metric, priority))


_CACHE_LIMIT = 10_000  # queue and policy names are few; bound the caches anyway


class SlaConfig:
    """A validated policy file with its calendars built (they cache computed days)."""

    def __init__(self, spec: SlaPolicyFile) -> None:
        self.spec = spec
        # Tickets scheduled under another file get their deadlines recomputed when touched.
        self.fingerprint = derive_id(spec.model_dump_json())
        self.default_policy = spec.default_policy
        self.late_grace_seconds = spec.late_grace_seconds
        self.calendars: dict[str, Calendar] = {}
        for name, calendar in spec.calendars.items():
            if not isinstance(calendar, FollowTheSunSpec):
                self.calendars[name] = _build_calendar(name, calendar)
        for name, calendar in spec.calendars.items():
            if isinstance(calendar, FollowTheSunSpec):
                members = [self.calendars[m] for m in calendar.members]
                simple = [m for m in members if isinstance(m, BusinessHours | AlwaysOpen)]
                self.calendars[name] = FollowTheSun(name, simple)  # validated: all are simple
        self.policies = {name: SlaPolicy(name, p) for name, p in spec.policies.items()}
        self._queue_policies: dict[str, str | None] = {}
        # (policy name as stored, metric, priority) -> terms: one lookup on the firing path
        self._terms: dict[tuple[str, SlaMetric, Priority], MetricTerms | None] = {}

    def policy(self, name: str | None) -> SlaPolicy:
        """The named policy; the default one for an unknown or missing name."""
        found = self.policies.get(name) if name is not None else None
        return found or self.policies[self.default_policy]

    def terms(self, policy: str, metric: SlaMetric, priority: Priority) -> MetricTerms | None:
        """`policy(policy).terms(metric, priority)`, cached (names unknown to the file included)."""
        key = (policy, metric, priority)
        cache = self._terms
        if key in cache:
            return cache[key]
        terms = self.policy(policy).terms(metric, priority)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = terms
        return terms

    def calendar(self, name: str | None, fallback: str) -> Calendar:
        found = self.calendars.get(name) if name is not None else None
        return found or self.calendars[fallback]

    def policy_for_queue(self, queue: str) -> str | None:
        cache = self._queue_policies
        if queue in cache:  # glob matching is slow; the file never changes
            return cache[queue]
        found = next(
            (r.policy for r in self.spec.queue_policies if fnmatch.fnmatchcase(queue, r.queue)),
            None,
        )
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[queue] = found
        return found


def _build_calendar(name: str, spec: AlwaysSpec | BusinessHoursSpec) -> Calendar:
    if isinstance(spec, AlwaysSpec):
        return AlwaysOpen(name)
    weekly = [spec.weekly.get(day, []) for day in Weekday]
    holidays = spec.holidays
    return BusinessHours(
        name,
        spec.timezone,
        weekly,
        holiday_country=holidays.country if holidays else None,
        holiday_subdivision=holidays.subdivision if holidays else None,
        closed_dates=spec.closed_dates,
    )


def parse_sla_config(text: str) -> SlaConfig:
    """Validate YAML text and build it; ValueError (pydantic's or ours) names what is wrong."""
    spec = SlaPolicyFile.model_validate(yaml.safe_load(text))
    try:
        return SlaConfig(spec)
    except CalendarError as exc:
        raise ValueError(str(exc)) from exc


def load_sla_config(path: Path = DEFAULT_POLICY_FILE) -> SlaConfig:
    return parse_sla_config(path.read_text(encoding="utf-8"))
