"""A worker's `/healthz` and `/readyz` on a real broker: not ready while it joins and recovers
its tables, ready after, alive throughout; and the time lag gauge beside the offset lag."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from router.ids import ticket_id_for
from tests.factories import inbound_bytes
from tests.harness import Output, WorkerProcess, scrape, wait_for
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration


def probe(url: str) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of a probe; None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None


class Watcher:
    """Polls a worker's `/readyz` from the moment it logs its address, in a thread."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            url = self.worker.metrics_url()
            if url is not None:
                answer = probe(url.replace("/metrics", "/readyz"))
                if answer is not None:
                    self.answers.append(answer)
                    if answer[0] == 200:
                        return
            self._stop.wait(0.02)  # wait-ok: the polling interval of the probe

    def ready(self) -> bool:
        return bool(self.answers) and self.answers[-1][0] == 200

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_not_ready_while_joining_and_recovering_then_ready_and_alive(
    engine: EngineUnderTest,
) -> None:
    first = engine.start_worker()
    engine.send("email", [(b"h-1", inbound_bytes("h-in-1", thread_ref="h-1", vendor_id="acme"))])
    engine.collector("queue.vendor.acme").poll_until(lambda outs: len(outs) >= 1, 90, "routed")
    assert first.stop() == 0

    # a second worker with an empty data dir: it must read the tickets changelog back
    second = WorkerProcess(engine.bootstrap, engine.prefix, engine.tmp / "data-fresh",
                           engine.tmp / "worker-fresh.log").start()  # fmt: skip
    engine.workers.append(second)
    watcher = Watcher(second)
    try:
        wait_for(watcher.ready, 120, "the fresh worker to become ready")
    finally:
        watcher.stop()
    status, body = watcher.answers[0]
    assert status == 503, watcher.answers[:3]
    waiting = {name for name, check in body["checks"].items() if not check["ok"]}
    assert {"partitions_assigned", "tables_recovered"} <= waiting, body
    assert all(body["checks"][name].get("detail") for name in waiting)  # each says what it awaits
    assert set(watcher.answers[-1][1]["checks"]) == {
        "rules_loaded", "partitions_assigned", "tables_recovered", "sla_index_rebuilt"
    }  # fmt: skip

    url = second.metrics_url()
    assert url is not None
    alive = probe(url.replace("/metrics", "/healthz"))
    assert alive is not None
    assert alive[0] == 200, alive
    assert set(alive[1]["checks"]) == {"event_loop", "commits"}

    # the recovered ticket state is what a follow-up joins
    engine.send("email", [(b"h-1", inbound_bytes("h-in-2", thread_ref="h-1", vendor_id="acme"))])

    def follow_up(outs: list[Output]) -> bool:
        return any(len(o.value["data"]["messages"]) == 2 for o in outs)

    outputs = engine.collector("queue.vendor.acme").poll_until(follow_up, 90, "the follow-up")
    assert {o.value["data"]["ticket_id"] for o in outputs} == {ticket_id_for("email", "h-1")}

    def caught_up() -> bool:
        samples = scrape(url)
        waited = [v for (name, _), v in samples.items()
                  if name == "router_consumer_time_lag_seconds"]  # fmt: skip
        return bool(waited) and max(waited) == 0

    wait_for(caught_up, 60, "a time lag of 0 on every partition once caught up")
