"""Golden cases: message in, expected queue / priority / tags / rule / SLA out.

    ruleset: marketplace.yaml         # optional, relative to this file
    now: 2024-06-04T10:00:00Z         # optional default clock
    cases:
      - name: chargeback goes to disputes
        message: {body: "I filed a chargeback with my bank", vendor_id: acme-audio}
        vendor: {vendor_id: acme-audio, tier: gold}   # optional: ticket, buyer, order, now
        expect:
          queue: dept:disputes
          priority: urgent
          tags: [dispute, fraud-risk]     # the exact tag set (order ignored)
          tags_include: [dispute]         # or: a subset that must be present
          tags_exclude: [vendor]          # tags that must be absent
          rule: fraud-or-chargeback
          sla: disputes
          fallback: false                 # whether a vendor route fell back
          dispute: none                   # the reason of a rule's `open_dispute`, or none

Every expectation is optional; a failing case reports each differing field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.compile import CompiledRuleset
from rules.inputs import BuyerDoc, InputDoc, TicketDoc, input_from_doc
from rules.result import DisputeRequest, RuleResult
from rules.source import SourceDoc
from schemas.ticket import Priority
from schemas.vendor import VendorProfile


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = None
    priority: Priority | None = None
    tags: list[str] | None = None
    tags_include: list[str] = []
    tags_exclude: list[str] = []
    rule: str | None = None
    sla: str | None = None
    fallback: bool | None = None
    dispute: str | None = None  # a reason code, or "none"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    message: dict[str, Any]
    ticket: TicketDoc | None = None
    vendor: VendorProfile | None = None
    buyer: BuyerDoc | None = None
    order: dict[str, Any] = {}
    now: datetime | None = None
    expect: Expect


class CasesDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ruleset: str | None = None
    now: datetime | None = None
    cases: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Diff:
    field: str
    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    name: str
    line: int | None
    diffs: tuple[Diff, ...] = ()
    error: str | None = None
    result: RuleResult | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.diffs


def load_cases(src: SourceDoc) -> CasesDoc:
    """Raises ValueError when the document is not a cases file."""
    try:
        return CasesDoc.model_validate(src.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"{src.file}:{src.line(first['loc']) or '?'}: {loc}: {first['msg']}"
        ) from None


def _diffs(expect: Expect, res: RuleResult, dispute: DisputeRequest | None) -> list[Diff]:
    out: list[Diff] = []

    def check(name: str, want: Any, got: Any) -> None:
        if want is not None and want != got:
            out.append(Diff(name, str(want), str(got)))

    check("queue", expect.queue, res.queue)
    check("priority", expect.priority.value if expect.priority else None, res.priority.value)
    check("rule", expect.rule, res.rule_id)
    check("sla", expect.sla, res.sla_policy)
    check("dispute", expect.dispute, "none" if dispute is None else dispute.reason)
    if expect.fallback is not None and expect.fallback != (res.fallback is not None):
        out.append(Diff("fallback", str(expect.fallback).lower(), res.fallback or "false"))
    got = set(res.tags)
    if expect.tags is not None and set(expect.tags) != got:
        out.append(Diff("tags", ", ".join(sorted(expect.tags)), ", ".join(sorted(got))))
    missing = [t for t in expect.tags_include if t not in got]
    if missing:
        out.append(Diff("tags_include", ", ".join(missing), ", ".join(sorted(got))))
    present = [t for t in expect.tags_exclude if t in got]
    if present:
        out.append(Diff("tags_exclude", "absent: " + ", ".join(present), ", ".join(sorted(got))))
    return out


def run_cases(compiled: CompiledRuleset, src: SourceDoc) -> list[CaseOutcome]:
    """Run every case of a cases document against a compiled ruleset."""
    doc = load_cases(src)
    outcomes: list[CaseOutcome] = []
    for i, raw in enumerate(doc.cases):
        line = src.line(("cases", i))
        name = str(raw.get("name") or f"case {i + 1}")
        try:
            case = Case.model_validate(raw)
            inp_doc = InputDoc(
                message=case.message,
                ticket=case.ticket,
                vendor=case.vendor,
                buyer=case.buyer,
                order=case.order,
                now=case.now,
            )
            inp = input_from_doc(inp_doc, f"case{i + 1}", doc.now)
        except (ValidationError, ValueError) as exc:
            detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
            msg = f"{'.'.join(map(str, detail['loc']))}: {detail['msg']}" if detail else str(exc)
            outcomes.append(CaseOutcome(name, line, error=f"bad case: {msg}"))
            continue
        res = compiled.evaluate(inp)
        dispute = compiled.dispute_request(inp, res.matched)
        diffs = tuple(_diffs(case.expect, res, dispute))
        outcomes.append(CaseOutcome(name, line, diffs, None, res))
    return outcomes


def format_outcome(outcome: CaseOutcome, file: str) -> list[str]:
    """`FAIL name (file:line)` followed by an expected/actual diff per differing field."""
    where = f"{file}:{outcome.line}" if outcome.line else file
    if outcome.passed:
        return [f"PASS {outcome.name}"]
    lines = [f"FAIL {outcome.name} ({where})"]
    if outcome.error:
        return [*lines, f"    {outcome.error}"]
    for d in outcome.diffs:
        lines.append(f"    {d.field}:")
        lines.append(f"    - expected: {d.expected}")
        lines.append(f"    + actual:   {d.actual}")
    res = outcome.result
    if res is not None:
        lines.append(f"    decided by rule {res.rule_id}: {res.explanation}")
    return lines
