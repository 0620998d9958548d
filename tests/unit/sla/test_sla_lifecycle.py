"""Ticket lifecycle and clock semantics: replies, pauses, resolve/reopen, priority, queues.

Policy `basic` runs 24/7 (first/next response 4 h, resolution 24 h, vendor response 6 h at
normal priority; warnings at half). The ticket opens at T0 = Mon 3 Mar 2025 09:00 UTC.
"""

from __future__ import annotations

from router.sla.clocks import ClockStatus
from router.sla.events import LIFECYCLE_ACTOR
from router.sla.lifecycle import on_ticket_event
from router.sla.policy import SlaConfig
from router.sla.state import (
    ActionRejectedOut,
    RerouteOut,
    TicketEventOut,
    TicketStatus,
)
from schemas.sla import SlaEventKind, SlaMetric
from schemas.ticket import Priority, TicketEvent, TicketEventKind
from schemas.vendor import VendorProfile
from tests.unit.sla.sla_support import T0, Desk, march, sla_events, summary

FR, NR = SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE
RES, VR = SlaMetric.RESOLUTION, SlaMetric.VENDOR_RESPONSE


def ticket_events(outputs: list[object]) -> list[TicketEvent]:
    return [o.data for o in outputs if isinstance(o, TicketEventOut)]


class TestOpening:
    def test_first_response_and_resolution_start_at_open(self, desk: Desk) -> None:
        assert desk.open() == []
        assert desk.clock(FR).deadline == march(3, 13)
        assert desk.clock(FR).next_at == march(3, 11)  # warning at half the target
        assert desk.clock(RES).deadline == march(4, 9)
        assert desk.state is not None
        assert set(desk.state.clocks) == {FR, RES}
        assert desk.state.next_due_ts == march(3, 11).timestamp()

    def test_unknown_policy_falls_back_to_the_default(self, desk: Desk) -> None:
        desk.open(policy="no-such-policy")
        assert desk.state is not None
        assert desk.state.policy == "basic"

    def test_action_before_any_event_creates_the_ticket(self, desk: Desk) -> None:
        outputs = desk.act("reply", march(3, 9), body="hello")
        assert desk.state is not None
        assert desk.state.responded
        assert summary(outputs) == [("first_response", "met", 0)]


