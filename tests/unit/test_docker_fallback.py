"""The testcontainers fallback of `kafka_for_tests`, checked without a Docker engine.

No container is started here (this machine has no Docker engine): the tests pin the import
path, the image tag against the one Kafka version constant, and the wiring of
`resolve_bootstrap` with a recording stand-in for testcontainers' container class.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

import streams.local.broker as lk
import streams.local.install as setup

POM = Path(setup.DEPLOY_DIR) / "pom.xml"


def test_image_is_the_official_one_of_the_jars_version() -> None:
    pom_version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    assert pom_version is not None
    # the pom's default is the same constant the launcher passes to Maven
    assert pom_version.group(1) == setup.DEFAULT_VERSION
    assert setup.docker_image() == f"apache/kafka:{setup.DEFAULT_VERSION}"
    assert setup.docker_image("9.9.9") == "apache/kafka:9.9.9"


def test_container_class_imports_without_deprecation() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated shim module would fail here
        module = importlib.import_module(lk.CONTAINER_MODULE)
    container_cls = module.DockerContainer
    for method in ("with_env", "with_bind_ports", "start", "stop"):
        assert callable(getattr(container_cls, method))


def test_container_env_is_a_single_kraft_node_reachable_on_the_published_port() -> None:
    env = setup.docker_kafka_env(41234, cluster_id="abc")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:41234"
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_MESSAGE_MAX_BYTES"] == str(setup.MESSAGE_MAX_BYTES)
    assert env["CLUSTER_ID"] == "abc"
    assert all(k == "CLUSTER_ID" or re.fullmatch(r"KAFKA_[A-Z0-9_]+", k) for k in env)


class RecordingContainer:
    """Stands in for testcontainers' DockerContainer: records what it is given."""

    made: list[RecordingContainer] = []

    def __init__(self, image: str) -> None:
        self.image = image
        self.env: dict[str, str] = {}
        self.ports: dict[int, int] = {}
        self.entered = self.exited = False
        RecordingContainer.made.append(self)

    def with_env(self, key: str, value: str) -> RecordingContainer:
        self.env[key] = value
        return self

    def with_bind_ports(self, container: int, host: int) -> RecordingContainer:
        self.ports[container] = host
        return self

    def __enter__(self) -> RecordingContainer:
        self.entered = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.exited = True


@pytest.mark.parametrize("override", [None, "mirror.local/apache/kafka:4.1.1"])
def test_resolve_bootstrap_starts_the_image_and_waits_for_the_broker(
    monkeypatch: pytest.MonkeyPatch, override: str | None
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    if override is None:
        monkeypatch.delenv("ROUTER_KAFKA_IMAGE", raising=False)
    else:
        monkeypatch.setenv("ROUTER_KAFKA_IMAGE", override)
    monkeypatch.setattr(lk, "local_kafka_available", lambda version: False)
    monkeypatch.setattr(lk, "docker_available", lambda: True)
    module = importlib.import_module(lk.CONTAINER_MODULE)
    monkeypatch.setattr(module, "DockerContainer", RecordingContainer)
    probes: list[str] = []
    monkeypatch.setattr(lk, "broker_answers", lambda bs, timeout: probes.append(bs) or True)
    RecordingContainer.made.clear()
    with contextlib.ExitStack() as stack:
        bootstrap = lk.resolve_bootstrap(stack)
        [container] = RecordingContainer.made
        assert container.entered
        assert not container.exited
    assert container.exited  # stopped with the stack
    assert container.image == (override or f"apache/kafka:{setup.DEFAULT_VERSION}")
    port = container.ports[setup.DOCKER_CLIENT_PORT]
    assert bootstrap == f"127.0.0.1:{port}" == probes[0]
    assert container.env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
