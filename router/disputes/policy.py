"""Dispute policy files (YAML): response windows, buyer protection, what buyer silence means.

    version: 1
    currency: EUR
    seller_calendar: vendor_default     # an SLA calendar: the seller's business time when its
                                        # vendor profile names none the SLA file defines
    buyer_calendar: always              # the buyer's window runs in this calendar
    buyer_silence: accept               # buyer silent after an offer: accept | withdraw
    reasons:
      item_not_received:
        seller_window: {default: 48h, gold: 72h}     # per vendor tier, business time
        buyer_window: 72h
      ...
    buyer_protection:                   # seller silent: decide for the buyer when one matches
      - reasons: [item_not_received]
        categories: [books, music]      # optional: any item category when left out
        max_amount: "100.00"            # claims up to this amount, in `currency`

Calendars are the SLA policy file's (`router.sla.policy`), named here, never defined twice.
Durations use the SLA file's syntax (`90s`, `45m`, `8h`, `1h30m`). Errors follow the ruleset
standard, one `file:line: field: message` line each (`rules.source`).

Published policies: `router disputes policy publish` writes the file's text to the compacted
`disputes.policy` (`published_value`); every worker validates each record against its own
calendars (`published_policy`), and the newest one that validates is the policy in force
(`newest_valid`); a record that does not is refused and the policy before it stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router.ids import derive_id
from router.sla.calendar import Calendar
from router.sla.policy import Duration
from rules.source import LoadError, parse_text, validation_errors
from schemas.claim import Amount, Category, Currency, ReasonCode
from schemas.dispute import (
    DISPUTE_POLICY_KEY,
    DISPUTE_POLICY_PUBLISHED,
    Outcome,
    PublishedDisputePolicy,
    PublishedDisputePolicyEvent,
)
from schemas.envelope import envelope
from schemas.vendor import VendorTier

DEFAULT_TIER_KEY: Final = "default"
# The example policy is the engine's default (`disputes_policy_file` names another).
DEFAULT_DISPUTE_POLICY = Path(__file__).parents[2] / "rules/examples/disputes/policy.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ReasonTerms(_Strict):
    # keys: `default` and vendor tiers; `default` applies to tiers not listed
    seller_window: Annotated[dict[Literal["default"] | VendorTier, Duration], Field(min_length=1)]
    buyer_window: Duration

    @model_validator(mode="after")
    def _windows_positive_and_default_given(self) -> ReasonTerms:
        if DEFAULT_TIER_KEY not in self.seller_window:
            missing = [t.value for t in VendorTier if t not in self.seller_window]
            if missing:
                raise ValueError(f"seller_window needs `default` or every tier (missing {missing})")
        if any(seconds <= 0 for seconds in self.seller_window.values()):
            raise ValueError("seller_window durations must be positive")
        if self.buyer_window <= 0:
            raise ValueError("buyer_window must be positive")
        return self


class ProtectionRule(_Strict):
    reasons: Annotated[list[ReasonCode], Field(min_length=1)]
    categories: Annotated[list[Category], Field(min_length=1)] | None = None
    max_amount: Amount


class DisputePolicyFile(_Strict):
    version: Literal[1]
    currency: Currency
    seller_calendar: str
    buyer_calendar: str
    buyer_silence: Literal["accept", "withdraw"]
    review_queue: Annotated[str, Field(pattern=r"^dept:[a-z0-9_-]{1,64}$")] = "dept:disputes"
    reasons: dict[ReasonCode, ReasonTerms]
    buyer_protection: list[ProtectionRule] = []

    @model_validator(mode="after")
    def _every_reason_has_terms(self) -> DisputePolicyFile:
        missing = [r.value for r in ReasonCode if r not in self.reasons]
        if missing:
            raise ValueError(f"terms missing for reason codes {missing}")
        return self


@dataclass(frozen=True, slots=True)
class DisputePolicy:
    """A validated policy file with its calendars looked up: what the state machine reads."""

    fingerprint: str
    currency: str
    seller_calendar: str
    buyer_calendar: str
    buyer_silence: Outcome  # ACCEPTED or WITHDRAWN
    review_queue: str
    calendars: Mapping[str, Calendar]
    seller_windows: Mapping[tuple[ReasonCode, VendorTier], float]  # business seconds
    buyer_windows: Mapping[ReasonCode, float]
    protection: tuple[ProtectionRule, ...]

    def seller_window(self, reason: ReasonCode, tier: VendorTier) -> float:
        return self.seller_windows[(reason, tier)]

    def buyer_window(self, reason: ReasonCode) -> float:
        return self.buyer_windows[reason]

    def calendar(self, name: str) -> Calendar:
        """The named calendar, or the default seller calendar for a name no longer defined."""
        return self.calendars.get(name) or self.calendars[self.seller_calendar]

    def calendar_for_seller(self, profile_calendar: str | None) -> str:
        """The seller's calendar: its profile's when the SLA file defines it, else the default."""
        if profile_calendar and profile_calendar in self.calendars:
            return profile_calendar
        return self.seller_calendar

    def protects(self, reason: ReasonCode, category: str | None, amount: Decimal) -> bool:
        """Whether buyer protection decides for the buyer when the seller stays silent."""
        return any(
            reason in rule.reasons
            and (rule.categories is None or category in rule.categories)
            and amount <= rule.max_amount
            for rule in self.protection
        )

    @property
    def longest_window(self) -> float:
        """Business seconds of the longest seller plus buyer window (a bound for tests)."""
        return max(self.seller_windows.values()) + max(self.buyer_windows.values())


class DisputePolicyError(ValueError):
    """A policy file that cannot be used: one `file:line: field: message` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_dispute_policy(
    text: str, calendars: Mapping[str, Calendar], file: str = "<dispute policy>",
    *, fallback: Calendar | None = None,
) -> DisputePolicy:  # fmt: skip
    """Validate YAML (or JSON) text against the SLA calendars `calendars`; DisputePolicyError
    names each problem with its line. `fallback` stands in for a calendar `calendars` lacks
    (the bundled policy under an SLA file without the bundled calendars); without it, a
    missing calendar is a problem."""
    try:
        src = parse_text(text, file, "json" if file.endswith(".json") else "yaml", aliases=True)
    except LoadError as exc:
        raise DisputePolicyError([str(exc)]) from None
    try:
        spec = DisputePolicyFile.model_validate(src.data)
    except ValidationError as exc:
        raise DisputePolicyError(validation_errors(src, exc, limit=10)) from None
    problems = [
        f"{file}:{src.line((field,)) or '?'}: {field}: unknown calendar {name!r} "
        f"(the SLA policy file defines {sorted(calendars)})"
        for field, name in (("seller_calendar", spec.seller_calendar),
                            ("buyer_calendar", spec.buyer_calendar))
        if name not in calendars and fallback is None
    ]  # fmt: skip
    if problems:
        raise DisputePolicyError(problems)
    if fallback is not None:
        named = (spec.seller_calendar, spec.buyer_calendar)
        calendars = {**{n: fallback for n in named if n not in calendars}, **calendars}
    return build_policy(spec, calendars)


