"""Timer firings: warnings, the escalation ladder, late firing after downtime, idempotence.

Policy `escalating` runs 24/7: first response 4 h normal / 2 h high, resolution 24 h / 12 h,
warnings at half; rung 1 raises priority, rung 2 (1 h later) reroutes to dept:escalations,
whose queue policy is `basic`. Vendor response is 6 h / 2 h; its rung 2 (2 h later) reroutes
to dept:disputes. The ticket opens at T0 = Mon 3 Mar 2025 09:00 UTC.
"""

from __future__ import annotations

from router.sla.clocks import ClockStatus
from router.sla.lifecycle import on_action, on_tick
from router.sla.policy import SlaConfig, parse_sla_config
from router.sla.state import RerouteOut, SlaEventOut, TicketEventOut, encode_state
from schemas.action import Actor, ActorRole, ReplyAction
from schemas.sla import SlaEventKind, SlaMetric
from schemas.ticket import Priority, TicketEventKind
from tests.unit.sla.sla_support import POLICY_YAML, Desk, march, sla_events, summary

FR, RES, VR = SlaMetric.FIRST_RESPONSE, SlaMetric.RESOLUTION, SlaMetric.VENDOR_RESPONSE


def test_nothing_due_changes_nothing(desk: Desk) -> None:
    desk.open(policy="escalating")
    state = desk.state
    assert desk.tick(march(3, 10, 59, 59)) == []
    assert desk.state is state


def test_warning_fires_once_at_its_threshold(desk: Desk) -> None:
    desk.open(policy="escalating")
    (warning,) = sla_events(desk.tick(march(3, 11)))
    assert (warning.kind, warning.metric, warning.level) == (SlaEventKind.WARNING, FR, 0)
    assert (warning.deadline, warning.due_at, warning.fired_at) == (
        march(3, 13),
        march(3, 11),
        march(3, 11),
    )
    assert (warning.target_seconds, warning.elapsed_business_seconds) == (14_400, 7_200)
    assert (warning.policy, warning.queue, warning.priority) == (
        "escalating",
        "dept:general",
        Priority.NORMAL,
    )
    assert (warning.late, warning.action_taken) == (False, "notified")
    assert desk.tick(march(3, 11, 0, 30)) == []


def test_ladder_raises_priority_then_reroutes_with_history(desk: Desk) -> None:
    desk.open(policy="escalating")
    desk.tick(march(3, 11))
    at_deadline = desk.tick(march(3, 13))
    assert [type(o) for o in at_deadline] == [SlaEventOut, TicketEventOut]
    (breach,) = sla_events(at_deadline)
    assert (breach.level, breach.action_taken, breach.priority, breach.new_priority) == (
        1,
        "priority_raised",
        Priority.NORMAL,
        Priority.HIGH,
    )
    assert desk.clock(RES).deadline == march(3, 21)  # high: 12 h

    one_hour_later = desk.tick(march(3, 14))
    assert [type(o) for o in one_hour_later] == [SlaEventOut, TicketEventOut, RerouteOut]
    (second,) = sla_events(one_hour_later)
    assert (second.level, second.action_taken, second.queue, second.new_queue) == (
        2,
        "rerouted",
        "dept:general",
        "dept:escalations",
    )
    assert (second.deadline, second.due_at) == (march(3, 14), march(3, 14))
    reroute = one_hour_later[2]
    assert isinstance(reroute, RerouteOut)
    assert (reroute.queue, reroute.previous_queue, reroute.rule_id) == (
        "dept:escalations",
        "dept:general",
        "sla:escalating:first_response:L2",
    )
    assert reroute.ticket is not None
    assert reroute.ticket.priority is Priority.HIGH
    assert [m.body for m in reroute.ticket.messages] == ["My parcel never arrived"]
    assert desk.state is not None
    assert desk.state.policy == "basic"


def test_vendor_silence_is_rerouted_to_disputes(desk: Desk) -> None:
    desk.open(queue="vendor:acme")
    desk.act("reply", march(3, 9, 30), body="We asked the vendor")  # an agent, not the vendor
    assert summary(desk.tick(march(3, 12))) == [("vendor_response", "warning", 0)]
    assert summary(desk.tick(march(3, 15))) == [("vendor_response", "breached", 1)]
    outputs = desk.tick(march(3, 17))
    assert summary(outputs) == [("vendor_response", "breached", 2)]
    reroute = next(o for o in outputs if isinstance(o, RerouteOut))
    assert (reroute.queue, reroute.previous_queue) == ("dept:disputes", "vendor:acme")
    assert desk.clock(VR).status is ClockStatus.STOPPED


