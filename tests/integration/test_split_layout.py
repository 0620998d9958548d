"""The routing and lifecycle stages as separate workers in their own consumer groups: a move
decided by the lifecycle worker reaches the routing worker's ticket state, and the tables keep
their changelog names."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from router.ids import ticket_id_for
from tests.factories import inbound_bytes
from tests.harness import scrape, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_reroutes import on
from tests.integration.test_sla import action_bytes, send_actions

pytestmark = pytest.mark.integration


def groups_and_topics(bootstrap: str) -> tuple[set[str], set[str]]:
    async def read() -> tuple[set[str], set[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            groups = {g[0] for g in await admin.list_consumer_groups()}
            return groups, set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(read())


def test_a_move_by_the_lifecycle_worker_reaches_the_routing_worker(
    engine: EngineUnderTest,
) -> None:
    routing = engine.start_worker(ROUTER_STAGE="routing")
    # as the README advises where both share a host: the SLA stage yields the CPU to routing
    lifecycle = engine.start_worker(ROUTER_STAGE="lifecycle", ROUTER_CPU_NICENESS="10")
    ticket = ticket_id_for("email", "sp-1")
    engine.send("email", [(b"sp-1", inbound_bytes("sp-in-1", thread_ref="sp-1",
                                                  vendor_id="acme"))])  # fmt: skip
    engine.collector("queue.vendor.acme").poll_until(
        lambda outs: len(outs) >= 1, 90, "the ticket on the vendor's queue"
    )
    send_actions(
        engine,
        [
            (
                ticket.encode(),
                action_bytes(
                    "sp-reassign", ticket, "reassign", queue="dept:disputes", reason="buyer dispute"
                ),
            )
        ],
    )
    engine.collector("queue.dept.disputes").poll_until(
        lambda outs: len(outs) >= 1, 90, "the lifecycle worker to move the ticket"
    )

    def applied() -> bool:
        url = routing.metrics_url()
        return (
            url is not None
            and scrape(url).get(("router_inbound_records_total", (("outcome", "moved"),))) == 1
        )

    wait_for(applied, 60, "the routing worker to learn of the move")
    assert routing.proc is not None
    assert lifecycle.proc is not None
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, lifecycle.proc.pid) == max(10, own)
    assert os.getpriority(os.PRIO_PROCESS, routing.proc.pid) == own
    follow_up = inbound_bytes("sp-in-2", thread_ref="sp-1", vendor_id="acme", body="Any news?")
    engine.send("email", [(b"sp-1", follow_up)])
    outputs = engine.collector("queue.dept.disputes").poll_until(
        lambda outs: any(t.message_count == 2 for t in on("queue.dept.disputes", outs)),
        90, "the follow-up on the disputes desk",
    )  # fmt: skip
    assert any(t.message_count == 2 for t in on("queue.dept.disputes", outputs))

    # the lifecycle worker's own metrics: no routing counters, its records counted
    url = lifecycle.metrics_url()
    assert url is not None
    series = scrape(url)
    assert not any(name == "router_inbound_records_total" for name, _ in series)
    assert series[("router_lifecycle_records_total", (("outcome", "action_forwarded"),))] == 1

    groups, topics = groups_and_topics(engine.bootstrap)
    base = f"{engine.prefix}ticket-router"
    assert {base, f"{base}-lifecycle"} <= groups
    # changelogs keep the base app id whichever group hosts the table
    assert {f"{base}-tickets-changelog", f"{base}-lifecycle-changelog",
            f"{base}-ticket-index-changelog"} <= topics  # fmt: skip
    named_after_the_group = {
        f"{base}-lifecycle-{table}-changelog"
        for table in ("lifecycle", "lifecycle-parked", "ticket-index", "buyers")
    }
    assert not named_after_the_group & topics