class TestResponses:
    def test_agent_reply_in_time_is_met(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("reply", march(3, 10, 30), body="On it")
        (met,) = sla_events(outputs)
        assert (met.kind, met.metric, met.level) == (SlaEventKind.MET, FR, 0)
        assert (met.deadline, met.due_at) == (march(3, 13), march(3, 10, 30))
        assert met.fired_at == march(3, 10, 30)
        assert (met.target_seconds, met.elapsed_business_seconds) == (14_400, 5_400)
        assert (met.late, met.action_taken) == (False, "none")
        (replied,) = ticket_events(outputs)
        assert (replied.kind, replied.actor, replied.sender_role) == (
            TicketEventKind.REPLIED,
            "agent-1",
            "agent",
        )
        assert desk.clock(FR).status is ClockStatus.STOPPED

    def test_reply_after_the_deadline_breaches_instead(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("reply", march(3, 13, 30), body="Sorry")
        # the breach due at 13:00 fires before the reply applies; the warning is superseded
        assert summary(outputs) == [("first_response", "breached", 1)]
        assert sla_events(outputs)[0].late  # fired 30 min after it was due

    def test_vendor_answering_by_email_is_a_response(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.event(TicketEventKind.MESSAGE_ADDED, march(3, 10), sender_role="seller")
        assert summary(outputs) == [("first_response", "met", 0)]

    def test_seller_who_opened_the_ticket_is_the_customer(self, desk: Desk) -> None:
        desk.open(requester="seller")
        desk.event(TicketEventKind.MESSAGE_ADDED, march(3, 10), sender_role="seller")
        assert desk.clock(FR).status is ClockStatus.RUNNING
        desk.act("reply", march(3, 11), body="Hi")
        desk.event(TicketEventKind.MESSAGE_ADDED, march(3, 12), sender_role="seller")
        assert desk.clock(NR).deadline == march(3, 16)

    def test_system_reply_satisfies_nothing(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("reply", march(3, 10), role="system", actor="autoresponder", body="ok")
        assert sla_events(outputs) == []
        assert desk.clock(FR).status is ClockStatus.RUNNING

    def test_buyer_message_before_first_response_starts_no_next_response(self, desk: Desk) -> None:
        desk.open()
        desk.buyer_writes(march(3, 10))
        assert desk.state is not None
        assert NR not in desk.state.clocks

    def test_next_response_runs_from_the_first_unanswered_buyer_message(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), body="a")
        desk.buyer_writes(march(3, 11))
        desk.buyer_writes(march(3, 12))  # a second message does not push the deadline out
        assert (desk.clock(NR).cycle, desk.clock(NR).deadline) == (0, march(3, 15))
        (met,) = sla_events(desk.act("reply", march(3, 12, 30), body="b"))
        assert (met.metric, met.cycle, met.elapsed_business_seconds) == (NR, 0, 5_400)
        desk.buyer_writes(march(3, 14))
        assert (desk.clock(NR).cycle, desk.clock(NR).deadline) == (1, march(3, 18))
        (met_again,) = sla_events(desk.act("reply", march(3, 15), body="c"))
        assert met_again.cycle == 1

    def test_out_of_order_input_never_moves_time_back(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 12), body="a")
        desk.buyer_writes(march(3, 11))  # stamped before the reply already applied
        assert desk.clock(NR).deadline == march(3, 16)


class TestPendingResolveReopen:
    def test_pending_pauses_resolution_until_the_buyer_writes(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), body="Which order?")
        desk.act("pend", march(3, 11))
        resolution = desk.clock(RES)
        assert (resolution.status, resolution.banked, resolution.deadline) == (
            ClockStatus.PAUSED,
            7_200,
            None,
        )
        assert desk.state is not None
        assert desk.state.next_due_ts is None
        desk.buyer_writes(march(3, 14))
        assert desk.state.status is TicketStatus.OPEN
        assert desk.clock(RES).deadline == march(4, 12)  # 22 h left after 14:00
        assert desk.clock(RES).next_at == march(4, 0)  # warning at 12 h: 10 h left

    def test_paused_time_is_kept_when_the_policy_changes(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), body="a")
        desk.act("pend", march(3, 11))  # 2 h banked under the 24/7 calendar
        desk.act("reassign", march(3, 12), queue="dept:office_hours")
        desk.buyer_writes(march(3, 15))  # 16:00 in Berlin
        # office resolution is 16 h: 14 h left = Mon 16-17, Tue 09-17, Wed 09-14 Berlin
        assert desk.clock(RES).banked == 7_200
        assert desk.clock(RES).deadline == march(5, 13)

    def test_resolve_stops_every_clock_and_reopen_resumes(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), body="a")
        outputs = desk.act("resolve", march(3, 19))
        (met,) = sla_events(outputs)
        assert (met.metric, met.deadline) == (RES, march(4, 9))
        assert met.elapsed_business_seconds == 36_000
        assert [e.kind for e in ticket_events(outputs)] == [TicketEventKind.RESOLVED]
        assert desk.state is not None
        assert all(c.status is ClockStatus.STOPPED for c in desk.state.clocks.values())
        assert desk.state.next_due_ts is None
        assert desk.act("resolve", march(3, 20)) == []
        reopened = desk.act("reopen", march(4, 5))
        assert [e.kind for e in ticket_events(reopened)] == [TicketEventKind.REOPENED]
        assert desk.clock(RES).deadline == march(4, 19)  # 10 h banked, 14 h left
        assert desk.clock(FR).status is ClockStatus.STOPPED

    def test_buyer_message_reopens_a_resolved_ticket(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), body="a")
        desk.act("resolve", march(3, 11))
        outputs = desk.buyer_writes(march(3, 12))
        (reopened,) = ticket_events(outputs)
        assert (reopened.kind, reopened.actor) == (TicketEventKind.REOPENED, "buyer-1")
        assert desk.clock(NR).deadline == march(3, 16)
        assert desk.clock(RES).deadline == march(4, 10)

    def test_the_first_message_read_after_a_parked_resolve_reopens_nothing(
        self, desk: Desk
    ) -> None:
        # a resolve read before the ticket's events waits for `opened` and is applied right
        # after it, so the first message_added (written before the resolve) comes later
        desk.event(TicketEventKind.OPENED, T0, queue="dept:general")
        desk.act("resolve", march(3, 9, 5))
        first = desk.event(TicketEventKind.MESSAGE_ADDED, T0, sender_role="buyer",
                           actor="buyer-1", message_seq=1)  # fmt: skip
        assert ticket_events(first) == []
        assert desk.state is not None
        assert desk.state.status is TicketStatus.RESOLVED
        assert desk.state.requester_role == "buyer"
        later = desk.event(TicketEventKind.MESSAGE_ADDED, march(3, 12), sender_role="buyer",
                           actor="buyer-1", message_seq=2)  # fmt: skip
        assert [e.kind for e in ticket_events(later)] == [TicketEventKind.REOPENED]

    def test_reopen_resumes_an_unanswered_first_response(self, desk: Desk) -> None:
        desk.open()
        desk.act("resolve", march(3, 10))
        desk.act("reopen", march(3, 12))
        assert desk.clock(FR).deadline == march(3, 15)  # 1 h banked, 3 h left


