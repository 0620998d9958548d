"""Fuzzing the entry points with mutated valid documents and random bytes.

The property everywhere: an input is accepted, or refused with a clear error (the entry
point's own exception type or problem list with a one-line message naming the field, or a
dead letter with a reason); never another exception, and never a silent change of meaning
(a key given twice is refused; an accepted document is what the reference parser reads, and
an accepted record writes out again as the same record).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from router.inbound import Rejected, parse_inbound
from router.sla.policy import MAX_DURATION_SECONDS, SlaPolicyError, parse_sla_config
from router.sla.render import parse_action
from router.views import InvalidValue, vendor_profile
from rules import Problem, compile_ruleset, load_ruleset_document, parse_ruleset_text
from rules.source import LoadError, parse_text
from schemas import RejectReason, SourcePosition
from schemas.action import TicketActionEvent
from schemas.message import InboundEvent
from schemas.sla import SlaMetric
from schemas.ticket import Priority
from schemas.vendor import VendorProfile
from streams.settings import RouterSettings, SettingsFileError
from tests.factories import inbound_event
from tests.unit.fuzz_support import Mutated, dump_json, dump_yaml, mutated, same
from tests.unit.rules.rules_support import EXAMPLES
from tests.unit.sla.sla_support import POLICY_YAML

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
RULESET = yaml.safe_load((EXAMPLES / "marketplace.yaml").read_text(encoding="utf-8"))
SLA = yaml.safe_load(POLICY_YAML)
ACTION = {
    "specversion": "1.0", "id": "act-1", "source": "desk/eu", "type": "support.ticket.action",
    "subject": "T-1",
    "data": {"action": "reassign", "ticket_id": "T-1", "at": "2026-01-05T10:00:00Z",
             "actor": {"id": "agent-1", "role": "agent"}, "queue": "dept:payments",
             "reason": "billing"},
}  # fmt: skip
PROFILE = {
    "specversion": "1.0", "id": "acme@1", "source": "router-cli",
    "type": "support.vendor.profile", "time": "2026-01-05T10:00:00Z",
    "data": {"vendor_id": "acme", "name": "Acme", "status": "active", "tier": "gold",
             "timezone": "Europe/Berlin", "calendar": "platform_eu", "response_hours": 8},
}  # fmt: skip
SETTINGS = {"partitions": 6, "topic_prefix": "staging.", "batch_max_wait_ms": 5.0,
            "security_protocol": "PLAINTEXT", "log_level": "INFO", "action_park_s": 900,
            "rules_file": "rules.yaml"}  # fmt: skip
INBOUND = inbound_event("in-1", attributes={"score": 3, "vip": True, "ratio": 0.5},
                        attachments=[{"name": "a.png", "size": 12}], order_id="o-1")
SOURCE = SourcePosition(topic="channel.email", partition=0, offset=3)


def _text(m: Mutated, fmt: str) -> str:
    return dump_json(m.doc, m.duplicate) if fmt == "json" else dump_yaml(m.doc, m.duplicate)


def _loader_error(message: str) -> bool:
    """A refusal by the loader itself (it stops at the first one)."""
    return any(m in message for m in ("duplicate key at lines", "nested deeper than",
                                      "invalid JSON", "invalid YAML"))  # fmt: skip


def _one_line(message: str) -> None:
    assert message.strip()
    assert "\n" not in message, message


# --- rulesets -------------------------------------------------------------------------------


@FUZZ
@given(mutated(RULESET), st.sampled_from(["json", "yaml"]))
def test_ruleset_files(m: Mutated, fmt: str) -> None:
    text = _text(m, fmt)
    result = parse_ruleset_text(text, f"fuzz.{fmt}")
    if isinstance(result, list):
        assert result
        for problem in result:
            assert isinstance(problem, Problem)
            _one_line(problem.message)
        if m.duplicate is not None:  # unless the loader stopped on something else first
            assert any(_loader_error(p.message) for p in result)
        return
    assert m.duplicate is None, "a key given twice was accepted"
    reference = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert same(parse_text(text, f"fuzz.{fmt}").data, reference)
    compiled = compile_ruleset(result)  # an accepted ruleset compiles
    again = parse_ruleset_text(json.dumps(result.doc.to_document()), "again.json")
    assert not isinstance(again, list)
    assert again.doc == result.doc
    assert compiled.version == result.version


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_ruleset_records_of_random_bytes(value: bytes) -> None:
    result = load_ruleset_document(value, source="routing.rules")
    if isinstance(result, list):
        for problem in result:
            _one_line(problem.message)


@FUZZ
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=30,
))  # fmt: skip
def test_the_loader_reads_what_json_and_yaml_read(doc: Any) -> None:
    text = json.dumps(doc)
    assert same(parse_text(text, "f.json").data, json.loads(text))
    ytext = yaml.safe_dump(doc)
    if "*id" in ytext:  # the dumper shares equal subtrees through aliases: refused
        with pytest.raises(LoadError, match="aliases"):
            parse_text(ytext, "f.yaml")
        return
    assert same(parse_text(ytext, "f.yaml").data, yaml.safe_load(ytext))


# --- SLA policy files -----------------------------------------------------------------------


@FUZZ
@given(mutated(SLA), st.sampled_from(["json", "yaml"]))
def test_sla_policy_files(m: Mutated, fmt: str) -> None:
    try:
        config = parse_sla_config(_text(m, fmt), f"sla.{fmt}")
    except SlaPolicyError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        _one_line(error)
        assert error.startswith(f"sla.{fmt}")
        assert m.duplicate is None or _loader_error(error)
        return
    assert m.duplicate is None, "a key given twice was accepted"
    for policy in config.policies.values():
        for metric, priority in itertools.product(SlaMetric, Priority):
            terms = policy.terms(metric, priority)
            if terms is not None:
                assert 0 < terms.target_seconds <= MAX_DURATION_SECONDS
                assert 0 < terms.warning_fraction < 1
                assert all(0 <= rung.after <= MAX_DURATION_SECONDS for rung in terms.ladder)


# --- vendor directory records ---------------------------------------------------------------


@FUZZ
@given(mutated(PROFILE))
def test_vendor_directory_records(m: Mutated) -> None:
    value = dump_json(m.doc, m.duplicate).encode()
    try:
        profile = vendor_profile("acme", value)
    except InvalidValue as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        _one_line(error)
        assert m.duplicate is None or _loader_error(error)
        return
    assert m.duplicate is None, "a key given twice was accepted"
    assert isinstance(profile, VendorProfile)
    assert profile.vendor_id == "acme"
    assert VendorProfile.model_validate_json(profile.model_dump_json()) == profile


@FUZZ
@given(st.binary(max_size=200))
def test_vendor_directory_records_of_random_bytes(value: bytes) -> None:
    with pytest.raises(InvalidValue) as caught:
        vendor_profile("acme", value)
    _one_line(str(caught.value))


# --- ticket actions -------------------------------------------------------------------------


def _check_dead_letter(rejected: Rejected, value: bytes) -> None:
    assert isinstance(rejected.reason, RejectReason)
    _one_line(rejected.error)
    letter = orjson.loads(rejected.record.value)["data"]
    assert letter["reason"] == rejected.reason.value
    original = letter["original"]
    kept = original["value"].encode() if original["value_encoding"] == "utf-8" else None
    assert kept is None or kept == value


def _record(m: Mutated) -> tuple[bytes, bool]:
    """The mutated document as a record's bytes, and whether it gives a key twice."""
    return dump_json(m.doc, m.duplicate).encode(), m.duplicate is not None


