"""The example traffic, and loading rulesets from record bytes (hot reload). Backtests are
in tests/unit/stages/test_backtest.py: they run the engine's routing processor."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson

from rules import CompiledRuleset, load_ruleset_document, load_ruleset_file, ruleset_record
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
