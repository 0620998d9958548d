"""Rulesets and vendor profiles on the real broker: file start-up, hot reload mid-stream,
refusal of a broken ruleset, start-up from the topic, every worker of a group reloading,
the vendor directory, and the `router rules` / `router vendors` / `router simulate` tools.

Workers are real `python -m router worker` processes; nothing waits on a bare sleep (the
steady stream is paced, every wait is a deadline with polling).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from rules import parse_ruleset_file
from schemas.envelope import envelope
from streams.kafka.rules_topic import publish_ruleset
from streams.kafka.topics import ensure_core_topics
from streams.settings import RouterSettings
from tests.factories import inbound_bytes
from tests.harness import REPO, Output, WorkerProcess, produce, topics_exist, wait_for
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "rules" / "examples"
V1 = EXAMPLES / "marketplace.yaml"
V2 = EXAMPLES / "marketplace-v2.yaml"


# --- helpers --------------------------------------------------------------------------------


def on(topic: str, outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def decisions_by_inbound(outputs: list[Output]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in on("tickets.decisions", outputs):
        found[o.value["data"]["inbound_id"]].append(o.value)
    return found


def queued_by_inbound(outputs: list[Output]) -> dict[str, list[Output]]:
    found: dict[str, list[Output]] = defaultdict(list)
    for o in outputs:
        if o.topic.startswith("queue."):
            found[o.value["data"]["messages"][-1]["inbound_id"]].append(o)
    return found


def log_events(worker: WorkerProcess, event: str) -> list[dict[str, Any]]:
    """The worker's structlog JSON lines for `event` (the whole log file, not its tail)."""
    found = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:  # a terminal escape sequence may precede the JSON on the line
            doc = orjson.loads(line[line.find("{") :])
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            found.append(doc)
    return found


def activated(worker: WorkerProcess, version: str) -> bool:
    return any(e.get("version") == version for e in log_events(worker, "ruleset_activated"))


def caught_up(worker: WorkerProcess) -> bool:
    return bool(log_events(worker, "rules_caught_up"))


def ruleset_doc(path: Path) -> dict[str, Any]:
    parsed = parse_ruleset_file(path)
    assert not isinstance(parsed, list), parsed
    return parsed.doc.to_document()


def publish(engine: EngineUnderTest, path: Path) -> None:
    asyncio.run(
        publish_ruleset(engine.bootstrap, f"{engine.prefix}routing.rules", ruleset_doc(path))
    )


def publish_broken(engine: EngineUnderTest, version: str = "3.0.0") -> None:
    """A ruleset record written straight to the topic, bypassing `router rules publish`."""
    doc = ruleset_doc(V2)
    doc["version"] = version
    doc["rules"].insert(
        0,
        {
            "id": "bad",
            "when": {"field": "message.colour", "eq": "red"},
            "then": {"route": "dept:nowhere"},
        },
    )
    event = envelope(
        event_id=f"marketplace@{version}",
        source="urn:test",
        time=datetime.now(UTC),
        event_type="support.ruleset.published",
        subject="marketplace",
        data=doc,
    )
    produce(
        engine.bootstrap, f"{engine.prefix}routing.rules", [(b"marketplace", orjson.dumps(event))]
    )


