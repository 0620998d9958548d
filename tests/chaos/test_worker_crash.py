"""SIGKILL the worker mid-stream, restart it: nothing lost, re-emitted outputs keep their ids."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from tests.factories import inbound_bytes
from tests.harness import Output, accounted_inbound_ids
from tests.integration.conftest import EngineUnderTest

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# Enough that the worker is still working through them when it is killed (a few seconds of
# work): with fewer, a fast worker can have processed and committed them all already.
MESSAGES = 15_000
THREADS = 400


def _traffic() -> tuple[list[tuple[str, bytes, bytes]], dict[str, list[str]]]:
    rng = random.Random(7)
    records: list[tuple[str, bytes, bytes]] = []
    per_thread: dict[str, list[str]] = defaultdict(list)
    for i in range(MESSAGES):
        channel = rng.choice(["email", "chat", "social"])
        thread = f"{channel}-th-{rng.randrange(THREADS)}"
        inbound_id = f"chaos-{i}"
        vendor = f"v{rng.randrange(12)}" if rng.random() < 0.7 else None
        value = inbound_bytes(
            inbound_id,
            channel=channel,
            thread_ref=thread,
            vendor_id=vendor,
            body=f"message {i} about my order " + "x" * rng.randrange(200, 800),
        )
        records.append((channel, thread.encode(), value))
        per_thread[thread].append(inbound_id)
    return records, per_thread


def test_sigkill_mid_stream_then_restart_loses_nothing(engine: EngineUnderTest) -> None:
    records, per_thread = _traffic()
    # A long commit interval widens the window of processed-but-uncommitted records.
    first = engine.start_worker(ROUTER_COMMIT_INTERVAL_S="5")
    for channel in ("email", "chat", "social"):
        engine.send(channel, [(k, v) for c, k, v in records if c == channel])

    collector = engine.collector("queue.*", "channel.dlq")
    seen = collector.poll_until(
        lambda outs: sum(o.topic.startswith("queue.") for o in outs) >= 300,
        120,
        "the worker to be mid-stream",
    )
    first.kill()
    assert len(accounted_inbound_ids(seen)) < MESSAGES // 2, "killed after the stream, not in it"
    engine.start_worker()

    expected = {f"chaos-{i}" for i in range(MESSAGES)}
    outputs = collector.poll_until(
        lambda outs: expected <= accounted_inbound_ids(outs),
        240,
        "every inbound id on a queue",
        describe=lambda outs: (
            f"missing {sorted(expected - accounted_inbound_ids(outs))[:20]}"
            f" ({len(expected - accounted_inbound_ids(outs))} in all)"
        ),
    )
    queued = [o for o in outputs if o.topic.startswith("queue.")]
    assert not [o for o in outputs if o.topic == "channel.dlq"]

    # Same inbound id -> one CloudEvent id, however many times it was written.
    ids_per_inbound: dict[str, set[str]] = defaultdict(set)
    for out in queued:
        ids_per_inbound[out.value["data"]["messages"][-1]["inbound_id"]].add(out.value["id"])
    assert {k: v for k, v in ids_per_inbound.items() if len(v) != 1} == {}
    assert set(ids_per_inbound) == expected

    # No message joined its ticket twice: the final snapshot of each thread counts each once.
    final: dict[str, Output] = {}
    for out in queued:
        data = out.value["data"]
        tid = data["ticket_id"]
        if tid not in final or data["message_count"] >= final[tid].value["data"]["message_count"]:
            final[tid] = out
    assert len(final) == len(per_thread)
    counts = sorted(o.value["data"]["message_count"] for o in final.values())
    assert counts == sorted(len(ids) for ids in per_thread.values())
    # Report how many re-emissions the crash caused (informational, visible with -s).
    print(
        f"queue records: {len(queued)} for {MESSAGES} inbound ({len(queued) - MESSAGES} re-emitted)"
    )
