"""A fresh worker's log on a real broker: every line JSON, no `error` for what is expected.

A new topic prefix means new topics, a new consumer group and changelogs created by the
worker: the transient conditions of a first start (no group coordinator yet, leaders still
moving while topics are created) happen here, and must not read as errors.
"""

from __future__ import annotations

import orjson
import pytest

from tests.factories import inbound_bytes
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration


def test_fresh_worker_logs_json_lines_and_no_error(engine: EngineUnderTest) -> None:
    worker = engine.start_worker()
    engine.send("email", [
        (b"log-1", inbound_bytes("log-e1", thread_ref="log-1", vendor_id="acme")),
        (b"log-2", b"{not json"),  # a dead letter is a warning, not an error
    ])  # fmt: skip

    def handled(outs: list[Output]) -> bool:
        return any(o.topic == "queue.vendor.acme" for o in outs) and any(
            o.topic == "channel.dlq" for o in outs
        )

    engine.collector().poll_until(handled, 90, "a routed record and a dead letter")
    engine.stop_all()  # the whole life: start, work, stop

    raw = worker.log_path.read_bytes()
    lines = raw.splitlines()
    assert lines
    parsed = []
    for n, line in enumerate(lines, start=1):
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"log line {n} is not JSON: {line[:200]!r}")
    assert all(isinstance(doc, dict) and "event" in doc and "level" in doc for doc in parsed)
    errors = [doc for doc in parsed if doc["level"] in ("error", "critical", "exception")]
    assert errors == []
    events = {doc["event"] for doc in parsed}
    assert "record_rejected" in events  # the log did cover the work