def core_topics_now(engine: EngineUnderTest, monkeypatch: pytest.MonkeyPatch) -> RouterSettings:
    """Create the engine's topics before any worker runs (as a deployment would)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", engine.bootstrap)
    monkeypatch.setenv("ROUTER_TOPIC_PREFIX", engine.prefix)
    monkeypatch.setenv("ROUTER_PARTITIONS", "3")
    settings = RouterSettings()
    asyncio.run(ensure_core_topics(settings))
    return settings


def cli(
    engine: EngineUnderTest, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
        "ROUTER_TOPIC_PREFIX": engine.prefix,
        "ROUTER_PARTITIONS": "3",
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "router", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"router {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


def chat(event_id: str, body: str, **data: Any) -> tuple[bytes, bytes]:
    thread = f"th-{event_id}"
    return thread.encode(), inbound_bytes(
        event_id,
        channel="chat",
        thread_ref=thread,
        vendor_id=data.pop("vendor_id", None),
        body=body,
        **data,
    )


class SteadyStream(threading.Thread):
    """Produces records at a steady pace from its own thread; remembers where each landed."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        records: list[tuple[str, bytes, bytes]],
        per_tick: int,
        tick_s: float,
        signal_after: int,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.per_tick, self.tick_s, self.signal_after = per_tick, tick_s, signal_after
        self.positions: dict[str, tuple[int, int]] = {}  # inbound id -> (partition, offset)
        self.reached = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.reached.set()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        await producer.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for tick, i in enumerate(range(0, len(self.records), self.per_tick), start=1):
                chunk = self.records[i : i + self.per_tick]
                sent = [
                    (rid, await producer.send(self.topic, value, key=key))
                    for rid, key, value in chunk
                ]
                for rid, future in sent:
                    md = await future
                    self.positions[rid] = (md.partition, md.offset)
                if len(self.positions) >= self.signal_after:
                    self.reached.set()
                # pacing the traffic (a steady rate), not waiting for anything
                await asyncio.sleep(max(0.0, start + tick * self.tick_s - loop.time()))
        finally:
            await producer.stop()


# --- tests ----------------------------------------------------------------------------------


def test_ruleset_file_routes_and_decision_carries_version_and_trace(
    engine: EngineUnderTest,
) -> None:
    worker = engine.start_worker("--rules", str(V1))
    engine.send(
        "email",
        [
            (
                b"th-nr",
                inbound_bytes(
                    "nr-1", thread_ref="th-nr", vendor_id=None, body="My parcel never arrived."
                ),
            ),
            (
                b"th-vip",
                inbound_bytes(
                    "vip-1",
                    thread_ref="th-vip",
                    vendor_id=None,
                    body="Hello there",
                    attributes={"vip": True},
                ),
            ),
        ],
    )
    outputs = engine.collector().poll_until(
        lambda outs: len(decisions_by_inbound(outs)) >= 2 and len(queued_by_inbound(outs)) >= 2,
        60,
        "two decisions and two queued tickets",
    )
    decided = decisions_by_inbound(outputs)
    nr = decided["nr-1"][0]["data"]
    assert (nr["ruleset"], nr["ruleset_version"]) == ("marketplace", "1.0.0")
    assert nr["rule_id"] == "item-not-received"
    assert nr["queue"] == "dept:disputes"
    assert nr["priority"] == "high"
    assert "not-received" in nr["tags"]
    assert "item-not-received" in nr["explanation"]
    tried = [t["rule_id"] for t in nr["trace"]]
    assert tried[0] == "tag-channel"
    assert tried[-1] == "item-not-received"
    assert nr["trace"][-1]["matched"] is True
    assert decided["nr-1"][0]["type"] == "support.routing.decided"
    [queued] = queued_by_inbound(outputs)["nr-1"]
    assert queued.topic == "queue.dept.disputes"
    assert queued.value["data"]["ruleset_version"] == "1.0.0"
    # buyer facts from the connector's attributes reach the rules (`buyer.vip`)
    vip = decided["vip-1"][0]["data"]
    assert "vip" in vip["tags"]
    assert (vip["sla_policy"], vip["priority"], vip["queue"]) == ("vip", "high", "dept:general")
    # every department queue of the ruleset exists up front, not on the hot path
    assert topics_exist(
        engine.bootstrap,
        [
            f"{engine.prefix}queue.dept.{d}"
            for d in ("desk_es", "trust_safety", "social_care", "shipping")
        ],
    )
    assert caught_up(worker)


