"""The lifecycle + SLA stage on a real broker, with real worker processes and short policies.

Every test writes a policy file with targets of a few seconds on a 24/7 calendar and passes it
with ROUTER_SLA_POLICIES_FILE; the routing stage's built-in policy gives every ticket the
`standard` SLA policy, which these files define.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import CloudEvent, DeadLetter
from schemas.sla import SlaEvent
from schemas.topics import CHANNEL_DLQ, QUEUE_PREFIX, SLA_EVENTS, TICKETS_EVENTS
from tests.factories import inbound_bytes
from tests.harness import Output, produce
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

SLA_TOPICS = (SLA_EVENTS.name, TICKETS_EVENTS.name, f"{QUEUE_PREFIX}*", CHANNEL_DLQ.name)
# fired_at and the record timestamp may trail the deadline by at most this much
ON_TIME_SECONDS = 2.0


def write_policy(
    tmp: Path,
    *,
    first_response: str = "8s",
    late_grace: str = "60",
    escalation: str = '[{}, {after: 3s, reroute: "dept:escalations"}]',
) -> Path:
    """`standard`: 24/7, warning at half the target, a 2-rung ladder; resolution stays quiet."""
    targets = "{{low: {0}, normal: {0}, high: {0}, urgent: {0}}}"
    path = tmp / "sla-test.yaml"
    path.write_text(
        f"""
version: 1
default_policy: standard
late_grace_seconds: {late_grace}
calendars:
  always: {{kind: always}}
policies:
  standard:
    calendar: always
    warning_at: 0.5
    metrics:
      first_response: {{targets: {targets.format(first_response)}}}
      next_response: {{targets: {targets.format(first_response)}}}
      resolution: {{targets: {targets.format("1h")}}}
    escalation: {escalation}
