"""A long randomised run of the lifecycle functions, written out as a transcript of text lines.

Every step (ticket event, action, tick) records its rendered outputs, the SLA records' pydantic
JSON, the stored state bytes and the index entry. The run is seeded, so the transcript is a
fingerprint of the SLA core's behaviour: optimisations must leave it byte-identical
(`test_sla_transcript.py` holds its digest). To see what changed, write it out before and
after a change and diff:

    .venv/bin/python -m tests.unit.sla.transcript /tmp/after.txt
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from router.sla.lifecycle import on_action, on_tick, on_ticket_event
from router.sla.policy import DEFAULT_POLICY_FILE, SlaConfig, parse_sla_config
from router.sla.render import render_output
from router.sla.state import (
    ActionRejectedOut,
    LifecycleState,
    Output,
    RerouteOut,
    SlaEventOut,
    Step,
    TicketEventOut,
    decode_state,
    encode_state,
    index_entry,
    index_entry_from_json,
)
from schemas.action import TICKET_ACTION_ADAPTER
from schemas.ticket import Priority, TicketEvent, TicketEventKind
from schemas.vendor import VendorProfile
from tests.unit.sla.sla_support import POLICY_YAML, routed_snapshot

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday; DST changes later in March
ZONES = (UTC, UTC, timezone(timedelta(hours=2)), ZoneInfo("America/New_York"))
ROLES = ("agent", "agent", "vendor", "buyer", "system")
SENDERS = ("buyer", "buyer", "seller", "guest", "agent")
VENDORS = {
    "acme": VendorProfile(vendor_id="acme", calendar="platform_us", response_hours=6),
    "zed": VendorProfile(vendor_id="zed"),
    "odd": VendorProfile(vendor_id="odd", calendar="no_such_calendar", response_hours=1.5),
}


def configs() -> tuple[SlaConfig, ...]:
    """The shipped policy file, the same with another fingerprint, and the unit tests' file."""
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    moved = text.replace("late_grace_seconds: 60", "late_grace_seconds: 90")
    return parse_sla_config(text), parse_sla_config(moved), parse_sla_config(POLICY_YAML)


