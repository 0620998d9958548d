"""SLA policy files (YAML): calendars, policies with per-priority targets, escalation ladders.

Durations are business time, written as `90s`, `45m`, `8h`, `1h30m` or a number of seconds,
finite and at most a year. There is deliberately no `d` unit: "a day" of business time is
ambiguous. See
`policies/default.yaml` for a commented example.
"""

from __future__ import annotations

import math
import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from router.ids import derive_id
from router.sla.calendar import AlwaysOpen, BusinessHours, Calendar, FollowTheSun
from router.sla.instants import CalendarError
from router.sla.terms import MetricTerms as MetricTerms
from router.sla.terms import Rung as Rung
from router.sla.terms import SlaConfig as SlaConfig
from router.sla.terms import SlaPolicy as SlaPolicy
from rules.source import LoadError, parse_text, validation_errors
from schemas.sla import SlaMetric
from schemas.ticket import QUEUE_PATTERN, Priority

DEFAULT_POLICY_FILE = Path(__file__).parent / "policies" / "default.yaml"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# Longer targets or escalation delays are typos (`8000h` for `8h`), and deadlines computed
# from them would leave the range of datetime.
MAX_DURATION_SECONDS = 366 * 86_400
_SHIFT = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_duration(value: object) -> float:
    """Seconds from `8h`, `1h30m`, `90s` or a bare number: finite, at most a year."""
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    seconds: int | float
    if isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and value.strip():
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise ValueError(f"bad duration {value!r}: use e.g. 90s, 45m, 8h, 1h30m")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not a finite number")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    if seconds > MAX_DURATION_SECONDS:  # compared as given: a huge int must not reach float()
        raise ValueError(f"duration {value!r} is longer than a year ({MAX_DURATION_SECONDS} s)")
    return float(seconds)


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
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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
    late_grace_seconds: Annotated[float, Field(ge=0, le=86_400)] = 60.0
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


def _rung(step: EscalationStep) -> Rung:
    return Rung(
        after=step.after,
        raise_priority=step.raise_priority,
        set_priority=step.set_priority,
        reroute=step.reroute,
        reroute_policy=step.reroute_policy,
    )


def _policy(name: str, spec: PolicySpec) -> SlaPolicy:
    terms = {
        (metric, priority): MetricTerms(
            target_seconds=target,
            warning_fraction=metric_spec.warning_at or spec.warning_at,
            ladder=tuple(_rung(step) for step in metric_spec.escalation or spec.escalation),
        )
        for metric, metric_spec in spec.metrics.items()
        for priority, target in metric_spec.targets.items()
    }
    return SlaPolicy(name, spec.calendar, terms)


def build_config(spec: SlaPolicyFile) -> SlaConfig:
    """The validated file in the form the firing path reads, calendars built."""
    calendars: dict[str, Calendar] = {}
    for name, calendar in spec.calendars.items():
        if not isinstance(calendar, FollowTheSunSpec):
            calendars[name] = _build_calendar(name, calendar)
    for name, calendar in spec.calendars.items():
        if isinstance(calendar, FollowTheSunSpec):
            members = [calendars[m] for m in calendar.members]
            simple = [m for m in members if isinstance(m, BusinessHours | AlwaysOpen)]
            calendars[name] = FollowTheSun(name, simple)  # validated: all are simple
    return SlaConfig(
        fingerprint=derive_id(spec.model_dump_json()),
        default_policy=spec.default_policy,
        late_grace_seconds=spec.late_grace_seconds,
        calendars=calendars,
        policies={name: _policy(name, p) for name, p in spec.policies.items()},
        queue_policies=[(rule.queue, rule.policy) for rule in spec.queue_policies],
    )


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


class SlaPolicyError(ValueError):
    """An SLA policy file that cannot be used: one line, `file:line: field: message` for each
    problem (at most the first few), separated by `; `."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_sla_config(text: str, file: str = "<sla policies>") -> SlaConfig:
    """Validate YAML (or JSON) text and build it; SlaPolicyError names what is wrong."""
    try:
        src = parse_text(text, file, "json" if file.endswith(".json") else "yaml", aliases=True)
    except LoadError as exc:
        raise SlaPolicyError([str(exc)]) from None
    try:
        spec = SlaPolicyFile.model_validate(src.data)
    except ValidationError as exc:
        raise SlaPolicyError(validation_errors(src, exc, limit=5)) from None
    try:
        return build_config(spec)
    except CalendarError as exc:
        raise SlaPolicyError([f"{file}: {exc}"]) from exc


def load_sla_config(path: Path = DEFAULT_POLICY_FILE) -> SlaConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SlaPolicyError([f"{path}: cannot read: {reason}"]) from None
    return parse_sla_config(text, str(path))