"""
    )
    return path


def sla_env(policy: Path) -> dict[str, str]:
    return {"ROUTER_SLA_POLICIES_FILE": str(policy)}


def action_bytes(
    action_id: str, ticket_id: str, action: str, *, actor: str = "agent-7", role: str = "agent",
    **fields: Any,
) -> bytes:
    data = {"action": action, "ticket_id": ticket_id, "actor": {"id": actor, "role": role},
            "at": datetime.now().astimezone().isoformat(), **fields}
    return orjson.dumps({
        "specversion": "1.0", "id": action_id, "source": "urn:desk:test",
        "type": "support.ticket.action", "subject": ticket_id, "data": data,
    })


def send_actions(engine: EngineUnderTest, records: list[tuple[bytes | None, bytes]]) -> None:
    produce(engine.bootstrap, f"{engine.prefix}tickets.actions", records)


def open_tickets(engine: EngineUnderTest, count: int, tag: str = "t") -> None:
    engine.send("email", [
        (f"{tag}-{n}".encode(), inbound_bytes(f"{tag}-in-{n}", thread_ref=f"{tag}-{n}",
                                              vendor_id=None, body=f"Hello {n}, any update?"))
        for n in range(count)
    ])


def sla(outputs: list[Output], kind: str | None = None) -> list[tuple[Output, SlaEvent]]:
    found = [(o, CloudEvent[SlaEvent].model_validate(o.value).data)
             for o in outputs if o.topic == "sla.events"]
    return [(o, e) for o, e in found if kind is None or e.kind == kind]


def routed_ticket_ids(outputs: list[Output]) -> set[str]:
    return {o.value["data"]["ticket_id"] for o in outputs
            if o.topic == "tickets.events" and o.value["type"] == "support.ticket.routed"}


def firing_key(event: SlaEvent) -> tuple[str, str, str, int]:
    return (event.ticket_id, event.metric.value, event.kind.value, event.level)


def ids_per_firing(outputs: list[Output]) -> dict[tuple[str, str, str, int], set[str]]:
    ids: dict[tuple[str, str, str, int], set[str]] = defaultdict(set)
    for out, event in sla(outputs):
        ids[firing_key(event)].add(out.value["id"])
    return ids


def test_breach_fires_on_time_then_escalates_with_reroute(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    engine.start_worker(**sla_env(write_policy(tmp_path)))
    open_tickets(engine, 1, "late")

    def escalated(outs: list[Output]) -> bool:
        return any(e.level == 2 for _, e in sla(outs, "breached")) and any(
            o.topic == "queue.dept.escalations" for o in outs)

    outputs = engine.collector(*SLA_TOPICS).poll_until(escalated, 60, "a level-2 escalation")
    first = {e.kind.value + str(e.level): (o, e) for o, e in sla(outputs)
             if e.metric.value == "first_response"}
    assert set(first) == {"warning0", "breached1", "breached2"}
    out, breach = first["breached1"]
    assert out.key == breach.ticket_id.encode()
    assert out.value["type"] == "support.sla.breached"
    assert breach.policy == "standard"
    assert breach.queue == "dept:general"
    lag = (breach.fired_at - breach.deadline).total_seconds()
    record_lag = out.timestamp_ms / 1000 - breach.deadline.timestamp()
    print(f"breach fired {lag:.3f} s after its deadline, record stamped {record_lag:.3f} s after")
    assert 0 <= lag <= ON_TIME_SECONDS
    assert -0.05 <= record_lag <= ON_TIME_SECONDS
    assert breach.target_seconds == 8
    assert not breach.late
    warning = first["warning0"][1]
    assert warning.deadline == breach.deadline
    assert warning.fired_at < breach.deadline

    _out2, level2 = first["breached2"]
    assert level2.action_taken == "rerouted"
    assert level2.new_queue == "dept:escalations"
    queued = [o for o in outputs if o.topic == "queue.dept.escalations"]
    assert len(queued) == 1
    ticket = queued[0].value["data"]
    assert ticket["ticket_id"] == breach.ticket_id
    assert ticket["queue"] == "dept:escalations"
    assert ticket["rule_id"] == "sla:standard:first_response:L2"
    assert [m["inbound_id"] for m in ticket["messages"]] == ["late-in-0"]
    rerouted = [o for o in outputs if o.topic == "tickets.events"
                and o.value["type"] == "support.ticket.routed"
                and o.value["data"].get("actor") == "lifecycle"]
    assert [o.value["data"]["queue"] for o in rerouted] == ["dept:escalations"]


def test_reply_before_deadline_is_met_and_never_breaches(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    engine.start_worker(**sla_env(write_policy(tmp_path, first_response="6s")))
    open_tickets(engine, 1, "met")
    collector = engine.collector(*SLA_TOPICS)
    ticket_id = next(iter(routed_ticket_ids(collector.poll_until(
        lambda outs: bool(routed_ticket_ids(outs)), 60, "the routed ticket"))))
    send_actions(engine, [(ticket_id.encode(),
                           action_bytes("reply-1", ticket_id, "reply", body="On it."))])

    def replied(outs: list[Output]) -> list[Output]:
        return [o for o in outs if o.value["type"] == "support.ticket.replied"]

    outputs = collector.poll_until(lambda outs: bool(sla(outs, "met") and replied(outs)), 30,
                                   "support.sla.met and the replied event")
    (out, met), = sla(outputs, "met")
    assert out.value["type"] == "support.sla.met"
    assert met.metric.value == "first_response"
    assert met.ticket_id == ticket_id
    assert met.fired_at < met.deadline
    assert met.action_taken == "none"
    assert len(replied(outputs)) == 1
    assert replied(outputs)[0].value["data"]["sender_role"] == "agent"

    # Collect until well past the deadline: nothing else may fire for the first response.
    quiet_until = met.deadline.timestamp() + ON_TIME_SECONDS + 1
    outputs = collector.poll_until(lambda outs: time.time() > quiet_until, 30, "the deadline")
    assert [e.kind.value for _, e in sla(outputs) if e.metric.value == "first_response"] == [
        "met"]


def test_invalid_and_refused_actions_are_dead_lettered(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    # Unknown tickets: an action waits 2 s for the ticket's first event, then is refused.
    engine.start_worker(ROUTER_ACTION_PARK_S="2", **sla_env(write_policy(tmp_path)))
    open_tickets(engine, 1, "dept")  # a department ticket: not acme's to resolve
    ticket_id = next(iter(routed_ticket_ids(engine.collector(*SLA_TOPICS).poll_until(
        lambda outs: bool(routed_ticket_ids(outs)), 60, "the routed ticket"))))
    no_actor = orjson.loads(action_bytes("bad-1", "T-x", "reply", body="hi"))
    del no_actor["data"]["actor"]
    send_actions(engine, [
        (b"T-x", orjson.dumps(no_actor)),
        (b"T-x", b'{"specversion": "1.0", "id": "broken"'),
        # valid, but a vendor may act only on tickets in its own queue
        (b"k-1", action_bytes("vendor-1", ticket_id, "resolve", actor="acme", role="vendor")),
        (b"T-404", action_bytes("typo-1", "T-404", "resolve")),  # no such ticket
    ])
    outputs = engine.collector("channel.dlq").poll_until(
        lambda outs: len(outs) >= 4, 60, "four dead letters")
    letters = {(o.value["data"]["reason"], o.key): CloudEvent[DeadLetter].model_validate(
        o.value).data for o in outputs}
    assert set(letters) == {("schema_violation", b"T-x"), ("invalid_json", b"T-x"),
                            ("action_refused", b"k-1"), ("action_refused", b"T-404")}
    schema = letters["schema_violation", b"T-x"]
    assert schema.source.topic == "tickets.actions"
    assert "data.reply.actor" in [e.field for e in schema.errors]
    refused = letters["action_refused", b"k-1"]
    assert refused.source.topic == "tickets.actions"
    assert "vendor 'acme'" in refused.error
    assert orjson.loads(refused.original.value)["id"] == "vendor-1"
    unknown = letters["action_refused", b"T-404"]
    assert "unknown ticket 'T-404'" in unknown.error
    assert unknown.source.topic == "tickets.actions"
    assert orjson.loads(unknown.original.value)["id"] == "typo-1"


def test_two_workers_fire_each_breach_once(engine: EngineUnderTest, tmp_path: Path) -> None:
    tickets = 120
    policy = write_policy(tmp_path, first_response="14s", escalation="[{}]")
    engine.start_worker(**sla_env(policy))
    open_tickets(engine, tickets, "pair")
    collector = engine.collector(*SLA_TOPICS)
    collector.poll_until(lambda outs: len(routed_ticket_ids(outs)) == tickets, 60,
                         "every ticket routed")
    engine.start_worker(**sla_env(policy))  # rebalance while the clocks run

    def complete(outs: list[Output]) -> bool:
        return len({e.ticket_id for _, e in sla(outs, "breached")}) >= tickets

    outputs = collector.poll_until(complete, 60, "a breach per ticket",
                                   describe=lambda outs: f"{len(sla(outs, 'breached'))} breaches")
    ids = ids_per_firing(outputs)
    expected = {(t, "first_response", kind, level) for t in routed_ticket_ids(outputs)
                for kind, level in (("warning", 0), ("breached", 1))}
    assert expected <= set(ids), sorted(expected - set(ids))[:10]
    assert {k: v for k, v in ids.items() if len(v) != 1} == {}
    raw = Counter(firing_key(e) for _, e in sla(outputs))
    print(f"{len(ids)} firings, {sum(raw.values())} records ({sum(raw.values()) - len(ids)} "
          "re-sent)")
    assert all(abs((e.fired_at - e.due_at).total_seconds()) < 30 for _, e in sla(outputs))


def test_a_clock_carries_on_when_the_lifecycle_worker_changes_runtime(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    # faust's lifecycle worker starts the clock and fires the warning; a direct one reads the
    # state from the same changelog and fires the breach, and the warning only once.
    policy = sla_env(write_policy(tmp_path, first_response="16s", escalation="[{}]"))
    engine.start_worker(ROUTER_STAGE="routing", **policy)
    on_faust = engine.start_worker(ROUTER_STAGE="lifecycle", ROUTER_RUNTIME="faust", **policy)
    open_tickets(engine, 1, "switch")
    collector = engine.collector(*SLA_TOPICS)
    collector.poll_until(lambda outs: bool(sla(outs, "warning")), 60, "the warning")
    assert on_faust.stop() == 0
    stopped = datetime.now(UTC)
    engine.start_worker(ROUTER_STAGE="lifecycle", ROUTER_RUNTIME="direct", **policy)
    outputs = collector.poll_until(lambda outs: bool(sla(outs, "breached")), 60, "the breach")
    (_, breach), = sla(outputs, "breached")
    assert breach.fired_at > stopped
    assert breach.metric.value == "first_response"
    (_, warning), = sla(outputs, "warning")
    assert (warning.ticket_id, warning.deadline) == (breach.ticket_id, breach.deadline)
