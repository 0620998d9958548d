"""Test support for the SLA core: a small policy file and a desk driver with a fake clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import count
from typing import Any

from router.sla.clocks import MetricClock
from router.sla.lifecycle import on_action, on_tick, on_ticket_event
from router.sla.policy import SlaConfig
from router.sla.state import LifecycleState, Output, SlaEventOut, Step
from schemas.action import TICKET_ACTION_ADAPTER
from schemas.message import Channel, Sender, SenderRole
from schemas.sla import SlaEvent, SlaMetric
from schemas.ticket import (
    Priority,
    RoutedTicket,
    SlaTerms,
    TicketEvent,
    TicketEventKind,
    TicketMessage,
)
from schemas.vendor import VendorProfile

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin


def march(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A UTC instant in March 2025 (the 3rd is a Monday; Berlin is UTC+1 all month)."""
    return datetime(2025, 3, day, hour, minute, second, tzinfo=UTC)


# Targets are round so expected deadlines can be worked out by hand: `basic` and `escalating`
# run 24/7; `office` runs Mon-Fri 09:00-17:00 Berlin time.
POLICY_YAML = """
version: 1
default_policy: basic
late_grace_seconds: 60
calendars:
  always: {kind: always}
  berlin_office:
    kind: business_hours
    timezone: Europe/Berlin
    weekly: &days
      mon: ["09:00-17:00"]
      tue: ["09:00-17:00"]
      wed: ["09:00-17:00"]
      thu: ["09:00-17:00"]
      fri: ["09:00-17:00"]
policies:
  basic:
    calendar: always
    warning_at: 0.5
    metrics:
      first_response: {targets: {low: 8h, normal: 4h, high: 2h, urgent: 1h}}
      next_response: {targets: {low: 8h, normal: 4h, high: 2h, urgent: 1h}}
      resolution: {targets: {low: 48h, normal: 24h, high: 12h, urgent: 6h}}
      vendor_response:
        targets: {low: 12h, normal: 6h, high: 2h, urgent: 1h}
        escalation:
          - {}
          - {after: 2h, reroute: "dept:disputes"}
  escalating:
    calendar: always
    warning_at: 0.5
    metrics:
      first_response: {targets: {low: 8h, normal: 4h, high: 2h, urgent: 1h}}
      resolution: {targets: {low: 48h, normal: 24h, high: 12h, urgent: 6h}}
      vendor_response:
        targets: {low: 12h, normal: 6h, high: 2h, urgent: 1h}
        escalation:
          - {}
          - {after: 2h, reroute: "dept:disputes"}
    escalation:
      - raise_priority: true
      - {after: 1h, reroute: "dept:escalations"}
  office:
    calendar: berlin_office
    warning_at: 0.5
    metrics:
      first_response: {targets: {low: 8h, normal: 4h, high: 2h, urgent: 1h}}
      resolution: {targets: {low: 32h, normal: 16h, high: 8h, urgent: 4h}}
queue_policies:
  - {queue: "dept:office*", policy: office}
  - {queue: "dept:*", policy: basic}
"""


def routed_snapshot(queue: str, policy: str, priority: Priority = Priority.NORMAL) -> RoutedTicket:
    message = TicketMessage(
        seq=1,
        inbound_id="in-1",
        message_id="m-1",
        channel=Channel.EMAIL,
        sender=Sender(id="buyer-1", role=SenderRole.BUYER),
        body="My parcel never arrived",
        received_at=T0,
    )
    return RoutedTicket(
        ticket_id="T-1",
        queue=queue,
        priority=priority,
        sla=SlaTerms(policy=policy),
        rule_id="r-1",
        ruleset_version="7",
        channel=Channel.EMAIL,
        opened_at=T0,
        message_count=1,
        messages=[message],
    )


class Desk:
    """Drives one ticket through the lifecycle functions; the fake clock is `now`."""

    def __init__(self, config: SlaConfig, vendors: Mapping[str, VendorProfile] | None = None):
        self.config = config
        self.vendors = dict(vendors or {})
        self.state: LifecycleState | None = None
        self.now = T0
        self._ids = count(1)

    def _apply(self, step: Step) -> list[Output]:
        self.state = step.state
        return step.outputs

    def event(self, kind: TicketEventKind, at: datetime, **fields: Any) -> list[Output]:
        self.now = max(self.now, at)
        event_id = fields.pop("event_id", None) or f"ev-{next(self._ids)}"
        event = TicketEvent(ticket_id="T-1", kind=kind, at=at, **fields)
        step = on_ticket_event(
            self.state,
            event,
            event_id=event_id,
            now=self.now,
            config=self.config,
            vendors=self.vendors,
        )
        return self._apply(step)

    def open(
        self,
        *,
        queue: str = "dept:general",
        policy: str = "basic",
        priority: Priority = Priority.NORMAL,
        requester: str = "buyer",
    ) -> list[Output]:
        """What the routing stage emits for a new ticket: opened, message_added, routed."""
        snapshot = routed_snapshot(queue, policy, priority)
        return [
            *self.event(TicketEventKind.OPENED, T0, queue=queue),
            *self.event(TicketEventKind.MESSAGE_ADDED, T0, sender_role=requester, queue=queue),
            *self.event(
                TicketEventKind.ROUTED,
                T0,
                queue=queue,
                priority=priority,
                sla_policy=policy,
                ticket=snapshot,
            ),
        ]

    def buyer_writes(self, at: datetime) -> list[Output]:
        return self.event(TicketEventKind.MESSAGE_ADDED, at, sender_role="buyer", actor="buyer-1")

    def act(
        self,
        action: str,
        at: datetime,
        *,
        role: str = "agent",
        actor: str = "agent-1",
        action_id: str | None = None,
        **fields: Any,
    ) -> list[Output]:
        self.now = max(self.now, at)
        data = {
            "action": action,
            "ticket_id": "T-1",
            "at": at,
            "actor": {"id": actor, "role": role},
            **fields,
        }
        parsed = TICKET_ACTION_ADAPTER.validate_python(data)
        step = on_action(
            self.state,
            parsed,
            action_id=action_id or f"act-{next(self._ids)}",
            now=self.now,
            config=self.config,
            vendors=self.vendors,
        )
        return self._apply(step)

    def tick(self, now: datetime) -> list[Output]:
        assert self.state is not None
        self.now = now
        return self._apply(on_tick(self.state, now, config=self.config, vendors=self.vendors))

    def clock(self, metric: SlaMetric) -> MetricClock:
        assert self.state is not None
        return self.state.clocks[metric]


def sla_events(outputs: list[Output]) -> list[SlaEvent]:
    return [o.data for o in outputs if isinstance(o, SlaEventOut)]


def summary(outputs: list[Output]) -> list[tuple[str, str, int]]:
    """(metric, kind, level) of each SLA event, in order."""
    return [(e.metric.value, e.kind.value, e.level) for e in sla_events(outputs)]