@FUZZ
@given(st.one_of(mutated(ACTION).map(_record), st.binary(max_size=200).map(lambda b: (b, False))))
def test_ticket_actions(case: tuple[bytes, bool]) -> None:
    value, twice = case
    parsed = parse_action(value, b"T-1", SOURCE, NOW, max_record_bytes=64 * 1024)
    if isinstance(parsed, Rejected):
        _check_dead_letter(parsed, value)
        return
    assert not twice, "a key given twice was accepted"
    assert isinstance(parsed, TicketActionEvent)
    again = TicketActionEvent.model_validate_json(orjson.dumps(parsed.model_dump(mode="json")))
    assert again == parsed


# --- inbound records ------------------------------------------------------------------------


@FUZZ
@given(st.one_of(mutated(INBOUND).map(_record), st.binary(max_size=200).map(lambda b: (b, False))))
def test_inbound_records(case: tuple[bytes, bool]) -> None:
    value, twice = case
    parsed = parse_inbound(value, b"thread-1", SOURCE, NOW, max_record_bytes=64 * 1024)
    if isinstance(parsed, Rejected):
        _check_dead_letter(parsed, value)
        return
    assert not twice, "a key given twice was accepted"
    assert isinstance(parsed, InboundEvent)
    again = InboundEvent.model_validate_json(orjson.dumps(parsed.model_dump(mode="json")))
    assert again == parsed


# --- settings files -------------------------------------------------------------------------


@FUZZ
@given(mutated(SETTINGS), st.sampled_from(["json", "yaml"]))
def test_settings_files(m: Mutated, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"router.{fmt}"
        path.write_text(_text(m, fmt), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env["ROUTER_SETTINGS_FILE"] = str(path)
        with mock.patch.dict(os.environ, env, clear=True):
            try:
                settings_ = RouterSettings()
            except SettingsFileError as exc:
                error = str(exc)
            except ValidationError as exc:
                fields = exc.errors()
                assert all(f["loc"] and "\n" not in f["msg"] for f in fields)
                return
            else:
                error = ""
    if error:
        _one_line(error)
        assert error.startswith(str(path))
        assert m.duplicate is None or _loader_error(error)
        return
    assert m.duplicate is None, "a key given twice was accepted"
    assert isinstance(settings_, RouterSettings)
    for key, value in m.doc.items():  # what the file says is what the settings hold
        held = getattr(settings_, key)
        assert str(held) == str(value) or held == value
