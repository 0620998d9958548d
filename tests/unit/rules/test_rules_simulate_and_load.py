"""Backtests over the example traffic, and loading rulesets from record bytes (hot reload)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson

from rules import CompiledRuleset, load_ruleset_document, load_ruleset_file, ruleset_record
from rules.inputs import context_from_data
from rules.simulate import Backtest, report_dict, simulate
from rules.source import parse_text
from schemas.rules_event import RULESET_PUBLISHED
from tests.unit.rules.rules_support import EXAMPLES, make_input

MESSAGES = EXAMPLES / "messages.jsonl"


def _compiled(name: str) -> CompiledRuleset:
    loaded = load_ruleset_file(EXAMPLES / name)
    assert not isinstance(loaded, list), "\n".join(map(str, loaded))
    return loaded


def test_sample_traffic_is_about_two_hundred_inbound_events() -> None:
    lines = MESSAGES.read_text(encoding="utf-8").splitlines()
    assert 180 <= len(lines) <= 220
    assert all(json.loads(line)["type"] == "support.message.received" for line in lines)


def test_backtest_distribution_and_changes_against_a_baseline() -> None:
    context = context_from_data(parse_text((EXAMPLES / "context.yaml").read_text(), "c.yaml").data)
    with MESSAGES.open("rb") as fh:
        report = simulate(fh, _compiled("marketplace-v2.yaml"), _compiled("marketplace.yaml"),
                          context)  # fmt: skip
    assert report.total == 200
    assert report.skipped == 0
    assert sum(report.candidate.queues.values()) == 200
    assert report.previous is not None
    assert sum(report.previous.queues.values()) == 200
    assert report.changes, "v2 must route some tickets differently"
    assert sum(report.pairs.values()) == len(report.changes)
    # v2 sends first contacts about lost parcels to the vendor, and Italian to its desk.
    assert any(old == "dept:disputes" and new.startswith("vendor:") for old, new in report.pairs)
    assert report.pairs[("dept:general", "dept:desk_it")] > 0
    assert report.candidate.queues["dept:desk_it"] > 0
    assert report.previous.queues["dept:desk_it"] == 0
    for change in report.changes:
        assert change.old_queue != change.new_queue
    data = report_dict(report, limit=3)
    assert data["changed"] == len(report.changes)
    assert len(data["changes"]) == 3
    assert sum(p["count"] for p in data["pairs"]) == len(report.changes)
    assert json.loads(json.dumps(data)) == data
    # Same ruleset on both sides: no change at all.
    with MESSAGES.open("rb") as fh:
        same = simulate(fh, _compiled("marketplace.yaml"), _compiled("marketplace.yaml"), context)
    assert same.changes == []
    assert same.total == 200


def test_backtest_threads_messages_into_tickets() -> None:
    ruleset = _compiled("marketplace-v2.yaml")
    bt = Backtest(ruleset)
    event = {
        "specversion": "1.0", "id": "e1", "source": "test", "type": "support.message.received",
        "time": "2024-06-04T10:00:00Z",
        "data": {"channel": "email", "message_id": "m1", "thread_ref": "th-1",
                 "sender": {"id": "b1", "role": "buyer"}, "body": "hello"},
    }  # fmt: skip
    for n in range(3):
        event["id"] = f"e{n}"
        event["data"]["message_id"] = f"m{n}"
        bt.add_line(json.dumps(event), f"line {n}")
    # The third message of the thread is a repeat contact (v2: from 3 messages on).
    assert bt.report.candidate.rules["catch-all"] == 3
    assert bt.report.candidate.priorities["high"] == 1


def test_backtest_skips_bad_lines_with_reasons() -> None:
    lines = [b"not json", b'{"specversion": "1.0"}', b"", json.dumps({
        "specversion": "1.0", "id": "x", "source": "s", "type": "support.other",
        "data": {"channel": "chat", "message_id": "m", "thread_ref": "t",
                 "sender": {"id": "b", "role": "buyer"}, "body": "hi"}}).encode()]  # fmt: skip
    report = simulate(lines, _compiled("marketplace.yaml"))
    assert report.total == 0
    assert report.skipped == 3
    reasons = [reason for _, reason in report.skipped_samples]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("not an inbound event")
    assert "support.other" in reasons[2]


def test_progress_callback_sees_every_byte() -> None:
    seen: list[int] = []
    data = MESSAGES.read_bytes()
    with MESSAGES.open("rb") as fh:
        simulate(fh, _compiled("marketplace.yaml"), on_progress=seen.append)
    assert sum(seen) == len(data)


def test_load_ruleset_document_from_a_published_record() -> None:
    compiled = _compiled("marketplace-v2.yaml")
    value = ruleset_record(compiled.ruleset, at=datetime(2024, 6, 4, tzinfo=UTC))
    event = orjson.loads(value)
    assert event["type"] == RULESET_PUBLISHED
    assert event["subject"] == "marketplace"
    assert event["id"] == "marketplace@2.0.0"
    loaded = load_ruleset_document(value)
    assert isinstance(loaded, CompiledRuleset)
    assert (loaded.name, loaded.version) == ("marketplace", "2.0.0")
    inp = make_input("my parcel never arrived", vendor_id="acme",
                     vendor={"vendor_id": "acme", "tier": "gold"})  # fmt: skip
    assert loaded.evaluate(inp) == compiled.evaluate(inp)


def test_load_ruleset_document_from_bare_json_and_yaml() -> None:
    text = (EXAMPLES / "marketplace.yaml").read_bytes()
    assert isinstance(load_ruleset_document(text), CompiledRuleset)
    doc = _compiled("marketplace.yaml").ruleset.doc.to_document()
    assert isinstance(load_ruleset_document(orjson.dumps(doc)), CompiledRuleset)


def test_load_ruleset_document_refuses_bad_rulesets_with_problems() -> None:
    doc = _compiled("marketplace.yaml").ruleset.doc.to_document()
    doc["rules"][0]["then"]["route"] = "dept:nowhere"
    doc["rules"][0]["when"] = {"field": "message.nope", "eq": 1}
    event = {"specversion": "1.0", "id": "x", "source": "s", "type": RULESET_PUBLISHED,
             "data": doc}  # fmt: skip
    found = load_ruleset_document(orjson.dumps(event), source="routing.rules@7")
    assert isinstance(found, list)
    assert {p.file for p in found} == {"routing.rules@7"}
    assert any("message.nope" in p.message for p in found)
    assert isinstance(load_ruleset_document(b"\xff\xfe"), list)
    assert isinstance(load_ruleset_document(b"{not json"), list)
    assert isinstance(load_ruleset_document(b""), list)
