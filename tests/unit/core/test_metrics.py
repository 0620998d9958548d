"""The metrics collector over fakes of the engine's stages (the real endpoint has an
integration test: tests/integration/test_metrics.py)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import consumer_lag, engine_registry, topic_family


class FakeApp:  # weakly referable, as a faust app is
    def __init__(self, consumer: object) -> None:
        self._consumer = consumer


class FakeTP(SimpleNamespace):
    def __lt__(self, other: Any) -> bool:
        return (self.topic, self.partition) < (other.topic, other.partition)

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


class FakeConsumer:
    def __init__(self) -> None:
        self.a, self.b = FakeTP(topic="p.channel.email", partition=0), FakeTP(
            topic="p.tickets.events", partition=2
        )
        self._committed_offset = {self.a: 40, self.b: None}

    def assignment(self) -> set[Any]:
        return {self.a, self.b}

    def highwater(self, tp: Any) -> int:
        return 55


def fake_engine() -> Any:
    processor = SimpleNamespace(
        counts=Counter(opened=3, followup=2, rejected=1),
        dead_letters=Counter(oversize=1),
    )
    emitter = SimpleNamespace(sent=Counter({"queue.vendor": 5, "tickets.events": 9}))
    lifecycle = SimpleNamespace(
        counts=Counter(stored=7, sla_events=4, sla_warning=1, sla_breached=3,
                       action_rejected=1),
        deadlines=SimpleNamespace(index=[1, 2, 3]),
    )
    policy = SimpleNamespace(policy=SimpleNamespace(name="marketplace", version="2.0.0"))
    return SimpleNamespace(
        processor=processor, emitter=emitter, lifecycle=lifecycle, policy=policy,
        app=FakeApp(FakeConsumer()),
    )  # fmt: skip


def samples(engine: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(engine_registry(engine, lambda t: t.removeprefix("p."))).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_series_come_from_the_stages_counters_policy_and_consumer() -> None:
    got = samples(fake_engine())
    assert got[("router_inbound_records_total", (("outcome", "opened"),))] == 3
    assert got[("router_dead_letters_total", (("reason", "oversize"),))] == 1
    assert got[("router_records_sent_total", (("topic", "queue.vendor"),))] == 5
    assert got[("router_lifecycle_records_total", (("outcome", "stored"),))] == 7
    assert ("router_lifecycle_records_total", (("outcome", "sla_events"),)) not in got
    assert got[("router_sla_events_total", (("kind", "breached"),))] == 3
    assert got[("router_sla_events_total", (("kind", "warning"),))] == 1
    assert got[("router_sla_events_total", (("kind", "met"),))] == 0
    assert ("router_lifecycle_records_total", (("outcome", "sla_breached"),)) not in got
    done = ("router_consumer_committed_offset", (("partition", "0"), ("topic", "channel.email")))
    assert got[done] == 40
    assert got[("router_sla_deadlines_pending", ())] == 3
    info = ("router_ruleset_info", (("ruleset", "marketplace"), ("version", "2.0.0")))
    assert got[info] == 1
    # 55 - 40 on the partition with a committed offset; none yet on the other
    assert got[("router_consumer_lag", (("partition", "0"), ("topic", "channel.email")))] == 15
    assert not any(k[0] == "router_consumer_lag" and ("topic", "tickets.events") in k[1]
                   for k in got)  # fmt: skip


def test_a_worker_without_consumer_or_lifecycle_still_scrapes() -> None:
    engine = fake_engine()
    engine.lifecycle = None
    engine.app = FakeApp(None)
    got = samples(engine)
    assert consumer_lag(engine.app) == []
    assert got[("router_inbound_records_total", (("outcome", "followup"),))] == 2
    assert not any(name.startswith("router_sla") for name, _ in got)


def test_queue_topics_fold_into_families() -> None:
    assert topic_family("queue.vendor.acme-tools") == "queue.vendor"
    assert topic_family("queue.dept.disputes") == "queue.dept"
    assert topic_family("sla.events") == "sla.events"


def test_sla_events_are_counted_by_kind_from_the_written_record() -> None:
    from router.stages.lifecycle import sla_kind
    from schemas.sla import SLA_BREACHED, SLA_MET, SLA_WARNING

    for event_type, counter in ((SLA_WARNING, "sla_warning"), (SLA_BREACHED, "sla_breached"),
                                (SLA_MET, "sla_met")):  # fmt: skip
        value = orjson.dumps({"specversion": "1.0", "id": "x", "type": event_type, "data": {}})
        assert sla_kind(value) == counter
    assert sla_kind(b'{"type":"support.sla.paused"}') == "sla_other"
