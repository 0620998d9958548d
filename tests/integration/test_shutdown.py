"""Graceful shutdown on a real broker: SIGTERM finishes, flushes, commits and exits 0 in time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.transport import AllTopicsProducer
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import SLA_TOPICS, open_tickets, sla, sla_env, write_policy

pytestmark = pytest.mark.integration

def test_escalation_to_a_new_queue_with_lingering_batches_then_sigterm(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    # Batches linger 1 s, so the lifecycle's first send to `queue.dept.escalations` (created
    # on demand) happens while batches for other topics wait in the producer: each must still
    # be delivered, or flush, commits and the shutdown wait for it.
    worker = engine.start_worker(ROUTER_PRODUCER_LINGER_MS="1000",
                                 **sla_env(write_policy(tmp_path)))
    open_tickets(engine, 1, "late")
    engine.collector(*SLA_TOPICS).poll_until(
        lambda outs: any(e.level == 2 for _, e in sla(outs, "breached"))
        and any(o.topic == "queue.dept.escalations" for o in outs),
        60, "the level-2 escalation and its queue record")
    started = time.monotonic()
    assert worker.stop() == 0
    print(f"exit after SIGTERM: {time.monotonic() - started:.2f} s")


def test_first_send_to_a_new_topic_strands_no_batch(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    known, new = f"{topic_prefix}known", f"{topic_prefix}new"

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        producer = AllTopicsProducer(bootstrap_servers=kafka_bootstrap, linger_ms=500)
        try:
            await admin.create_topics([NewTopic(known, 1, 1)])
            await producer.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while producer.client.cluster.partitions_for_topic(known) is None:
                assert loop.time() < deadline, "no metadata for the known topic"
                await producer.client.force_metadata_update()  # every topic: none tracked yet
            lingering = await producer.send(known, b"waits 500 ms in its batch")
            await admin.create_topics([NewTopic(new, 1, 1)])
            await producer.send(new, b"first record of a topic the producer has not seen")
            await asyncio.wait_for(producer.flush(), 10)  # plain aiokafka: until the batch expires
            assert lingering.done()
        finally:
            await producer.stop()
            await admin.close()

    asyncio.run(run())
