"""The SLA core's record ids are `router.ids.derive_id` of the same parts (built cheaper)."""

from __future__ import annotations

import random

from router.ids import derive_id
from router.sla import clocks
from router.sla.clocks import MetricClock
from router.sla.events import output_id, sla_event_id
from schemas.sla import SlaMetric


def test_output_id_is_derive_id_of_its_parts() -> None:
    rng = random.Random(5)
    for _ in range(500):
        parts = ["".join(rng.choice("aZ9-é\x1f€ ") for _ in range(rng.randrange(12)))
                 for _ in range(3)]
        assert output_id(*parts) == derive_id(*parts)


def test_sla_event_id_is_derive_id_of_its_parts() -> None:
    markers = [clocks.WARNING, clocks.MET, *(clocks.breach_marker(n) for n in (1, 2, 16, 17, 40))]
    for metric in SlaMetric:
        for cycle in (0, 1, 7, 8, 123):
            for marker in markers:
                clock = MetricClock(metric=metric, cycle=cycle)
                kind = "breached" if marker.startswith("breached:") else marker
                level = str(clocks.marker_level(marker))
                for ticket_id in ("T-1", "T-ü€"):
                    expected = derive_id(ticket_id, "sla", metric.value, str(cycle), kind, level)
                    assert sla_event_id(ticket_id, clock, marker) == expected
                    assert sla_event_id(ticket_id, clock, marker) == expected  # cached suffix