class TestPriorityAndQueues:
    def test_priority_change_recomputes_deadlines(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("change_priority", march(3, 10), priority="high")
        assert desk.clock(FR).deadline == march(3, 11)
        assert desk.clock(RES).deadline == march(3, 21)
        (routed,) = ticket_events(outputs)
        assert (routed.kind, routed.priority, routed.actor) == (
            TicketEventKind.ROUTED,
            Priority.HIGH,
            LIFECYCLE_ACTOR,
        )
        assert routed.ticket is not None
        assert routed.ticket.priority is Priority.HIGH

    def test_raising_priority_past_the_target_breaches_at_the_change(self, desk: Desk) -> None:
        desk.open()
        before = desk.act("change_priority", march(3, 12), priority="urgent")
        assert summary(before) == [("first_response", "warning", 0)]  # due 11:00, fired late
        after = desk.tick(march(3, 12, 0, 1))
        # urgent: first response 1 h (lapsed at 10:00), resolution warns at 3 h of 6 h (12:00)
        assert summary(after) == [("first_response", "breached", 1), ("resolution", "warning", 0)]
        breach = sla_events(after)[0]
        assert (breach.deadline, breach.due_at, breach.late) == (march(3, 10), march(3, 12), False)

    def test_reassign_switches_policy_and_calendar(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("reassign", march(3, 10), queue="dept:office_hours")
        assert desk.state is not None
        assert (desk.state.policy, desk.state.calendar) == ("office", "berlin_office")
        # 1 h banked; first response 3 h from 11:00 Berlin; resolution 15 h: Mon 6, Tue 8, Wed 1
        assert desk.clock(FR).deadline == march(3, 13)
        assert desk.clock(RES).deadline == march(5, 9)
        reroute = next(o for o in outputs if isinstance(o, RerouteOut))
        assert (reroute.queue, reroute.previous_queue, reroute.rule_id) == (
            "dept:office_hours",
            "dept:general",
            "action:reassign",
        )
        assert reroute.ticket is not None
        assert reroute.ticket.queue == "dept:office_hours"
        assert [m.body for m in reroute.ticket.messages] == ["My parcel never arrived"]
        assert reroute.ticket.sla.policy == "office"
        assert reroute.ticket.sla.deadlines["resolution"] == march(5, 9)

    def test_time_before_a_reassignment_stays_in_the_old_calendar(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 9, 30), body="a")
        desk.act("reassign", march(3, 18), queue="dept:office_hours")
        # 9 h spent 24/7 (the office calendar would count 7); 7 h left = Tue 09-16 Berlin
        assert desk.clock(RES).banked == 9 * 3600
        assert desk.clock(RES).deadline == march(4, 15)

    def test_routing_stage_does_not_undo_a_reassignment(self, desk: Desk) -> None:
        desk.open()
        desk.act("reassign", march(3, 10), queue="dept:office_hours")
        desk.event(TicketEventKind.ROUTED, march(3, 11), queue="dept:general", sla_policy="basic")
        assert desk.state is not None
        assert (desk.state.queue, desk.state.policy) == ("dept:office_hours", "office")


class TestVendorResponse:
    def test_runs_only_while_on_a_vendor_queue(self, desk: Desk) -> None:
        desk.open(queue="vendor:acme")
        assert desk.clock(VR).deadline == march(3, 15)
        outputs = desk.act("reply", march(3, 10), role="vendor", actor="acme", body="Shipped")
        assert summary(outputs) == [("first_response", "met", 0), ("vendor_response", "met", 0)]
        desk.buyer_writes(march(3, 11))
        assert (desk.clock(VR).cycle, desk.clock(VR).deadline) == (1, march(3, 17))
        assert summary(desk.act("reply", march(3, 12), body="x")) == [("next_response", "met", 0)]
        assert desk.clock(VR).status is ClockStatus.RUNNING  # an agent does not answer for it
        assert sla_events(desk.act("reassign", march(3, 13), queue="dept:general")) == []
        assert desk.clock(VR).status is ClockStatus.STOPPED

    def test_vendor_profile_sets_calendar_and_target(self, config: SlaConfig) -> None:
        profile = VendorProfile(vendor_id="acme", calendar="berlin_office", response_hours=2)
        desk = Desk(config, vendors={"acme": profile})
        desk.open(queue="vendor:acme")
        assert desk.state is not None
        assert desk.state.calendar == "berlin_office"
        assert desk.clock(VR).deadline == march(3, 11)  # 10:00 + 2 h Berlin = 11:00 UTC


class TestInputHandling:
    def test_vendor_acts_only_on_its_own_queue(self, desk: Desk) -> None:
        desk.open(queue="vendor:acme")
        state = desk.state
        outputs = desk.act("reply", march(3, 10), role="vendor", actor="globex", body="hi")
        assert [type(o) for o in outputs] == [ActionRejectedOut]
        assert desk.state is state
        (rejected,) = desk.act(
            "reassign", march(3, 10), role="vendor", actor="acme", queue="dept:other"
        )
        assert isinstance(rejected, ActionRejectedOut)
        assert "may not reassign" in rejected.reason

    def test_buyer_may_not_resolve(self, desk: Desk) -> None:
        desk.open()
        outputs = desk.act("resolve", march(3, 10), role="buyer", actor="buyer-1")
        assert [type(o) for o in outputs] == [ActionRejectedOut]

    def test_redelivered_input_applies_once(self, desk: Desk) -> None:
        desk.open()
        desk.act("reply", march(3, 10), action_id="desk-1", body="a")
        state = desk.state
        assert desk.act("reply", march(3, 10), action_id="desk-1", body="a") == []
        assert desk.state is state

    def test_own_events_coming_back_are_skipped(self, desk: Desk, config: SlaConfig) -> None:
        desk.open()
        state = desk.state
        own_routed = TicketEvent(
            ticket_id="T-1",
            kind=TicketEventKind.ROUTED,
            at=march(3, 10),
            queue="dept:elsewhere",
            actor=LIFECYCLE_ACTOR,
        )
        own_resolved = TicketEvent(ticket_id="T-1", kind=TicketEventKind.RESOLVED, at=march(3, 10))
        for event in (own_routed, own_resolved):
            step = on_ticket_event(state, event, event_id="x", now=march(3, 10), config=config)
            assert step.state is state
            assert step.outputs == []
