"""SIGKILL the worker while the scores stage folds, restart it: every ticket counted once, and
the figures equal a rebuild from offset zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.ids import ticket_id_for
from tests.factories import inbound_bytes
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest
from tests.integration.test_scores import SLA, latest_scores, read_inputs, rebuild
from tests.integration.test_sla import action_bytes, send_actions

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

TICKETS = 240
VENDORS = 6  # ticket n goes to vendor v<n % 6>; tickets with n % 4 == 0 are resolved


def expected(vendor: int) -> dict[str, Any]:
    mine = [n for n in range(TICKETS) if n % VENDORS == vendor]
    resolved = [n for n in mine if n % 4 == 0]
    return {"volume": len(mine), "resolution_rate": len(resolved) / len(mine)}


def test_sigkill_mid_fold_then_restart_counts_each_ticket_once(
    engine: EngineUnderTest, tmp_path: Path
) -> None:
    policy = tmp_path / "sla.yaml"
    policy.write_text(SLA)
    engine.worker_env.update(ROUTER_SLA_POLICIES_FILE=str(policy), ROUTER_SCORES_ENABLED="true")
    # a long commit interval widens the window of folded-but-uncommitted records
    first = engine.start_worker(ROUTER_COMMIT_INTERVAL_S="5")
    engine.send("email", [
        (f"kc-{n}".encode(), inbound_bytes(f"kc-in-{n}", thread_ref=f"kc-{n}",
                                           vendor_id=f"v{n % VENDORS}"))
        for n in range(TICKETS)
    ])  # fmt: skip
    send_actions(engine, [
        (ticket_id_for("email", f"kc-{n}").encode(),
         action_bytes(f"kc-resolve-{n}", ticket_id_for("email", f"kc-{n}"), "resolve"))
        for n in range(0, TICKETS, 4)
    ])  # fmt: skip
    collector = engine.collector("vendors.scores")
    collector.poll_until(lambda outs: len(outs) >= 40, 120, "the scores stage to be mid-fold")
    first.kill()
    engine.start_worker()

    def settled(outs: list[Output]) -> bool:
        for v in range(VENDORS):
            latest = latest_scores(outs, f"v{v}")
            window = latest["window_30d"] if latest else {}
            if {k: window.get(k) for k in ("volume", "resolution_rate")} != expected(v):
                return False
        return True

    outputs = collector.poll_until(
        settled, 240, "every vendor to count each ticket once",
        lambda outs: repr({f"v{v}": (latest_scores(outs, f"v{v}") or {}).get("window_30d")
                           for v in range(VENDORS)}),
    )  # fmt: skip
    # no record along the way counted more than the tickets there are
    for v in range(VENDORS):
        volumes = [o.value["data"]["window_30d"]["volume"] for o in outputs
                   if o.key == f"v{v}".encode()]  # fmt: skip
        assert max(volumes) == expected(v)["volume"]
    # the other figures (reopens, response times) may still be folding: wait for them to
    # equal a rebuild of the same inputs from offset zero
    rebuilt = rebuild(read_inputs(engine.bootstrap, engine.prefix), policy)
    wanted = {f"v{v}": rebuilt[f"v{v}"] for v in range(VENDORS)}

    def live(outs: list[Output]) -> dict[str, Any]:
        return {f"v{v}": latest_scores(outs, f"v{v}") for v in range(VENDORS)}

    outputs = collector.poll_until(
        lambda outs: live(outs) == wanted, 60, "the live scores to equal the rebuild",
        lambda outs: repr(live(outs)),
    )  # fmt: skip
    assert live(outputs) == wanted
