"""Replies back out on a real broker: a worker, `router deliver --channel chat` as its own
process, and a local aiohttp stand-in for the Graph API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from schemas.outbound import OutboundReplyEvent
from schemas.topics import OUTBOUND, OUTBOUND_DLQ, TICKETS_EVENTS
from streams.local.install import die_with_parent
from tests.factories import inbound_bytes
from tests.harness import REPO, Output, produce
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_sla import action_bytes, routed_ticket_ids

pytestmark = pytest.mark.integration

THREAD = "whatsapp:1065550001:4915550100"
TOPICS = (TICKETS_EVENTS.name, OUTBOUND.of("chat"), OUTBOUND_DLQ.name)


@dataclass
class Receiver:
    """Answers `fail_with` to the first `failures` requests, then 200 with a WhatsApp body."""

    failures: int
    fail_with: int
    calls: list[tuple[str, dict[str, str], dict[str, Any], int]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        status = self.fail_with if len(self.calls) < self.failures else 200
        body = orjson.loads(await request.read())
        self.calls.append((request.path, dict(request.headers), body, status))
        if status != 200:
            return web.json_response({"error": {"message": "no"}}, status=status)
        return web.json_response({"messages": [{"id": f"wamid.{len(self.calls)}"}]})


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    def start(failures: int, fail_with: int) -> Receiver:
        receiver = Receiver(failures, fail_with)
        app = web.Application()
        app.router.add_post("/{tail:.*}", receiver.handle)

        async def serve() -> str:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            host, port = runner.addresses[0][:2]
            return f"http://{host}:{port}/v21.0"

        receiver.url = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        return receiver

    yield start
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def deliver_process(engine: EngineUnderTest) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    log = (engine.tmp / "deliver.log").open("ab")

    def start(base_url: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ, "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap,
            "ROUTER_TOPIC_PREFIX": engine.prefix, "ROUTER_PARTITIONS": "3",
            "ROUTER_DELIVER_BASE_URL": base_url, "ROUTER_DELIVER_TOKEN": "secret-token-123",
            "ROUTER_DELIVER_MAX_ATTEMPTS": "4", "ROUTER_DELIVER_BASE_DELAY_S": "0.05",
            "PYTHONPATH": str(REPO),
        }  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "router", "deliver", "--channel", "chat"], env=env, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(os.getpid()),
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    log.close()
    print((engine.tmp / "deliver.log").read_text(errors="replace"))


def open_chat_ticket(engine: EngineUnderTest, tag: str) -> str:
    engine.send("chat", [(THREAD.encode(), inbound_bytes(
        f"{tag}-in", channel="chat", thread_ref=THREAD, vendor_id=None, role="guest",
        sender_id="4915550100", body="Where is my parcel?"))])  # fmt: skip
    collector = engine.collector(TICKETS_EVENTS.name)
    outputs = collector.poll_until(lambda outs: bool(routed_ticket_ids(outs)), 60,
                                   "the routed ticket")  # fmt: skip
    (ticket_id,) = routed_ticket_ids(outputs)
    return ticket_id


def of_type(outputs: list[Output], event_type: str) -> list[Output]:
    return [o for o in outputs if o.value["type"] == event_type]


def test_a_reply_is_delivered_once_after_two_503s_with_one_key(
    engine: EngineUnderTest, receiver_factory: Any, deliver_process: Any
) -> None:
    receiver = receiver_factory(2, 503)
    engine.start_worker()
    deliverer = deliver_process(receiver.url)
    ticket_id = open_chat_ticket(engine, "ok")
    produce(engine.bootstrap, f"{engine.prefix}tickets.actions", [
        (ticket_id.encode(), action_bytes("note-1", ticket_id, "internal_note", body="VIP")),
        (ticket_id.encode(), action_bytes("reply-1", ticket_id, "reply", body="It ships today.")),
    ])  # fmt: skip
    collector = engine.collector(*TOPICS)
    outputs = collector.poll_until(
        lambda outs: bool(of_type(outs, "support.message.delivered")), 60,
        "support.message.delivered",
    )
    (outbound,) = [o for o in outputs if o.topic == OUTBOUND.of("chat")]  # not the note
    key = outbound.value["id"]
    assert outbound.key == ticket_id.encode()
    assert outbound.value["data"]["body"] == "It ships today."
    assert [c[3] for c in receiver.calls] == [503, 503, 200]
    assert {c[1]["Idempotency-Key"] for c in receiver.calls} == {key}
    assert {c[0] for c in receiver.calls} == {"/v21.0/1065550001/messages"}
    assert receiver.calls[-1][2] == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915550100",
        "type": "text", "text": {"body": "It ships today."}}  # fmt: skip
    assert receiver.calls[-1][1]["Authorization"] == "Bearer secret-token-123"
    (delivered,) = of_type(outputs, "support.message.delivered")
    assert delivered.key == ticket_id.encode()
    assert delivered.value["data"]["idempotency_key"] == key
    assert delivered.value["data"]["attempts"] == 3
    assert delivered.value["data"]["provider_message_id"] == "wamid.3"
    assert not [o for o in outputs if o.topic == OUTBOUND_DLQ.name]
    deliverer.send_signal(signal.SIGTERM)
    assert deliverer.wait(30) == 0
    assert "secret-token-123" not in (engine.tmp / "deliver.log").read_text()


def test_a_400_fails_at_once_to_the_dlq(
    engine: EngineUnderTest, receiver_factory: Any, deliver_process: Any
) -> None:
    receiver = receiver_factory(10, 400)
    engine.start_worker()
    deliver_process(receiver.url)
    ticket_id = open_chat_ticket(engine, "bad")
    produce(engine.bootstrap, f"{engine.prefix}tickets.actions", [
        (ticket_id.encode(), action_bytes("reply-1", ticket_id, "reply", body="Hello")),
    ])  # fmt: skip
    collector = engine.collector(*TOPICS)
    outputs = collector.poll_until(
        lambda outs: bool(of_type(outs, "support.message.failed"))
        and any(o.topic == OUTBOUND_DLQ.name for o in outs),
        60, "support.message.failed and the dead letter",
    )  # fmt: skip
    assert [c[3] for c in receiver.calls] == [400]
    (outbound,) = [o for o in outputs if o.topic == OUTBOUND.of("chat")]
    (letter,) = [o for o in outputs if o.topic == OUTBOUND_DLQ.name]
    record = OutboundReplyEvent.model_validate(letter.value["data"]["record"])
    assert record == OutboundReplyEvent.model_validate(outbound.value)
    assert letter.value["data"]["status"] == 400
    (failed,) = of_type(outputs, "support.message.failed")
    assert failed.value["data"]["idempotency_key"] == outbound.value["id"]
    assert "HTTP 400" in failed.value["data"]["reason"]
    assert not of_type(outputs, "support.message.delivered")