class Run:
    def __init__(self, seed: int, config_set: tuple[SlaConfig, ...]) -> None:
        self.rng = random.Random(seed)
        self.configs = config_set
        self.config = config_set[0] if seed % 3 else config_set[2]
        self.ticket_id = f"T-{seed:05d}"
        self.state: LifecycleState | None = None
        self.now = START + timedelta(minutes=self.rng.randrange(0, 7 * 24 * 60))
        self.inputs = 0
        self.recent: list[str] = []

    def moment(self, back_hours: float = 0.0) -> datetime:
        """An input time near `now` (sometimes earlier: out of order), in a random zone."""
        rng = self.rng
        at = self.now - timedelta(seconds=rng.uniform(0, back_hours * 3600))
        return at.astimezone(rng.choice(ZONES))

    def input_id(self) -> str:
        if self.recent and self.rng.random() < 0.05:
            return self.rng.choice(self.recent)  # a redelivered input
        self.inputs += 1
        self.recent = [*self.recent, f"in-{self.inputs}"][-40:]
        return self.recent[-1]

    def queue(self) -> str:
        return self.rng.choice(
            ("dept:payments", "dept:vip", "dept:office", "dept:disputes", "vendor:acme",
             "vendor:zed", "vendor:odd", "vendor:acme")
        )

    def policy(self) -> str:
        names = sorted(self.config.policies)
        return self.rng.choice([*names, "unknown_policy"])

    def event(self, kind: TicketEventKind) -> Step:
        rng = self.rng
        at = self.moment(back_hours=2 if rng.random() < 0.2 else 0)
        fields: dict[str, object] = {}
        if kind is TicketEventKind.MESSAGE_ADDED:
            fields = {"sender_role": rng.choice(SENDERS), "actor": "someone"}
        elif kind is TicketEventKind.ROUTED:
            queue, policy = self.queue(), self.policy()
            priority = rng.choice(list(Priority))
            fields = {"queue": queue, "priority": priority, "sla_policy": policy}
            if rng.random() < 0.7:
                fields["ticket"] = routed_snapshot(queue, policy, priority).model_copy(
                    update={"ticket_id": self.ticket_id}
                )
            if rng.random() < 0.1:
                fields["actor"] = "lifecycle"
        elif kind is TicketEventKind.OPENED:
            fields = {"queue": self.queue() if rng.random() < 0.5 else None}
        event = TicketEvent.model_validate(
            {"ticket_id": self.ticket_id, "kind": kind, "at": at, **fields}
        )
        return on_ticket_event(
            self.state, event, event_id=self.input_id(), now=self.now, config=self.config,
            vendors=VENDORS,
        )

    def action(self) -> Step:
        rng = self.rng
        name = rng.choice(
            ("reply", "reply", "reply", "pend", "resolve", "reopen", "reassign",
             "change_priority", "internal_note")
        )
        role = rng.choice(ROLES)
        actor = rng.choice(("acme", "zed", "odd")) if role == "vendor" else f"{role}-1"
        data: dict[str, object] = {
            "action": name, "ticket_id": self.ticket_id,
            "at": self.moment(back_hours=1 if rng.random() < 0.2 else 0),
            "actor": {"id": actor, "role": role},
        }
        if name in ("reply", "internal_note"):
            data["body"] = "text"
        elif name == "reassign":
            data["queue"] = self.queue()
        elif name == "change_priority":
            data["priority"] = rng.choice(list(Priority))
        action = TICKET_ACTION_ADAPTER.validate_python(data)
        return on_action(
            self.state, action, action_id=self.input_id(), now=self.now, config=self.config,
            vendors=VENDORS,
        )

    def tick(self) -> Step:
        assert self.state is not None
        rng, due = self.rng, self.state.next_due_ts
        until = None
        if due is not None and rng.random() < 0.8:
            self.now = max(self.now, datetime.fromtimestamp(due, UTC))
            if rng.random() < 0.2:  # the engine was down: fires late
                self.now += timedelta(seconds=rng.uniform(0, 5 * 3600))
            if rng.random() < 0.1:  # backlog: consumed up to a little before now
                until = self.now - timedelta(seconds=rng.uniform(0, 3600))
        return on_tick(self.state, self.now, config=self.config, vendors=VENDORS, until=until)

    def steps(self, count: int) -> Iterator[str]:
        rng = self.rng
        yield f"== {self.ticket_id} {self.now.isoformat()} {self.config.default_policy}"
        kinds = (TicketEventKind.OPENED, TicketEventKind.MESSAGE_ADDED, TicketEventKind.ROUTED)
        for kind in kinds:
            yield from self.record(f"event {kind}", self.event(kind))
        for n in range(count):
            self.now += timedelta(seconds=rng.choice((0, 60, 600, 3600, 4 * 3600, 20 * 3600)))
            roll = rng.random()
            if roll < 0.45:
                label, step = "tick", self.tick()
            elif roll < 0.7:
                label, step = "action", self.action()
            elif roll < 0.85:
                label, step = "message", self.event(TicketEventKind.MESSAGE_ADDED)
            elif roll < 0.92:
                label, step = "routed", self.event(TicketEventKind.ROUTED)
            else:
                label, step = "own event", self.event(TicketEventKind.REPLIED)
            yield from self.record(f"{n} {label} now={self.now.isoformat()}", step)
            if rng.random() < 0.15 and self.state is not None:  # read back from the table
                self.state = decode_state(encode_state(self.state))
                yield "  reloaded"
            if rng.random() < 0.03 and self.config is not self.configs[2]:
                # A new policy file is deployed (same ladders: see the report on stale ticks).
                self.config = self.configs[rng.randrange(2)]
                yield f"  config {self.config.fingerprint}"

    def record(self, label: str, step: Step) -> Iterator[str]:
        unchanged = step.state is self.state
        yield f"{label} unchanged={unchanged} outputs={len(step.outputs)}"
        for output in step.outputs:
            yield from describe(output)
        self.state = step.state
        if self.state is not None:
            raw = encode_state(self.state)
            yield f"  state {raw.decode()}"
            entry = index_entry(self.state)
            assert entry == index_entry_from_json(raw)
            yield f"  index {entry!r}"


def describe(output: Output) -> Iterator[str]:
    if isinstance(output, ActionRejectedOut):
        yield f"  rejected {output!r}"
        return
    if isinstance(output, SlaEventOut):
        yield f"  sla {output.type} {output.data.model_dump_json()}"
        yield f"  json_data {output.record.json_data()!r}"
    elif isinstance(output, TicketEventOut):
        yield f"  ticket_event {output.kind} {output.data.model_dump_json()}"
    elif isinstance(output, RerouteOut):
        ticket = output.ticket
        yield f"  reroute {output.queue} {output.previous_queue} {output.rule_id} {output.reason}"
        dumped = None if ticket is None else ticket.model_dump_json()
        yield f"    at {output.at.isoformat()} {dumped}"
    for record in render_output(output):
        yield f"  record {record.topic} {record.key!r} {record.headers!r} {record.value.decode()}"


def transcript(tickets: int = 240, steps: int = 60) -> Iterator[str]:
    config_set = configs()
    for seed in range(tickets):
        yield from Run(seed, config_set).steps(steps)


def digest(lines: Iterator[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        for line in transcript():
            out.write(line + "\n")
