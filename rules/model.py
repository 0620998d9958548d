"""The ruleset document: one pydantic model for YAML and JSON alike.

    name: marketplace                 # ruleset name (the key on routing.rules)
    version: "2024.06.1"
    departments: [disputes, payments, general]
    sla_policies: [standard, vip]
    defaults: {priority: normal, sla: standard}
    intents: {not_received: ["not received", "never arrived"]}
    calendars: {eu: {timezone: Europe/Berlin, hours: {weekdays: ["08:00-18:00"]}}}
    rules:
      - id: disputes
        priority: 100                 # evaluation order: higher first, then file order
        when: {any: [{field: message.intent, contains_any: [not_received]},
                     {field: message.text, contains_any: [fraud, chargeback]}]}
        then: {route: "dept:disputes", priority: high, tags: [dispute]}
      - id: catch-all                 # no `when`: matches everything (required, last)
        then: {route: "dept:general"}

A condition is `{all: [...]}`, `{any: [...]}`, `{not: {...}}` or a test
`{field: <path>, <operator>: <value>}`. Field/operator/value compatibility, names and
references are checked in `rules.validate`, which reports every problem with its line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from schemas.claim import ReasonCode
from schemas.ticket import Priority

OPERATOR_NAMES = (
    "eq", "ne", "in", "not_in", "exists", "contains", "contains_any", "matches",
    "gt", "gte", "lt", "lte", "within_hours",
)  # fmt: skip

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_RULE_PRIORITY = 1_000_000_000

_Strict = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LeafDoc(BaseModel):
    """`{field: message.channel, eq: social}`, held as field / op / value."""

    model_config = _Strict

    field: str
    op: str
    value: Any

    @model_validator(mode="before")
    @classmethod
    def _split_operator(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "op" in raw:
            return raw
        ops = [k for k in raw if k != "field"]
        if not ops:
            raise ValueError("test has no operator: add one of " + ", ".join(OPERATOR_NAMES))
        if len(ops) > 1:
            raise ValueError(
                f"one operator per test, found {', '.join(map(str, ops))}; "
                "combine tests with all/any"
            )
        op = ops[0]
        if op not in OPERATOR_NAMES:
            raise ValueError(f"unknown operator {op!r}; operators: {', '.join(OPERATOR_NAMES)}")
        return {"field": raw.get("field"), "op": op, "value": raw[op]}

    @model_serializer
    def _as_document(self) -> dict[str, Any]:
        return {"field": self.field, self.op: self.value}


class AllDoc(BaseModel):
    model_config = _Strict
    all: list[CondDoc]


class AnyDoc(BaseModel):
    model_config = _Strict
    any_: list[CondDoc] = Field(alias="any")


class NotDoc(BaseModel):
    model_config = _Strict
    not_: CondDoc = Field(alias="not")


def _cond_tag(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        return {AllDoc: "all", AnyDoc: "any", NotDoc: "not", LeafDoc: "test"}.get(type(raw))
    if isinstance(raw, dict):
        for key in ("all", "any", "not"):
            if key in raw:
                return key
        if "field" in raw:
            return "test"
    return None


CondDoc = Annotated[
    Annotated[AllDoc, Tag("all")]
    | Annotated[AnyDoc, Tag("any")]
    | Annotated[NotDoc, Tag("not")]
    | Annotated[LeafDoc, Tag("test")],
    Discriminator(
        _cond_tag,
        custom_error_type="condition",
        custom_error_message="a condition is {all: [...]}, {any: [...]}, {not: {...}} or "
        "{field: <path>, <operator>: <value>}",
    ),
]


class OpenDisputeDoc(BaseModel):
    """`then: {open_dispute: ...}`: open a dispute on the message's order, by the system.

    `amount`, `currency` and `category` name field paths (`order.total`); `currency` may
    instead be a fixed ISO 4217 code (`EUR`)."""

    model_config = _Strict

    reason: ReasonCode
    amount: str
    currency: str
    category: str | None = None


class ThenDoc(BaseModel):
    """What a matching rule does. Without `continue: true` a rule is terminal and must route."""

    model_config = _Strict

    route: str | None = None  # "dept:<name>" | "vendor:<id>" | "vendor:{message.vendor_id}"
    fallback: str | None = None  # "dept:<name>": vendor unknown, inactive or out of contract
    contract: CondDoc | None = None  # must hold for a vendor route, else the fallback
    priority: Priority | None = None  # merged by maximum over every matching rule
    tags: list[str] = []  # added; "{field.path}" placeholders are filled in
    sla: str | None = None  # last matching rule that names one wins
    open_dispute: OpenDisputeDoc | None = None  # the first matching rule naming one wins
    continue_: bool = Field(default=False, alias="continue")


class RuleDoc(BaseModel):
    model_config = _Strict

    id: Annotated[str, Field(pattern=RULE_ID_PATTERN)]
    description: str | None = None
    priority: int = 0
    when: CondDoc | None = None
    then: ThenDoc

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_is_order(cls, raw: Any) -> Any:
        if isinstance(raw, str) and raw in Priority.__members__.values():
            raise ValueError(
                "a rule's `priority` is its evaluation order (an integer, higher runs first); "
                f"to set the ticket priority write `then: {{priority: {raw}}}`"
            )
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("a rule's `priority` is an integer (higher runs first)")
        if abs(raw) > MAX_RULE_PRIORITY:
            raise ValueError(f"a rule's `priority` is between -{MAX_RULE_PRIORITY} and "
                             f"{MAX_RULE_PRIORITY}")  # fmt: skip
        return raw


class CalendarDoc(BaseModel):
    model_config = _Strict

    timezone: str
    fallback_timezone: str = "UTC"
    hours: dict[str, list[str]]

    @field_validator("hours", mode="before")
    @classmethod
    def _one_or_many(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in raw.items()}
        return raw


class DefaultsDoc(BaseModel):
    model_config = _Strict

    priority: Priority = Priority.NORMAL
    sla: str = "standard"


class RulesetHeader(BaseModel):
    """Everything but the rules (validated apart so that each rule reports on its own)."""

    model_config = _Strict

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: str
    description: str | None = None
    departments: list[str] = []
    sla_policies: list[str] = []
    defaults: DefaultsDoc = DefaultsDoc()
    intents: dict[str, list[str]] = {}
    calendars: dict[str, CalendarDoc] = {}

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, raw: Any) -> Any:
        if isinstance(raw, bool | float):
            raise ValueError("quote the version (YAML reads 1.10 as the number 1.1)")
        return str(raw) if isinstance(raw, int) else raw


class RulesetDoc(RulesetHeader):
    rules: list[RuleDoc]

    def to_document(self) -> dict[str, Any]:
        """The canonical JSON-ready document (what `router rules publish` writes)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


AllDoc.model_rebuild()
AnyDoc.model_rebuild()
NotDoc.model_rebuild()
OpenDisputeDoc.model_rebuild()
ThenDoc.model_rebuild()
RuleDoc.model_rebuild()
RulesetDoc.model_rebuild()
