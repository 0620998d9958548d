"""Shared fixtures: the Kafka the integration tests use, and unique topic names.

The broker comes from ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local broker built
from the Apache Kafka jars (Java 17+ and Maven), else testcontainers with Docker; see
``streams.local.broker.kafka_for_tests``. It is started once per session, on first use.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from streams.local.broker import kafka_for_tests


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a running broker; stopped at session end if we started it."""
    with kafka_for_tests() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A fresh ``t<8 hex>.`` prefix, so tests sharing one broker never share a topic."""
    return f"t{uuid.uuid4().hex[:8]}."
