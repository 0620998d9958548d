"""Fixtures for the SLA core tests (helpers live in sla_support.py)."""

from __future__ import annotations

import pytest

from router.sla.policy import SlaConfig, parse_sla_config
from tests.unit.sla.sla_support import POLICY_YAML, Desk


@pytest.fixture(scope="session")
def config() -> SlaConfig:
    return parse_sla_config(POLICY_YAML)


@pytest.fixture
def desk(config: SlaConfig) -> Desk:
    return Desk(config)
