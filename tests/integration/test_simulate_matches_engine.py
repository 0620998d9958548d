"""`router simulate` against the real engine: the same records through a worker on a real
broker and through simulate (from a file and from the topics) land on the same queue, per
inbound message, and the same records are dead-lettered for the same reasons."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from rules import load_ruleset_file
from rules.inputs import input_from_mapping
from tests.factories import inbound_bytes
from tests.harness import REPO, Output
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

RULES = REPO / "rules" / "examples" / "marketplace.yaml"
MAX_RECORD_BYTES = 262_144  # the engine's default, which simulate reads from the same setting


def msg(event_id: str, thread: str, body: str, **kw: object) -> bytes:
    kw.setdefault("vendor_id", None)
    return inbound_bytes(event_id, thread_ref=thread, body=body, **kw)


# (channel topic, key, value) in the order a connector writes them
RECORDS: list[tuple[str, bytes | None, bytes]] = [
    # opens on dept:payments; its follow-up alone would be a dispute, but joins the ticket
    ("email", b"sim-a", msg("a1", "sim-a", "I was charged twice for one order")),
    ("email", b"sim-a", msg("a2", "sim-a", "and the parcel never arrived")),
    # a seller's payout question, then the buyer's fraud claim in the same chat session
    ("chat", b"sim-b", msg("b1", "sim-b", "When is my payout?", channel="chat", role="seller",
                           sender_id="seller-9")),
    ("chat", b"sim-b", msg("b2", "sim-b", "This seller is a scam", channel="chat")),
    ("email", b"sim-c", b'{"specversion": "1.0", "id": "c1", '),  # invalid JSON
    ("email", b"sim-d", msg("d1", "sim-d", "x" * (MAX_RECORD_BYTES + 1))),  # oversize
    ("email", b"sim-e", msg("e1", "sim-e", "hi").replace(b'"hi"', b"NaN")),  # NaN body
    ("email", b"sim-a", msg("a1", "sim-a", "I was charged twice for one order")),  # resent
    ("chat", None, msg("g1", "sim-g", "Password reset does not work", channel="chat")),  # no key
    ("email", b"sim-h", msg("h1", "sim-h", "Question about my order", vendor_id="acme")),
]
ROUTED_IDS = {"a1", "a2", "b1", "b2", "g1", "h1"}
DEAD_KEYS = {"sim-c", "sim-d", "sim-e"}

Placement = Counter[tuple[str, str, str]]  # (inbound id or key, ticket id or reason, queue)


def engine_placements(outs: list[Output]) -> Placement:
    placed: Placement = Counter()
    for o in outs:
        data = o.value["data"]
        if o.topic.startswith("queue."):
            placed[(data["messages"][-1]["inbound_id"], data["ticket_id"], data["queue"])] += 1
        elif o.topic == "channel.dlq":
            placed[(data["original"]["key"], data["reason"], "dlq")] += 1
    return placed


def simulate_placements(path: Path, by_line: bool = False) -> tuple[Placement, list[Any]]:
    """`by_line`: a file line has no Kafka key; name a dead letter by its record's key."""
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    placed: Placement = Counter()
    for o in lines:
        if o["queue"] is not None:
            placed[(o["inbound_id"], o["ticket_id"], o["queue"])] += 1
        elif o["outcome"] == "rejected":
            key = o["key"]
            if by_line:
                record_key = RECORDS[int(o["where"].rsplit(":", 1)[1]) - 1][1]
                key = record_key.decode() if record_key is not None else None
            placed[(key, o["reason"], "dlq")] += 1
    return placed, lines


def simulate(engine: EngineUnderTest, out: Path, *source: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
           "ROUTER_TOPIC_PREFIX": engine.prefix, "PYTHONPATH": str(REPO)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "router", "simulate", "--rules", str(RULES), *source,
         "--outcomes", str(out), "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_simulate_routes_and_dead_letters_as_the_engine(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    engine.start_worker("--rules", str(RULES))
    for channel, key, value in RECORDS:  # one at a time: the order of the list, per topic
        engine.send(channel, [(key, value)])

    def settled(outs: list[Output]) -> bool:
        placed = engine_placements(outs)
        return {i for i, _, q in placed if q != "dlq"} >= ROUTED_IDS and {
            k for k, _, q in placed if q == "dlq"
        } >= DEAD_KEYS

    outs = engine.collector().poll_until(settled, 120, "every record routed or dead-lettered")
    on_engine = engine_placements(outs)

    # what the engine did, spelled out: the follow-ups stayed with their tickets, though each
    # alone would have gone elsewhere (what a per-message backtest reported)
    ruleset = load_ruleset_file(RULES)
    assert not isinstance(ruleset, list)
    for record, alone in ((RECORDS[1], "dept:disputes"), (RECORDS[3], "dept:disputes")):
        assert ruleset.evaluate(input_from_mapping(orjson.loads(record[2]))).queue == alone
    queue_of = {i: q for i, _, q in on_engine if q != "dlq"}
    assert queue_of["a1"] == queue_of["a2"] == "dept:payments"
    assert queue_of["b1"] == queue_of["b2"] == "dept:payments"
    assert {(k, r) for k, r, q in on_engine if q == "dlq"} == {
        ("sim-c", "invalid_json"), ("sim-d", "oversize"), ("sim-e", "schema_violation")
    }
    assert sum(n for (i, _, _), n in on_engine.items() if i == "a1") == 1  # resent: nothing

    # the same records from a file, as a connector's log of what it sent
    file_in = tmp_path / "records.jsonl"
    file_in.write_bytes(b"\n".join(value for _, _, value in RECORDS) + b"\n")
    simulate(engine, tmp_path / "from-file.jsonl", "--input", str(file_in))
    from_file, lines = simulate_placements(tmp_path / "from-file.jsonl", by_line=True)
    assert from_file == on_engine
    assert [line["outcome"] for line in lines][:2] == ["opened", "followup"]
    assert lines[7]["outcome"] == "duplicate"

    # the same records replayed from the channel topics the engine read (including the copy
    # of the unkeyed record the engine re-published with its thread key)
    topics = [arg for c in ("email", "chat") for arg in ("--topic", f"{engine.prefix}channel.{c}")]
    simulate(engine, tmp_path / "from-topics.jsonl", *topics, "--from-time", "2000-01-01T00:00Z")
    from_topics, _ = simulate_placements(tmp_path / "from-topics.jsonl")
    assert from_topics == on_engine
