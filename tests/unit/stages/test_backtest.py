"""`router simulate`'s core: inbound records through the engine's routing processor."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from router.backtest import Backtest, decision_clock, file_record, report_dict, simulate
from router.stages.contract import InRecord
from rules import CompiledRuleset, compile_ruleset, load_ruleset_file
from rules.inputs import DEFAULT_NOW, context_from_data
from rules.source import parse_text
from tests.factories import inbound_bytes, inbound_event
from tests.unit.rules.rules_support import EXAMPLES, parse

MESSAGES = EXAMPLES / "messages.jsonl"
MAX = 262_144  # the engine's default max_record_bytes

REFUNDS = """\
- id: refunds
  when: {field: message.intent, contains: refund}
  then: {route: dept:payments}
- id: catch-all
  then: {route: dept:general}
"""
DISPUTES_FIRST = """\
- id: not-received
  when: {field: message.intent, contains: not_received}
  then: {route: dept:disputes}
""" + REFUNDS


def compiled(rules_yaml: str) -> CompiledRuleset:
    return compile_ruleset(parse(rules_yaml))


def example(name: str) -> CompiledRuleset:
    loaded = load_ruleset_file(EXAMPLES / name)
    assert not isinstance(loaded, list), "\n".join(map(str, loaded))
    return loaded


def line(event_id: str, body: str, thread: str = "th-1", **kw: object) -> bytes:
    return inbound_bytes(event_id, thread_ref=thread, body=body, vendor_id=None, **kw)


def test_a_follow_up_joins_its_ticket_on_the_queue_decided_when_it_opened() -> None:
    outcomes = []
    bt = Backtest(compiled(DISPUTES_FIRST), compiled(REFUNDS), max_record_bytes=MAX,
                  on_outcome=lambda where, rec, new, old: outcomes.append((new, old)))  # fmt: skip
    bt.add_line(line("e1", "Please refund me"), "l1")
    # alone, this would be a dispute under the candidate; in its ticket it is not re-decided
    bt.add_line(line("e2", "and the parcel never arrived"), "l2")
    (opened, _), (followup, base_followup) = outcomes
    assert (opened.outcome, opened.queue) == ("opened", "dept:payments")
    assert (followup.outcome, followup.queue) == ("followup", "dept:payments")
    assert followup.ticket_id == opened.ticket_id
    assert base_followup is not None
    assert base_followup.queue == "dept:payments"
    rep = bt.report
    assert rep.changes == []  # the rule change touches no ticket the engine would move
    assert rep.candidate.rules == {"refunds": 2}
    # a new thread is decided by the candidate
    bt.add_line(line("e3", "it never arrived", thread="th-2"), "l3")
    assert [(c.old_queue, c.new_queue) for c in rep.changes] == [("dept:general", "dept:disputes")]


def test_records_the_engine_dead_letters_are_dead_lettered() -> None:
    big = line("e-big", "x" * 2000)
    nan = line("e-nan", "hello").replace(b'"hello"', b"NaN")  # NaN where a string belongs
    wrong_type = orjson.dumps({**inbound_event("e-t"), "type": "support.other"})
    lines = [b"not json", nan, b'{"specversion": "1.0"}', big, wrong_type, b"",
             line("e-ok", "fine")]  # fmt: skip
    report = simulate(lines, compiled(REFUNDS), max_record_bytes=1000)
    assert report.total == 6  # the blank line is no record
    assert report.routed == 1
    assert report.candidate.outcomes == {"rejected": 5, "opened": 1}
    reasons = report.candidate.dead_letters
    assert reasons["oversize"] == 1
    assert reasons["invalid_json"] == 1
    assert reasons["schema_violation"] == 2  # NaN body, not an event
    assert reasons["unsupported_type"] == 1
    assert sum(reasons.values()) == 5
    assert [where for where, _ in report.dead_letter_samples] == [
        "input:1", "input:2", "input:3", "input:4", "input:5"
    ]


def test_a_duplicate_id_adds_nothing_and_a_wrong_key_is_rekeyed() -> None:
    bt = Backtest(compiled(REFUNDS), max_record_bytes=MAX)
    first = line("e1", "refund please")
    bt.add(InRecord("channel.email", 0, 0, None, first), "p0@0")  # no key: re-keyed, routed
    bt.add(InRecord("channel.email", 1, 5, b"th-1", first), "p1@5")  # the same id again
    bt.add(InRecord("channel.chat", 0, 1, b"th-1", first), "chat@1")  # an email on chat
    outcomes = bt.report.candidate.outcomes
    assert outcomes == {"opened": 1, "duplicate": 1, "rejected": 1}
    assert bt.report.candidate.dead_letters == {"channel_mismatch": 1}


def test_file_lines_go_to_their_channel_topic_keyed_by_thread() -> None:
    rec = file_record(line("e1", "hi", thread="t-9", channel="chat"), 4)
    assert (rec.topic, rec.key, rec.offset) == ("channel.chat", b"t-9", 4)
    rec = file_record(b"garbage", 0)
    assert (rec.topic, rec.key) == ("input", None)


def test_decision_clock() -> None:
    assert decision_clock(line("e1", "x")) == datetime(2026, 11, 26, 10, tzinfo=UTC)
    no_time = orjson.dumps({**inbound_event("e1"), "time": None})
    assert decision_clock(no_time, 0.0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert decision_clock(b"garbage") == DEFAULT_NOW


def test_example_traffic_against_a_baseline() -> None:
    context = context_from_data(parse_text((EXAMPLES / "context.yaml").read_text(), "c").data)
    with MESSAGES.open("rb") as fh:
        report = simulate(fh, example("marketplace-v2.yaml"), example("marketplace.yaml"),
                          context, max_record_bytes=MAX)  # fmt: skip
    assert report.total == 200
    assert report.routed == 200
    assert report.previous is not None
    assert report.candidate.outcomes["followup"] > 0
    assert report.changes, "v2 must route some tickets differently"
    assert sum(report.pairs.values()) == len(report.changes)
    assert report.pairs[("dept:general", "dept:desk_it")] > 0
    assert report.previous.queues["dept:desk_it"] == 0
    # a follow-up changes queue only with its ticket: never alone
    opened_changes = {c.ticket for c in report.changes}
    assert opened_changes == report.changed_tickets
    data = report_dict(report, limit=3)
    assert data["changed"] == len(report.changes)
    assert len(data["changes"]) == 3
    assert json.loads(json.dumps(data)) == data
    with MESSAGES.open("rb") as fh:
        same = simulate(fh, example("marketplace.yaml"), example("marketplace.yaml"), context,
                        max_record_bytes=MAX)  # fmt: skip
    assert same.changes == []


def test_progress_callback_sees_every_byte() -> None:
    seen: list[int] = []
    with MESSAGES.open("rb") as fh:
        simulate(fh, example("marketplace.yaml"), max_record_bytes=MAX, on_progress=seen.append)
    assert sum(seen) == MESSAGES.stat().st_size


@pytest.mark.parametrize("size", [999, 1000])
def test_size_limit_is_the_engines(size: int) -> None:
    body_len = 500
    raw = line("e1", "y" * body_len)
    limit = len(raw) if size == 1000 else len(raw) - 1
    report = simulate([raw], compiled(REFUNDS), max_record_bytes=limit)
    assert report.candidate.outcomes == ({"opened": 1} if size == 1000 else {"rejected": 1})
