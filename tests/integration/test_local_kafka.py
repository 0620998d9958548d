"""The local Kafka launcher against a real broker: round trip, process hygiene, CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.local.broker import (
    MESSAGE_MAX_BYTES,
    KafkaLauncherError,
    LocalKafka,
    State,
    broker_answers,
    local_kafka_available,
    pid_alive,
    terminate_pid,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
needs_local_kafka = pytest.mark.skipif(
    not local_kafka_available(), reason="needs java 17+ and Maven (or cached Kafka jars)"
)


def wait_gone(pid: int, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)  # wait-ok: poll interval of a loop bounded by a deadline
    return False


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return env


async def round_trip(bootstrap: str, topic: str, values: list[bytes]) -> list[bytes]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        # the broker answers before its metadata lists the topic: wait for it, with a deadline
        deadline = time.monotonic() + 10
        while topic not in await admin.list_topics() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # wait-ok: poll interval of a loop bounded by a deadline
        assert topic in await admin.list_topics()
        # auto.create.topics.enable=false: asking for an unknown topic must not create it
        await admin.describe_topics([topic + "absent"])
        assert topic + "absent" not in await admin.list_topics()
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MESSAGE_MAX_BYTES,
    )
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, value, key=b"k%d" % i)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic + "g",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MESSAGE_MAX_BYTES,
        fetch_max_bytes=2 * MESSAGE_MAX_BYTES,
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(values):
                batches = await consumer.getmany(timeout_ms=1000)
                received += [m.value for msgs in batches.values() for m in msgs if m.value]
        await consumer.commit()
    finally:
        await consumer.stop()
    return received


def test_produce_consume_round_trip(kafka_bootstrap: str, topic_prefix: str) -> None:
    big = os.urandom(3 * 1024 * 1024)  # above Kafka's 1 MB default: dead letters carry these
    values = [b"hello", b"world", big]
    received = asyncio.run(round_trip(kafka_bootstrap, topic_prefix + "round.trip", values))
    assert sorted(received) == sorted(values)


OWNER_SCRIPT = """
import json, time
from streams.local.broker import LocalKafka
kafka = LocalKafka()
kafka.start()
print(json.dumps({"bootstrap": kafka.bootstrap, "pid": kafka.pid,
                  "workdir": str(kafka.workdir)}), flush=True)
time.sleep(600)  # wait-ok: the owner idles until the test SIGKILLs it
"""


@needs_local_kafka
def test_kill_9_of_the_owner_leaves_no_jvm() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
    info: dict[str, object] = {}
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, f"owner exited with {owner.wait()} before printing the bootstrap"
        info = json.loads(line)
        jvm = int(str(info["pid"]))
        assert pid_alive(jvm)
        assert broker_answers(str(info["bootstrap"]))
        owner.send_signal(signal.SIGKILL)
        assert owner.wait(timeout=10) == -signal.SIGKILL
        assert wait_gone(jvm, 15.0), f"JVM {jvm} outlived its SIGKILLed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        if "pid" in info and pid_alive(int(str(info["pid"]))):
            terminate_pid(int(str(info["pid"])), 0.0)
        if "workdir" in info:  # a SIGKILLed owner cannot clean up; the next start sweeps it
            shutil.rmtree(str(info["workdir"]), ignore_errors=True)


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.local.broker", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


@needs_local_kafka
def test_background_start_status_stop(tmp_path: Path) -> None:
    state_file = tmp_path / "kafka-state.json"
    started = cli("start", "--state-file", str(state_file))
    state: dict[str, object] = {}
    try:
        assert started.returncode == 0, started.stderr
        lines = started.stdout.splitlines()
        assert len(lines) == 1
        assert re.fullmatch(r"KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:\d+", lines[0])
        bootstrap = lines[0].split("=", 1)[1]
        state = json.loads(state_file.read_text())
        pid = int(str(state["pid"]))
        assert state["bootstrap"] == bootstrap
        assert pid_alive(pid)  # it outlived the CLI process that started it
        assert broker_answers(bootstrap)

        again = cli("start", "--state-file", str(state_file), timeout=30)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == lines  # the same broker, not a second one
        assert json.loads(state_file.read_text())["pid"] == pid

        status = cli("status", "--state-file", str(state_file), timeout=30)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["answering"] is True

        stopped = cli("stop", "--state-file", str(state_file), timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert wait_gone(pid, 5.0)
        assert not state_file.exists()
        assert not Path(str(state["workdir"])).exists()

        after = cli("status", "--state-file", str(state_file), timeout=30)
        assert after.returncode == 1
        assert json.loads(after.stdout)["alive"] is False
    finally:
        if "pid" in state and pid_alive(int(str(state["pid"]))):
            terminate_pid(int(str(state["pid"])), 0.0)
        if "workdir" in state:
            shutil.rmtree(str(state["workdir"]), ignore_errors=True)


@needs_local_kafka
def test_interrupted_background_start_leaves_nothing(tmp_path: Path) -> None:
    state_file = tmp_path / "kafka-state.json"
    starter = subprocess.Popen(
        [sys.executable, "-m", "streams.local.broker", "start", "--state-file", str(state_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    state: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while not state and time.monotonic() < deadline and starter.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(state_file.read_text())  # written once the JVM exists
            time.sleep(0.02)  # wait-ok: poll interval of a loop bounded by a deadline
        assert state.get("status") == "starting", state
        starter.terminate()  # what `timeout` or a CI cancel does
        out, _ = starter.communicate(timeout=30)
        assert starter.returncode != 0
        assert out == b""
        assert wait_gone(int(str(state["pid"])), 5.0)
        assert not state_file.exists()
        assert not Path(str(state["workdir"])).exists()
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.communicate()
        if "pid" in state and pid_alive(int(str(state["pid"]))):
            terminate_pid(int(str(state["pid"])), 0.0)


@needs_local_kafka
def test_failed_start_reports_the_broker_log() -> None:
    kafka = LocalKafka(overrides={"message.max.bytes": "lots"})
    with pytest.raises(KafkaLauncherError, match="Invalid value lots") as err:
        kafka.start()
    assert "console.log" in str(err.value)  # the tail of the broker's own output
    assert kafka.state is State.FAILED
    assert kafka.workdir is not None
    assert not kafka.workdir.exists()
    assert kafka.pid is not None
    assert not pid_alive(kafka.pid)