def test_hot_reload_mid_stream_switches_once_per_partition(engine: EngineUnderTest) -> None:
    worker = engine.start_worker("--rules", str(V1))
    engine.send("chat", [chat("warm-1", "Hello")])
    engine.collector("tickets.decisions").poll_until(lambda outs: bool(outs), 60, "warm-up")

    count = 600
    records = []
    for i in range(count):
        key, value = chat(f"st-{i:04d}", f"Buongiorno, una domanda sul prodotto {i}", language="it")
        records.append((f"st-{i:04d}", key, value))
    stream = SteadyStream(
        engine.bootstrap,
        f"{engine.prefix}channel.chat",
        records,
        per_tick=10,
        tick_s=0.1,
        signal_after=200,
    )
    stream.start()
    assert stream.reached.wait(30), "the stream did not start"
    assert stream.error is None, stream.error
    publish(engine, V2)  # mid-stream: about 200 sent, 400 to go over ~4 s
    stream.join(60)
    assert not stream.is_alive()
    assert stream.error is None, stream.error
    assert len(stream.positions) == count

    wait_for(lambda: activated(worker, "2.0.0"), 30, "ruleset 2.0.0 to be activated")
    engine.send("chat", [chat("after-1", "Ciao", language="it")])
    expected = {*stream.positions, "warm-1", "after-1"}
    outputs = engine.collector("tickets.decisions", "queue.*").poll_until(
        lambda outs: (
            expected <= decisions_by_inbound(outs).keys()
            and expected <= queued_by_inbound(outs).keys()
        ),
        60,
        "a decision and a queued ticket for every message",
        lambda outs: (
            f"{len(decisions_by_inbound(outs))} decisions, "
            f"{len(queued_by_inbound(outs))} queued of {len(expected)}"
        ),
    )
    decided = decisions_by_inbound(outputs)
    queued = queued_by_inbound(outputs)
    # nothing lost, nothing routed twice
    assert set(decided) == expected
    assert {k for k, v in decided.items() if len(v) != 1} == set()
    assert {k for k, v in queued.items() if len(v) != 1} == set()
    assert decided["warm-1"][0]["data"]["ruleset_version"] == "1.0.0"
    assert decided["after-1"][0]["data"]["ruleset_version"] == "2.0.0"
    # the queue matches the version that decided: v2 added an Italian desk
    for rid in expected:
        version = decided[rid][0]["data"]["ruleset_version"]
        assert queued[rid][0].value["data"]["ruleset_version"] == version
        if rid.startswith(("st-", "after-")):
            want = "queue.dept.desk_it" if version == "2.0.0" else "queue.dept.general"
            assert queued[rid][0].topic == want, (rid, version)
    # one switch point per inbound partition: never back to 1.0.0 after the first 2.0.0
    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for rid, (partition, offset) in stream.positions.items():
        by_partition[partition].append((offset, decided[rid][0]["data"]["ruleset_version"]))
    for partition, seq in by_partition.items():
        versions = [v for _, v in sorted(seq)]
        assert versions == sorted(versions), f"partition {partition} went back to 1.0.0"
    versions_seen = {v for seq in by_partition.values() for _, v in seq}
    assert versions_seen == {"1.0.0", "2.0.0"}, "the switch did not happen mid-stream"


def test_broken_ruleset_is_refused_and_last_good_version_kept(engine: EngineUnderTest) -> None:
    worker = engine.start_worker("--rules", str(V1))
    wait_for(lambda: caught_up(worker), 60, "the worker to load its rules")
    publish(engine, V2)
    wait_for(lambda: activated(worker, "2.0.0"), 30, "ruleset 2.0.0 to be activated")
    publish_broken(engine, "3.0.0")
    refusals = engine.collector("routing.rules.events").poll_until(
        lambda outs: bool(outs), 30, "the refusal event"
    )
    event = refusals[0].value
    assert event["type"] == "support.routing.ruleset_refused"
    assert refusals[0].key == b"marketplace"
    data = event["data"]
    assert (data["ruleset"], data["version"]) == ("marketplace", "3.0.0")
    assert data["kept"] == {"ruleset": "marketplace", "version": "2.0.0"}
    messages = " ".join(p["message"] for p in data["problems"])
    assert "message.colour" in messages
    assert "nowhere" in messages
    [logged] = log_events(worker, "ruleset_refused")
    assert logged["version"] == "3.0.0"
    assert logged["level"] == "warning"
    assert logged["problems"]
    assert not activated(worker, "3.0.0")

    engine.send("chat", [chat("post-1", "Ciao", language="it")])
    outputs = engine.collector("tickets.decisions").poll_until(
        lambda outs: "post-1" in decisions_by_inbound(outs), 60, "the decision"
    )
    post = decisions_by_inbound(outputs)["post-1"][0]["data"]
    assert (post["ruleset_version"], post["queue"]) == ("2.0.0", "dept:desk_it")
    # nothing left hanging by the switch (e.g. a producer batch waiting for metadata)
    assert worker.stop() == 0


