"""The README's Topics table and the topic registry (`schemas/topics.py`) state the same facts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from router.records import queue_topic
from schemas.topics import (
    BUYERS_CHANGELOG,
    EMAIL_THREAD_MAX_WINDOW_S,
    EMAIL_THREADS,
    QUEUE_DEPT,
    QUEUE_PREFIX,
    QUEUE_VENDOR,
    ROUTING_RULES,
    ROUTING_RULES_EVENTS,
    TOPICS,
    Topic,
    resolved,
    topic_of,
)
from streams.kafka.topics import core_topics, creation_configs, partitions_of
from streams.settings import RouterSettings

README = Path(__file__).resolve().parents[3] / "README.md"
_TICKED = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]
    flags: str  # the topic cell after its names: "(internal, compacted; ...)"
    key: str
    value: str
    written_by: str
    read_by: str


def readme_rows() -> list[Row]:
    text = README.read_text()
    section = text[text.index("\n## Topics\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("topic", "---"):
            continue
        head, _, flags = cells[0].partition(" (")
        rows.append(Row(tuple(_TICKED.findall(head)), flags, *cells[1:]))
    return rows


ROWS = {name: row for row in readme_rows() for name in row.names}


def test_the_table_is_found() -> None:
    assert len(ROWS) >= 20


def test_every_table_row_is_in_the_registry() -> None:
    registered = {t.name for t in TOPICS}
    assert sorted(set(ROWS) - registered) == []


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_every_registry_topic_is_in_the_table_with_the_same_facts(topic: Topic) -> None:
    row = ROWS.get(topic.name)
    assert row is not None, f"{topic.name} is missing from the README's Topics table"
    assert (row.key, row.written_by, row.read_by) == (topic.key, topic.written_by, topic.read_by)
    assert ("compacted" in row.flags) == topic.cleanup.startswith("compact")
    assert ("internal" in row.flags) == (not topic.public)
    assert ("1 partition" in row.flags) == (topic.partitions == 1)
    for config, _ in topic.configs:
        assert f"`{config}`" in row.flags, f"{topic.name}: {config} not stated"
    for event_type in topic.types:  # in full, or the last part after a full one
        short = event_type.rsplit(".", 1)[1]
        assert f"`{event_type}`" in row.value or f"`{short}`" in row.value, event_type


def test_core_topics_are_the_registry_topics_created_at_start() -> None:
    settings = RouterSettings(app_id="app")
    created = core_topics(settings)
    assert ROUTING_RULES_EVENTS.name in created
    assert BUYERS_CHANGELOG.of("app") in created
    assert set(created) == {n for n, t in resolved("app").items() if t.creation == "startup"}
    assert not any(name.startswith(QUEUE_PREFIX) for name in created)
    assert partitions_of(settings, "routing.rules") == 1
    assert partitions_of(settings, QUEUE_VENDOR.of("acme")) == settings.partitions


def test_names_are_unchanged_and_families_resolve() -> None:
    assert queue_topic("dept:payments") == QUEUE_DEPT.of("payments") == "queue.dept.payments"
    assert queue_topic("vendor:acme") == "queue.vendor.acme"
    assert BUYERS_CHANGELOG.of("ticket-router") == "ticket-router-buyers-changelog"
    assert all(f.prefix.startswith(QUEUE_PREFIX) for f in (QUEUE_DEPT, QUEUE_VENDOR))
    assert topic_of("queue.vendor.acme", "app") is QUEUE_VENDOR
    assert topic_of("queue.vendor.", "app") is None
    assert topic_of("app-buyers-changelog", "app") is BUYERS_CHANGELOG
    assert len({t.name for t in TOPICS}) == len(TOPICS)


def test_a_topic_is_created_with_its_registry_configs_whoever_creates_it() -> None:
    single, replicated = RouterSettings(), RouterSettings(replication_factor=3)
    assert creation_configs(single, EMAIL_THREADS.name) == {
        "cleanup.policy": "compact,delete",
        "retention.ms": str((EMAIL_THREAD_MAX_WINDOW_S + 86_400) * 1000),
    }
    assert creation_configs(replicated, ROUTING_RULES.name)["min.insync.replicas"] == "1"
    assert creation_configs(single, QUEUE_VENDOR.of("acme")) == {}
    assert creation_configs(single, "not.ours") == {}
    assert core_topics(single)[EMAIL_THREADS.name] == creation_configs(single, EMAIL_THREADS.name)
    longest = RouterSettings(email_thread_fallback_s=EMAIL_THREAD_MAX_WINDOW_S)
    assert longest.email_thread_fallback_s == EMAIL_THREAD_MAX_WINDOW_S  # the topic keeps these
    with pytest.raises(ValidationError, match="email_thread_fallback_s"):
        RouterSettings(email_thread_fallback_s=EMAIL_THREAD_MAX_WINDOW_S + 1)
