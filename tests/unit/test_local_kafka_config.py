"""The local broker's config rendering and launcher plumbing, without starting a broker."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import streams.local.broker as lk
import streams.local.install as setup
from streams.local.broker import (
    KafkaLauncherError,
    Listener,
    broker_config,
    pid_alive,
    render_properties,
    resolve_bootstrap,
    resolve_jars,
)

CLIENT = Listener("PLAINTEXT", 19092)
CONTROLLER = Listener("CONTROLLER", 19093, controller=True)


def single_node() -> dict[str, str]:
    return broker_config(1, [CLIENT, CONTROLLER], log_dir="/data", voters={1: CONTROLLER.address})


def test_single_node_combined_config() -> None:
    cfg = single_node()
    assert cfg["process.roles"] == "broker,controller"
    assert cfg["node.id"] == "1"
    assert cfg["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert cfg["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"  # no controller
    assert cfg["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert cfg["controller.listener.names"] == "CONTROLLER"
    assert cfg["inter.broker.listener.name"] == "PLAINTEXT"
    assert cfg["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert cfg["log.dirs"] == "/data"


def test_development_defaults() -> None:
    cfg = single_node()
    assert cfg["auto.create.topics.enable"] == "false"
    assert cfg["offsets.topic.replication.factor"] == "1"
    assert cfg["transaction.state.log.replication.factor"] == "1"
    assert cfg["transaction.state.log.min.isr"] == "1"
    assert cfg["min.insync.replicas"] == "1"
    assert cfg["group.initial.rebalance.delay.ms"] == "0"
    assert int(cfg["message.max.bytes"]) >= 8 * 1024 * 1024
    assert int(cfg["replica.fetch.max.bytes"]) >= int(cfg["message.max.bytes"])


def test_sasl_listener_and_overrides() -> None:
    sasl = Listener("SASL", 19094, protocol="SASL_PLAINTEXT")
    cfg = broker_config(
        1,
        [CLIENT, sasl, CONTROLLER],
        log_dir="/d",
        voters={1: CONTROLLER.address},
        overrides={"sasl.enabled.mechanisms": "PLAIN", "message.max.bytes": "100"},
    )
    assert cfg["listeners"].split(",")[1] == "SASL://127.0.0.1:19094"
    assert "SASL:SASL_PLAINTEXT" in cfg["listener.security.protocol.map"].split(",")
    assert cfg["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SASL://127.0.0.1:19094"
    assert cfg["inter.broker.listener.name"] == "PLAINTEXT"
    assert cfg["sasl.enabled.mechanisms"] == "PLAIN"
    assert cfg["message.max.bytes"] == "100"  # overrides win


def test_three_node_cluster_and_broker_only_role() -> None:
    voters = {3: "127.0.0.1:3", 1: "127.0.0.1:1", 2: "127.0.0.1:2"}
    cfg = broker_config(
        2,
        [Listener("PLAINTEXT", 9002), Listener("CONTROLLER", 2, controller=True)],
        log_dir="/d2",
        voters=voters,
        replication=3,
    )
    assert cfg["controller.quorum.voters"] == "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3"
    assert cfg["offsets.topic.replication.factor"] == "3"
    assert cfg["default.replication.factor"] == "3"
    assert cfg["min.insync.replicas"] == "1"

    broker = broker_config(
        4, [Listener("PLAINTEXT", 9004)], log_dir="/d4", voters=voters, roles=("broker",)
    )
    assert broker["process.roles"] == "broker"
    assert broker["listeners"] == "PLAINTEXT://127.0.0.1:9004"
    assert "CONTROLLER:PLAINTEXT" in broker["listener.security.protocol.map"]


def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        broker_config(1, [CLIENT, CLIENT, CONTROLLER], log_dir="/d", voters={1: "h:1"})
    with pytest.raises(ValueError, match="CONTROLLER"):
        broker_config(1, [CLIENT], log_dir="/d", voters={1: "h:1"})
    with pytest.raises(ValueError, match="non-controller"):
        broker_config(1, [CONTROLLER], log_dir="/d", voters={1: "h:1"})
    with pytest.raises(ValueError, match="voters"):
        broker_config(1, [CLIENT, CONTROLLER], log_dir="/d", voters={})


def test_render_properties() -> None:
    text = render_properties({"a.b": "x", "log.dirs": "C:\\kafka", "multi": "1\n2"})
    assert text == "a.b=x\nlog.dirs=C:\\\\kafka\nmulti=1\\n2\n"
    lines = render_properties(single_node()).splitlines()
    assert "auto.create.topics.enable=false" in lines
    assert len(lines) == len(single_node())


def test_resolve_jars_uses_the_marker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "kafka-9.9.9"
    home.mkdir()
    (home / ".resolved").write_text(setup._pom_digest("9.9.9"))

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolved jars must not run mvn again")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert resolve_jars("9.9.9", tmp_path) == home / "libs"
    assert resolve_jars("9.9.9", cache_dir=tmp_path) == home / "libs"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROUTER_CACHE_DIR", str(tmp_path))
    assert lk.default_cache_dir() == tmp_path
    monkeypatch.delenv("ROUTER_CACHE_DIR")
    assert lk.default_cache_dir() == Path(lk.__file__).resolve().parents[2] / ".cache"


def test_broker_logs_go_to_memory_when_it_has_room(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LOCAL_KAFKA_DIR", raising=False)
    name = f"local-kafka-{os.getuid()}"
    assert setup.workdirs_base(tmp_path) == tmp_path / name  # writable, room to spare
    monkeypatch.setattr(setup, "MEMORY_DIR_MIN_FREE", 2**62)  # more than any disk has
    assert setup.workdirs_base(tmp_path).parent != tmp_path
    assert setup.workdirs_base(tmp_path / "missing").parent != tmp_path / "missing"
    monkeypatch.setenv("LOCAL_KAFKA_DIR", str(tmp_path / "mine"))
    assert setup.workdirs_base(tmp_path) == tmp_path / "mine"


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    setup.java_major_version.cache_clear()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    yield
    setup.java_major_version.cache_clear()


@pytest.mark.usefixtures("no_tools")
def test_missing_java_and_maven_name_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(KafkaLauncherError, match="install") as err:
        resolve_jars("9.9.9", tmp_path)
    assert "java" in str(err.value)
    assert "mvn" in str(err.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(err.value)


def test_env_bootstrap_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setattr(lk, "LocalKafka", None)  # must not be touched
    with contextlib.ExitStack() as stack:
        assert resolve_bootstrap(stack) == "broker-a:9092,broker-b:9092"


def test_no_kafka_lists_the_three_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setattr(lk, "local_kafka_available", lambda version: False)
    monkeypatch.setattr(lk, "docker_available", lambda: False)
    with contextlib.ExitStack() as stack, pytest.raises(KafkaLauncherError) as err:
        resolve_bootstrap(stack)
    message = str(err.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "Java 17" in message
    assert "Docker" in message


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
