"""The firing path leaves no reference cycles: what it drops is freed by reference counting.

The SLA benchmark relies on this when it pauses the cyclic GC around its firing loop (the
worker's table holds bytes, which the collector never walks); a cycle introduced here would
make the worker's collector work on every firing.
"""

from __future__ import annotations

import gc

from router.sla.policy import SlaConfig
from router.sla.render import render_output
from router.sla.state import ActionRejectedOut, encode_state
from tests.unit.sla.sla_support import Desk, march


def test_ticks_through_the_whole_ladder_leave_nothing_for_the_collector(
    config: SlaConfig,
) -> None:
    desks = [Desk(config) for _ in range(20)]
    for desk in desks:
        desk.open(policy="escalating")
    gc.collect()
    gc.disable()
    try:
        fired = 0
        for hour in range(10, 24):
            for desk in desks:
                for output in desk.tick(march(3, hour)):
                    fired += 1
                    if not isinstance(output, ActionRejectedOut):
                        render_output(output)
                assert desk.state is not None
                encode_state(desk.state)
        assert fired > 2 * len(desks)  # warnings, breaches and escalations fired
        assert gc.collect() == 0
    finally:
        gc.enable()
