"""Follow-ups follow the ticket: once the lifecycle moves a ticket (here an agent's reassign),
the buyer's next message goes to the new queue with the whole history, not to the old one."""

from __future__ import annotations

import pytest

from router.ids import ticket_id_for
from schemas import CloudEvent, RoutedTicket
from tests.factories import inbound_bytes
from tests.harness import Output, scrape, wait_for
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import action_bytes, send_actions

pytestmark = pytest.mark.integration


def on(topic: str, outputs: list[Output]) -> list[RoutedTicket]:
    return [
        CloudEvent[RoutedTicket].model_validate(o.value).data for o in outputs if o.topic == topic
    ]


def test_follow_up_after_reassign_goes_to_the_new_queue(engine: EngineUnderTest) -> None:
    worker = engine.start_worker()
    ticket = ticket_id_for("email", "rr-1")
    engine.send("email", [(b"rr-1", inbound_bytes("rr-in-1", thread_ref="rr-1",
                                                  vendor_id="acme"))])  # fmt: skip
    engine.collector("queue.vendor.acme").poll_until(
        lambda outs: len(outs) >= 1, 90, "the ticket on the vendor's queue"
    )
    send_actions(engine, [(ticket.encode(), action_bytes(
        "rr-reassign", ticket, "reassign", queue="dept:disputes", reason="buyer dispute"))])
    moved = engine.collector("queue.dept.disputes").poll_until(
        lambda outs: len(outs) >= 1, 90, "the lifecycle to move the ticket"
    )
    assert on("queue.dept.disputes", moved)[0].ticket_id == ticket

    def applied() -> bool:  # the inbound agent took the move into its ticket state
        url = worker.metrics_url()
        return url is not None and scrape(url).get(
            ("router_inbound_records_total", (("outcome", "moved"),))
        ) == 1

    wait_for(applied, 60, "the routing stage to learn of the move")
    follow = inbound_bytes("rr-in-2", thread_ref="rr-1", vendor_id="acme", body="Still nothing.")
    engine.send("email", [(b"rr-1", follow)])
    outputs = engine.collector("queue.dept.disputes", "queue.vendor.acme").poll_until(
        lambda outs: any(t.message_count == 2 for t in on("queue.dept.disputes", outs)),
        90,
        "the follow-up on the disputes desk",
    )
    follow_up = next(t for t in on("queue.dept.disputes", outputs) if t.message_count == 2)
    assert [m.inbound_id for m in follow_up.messages] == ["rr-in-1", "rr-in-2"]
    assert follow_up.queue == "dept:disputes"
    # the vendor saw the ticket once, before the move, and never the follow-up
    assert [t.message_count for t in on("queue.vendor.acme", outputs)] == [1]
