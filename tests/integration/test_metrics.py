"""The worker's Prometheus endpoint on a real broker: what SREs scrape."""

from __future__ import annotations

import pytest

from tests.factories import inbound_bytes
from tests.harness import Output, scrape, wait_for
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_count_outcomes_dead_letters_and_lag(engine: EngineUnderTest) -> None:
    worker = engine.start_worker()
    wait_for(lambda: worker.metrics_url() is not None, 60, "the metrics endpoint")
    url = worker.metrics_url()
    assert url is not None
    records = [
        (f"mt-{n}".encode(), inbound_bytes(f"m-{n}", thread_ref=f"mt-{n}", vendor_id="acme"))
        for n in range(5)
    ]
    records.append((b"mt-0", inbound_bytes("m-5", thread_ref="mt-0", vendor_id="acme")))
    records.append((b"mt-bad", b"not json at all"))
    engine.send("email", records)

    def routed(outs: list[Output]) -> bool:
        return len([o for o in outs if o.topic == "queue.vendor.acme"]) >= 6 and any(
            o.topic == "channel.dlq" for o in outs
        )

    engine.collector().poll_until(routed, 90, "six routed records and a dead letter")
    samples: Samples = {}

    def scraped_all() -> bool:
        nonlocal samples
        samples = scrape(url)
        lags = [v for (name, _), v in samples.items() if name == "router_consumer_lag"]
        return (
            value(samples, "router_inbound_records_total", outcome="followup") == 1
            and bool(lags)
            and sum(lags) == 0
        )

    wait_for(scraped_all, 60, "counters and a committed, caught-up consumer")
    assert value(samples, "router_inbound_records_total", outcome="opened") == 5
    assert value(samples, "router_inbound_records_total", outcome="rejected") == 1
    assert value(samples, "router_dead_letters_total", reason="invalid_json") == 1
    # one series per kind of queue: no vendor id in a label
    assert value(samples, "router_records_sent_total", topic="queue.vendor") == 6
    assert not any("acme" in str(labels) for _, labels in samples)
    assert value(samples, "router_ruleset_info", ruleset="builtin-default", version="1") == 1
    lag_topics = {dict(ls)["topic"] for name, ls in samples if name == "router_consumer_lag"}
    assert "channel.email" in lag_topics
    assert (value(samples, "process_cpu_seconds_total") or 0) > 0
    assert worker.stop() == 0
