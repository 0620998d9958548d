"""Seller scores on a real broker: a scripted run of tickets, replies, resolutions, a reopen
and surveys yields the expected `vendors.scores` record, and a rebuild from offset zero with
fresh state (in-process, and a worker with a new app id) gives the same figures."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from router.ids import ticket_id_for
from router.records import OutRecord
from router.scores.book import Book
from router.scores.formula import ScoreFormula
from router.scores.tickets import SellerTime
from router.sla.policy import load_sla_config
from router.stages.contract import InRecord
from router.stages.scores import ScoreBooksProcessor, ScoreTicketsProcessor, vendor_scores
from schemas.topics import SLA_EVENTS, TICKETS_COMMANDS, TICKETS_EVENTS
from tests.factories import inbound_bytes
from tests.harness import REPO, Output
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import action_bytes, send_actions

pytestmark = pytest.mark.integration

SLA = """
version: 1
default_policy: standard
calendars:
  always: {kind: always}
policies:
  standard:
    calendar: always
    metrics:
      first_response: {targets: {low: 1h, normal: 1h, high: 1h, urgent: 1h}}
"""
INPUTS = (TICKETS_EVENTS.name, SLA_EVENTS.name, TICKETS_COMMANDS.name)


def survey(action_id: str, ticket_id: str, **answers: Any) -> bytes:
    return action_bytes(action_id, ticket_id, "survey_response", actor="buyer-1", role="buyer",
                        **answers)  # fmt: skip


def latest_scores(outputs: list[Output], vendor: str) -> dict[str, Any] | None:
    mine = [o.value["data"] for o in outputs
            if o.topic == "vendors.scores" and o.key == vendor.encode()]  # fmt: skip
    return mine[-1] if mine else None


def read_inputs(bootstrap: str, prefix: str) -> list[InRecord]:
    """Every record of the stage's input topics, from offset zero, with headers: per
    partition in order (what a fresh consumer group reads)."""

    async def run() -> list[InRecord]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            consumer.subscribe(topics=[prefix + t for t in INPUTS])  # no group: every partition
            got: list[InRecord] = []
            deadline = time.monotonic() + 30
            while len(consumer.assignment()) < 3 * len(INPUTS):
                assert time.monotonic() < deadline, "the input topics were not assigned"
                got.extend(_records(await consumer.getmany(timeout_ms=200), prefix))
            parts = list(consumer.assignment())
            ends = await consumer.end_offsets(parts)
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, "reading the input topics took too long"
                got.extend(_records(await consumer.getmany(timeout_ms=500), prefix))
            return got
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _records(batch: dict[Any, list[Any]], prefix: str) -> list[InRecord]:
    return [
        InRecord(tp.topic[len(prefix):], tp.partition, r.offset, r.key, r.value,
                 r.timestamp / 1000, {k: bytes(v) for k, v in r.headers})
        for tp, records in batch.items() for r in records
    ]  # fmt: skip


def rebuild(records: list[InRecord], policy: Path) -> dict[str, dict[str, Any]]:
    """The scores folded again by fresh processors over fresh tables."""
    tickets = ScoreTicketsProcessor({}, SellerTime(load_sla_config(policy)))
    books = ScoreBooksProcessor({}, ScoreFormula())
    now = datetime.now().astimezone()
    out: list[OutRecord] = []
    for record in records:
        for produced in tickets.process(record, now):
            if produced.topic == "scores.facts":
                out.extend(books.process(InRecord("scores.facts", 0, 0, produced.key,
                                                  produced.value), now))  # fmt: skip
    return {orjson.loads(r.value)["data"]["vendor_id"]: orjson.loads(r.value)["data"]
            for r in out if r.topic == "vendors.scores"}  # fmt: skip


def test_a_scripted_run_scores_the_vendor_and_a_rebuild_from_zero_agrees(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    policy = tmp_path / "sla.yaml"
    policy.write_text(SLA)
    engine.worker_env.update(ROUTER_SLA_POLICIES_FILE=str(policy), ROUTER_SCORES_ENABLED="true")
    engine.start_worker()
    t1, t2, t3 = (ticket_id_for("email", f"sc-{n}") for n in (1, 2, 3))
    engine.send("email", [
        (f"sc-{n}".encode(), inbound_bytes(f"sc-in-{n}", thread_ref=f"sc-{n}", vendor_id="acme"))
        for n in (1, 2, 3)
    ])  # fmt: skip
    engine.collector(TICKETS_EVENTS.name).poll_until(
        lambda outs: {o.value["data"]["ticket_id"] for o in outs
                      if o.value["type"] == "support.ticket.routed"} >= {t1, t2, t3},
        90, "the three tickets to be routed",
    )  # fmt: skip
    send_actions(engine, [
        (t1.encode(), action_bytes("sc-a1", t1, "reply", body="On it.")),
        (t1.encode(), action_bytes("sc-a2", t1, "resolve")),
        (t2.encode(), action_bytes("sc-a3", t2, "reply", actor="acme", role="vendor",
                                   body="Shipped today.")),
        (t2.encode(), action_bytes("sc-a4", t2, "resolve")),
        (t2.encode(), action_bytes("sc-a5", t2, "reopen")),
        (t2.encode(), action_bytes("sc-a6", t2, "resolve")),
        (t1.encode(), survey("sc-s1", t1, csat=4, nps=9, comment="quick")),
        (t1.encode(), survey("sc-s1", t1, csat=4, nps=9, comment="quick")),  # sent twice
        (t2.encode(), survey("sc-s2", t2, csat=2)),
        (t3.encode(), survey("sc-bad", t3, csat=9)),  # out of range: dead-lettered
    ])  # fmt: skip

    want = {
        "days": 30, "volume": 3, "answered": 2, "answered_within": 2 / 3,
        "resolution_rate": 2 / 3, "reopen_rate": 0.5, "sla_breach_rate": 0.0,
        "dispute_rate": 0.0, "disputes_lost": 0, "csat_avg": 3.0, "csat_responses": 2,
        "nps": 100.0, "nps_responses": 1,
    }  # fmt: skip

    def surveys(outs: list[Output]) -> list[str]:
        return [
            o.value["data"]["ticket_id"]
            for o in outs
            if o.topic == "outbound.email" and o.value["data"]["actor"]["id"] == "survey"
        ]

    def rejected(outs: list[Output]) -> list[dict[str, Any]]:
        return [
            o.value["data"]
            for o in outs
            if o.topic == "channel.dlq" and o.value["data"]["source"]["topic"] == "tickets.actions"
        ]

    def scored(outs: list[Output]) -> bool:
        latest = latest_scores(outs, "acme")
        if latest is None or not rejected(outs) or len(surveys(outs)) < 2:
            return False
        window = {k: v for k, v in latest["window_30d"].items() if not k.startswith("frt_")}
        return window == want

    outputs = engine.collector("vendors.scores", "outbound.email", "channel.dlq").poll_until(
        scored, 90, "acme's scores to count the script, the surveys, the bad answer refused",
        lambda outs: f"{latest_scores(outs, 'acme')!r}; surveys {surveys(outs)}",
    )  # fmt: skip
    live = latest_scores(outputs, "acme")
    assert live is not None
    assert live["window_30d"]["frt_p50"] is not None
    assert live["window_7d"]["volume"] == 3
    assert live["score"] is not None
    assert live["tier"] == "standard"  # fewer than 5 tickets: too few to judge
    assert sorted(surveys(outputs)) == sorted([t1, t2])  # T2's reopen-resolve pair: one
    assert [r["reason"] for r in rejected(outputs)] == ["schema_violation"]
    assert "data.survey_response.csat" in rejected(outputs)[0]["error"]

    # `router report` reads the topics: acme among the vendors, the page written.
    page = tmp_path / "report.html"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
           "ROUTER_TOPIC_PREFIX": engine.prefix, "PYTHONPATH": str(REPO)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "router", "report", "--top", "3", "--html", str(page)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"│ acme +│ +[0-9.]+ │ standard +│ +3 │", done.stdout), done.stderr
    assert "│ vendor:acme" in done.stdout
    assert "<td>acme</td>" in page.read_text()
    # `router lag` also asks the scores group (none here: the stage runs in the worker's own)
    lag = subprocess.run([sys.executable, "-m", "router", "lag", "--json", "--interval", "0.2"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert lag.returncode == 0, lag.stderr
    listed = {(p["group"], p["topic"]) for p in orjson.loads(lag.stdout)["partitions"]}
    assert (f"{engine.prefix}ticket-router", "tickets.events") in listed

    # A rebuild from offset zero, fresh state, in this process.
    assert rebuild(read_inputs(engine.bootstrap, engine.prefix), policy)["acme"] == live

    # A worker with a new app id: a fresh consumer group and fresh tables.
    engine.start_worker(ROUTER_STAGE="scores", ROUTER_APP_ID="scores-replay")
    books = "scores-replay-score-books-changelog"

    def rebuilt(outs: list[Output]) -> bool:
        mine = [o.value for o in outs if o.topic == books and o.key == b"vendor/acme"]
        if not mine:
            return False
        book = Book.from_bytes(orjson.dumps(mine[-1]))
        return vendor_scores("acme", book, ScoreFormula()).model_dump(mode="json") == live

    engine.collector(books).poll_until(rebuilt, 120, "the replay worker to rebuild acme's book")
