"""Turn parsed condition and action documents into checked AST nodes, collecting problems.

Each problem is (document path, message); `rules.validate` adds file, line and rule id.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from rules.ast import Action, AllOf, AnyOf, Cond, DisputeClaim, NotOf, Template, Test
from rules.fields import FieldSpec, Kind, resolve, unknown_field_message
from rules.model import (
    QUEUE_NAME,
    AllDoc,
    AnyDoc,
    CondDoc,
    LeafDoc,
    NotDoc,
    OpenDisputeDoc,
    ThenDoc,
)
from rules.operators import LiteralScope, describe, prepare_literal
from rules.source import Path
from schemas.message import VENDOR_ID_PATTERN

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_VENDOR_ID = re.compile(VENDOR_ID_PATTERN)
_TEMPLATE_KINDS = frozenset({Kind.STR, Kind.NUM, Kind.BOOL, Kind.ANY})
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
# What each value of a dispute claim may be read from.
_CLAIM_KINDS = {
    "amount": frozenset({Kind.NUM, Kind.ANY}),
    "currency": frozenset({Kind.STR, Kind.ANY}),
    "category": frozenset({Kind.STR, Kind.TEXT, Kind.ANY}),
}
MAX_TEXT = 160


@dataclass
class Preparer:
    scope: LiteralScope
    departments: Collection[str] | None  # None: unknown (that section failed to parse)
    sla_policies: Collection[str] | None
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def problem(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    # --- conditions -------------------------------------------------------------------------

    def condition(self, doc: CondDoc, path: Path) -> Cond | None:
        if isinstance(doc, LeafDoc):
            return self._test(doc, path)
        if isinstance(doc, NotDoc):
            inner = self.condition(doc.not_, (*path, "not"))
            return None if inner is None else NotOf(inner, _clip(f"not ({inner.text})"), path)
        if isinstance(doc, AllDoc):
            key, docs = "all", doc.all
        else:
            key, docs = "any", doc.any_
        if isinstance(doc, AnyDoc) and not docs:
            self.problem(path, "an empty `any` never matches")
        items = [self.condition(d, (*path, key, i)) for i, d in enumerate(docs)]
        kept = tuple(c for c in items if c is not None)
        if len(kept) != len(items):
            return None
        if isinstance(doc, AllDoc):
            return AllOf(kept, _clip(" and ".join(c.text for c in kept) or "always"), path)
        return AnyOf(kept, _clip("any of (" + " | ".join(c.text for c in kept) + ")"), path)

    def _test(self, doc: LeafDoc, path: Path) -> Test | None:
        spec = resolve(doc.field) if isinstance(doc.field, str) else None
        if spec is None:
            self.problem((*path, "field"), unknown_field_message(str(doc.field)))
            return None
        lit, err = prepare_literal(doc.op, spec, doc.value, self.scope)
        if err is not None:
            self.problem((*path, doc.op), err)
            return None
        return Test(spec, doc.op, lit, doc.value, describe(spec.path, doc.op, doc.value), path)

    # --- templates and actions --------------------------------------------------------------

    def template(self, text: str, path: Path) -> Template | None:
        parts: list[str | FieldSpec] = []
        pos = 0
        ok = True
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : m.start()])
            pos = m.end()
            spec = resolve(m.group(1).strip())
            if spec is None:
                self.problem(path, "in template: " + unknown_field_message(m.group(1).strip()))
                ok = False
            elif spec.kind not in _TEMPLATE_KINDS:
                self.problem(
                    path,
                    f"in template: {spec.path} is a {spec.kind.value} and cannot "
                    "be inserted into text",
                )
                ok = False
            else:
                parts.append(spec)
        parts.append(text[pos:])
        if "{" in text[pos:] or "}" in text[pos:]:
            self.problem(path, f"unbalanced braces in template {text!r}")
            ok = False
        if not ok:
            return None
        return Template(text, tuple(p for p in parts if p != ""))

    def department(self, queue: str, path: Path, what: str) -> bool:
        if not queue.startswith("dept:"):
            self.problem(path, f"{what} must be a department queue 'dept:<name>', got {queue!r}")
            return False
        name = queue[5:]
        if not QUEUE_NAME.match(name):
            self.problem(path, f"bad department name {name!r}: use [a-z0-9_-], at most 64")
            return False
        if self.departments is not None and name not in self.departments:
            known = ", ".join(sorted(self.departments)) or "none declared"
            self.problem(path, f"unknown department {name!r} (departments: {known})")
            return False
        return True

    def action(self, doc: ThenDoc, path: Path) -> Action | None:
        before = len(self.problems)
        terminal = not doc.continue_
        route: Template | None = None
        to_vendor = False
        if doc.route is None:
            if terminal:
                self.problem(
                    (*path,),
                    "a terminal rule must route: add `route`, or "
                    "`continue: true` to only add tags / priority / SLA",
                )
        elif not terminal:
            self.problem(
                (*path, "route"),
                "a `continue` rule cannot route: only the terminal rule chooses the queue",
            )
        elif doc.route.startswith("vendor:"):
            to_vendor = True
            route = self.template(doc.route, (*path, "route"))
            if route is not None and route.constant and not _VENDOR_ID.match(doc.route[7:]):
                self.problem((*path, "route"), f"bad vendor id {doc.route[7:]!r}")
            if doc.fallback is None:
                self.problem(
                    (*path, "route"),
                    "a vendor route needs `fallback: dept:<name>` "
                    "for unknown, suspended or out-of-contract vendors",
                )
        elif self.department(doc.route, (*path, "route"), "route"):
            route = Template(doc.route, (doc.route,))
        if doc.fallback is not None:
            if not to_vendor:
                self.problem((*path, "fallback"), "`fallback` only applies to vendor routes")
            else:
                self.department(doc.fallback, (*path, "fallback"), "fallback")
        contract: Cond | None = None
        if doc.contract is not None:
            if not to_vendor:
                self.problem((*path, "contract"), "`contract` only applies to vendor routes")
            else:
                contract = self.condition(doc.contract, (*path, "contract"))
        sla_known = self.sla_policies
        if doc.sla is not None and sla_known is not None and doc.sla not in sla_known:
            known = ", ".join(sorted(sla_known)) or "none declared"
            self.problem((*path, "sla"), f"unknown SLA policy {doc.sla!r} (sla_policies: {known})")
        tags = [self.template(t, (*path, "tags", i)) for i, t in enumerate(doc.tags)]
        for i, t in enumerate(doc.tags):
            if not t.strip():
                self.problem((*path, "tags", i), "empty tag")
        claim = None
        if doc.open_dispute is not None:
            claim = self.dispute_claim(doc.open_dispute, (*path, "open_dispute"))
        if len(self.problems) != before:
            return None
        return Action(
            route=route,
            to_vendor=to_vendor,
            fallback=doc.fallback,
            contract=contract,
            priority=doc.priority,
            tags=tuple(t for t in tags if t is not None),
            sla=doc.sla,
            terminal=terminal,
            open_dispute=claim,
        )

    def dispute_claim(self, doc: OpenDisputeDoc, path: Path) -> DisputeClaim | None:
        amount = self._claim_field("amount", doc.amount, path)
        currency: FieldSpec | str | None = doc.currency
        if not _CURRENCY_CODE.match(doc.currency):
            currency = self._claim_field("currency", doc.currency, path)
        category = None
        if doc.category is not None:
            category = self._claim_field("category", doc.category, path)
            if category is None:
                return None
        if amount is None or currency is None:
            return None
        return DisputeClaim(doc.reason.value, amount, currency, category)

    def _claim_field(self, name: str, field_path: str, path: Path) -> FieldSpec | None:
        spec = resolve(field_path)
        if spec is None:
            hint = "; or a fixed ISO 4217 code like EUR" if name == "currency" else ""
            self.problem((*path, name), f"open_dispute {name}: "
                                        f"{unknown_field_message(field_path)}{hint}")  # fmt: skip
            return None
        if spec.kind not in _CLAIM_KINDS[name]:
            self.problem((*path, name), f"open_dispute {name} cannot be read from {field_path} "
                                        f"(a {spec.kind.value} field)")  # fmt: skip
            return None
        return spec


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
