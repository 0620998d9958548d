"""Commands from desks, vendors and buyers on `tickets.actions` (key: ticket id).

Every record is a CloudEvents 1.0 envelope of type `support.ticket.action`; its `id` is the
idempotency key (send the same command twice with the same id and it applies once). `data`
is one of the objects below, chosen by its `action` field:

| action            | extra fields             | who may send it                          |
|-------------------|--------------------------|------------------------------------------|
| `reply`           | `body`                   | agent, vendor (own queue), buyer, system |
| `internal_note`   | `body`                   | agent, vendor (own queue), system        |
| `pend`            | `reason`                 | agent, vendor (own queue), system        |
| `resolve`         | `reason`                 | agent, vendor (own queue), system        |
| `reopen`          | `reason`                 | agent, buyer, system                     |
| `reassign`        | `queue`, `reason`        | agent, system                            |
| `change_priority` | `priority`, `reason`     | agent, system                            |
| `survey_response` | `csat`, `nps`, `comment` | buyer, system (a survey tool relaying)   |

Common fields: `ticket_id`, `actor` {`id`, `role`: agent|vendor|buyer|system}, `at` (when the
person acted, with a UTC offset). A vendor acts only on tickets in its own queue
(`vendor:<actor.id>`); other commands are rejected. Example:

    {"specversion": "1.0", "id": "desk-7f3a", "source": "desk/eu", "type": "support.ticket.action",
     "subject": "T-123",
     "data": {"action": "reply", "ticket_id": "T-123", "at": "2025-03-03T10:00:00Z",
              "actor": {"id": "agent-42", "role": "agent"}, "body": "We are on it."}}

SLA effects: agent and vendor replies satisfy first and next response (vendor replies also
vendor response); system replies (auto-responders) satisfy nothing; a buyer reply restarts next
response. `pend` pauses resolution until the buyer writes or the ticket is reopened; `resolve`
stops every clock; `reopen` resumes them; `change_priority` recomputes deadlines; `reassign`
switches the SLA policy and calendar that apply to the new queue. `survey_response` (the
buyer's answer to the satisfaction survey sent when the ticket was resolved: `csat` 1-5,
`nps` 0-10, at least one of them, and an optional `comment`) touches no clock; the scores stage
counts it once (`router.scores`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from schemas.envelope import CloudEvent
from schemas.ticket import Priority, Queue

TICKET_ACTION = "support.ticket.action"

MAX_ACTION_BODY_CHARS = 65_536

Body = Annotated[str, Field(max_length=MAX_ACTION_BODY_CHARS)]
Reason = Annotated[str, Field(max_length=1024)] | None


class ActorRole(StrEnum):
    AGENT = "agent"
    VENDOR = "vendor"
    BUYER = "buyer"
    SYSTEM = "system"


class Actor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=256)]
    role: ActorRole


class _ActionBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: Annotated[str, Field(min_length=1, max_length=256)]
    actor: Actor
    at: AwareDatetime


class ReplyAction(_ActionBase):
    action: Literal["reply"] = "reply"
    body: Body


class InternalNoteAction(_ActionBase):
    action: Literal["internal_note"] = "internal_note"
    body: Body


class PendAction(_ActionBase):
    action: Literal["pend"] = "pend"
    reason: Reason = None


class ResolveAction(_ActionBase):
    action: Literal["resolve"] = "resolve"
    reason: Reason = None


class ReopenAction(_ActionBase):
    action: Literal["reopen"] = "reopen"
    reason: Reason = None


class ReassignAction(_ActionBase):
    action: Literal["reassign"] = "reassign"
    queue: Queue
    reason: Reason = None


class ChangePriorityAction(_ActionBase):
    action: Literal["change_priority"] = "change_priority"
    priority: Priority
    reason: Reason = None


MAX_SURVEY_COMMENT_CHARS = 4096
CSAT_MIN, CSAT_MAX = 1, 5
NPS_MIN, NPS_MAX = 0, 10
_SURVEY_ROLES = frozenset({ActorRole.BUYER, ActorRole.SYSTEM})


class SurveyResponseAction(_ActionBase):
    action: Literal["survey_response"] = "survey_response"
    csat: Annotated[int, Field(ge=CSAT_MIN, le=CSAT_MAX, strict=True)] | None = None
    nps: Annotated[int, Field(ge=NPS_MIN, le=NPS_MAX, strict=True)] | None = None
    comment: Annotated[str, Field(max_length=MAX_SURVEY_COMMENT_CHARS)] | None = None

    @model_validator(mode="after")
    def _answers_something_as_the_buyer(self) -> SurveyResponseAction:
        if self.csat is None and self.nps is None:
            raise ValueError("a survey response needs `csat` (1-5), `nps` (0-10) or both")
        if self.actor.role not in _SURVEY_ROLES:
            raise ValueError(f"a survey response comes from the buyer, not a {self.actor.role}")
        return self


TicketAction = Annotated[
    ReplyAction
    | InternalNoteAction
    | PendAction
    | ResolveAction
    | ReopenAction
    | ReassignAction
    | ChangePriorityAction
    | SurveyResponseAction,
    Field(discriminator="action"),
]

# Validates a bare `data` object (e.g. `TICKET_ACTION_ADAPTER.validate_json(raw)`).
TICKET_ACTION_ADAPTER: TypeAdapter[TicketAction] = TypeAdapter(TicketAction)


class TicketActionEvent(CloudEvent[TicketAction]):
    """A whole `support.ticket.action` record as it sits on `tickets.actions`."""


__all__ = [
    "MAX_ACTION_BODY_CHARS",
    "TICKET_ACTION",
    "TICKET_ACTION_ADAPTER",
    "Actor",
    "ActorRole",
    "ChangePriorityAction",
    "InternalNoteAction",
    "PendAction",
    "ReassignAction",
    "ReopenAction",
    "ReplyAction",
    "ResolveAction",
    "SurveyResponseAction",
    "TicketAction",
    "TicketActionEvent",
]
