from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog
from pydantic import ValidationError

from router.schema_export import export_schemas
from streams.kafka.topics import core_topics
from streams.logs import redact_secrets
from streams.settings import RouterSettings


def test_environment_and_file_with_environment_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "router.yaml"
    file.write_text("partitions: 12\ntopic_prefix: 'staging.'\nsasl_password: hunter2\n")
    monkeypatch.setenv("ROUTER_SETTINGS_FILE", str(file))
    monkeypatch.setenv("ROUTER_PARTITIONS", "3")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    settings = RouterSettings()
    assert settings.partitions == 3
    assert settings.topic_prefix == "staging."
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.topic("tickets.events") == "staging.tickets.events"
    assert settings.logical("staging.channel.email") == "channel.email"
    masked = settings.masked()
    assert "hunter2" not in json.dumps(masked, default=str)
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "hunter2"


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_SETTINGS_FILE", raising=False)
    settings = RouterSettings()
    with pytest.raises(ValidationError):
        settings.partitions = 5  # type: ignore[misc]
    monkeypatch.setenv("ROUTER_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        RouterSettings()


def test_the_consumer_request_timeout_must_outlast_the_session() -> None:
    with pytest.raises(ValidationError, match=r"consumer_request_timeout_s .* session_timeout_s"):
        RouterSettings(session_timeout_s=30, consumer_request_timeout_s=30)
    assert RouterSettings(session_timeout_s=10, consumer_request_timeout_s=15)


def test_secret_keys_are_redacted_from_log_events() -> None:
    event = redact_secrets(None, "info", {"event": "connect", "sasl_password": "s3cret", "x": 1})
    assert event == {"event": "connect", "sasl_password": "**********", "x": 1}
    with structlog.testing.capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger().info("login", password="p4ss")
    assert logs[0]["password"] == "**********"


def test_schema_export_writes_a_json_schema_per_record(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)
    names = {p.name for p in written}
    assert {"inbound-message.schema.json", "routed-ticket.schema.json",
            "dead-letter.schema.json", "routing-decision.schema.json",
            "ruleset-refused.schema.json", "vendor-scores.schema.json",
            "vendor-tier-changed.schema.json", "support-day.schema.json"} <= names
    inbound = json.loads((tmp_path / "inbound-message.schema.json").read_text())
    data_ref = inbound["properties"]["data"]["$ref"].split("/")[-1]
    assert set(inbound["$defs"][data_ref]["required"]) >= {
        "channel", "message_id", "thread_ref", "sender", "body"
    }


def test_rules_topic_keeps_every_version_long_enough_to_recover_from_a_bad_one() -> None:
    """A broken version on the compacted topic must not compact the good one away at once."""
    rules = core_topics(RouterSettings())["routing.rules"]
    assert rules["cleanup.policy"] == "compact"
    assert int(rules["min.compaction.lag.ms"]) >= 7 * 24 * 3600 * 1000


def test_vendor_acls_are_literal_for_topics_and_delimited_for_groups() -> None:
    from streams.kafka.acls import vendor_acls

    settings = RouterSettings(topic_prefix="prod.")
    bindings = vendor_acls(settings, "acme", "User:acme")
    topics = {(b.name, b.pattern, b.operation) for b in bindings if b.resource == "topic"}
    assert ("prod.queue.vendor.acme", "literal", "read") in topics
    assert all(pattern == "literal" for _, pattern, _ in topics)  # never a prefix of acme2
    [group] = [b for b in bindings if b.resource == "group"]
    assert (group.name, group.pattern) == ("prod.vendor.acme.", "prefixed")
    assert {b.principal for b in bindings} == {"User:acme"}
    no_actions = vendor_acls(settings, "acme", "User:acme", actions=False)
    assert not any(b.operation == "write" for b in no_actions)
