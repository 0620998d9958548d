"""Golden cases for a dispute policy: scripted disputes with hand-computed outcomes.

    policy: disputes.yaml             # relative to this file
    vendors: vendors.yaml             # optional: vendor profiles (tier, calendar)
    cases:
      - name: seller silent, small claim refunded by buyer protection
        vendor_id: blue-fern-books    # optional: the case's selling vendor (default `acme`)
        steps:
          - at: 2026-01-05T09:00:00Z
            action: open_dispute      # any dispute action; `by`: buyer (default), vendor,
            amount: "40.00"           # agent or system; other keys are the action's fields
            reason_code: item_not_received
            expect:
              state: awaiting_seller
              deadlines: {seller_response: 2026-01-06T22:00:00Z}
          - timeout: seller_response  # the clock moves to that deadline and the timer fires
            expect: {state: closed, outcome: decided, verdict: refund_full, refund: "40.00"}

`expect` keys, each optional: `state`, `outcome`, `verdict`, `refund` (the refund instruction's
amount), `deadlines` (the exact set pending), `events` (the event types, in order), `refused`
(text the refusal contains; the step must be refused). A step without `refused` must not be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from router.disputes.machine import Decision, Dispute, Timeout, apply
from router.disputes.policy import DisputePolicy
from rules.source import SourceDoc, validation_errors
from schemas.action import ActorRole
from schemas.dispute import DISPUTE_ACTION_ADAPTER, DisputeState, Outcome, Verdict
from schemas.vendor import VendorProfile

DEFAULT_ORDER, DEFAULT_BUYER, DEFAULT_VENDOR = "o-1", "buyer-1", "acme"


class StepExpect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: DisputeState | None = None
    outcome: Outcome | None = None
    verdict: Verdict | None = None
    refund: Decimal | None = None
    deadlines: dict[str, AwareDatetime] | None = None
    events: list[str] | None = None
    refused: str | None = None


class Step(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # the rest: the action's fields

    at: AwareDatetime | None = None
    action: str | None = None
    timeout: Literal["seller_response", "buyer_response"] | None = None
    by: ActorRole = ActorRole.BUYER
    actor: Annotated[str, Field(min_length=1)] | None = None
    expect: StepExpect = StepExpect()


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1)]
    order_id: str = DEFAULT_ORDER
    buyer_id: str = DEFAULT_BUYER
    vendor_id: str = DEFAULT_VENDOR
    steps: Annotated[list[Step], Field(min_length=1)]


class CasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str | None = None
    vendors: str | None = None
    cases: Annotated[list[Case], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    failures: list[str]  # `file:line: case: step n: what differs`

    @property
    def passed(self) -> bool:
        return not self.failures


class CasesError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_cases(src: SourceDoc) -> CasesFile:
    try:
        return CasesFile.model_validate(src.data)
    except ValidationError as exc:
        raise CasesError(validation_errors(src, exc)) from None


def run_cases(
    src: SourceDoc, cases: CasesFile, policy: DisputePolicy, vendors: dict[str, VendorProfile]
) -> list[CaseResult]:
    return [_run(src, i, case, policy, vendors) for i, case in enumerate(cases.cases)]


def _run(
    src: SourceDoc, index: int, case: Case, policy: DisputePolicy,
    vendors: dict[str, VendorProfile],
) -> CaseResult:  # fmt: skip
    failures: list[str] = []
    dispute: Dispute | None = None
    now: datetime | None = None
    for n, step in enumerate(case.steps):
        where = f"{src.file}:{src.line(('cases', index, 'steps', n)) or '?'}: step {n + 1}"
        if step.timeout is not None:
            due = dispute.deadlines.get(step.timeout) if dispute is not None else None
            now = step.at or due or now
            if now is None:
                failures.append(f"{where}: no {step.timeout} deadline is pending and no `at`")
                break
            decision = apply(dispute, Timeout(case.order_id, step.timeout), now, policy)
        else:
            now = step.at or now
            if now is None or step.action is None:
                failures.append(f"{where}: a step needs `action` (or `timeout`), the first `at`")
                break
            try:
                action = DISPUTE_ACTION_ADAPTER.validate_python(_action_data(case, step, now))
            except ValidationError as exc:
                fields = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
                )
                failures.append(f"{where}: not a valid {step.action}: {fields}")
                break
            decision = apply(dispute, action, now, policy, action_id=f"{case.name}#{n}",
                             vendors=vendors)  # fmt: skip
        failures.extend(f"{where}: {problem}" for problem in _compare(step.expect, decision))
        dispute = decision.dispute
    return CaseResult(case.name, failures)


def _action_data(case: Case, step: Step, now: datetime) -> dict[str, Any]:
    ids = {ActorRole.BUYER: case.buyer_id, ActorRole.VENDOR: case.vendor_id,
           ActorRole.AGENT: "agent-1", ActorRole.SYSTEM: "system"}  # fmt: skip
    data: dict[str, Any] = {
        "action": step.action, "order_id": case.order_id, "at": now,
        "actor": {"id": step.actor or ids[step.by], "role": step.by.value},
    }  # fmt: skip
    if step.action in ("open_dispute", "chargeback"):  # the case's order and parties
        data |= {"buyer_id": case.buyer_id, "vendor_id": case.vendor_id, "currency": "EUR"}
    data |= step.model_extra or {}
    return data


def _compare(expect: StepExpect, decision: Decision) -> list[str]:
    out: list[str] = []
    if expect.refused is not None:
        if decision.refused is None:
            out.append(f"expected a refusal containing {expect.refused!r}, it was applied")
        elif expect.refused not in decision.refused:
            out.append(f"refused with {decision.refused!r}, expected {expect.refused!r}")
        return out
    if decision.refused is not None:
        out.append(f"refused: {decision.refused}")
        return out
    dispute = decision.dispute
    got: dict[str, object] = {
        "state": dispute.state if dispute else None,
        "outcome": dispute.outcome if dispute else None,
        "verdict": dispute.verdict if dispute else None,
        "refund": dispute.refund.amount if dispute and dispute.refund else None,
        "deadlines": dict(dispute.deadlines) if dispute else {},
        "events": [e.event_type for e in decision.events],
    }
    for key, value in got.items():
        wanted = getattr(expect, key)
        if wanted is not None and wanted != value:
            out.append(f"{key}: expected {_show(wanted)}, got {_show(value)}")
    return out


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(getattr(value, "value", value))