def build_policy(spec: DisputePolicyFile, calendars: Mapping[str, Calendar]) -> DisputePolicy:
    seller: dict[tuple[ReasonCode, VendorTier], float] = {}
    for reason, terms in spec.reasons.items():
        default = terms.seller_window.get(DEFAULT_TIER_KEY)
        for tier in VendorTier:
            window = terms.seller_window.get(tier, default)
            assert window is not None  # validated: `default` or every tier is given
            seller[(reason, tier)] = window
    return DisputePolicy(
        fingerprint=derive_id(spec.model_dump_json()),
        currency=spec.currency,
        seller_calendar=spec.seller_calendar,
        buyer_calendar=spec.buyer_calendar,
        buyer_silence=Outcome.ACCEPTED if spec.buyer_silence == "accept" else Outcome.WITHDRAWN,
        review_queue=spec.review_queue,
        calendars=calendars,
        seller_windows=seller,
        buyer_windows={reason: terms.buyer_window for reason, terms in spec.reasons.items()},
        protection=tuple(spec.buyer_protection),
    )


def load_dispute_policy(
    path: Path, calendars: Mapping[str, Calendar], *, fallback: Calendar | None = None
) -> DisputePolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DisputePolicyError([f"{path}: cannot read: {reason}"]) from None
    return parse_dispute_policy(text, calendars, str(path), fallback=fallback)


# --- published policies (`disputes.policy`) -------------------------------------------------


def published_value(text: str, file: str, now: datetime, source: str = "router-cli") -> bytes:
    """The `disputes.policy` record value of a policy file's text (its id: the text's)."""
    data = PublishedDisputePolicy(file=file, text=text)
    return orjson.dumps(envelope(
        event_id=derive_id(DISPUTE_POLICY_KEY, text), source=source,
        event_type=DISPUTE_POLICY_PUBLISHED, time=now, subject=DISPUTE_POLICY_KEY,
        data=data.model_dump(),
    ))  # fmt: skip


def read_published(value: bytes, where: str) -> PublishedDisputePolicy:
    """The published file of a `disputes.policy` record (`where`: its topic position);
    DisputePolicyError when the record is not one."""
    try:
        event = PublishedDisputePolicyEvent.model_validate_json(value)
    except ValidationError as exc:
        raise DisputePolicyError([
            f"{where}: {'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
            for e in exc.errors()[:10]
        ]) from None  # fmt: skip
    if event.type != DISPUTE_POLICY_PUBLISHED:
        raise DisputePolicyError([f"{where}: type: is {event.type!r}, "
                                  f"expected {DISPUTE_POLICY_PUBLISHED!r}"])  # fmt: skip
    return event.data


def published_policy(
    value: bytes, where: str, calendars: Mapping[str, Calendar]
) -> DisputePolicy:
    """The policy of a `disputes.policy` record, validated like a file: problems read
    `<where>:<file>:line: field: message`."""
    published = read_published(value, where)
    return parse_dispute_policy(published.text, calendars, f"{where}:{published.file}")


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """Which record of `disputes.policy` is in force: the newest valid one (`where`), and the
    records newer than it that were refused, oldest first, with their problems."""

    policy: DisputePolicy | None = None
    where: str | None = None
    refused: list[tuple[str, list[str]]] = field(default_factory=list)


def newest_valid(
    records: Sequence[tuple[str, bytes | None]], calendars: Mapping[str, Calendar]
) -> PolicyChoice:
    """`records`: (position, value) oldest first; a tombstone (None) is skipped: deleting the
    topic's record never leaves a worker without a policy."""
    refused: list[tuple[str, list[str]]] = []
    for where, value in reversed(records):
        if value is None:
            continue
        try:
            policy = published_policy(value, where, calendars)
        except DisputePolicyError as exc:
            refused.append((where, exc.problems))
            continue
        return PolicyChoice(policy, where, refused[::-1])
    return PolicyChoice(refused=refused[::-1])
