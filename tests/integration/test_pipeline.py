"""The routing pipeline end to end on a real broker, with the worker as a real process."""

from __future__ import annotations

import shutil
import subprocess

import orjson
import pytest

from schemas import CloudEvent, DeadLetter, RoutedTicket, RoutingDecision
from tests.factories import inbound_bytes, inbound_event
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration


def on(topic: str, outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def test_email_with_vendor_lands_on_vendor_queue_as_cloudevent(engine: EngineUnderTest) -> None:
    engine.start_worker()
    engine.send("email", [(b"thread-1", inbound_bytes("e-1", vendor_id="acme-tools"))])
    outputs = engine.collector().poll_until(
        lambda outs: (
            bool(on("queue.vendor.acme-tools", outs)) and bool(on("tickets.decisions", outs))
        ),
        90,
        "the routed ticket",
    )
    routed = CloudEvent[RoutedTicket].model_validate(
        on("queue.vendor.acme-tools", outputs)[0].value
    )
    assert routed.specversion == "1.0"
    assert routed.type == "support.ticket.routed"
    assert routed.data.queue == "vendor:acme-tools"
    assert routed.data.priority == "normal"
    assert routed.data.rule_id == "vendor-queue"
    assert routed.data.ruleset_version
    assert routed.data.messages[0].inbound_id == "e-1"
    decision = CloudEvent[RoutingDecision].model_validate(on("tickets.decisions", outputs)[0].value)
    assert decision.data.ticket_id == routed.data.ticket_id
    assert on("queue.vendor.acme-tools", outputs)[0].key == routed.data.ticket_id.encode()


def test_follow_up_joins_ticket_and_bad_record_goes_to_dlq(engine: EngineUnderTest) -> None:
    engine.start_worker()
    engine.send(
        "chat",
        [
            (
                b"sess-9",
                inbound_bytes("c-1", channel="chat", thread_ref="sess-9", vendor_id="bolt"),
            ),
            (b"sess-9", b'{"specversion": "1.0", "id": "broken"'),
            (
                b"sess-9",
                inbound_bytes(
                    "c-2", channel="chat", thread_ref="sess-9", vendor_id="bolt", body="Any news?"
                ),
            ),
        ],
    )
    outputs = engine.collector().poll_until(
        lambda outs: len(on("queue.vendor.bolt", outs)) >= 2 and bool(on("channel.dlq", outs)),
        90,
        "two routed records and one dead letter",
    )
    first, second = (
        CloudEvent[RoutedTicket].model_validate(o.value).data
        for o in on("queue.vendor.bolt", outputs)
    )
    assert first.ticket_id == second.ticket_id
    assert [m.inbound_id for m in second.messages] == ["c-1", "c-2"]
    assert second.message_count == 2
    letter = CloudEvent[DeadLetter].model_validate(on("channel.dlq", outputs)[0].value).data
    assert letter.reason == "invalid_json"
    assert letter.source.topic == "channel.chat"
    assert letter.original.value == '{"specversion": "1.0", "id": "broken"'


def test_same_inbound_id_twice_yields_one_ticket_message(engine: EngineUnderTest) -> None:
    engine.start_worker()
    record = inbound_bytes("dup-1", thread_ref="th-dup", vendor_id="acme")
    marker = inbound_bytes("dup-2", thread_ref="th-dup", vendor_id="acme", body="second")
    engine.send("email", [(b"th-dup", record), (b"th-dup", record), (b"th-dup", marker)])
    outputs = engine.collector().poll_until(
        lambda outs: any(
            o.value["data"]["messages"][-1]["inbound_id"] == "dup-2"
            for o in on("queue.vendor.acme", outs)
        ),
        90,
        "the marker message",
    )
    queued = on("queue.vendor.acme", outputs)
    assert len(queued) == 2
    last = queued[-1].value["data"]
    assert [m["inbound_id"] for m in last["messages"]] == ["dup-1", "dup-2"]
    added = [
        o
        for o in on("tickets.events", outputs)
        if o.value["type"] == "support.ticket.message_added"
    ]
    assert len(added) == 2


def test_wrongly_keyed_record_is_rekeyed_and_routed(engine: EngineUnderTest) -> None:
    engine.start_worker()
    engine.send(
        "social",
        [
            (
                None,
                inbound_bytes(
                    "s-1", channel="social", thread_ref="post-7", vendor_id=None, body="hello"
                ),
            )
        ],
    )
    outputs = engine.collector().poll_until(
        lambda outs: bool(on("queue.dept.social", outs)),
        90,
        "the social ticket",
    )
    assert on("queue.dept.social", outputs)[0].value["data"]["messages"][0]["inbound_id"] == "s-1"


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package) not installed")
def test_record_produced_by_kcat_is_routed(engine: EngineUnderTest) -> None:
    engine.start_worker()
    doc = inbound_event("kcat-1", thread_ref="kc-1", vendor_id="kcat-vendor")
    subprocess.run(
        ["kcat", "-P", "-b", engine.bootstrap, "-t", f"{engine.prefix}channel.email", "-K", "\t"],
        input=b"kc-1\t" + orjson.dumps(doc) + b"\n",
        check=True,
        timeout=60,
    )
    outputs = engine.collector().poll_until(
        lambda outs: bool(on("queue.vendor.kcat-vendor", outs)),
        90,
        "the kcat record",
    )
    queued = on("queue.vendor.kcat-vendor", outputs)
    assert queued[0].value["data"]["messages"][0]["inbound_id"] == "kcat-1"
    # and kcat, a third-party consumer, reads the vendor queue
    read = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            engine.bootstrap,
            "-t",
            f"{engine.prefix}queue.vendor.kcat-vendor",
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert orjson.loads(read.stdout.splitlines()[0])["type"] == "support.ticket.routed"