def test_deadlines_missed_while_down_fire_late_in_order_and_once(desk: Desk) -> None:
    desk.open(policy="escalating")
    outputs = desk.tick(march(4, 15))  # first tick after 30 h of downtime
    # warnings whose breach is also due are superseded; rung 2 reroutes to `basic`, whose
    # single-rung ladder ends resolution at rung 1
    assert summary(outputs) == [
        ("first_response", "breached", 1),
        ("first_response", "breached", 2),
        ("resolution", "breached", 1),
    ]
    events = sla_events(outputs)
    assert [e.due_at for e in events] == [march(3, 13), march(3, 14), march(3, 21)]
    assert all(e.late and e.fired_at == march(4, 15) for e in events)
    kinds = [o.data.kind for o in outputs if isinstance(o, TicketEventOut)]
    assert kinds == [TicketEventKind.ROUTED, TicketEventKind.ROUTED]
    assert desk.tick(march(4, 15, 0, 1)) == []
    assert desk.state is not None
    assert desk.state.next_due_ts is None


def test_priority_raise_does_not_collapse_another_ladder(desk: Desk) -> None:
    desk.open(policy="escalating", queue="vendor:acme")
    desk.tick(march(3, 11))
    desk.tick(march(3, 12))
    outputs = desk.tick(march(3, 13))
    # rung 1 raises priority: vendor response (2 h at high, 4 h spent) is breached at once,
    # and its rung 2 still waits its 2 h from then instead of firing immediately
    assert summary(outputs) == [
        ("first_response", "breached", 1),
        ("vendor_response", "breached", 1),
    ]
    vendor = sla_events(outputs)[1]
    assert (vendor.deadline, vendor.due_at, vendor.late) == (march(3, 11), march(3, 13), False)
    assert (vendor.target_seconds, vendor.elapsed_business_seconds) == (7_200, 14_400)
    assert (desk.clock(VR).next_marker, desk.clock(VR).next_at) == ("breached:2", march(3, 15))


def test_watermark_holds_back_firings_until_the_backlog_is_read(
    desk: Desk, config: SlaConfig
) -> None:
    desk.open(policy="escalating")
    assert desk.state is not None
    step = on_tick(desk.state, march(3, 14), config=config, until=march(3, 12))
    assert summary(step.outputs) == [("first_response", "warning", 0)]


def test_replay_against_the_old_state_reproduces_the_same_record_ids(
    desk: Desk, config: SlaConfig
) -> None:
    desk.open(policy="escalating")
    before = desk.state
    assert before is not None
    first = on_tick(before, march(3, 14), config=config)
    replay = on_tick(before, march(3, 14, 0, 5), config=config)  # crash before the state write
    assert [o.id for o in first.outputs] == [o.id for o in replay.outputs]
    assert len({o.id for o in first.outputs}) == len(first.outputs) == 5
    reply = ReplyAction(
        ticket_id="T-1",
        actor=Actor(id="agent-1", role=ActorRole.AGENT),
        at=march(3, 10),
        body="hi",
    )
    ids = [
        [
            o.id
            for o in on_action(
                before, reply, action_id="a-1", now=march(3, 10), config=config
            ).outputs
        ]
        for _ in range(2)
    ]
    assert ids[0] == ids[1]
    assert len(ids[0]) == 2


def test_met_and_breach_of_one_cycle_never_both_fire(desk: Desk) -> None:
    desk.open()
    desk.tick(march(3, 13))
    assert summary(desk.act("reply", march(3, 13, 0, 30), body="late")) == []
    assert desk.clock(FR).fired == ("warning", "breached:1")


def test_no_entry_point_mutates_the_state_it_is_given(desk: Desk, config: SlaConfig) -> None:
    desk.open(policy="escalating", queue="vendor:acme")
    desk.act("reply", march(3, 9, 30), body="a")
    desk.buyer_writes(march(3, 10))
    before = desk.state
    assert before is not None
    stored = encode_state(before)
    desk.tick(march(3, 14))  # fires, raises priority, reroutes
    desk.state = before
    desk.act("pend", march(3, 15))
    desk.state = before
    desk.act("reassign", march(3, 15), queue="dept:office_hours")
    assert encode_state(before) == stored


def test_a_policy_reload_recomputes_deadlines_when_the_ticket_is_next_touched(
    desk: Desk, config: SlaConfig
) -> None:
    desk.open()
    assert desk.clock(FR).deadline == march(3, 13)
    faster = POLICY_YAML.replace(
        "first_response: {targets: {low: 8h, normal: 4h,",
        "first_response: {targets: {low: 8h, normal: 2h,",
        1,
    )
    desk.config = parse_sla_config(faster)
    desk.buyer_writes(march(3, 10))
    assert desk.clock(FR).deadline == march(3, 11)


def test_a_policy_reload_that_shortens_the_ladder_is_applied_before_the_timer_fires(
    desk: Desk,
) -> None:
    desk.open(policy="escalating")
    desk.tick(march(3, 13))  # rung 1: priority raised; rung 2 was due at 14:00
    shorter = POLICY_YAML.replace(
        '      - raise_priority: true\n      - {after: 1h, reroute: "dept:escalations"}\n',
        "      - raise_priority: true\n",
        1,
    )
    assert shorter != POLICY_YAML
    desk.config = parse_sla_config(shorter)  # the worker restarted with the new file
    assert [e for e in sla_events(desk.tick(march(3, 14))) if e.metric is FR] == []
    assert desk.state is not None
    assert desk.state.schedule_of == desk.config.fingerprint
    assert desk.state.queue != "dept:escalations"