def test_worker_starts_on_latest_good_topic_version_before_processing(
    engine: EngineUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    core_topics_now(engine, monkeypatch)
    publish(engine, V2)
    publish_broken(engine, "2.1.0")  # newest on the topic, refused: 2.0.0 is the latest good one
    waiting = [chat(f"early-{i}", "Ciao", language="it") for i in range(12)]
    engine.send("chat", waiting)  # already there when the worker starts

    worker = engine.start_worker("--rules", str(V1))  # the file says 1.0.0
    outputs = engine.collector("tickets.decisions").poll_until(
        lambda outs: len(decisions_by_inbound(outs)) >= len(waiting), 60, "the early decisions"
    )
    versions = {d[0]["data"]["ruleset_version"] for d in decisions_by_inbound(outputs).values()}
    assert versions == {"2.0.0"}
    [summary] = log_events(worker, "rules_caught_up")
    assert (summary["version"], summary["source"]) == ("2.0.0", "topic")
    assert [e["version"] for e in log_events(worker, "ruleset_refused")] == ["2.1.0"]
    assert not activated(worker, "1.0.0")


def test_every_worker_of_the_group_reloads(engine: EngineUnderTest) -> None:
    workers = [engine.start_worker("--rules", str(V1)) for _ in range(2)]
    wait_for(lambda: all(caught_up(w) for w in workers), 60, "both workers to load rules")
    publish(engine, V2)
    wait_for(
        lambda: all(activated(w, "2.0.0") for w in workers), 30, "both workers to activate 2.0.0"
    )
    # a 1-partition topic read by a group would reach one worker only: both got it
    engine.send("chat", [chat(f"both-{i}", "Ciao", language="it") for i in range(30)])
    outputs = engine.collector("tickets.decisions").poll_until(
        lambda outs: len(decisions_by_inbound(outs)) >= 30, 60, "30 decisions"
    )
    versions = {d[0]["data"]["ruleset_version"] for d in decisions_by_inbound(outputs).values()}
    assert versions == {"2.0.0"}


def test_vendor_directory_reaches_routing_and_follows_updates(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    profiles = tmp_path / "vendors.yaml"
    profiles.write_text(
        "- {vendor_id: acme-audio, name: Acme Audio, tier: gold, timezone: Europe/Berlin}\n"
        "- {vendor_id: casa-verde, status: suspended, tier: silver}\n"
    )
    out = cli(engine, "vendors", "publish", str(profiles)).stdout
    assert "published 2 vendor profiles" in out
    worker = engine.start_worker("--rules", str(V1))
    engine.send(
        "email",
        [
            (
                b"th-v1",
                inbound_bytes(
                    "v-1",
                    thread_ref="th-v1",
                    vendor_id="acme-audio",
                    body="Does this come in size M?",
                ),
            ),
            (
                b"th-v2",
                inbound_bytes(
                    "v-2",
                    thread_ref="th-v2",
                    vendor_id="casa-verde",
                    body="Does this come in size M?",
                ),
            ),
            (
                b"th-v3",
                inbound_bytes(
                    "v-3",
                    thread_ref="th-v3",
                    vendor_id="harbor-home",
                    body="Does this come in size M?",
                ),
            ),
        ],
    )
    outputs = engine.collector("tickets.decisions").poll_until(
        lambda outs: len(decisions_by_inbound(outs)) >= 3, 60, "three decisions"
    )
    decided = {k: v[0]["data"] for k, v in decisions_by_inbound(outputs).items()}
    # gold vendor: known, in contract at any hour -> its own queue
    assert (decided["v-1"]["queue"], decided["v-1"]["rule_id"]) == (
        "vendor:acme-audio",
        "order-to-vendor",
    )
    # suspended vendor: the platform desk takes over
    assert (decided["v-2"]["queue"], decided["v-2"]["rule_id"]) == (
        "dept:platform_desk",
        "vendor-inactive",
    )
    # unknown vendor: the rule's fallback
    assert decided["v-3"]["queue"] == "dept:platform_desk"
    assert decided["v-3"]["rule_id"] == "order-to-vendor"

    # a live update: acme-audio suspended
    profiles.write_text("vendors:\n  - {vendor_id: acme-audio, status: suspended, tier: gold}\n")
    cli(engine, "vendors", "publish", str(profiles))
    wait_for(
        lambda: any(
            "acme-audio" in e.get("changed", ())
            for e in log_events(worker, "vendor_directory_updated")
        ),
        30,
        "the worker to take the update",
    )
    engine.send(
        "email",
        [
            (
                b"th-v4",
                inbound_bytes("v-4", thread_ref="th-v4", vendor_id="acme-audio", body="Hello?"),
            )
        ],
    )
    outputs = engine.collector("tickets.decisions").poll_until(
        lambda outs: "v-4" in decisions_by_inbound(outs), 60, "the decision after the update"
    )
    assert decisions_by_inbound(outputs)["v-4"][0]["data"]["rule_id"] == "vendor-inactive"
    listed = [
        orjson.loads(line) for line in cli(engine, "vendors", "list", "--json").stdout.split()
    ]
    assert {p["vendor_id"]: p["status"] for p in listed} == {
        "acme-audio": "suspended",
        "casa-verde": "suspended",
    }

    bad = tmp_path / "bad.yaml"
    bad.write_text("- {vendor_id: Bad Id}\n- {vendor_id: ok, tier: diamond}\n")
    refused = cli(engine, "vendors", "publish", str(bad), check=False)
    assert refused.returncode == 1
    assert "vendors[0]" in refused.stderr
    assert "vendors[1]" in refused.stderr


def test_rules_cli_publish_history_and_simulate_topic(
    engine: EngineUnderTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    core_topics_now(engine, monkeypatch)
    assert "published marketplace 1.0.0" in cli(engine, "rules", "publish", str(V1)).stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        V2.read_text()
        .replace('version: "2.0.0"', 'version: "9.0.0"')
        .replace("dept:desk_it", "dept:nowhere")
    )
    refused = cli(engine, "rules", "publish", str(broken), check=False)
    assert refused.returncode == 1
    assert "nowhere" in refused.stderr
    assert "published marketplace 2.0.0" in cli(engine, "rules", "publish", str(V2)).stdout

    history = cli(engine, "rules", "history").stdout
    assert "1.0.0" in history
    assert "2.0.0" in history
    assert "9.0.0" not in history
    assert history.index("1.0.0") < history.index("2.0.0")  # oldest first
    assert "marketplace" not in cli(engine, "rules", "history", "--name", "other").stdout

    lines = (EXAMPLES / "messages.jsonl").read_bytes().splitlines()[:80]
    channels = sorted({orjson.loads(line)["data"]["channel"] for line in lines})
    for channel in channels:  # as connectors do: each on its channel's topic, keyed by thread
        engine.send(channel, [
            (orjson.loads(line)["data"]["thread_ref"].encode(), line)
            for line in lines if orjson.loads(line)["data"]["channel"] == channel
        ])  # fmt: skip
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(b"\n".join(lines) + b"\n")
    common = (
        "simulate",
        "--rules",
        str(V2),
        "--baseline",
        str(V1),
        "--context",
        str(EXAMPLES / "context.yaml"),
        "--json",
        "--limit",
        "500",
    )
    from_topic = orjson.loads(
        cli(
            engine,
            *common,
            *(arg for c in channels for arg in ("--topic", f"{engine.prefix}channel.{c}")),
            "--from-time",
            "2000-01-01T00:00:00Z",
        ).stdout
    )
    from_file = orjson.loads(cli(engine, *common, "--input", str(sample)).stdout)
    assert from_topic["total"] == len(lines)
    assert from_topic["dead_letters"] == {}
    assert from_topic["changed"] > 0
    # replaying the topic gives the very report the same records give from a file
    assert sorted(from_topic["changes"], key=str) == sorted(from_file["changes"], key=str)
    for key in ("queues", "priorities", "baseline_queues", "changed", "fallbacks", "outcomes"):
        assert from_topic[key] == from_file[key], key
