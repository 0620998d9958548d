"""The lifecycle + SLA stage on Kafka: two runners, the `lifecycle` table, the deadline timer,
declared on the worker's host (`streams.stages.host`: faust agents, or the direct runtime).

- Runner `actions` reads the external `tickets.actions` (any partitioner), validates each record
  and forwards it to the internal `tickets.commands` keyed by ticket id; bad ones are
  dead-lettered on `channel.dlq`.
- Runner `lifecycle` reads `tickets.events` and `tickets.commands`, both written only by this
  engine's producer (same partitioner, same partition count), so a ticket's records and its
  `lifecycle` table entry share one partition number. It runs the pure core
  (`router.sla.lifecycle`), publishes the outputs, stores the state, and keeps the in-memory
  deadline index of the partitions it owns.
- The 1 s timer (on every worker) never touches the table: it pops due ticket ids from the
  index of the partitions this worker actively owns and produces a `due` command for each to
  `tickets.commands` (same partition). While `tickets.actions` or `tickets.events` have a
  backlog here (after an outage), it fires only what was due before the last record applied
  (`streams/stages/horizon.py`): a reply waiting in the backlog stops its clock first. The
  agent re-checks the stored state (lazy cancellation); a duplicate `due` changes nothing.
  When the next due time falls before the next tick, a one-shot wake-up fires it on time.
- An action read before its ticket's `routed` event (the two topics are read independently)
  waits in the `lifecycle-parked` table until that event, and is refused as for an unknown ticket
  after `action_park_s` (`router/stages/parking.py`): no clocks start for a ticket the
  stage has not seen.
- Table recovery reads the changelog with a plain consumer straight into the store
  (`streams/kafka/changelog_recovery.py`; faust's own path manages ~4k records/s), and the stage
  takes each loaded state's index entry as it arrives (`HostTable.follow`).
- After table recovery the index is rebuilt from the
  local table data of newly assigned active partitions, refreshed for changelog records
  recovered into partitions it kept, and dropped for partitions no longer active. Between a
  revocation and the end of recovery the timer fires nothing.
- Crash safety: outputs are sent before the table write, neither awaited; the runtime commits input
  offsets only after both are delivered. What a replayed input needs is in `router/sla/outbox.py`.

The stage's logic lives in `streams/stages/sla.py` and the index and timer in
`streams/stages/deadlines.py` (both unit-tested with fakes); this module declares them.

Vendor profiles come from the engine's `directory.vendors` view when `create_engine` passes
one (`vendors=`): a vendor ticket then runs on the vendor's calendar and `response_hours`.
"""

from __future__ import annotations

from collections.abc import Callable

from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config
from router.stages.contract import Combined
from router.stages.ticket_index import TicketIndexProcessor, thread_of
from schemas.topics import (
    LIFECYCLE_TABLE,
    PARKED_TABLE,
    TICKET_INDEX_TABLE,
    TICKETS_ACTIONS,
    TICKETS_COMMANDS,
    TICKETS_EVENTS,
)
from schemas.vendor import VendorProfile
from streams.stages.host import StageHost
from streams.stages.runner import StageRunner
from streams.stages.sla import LifecycleStage

__all__ = ["LIFECYCLE_TABLE", "PARKED_TABLE", "LifecycleStage", "install_lifecycle"]


class _Vendors:
    def __init__(self, lookup: Callable[[str], VendorProfile | None]) -> None:
        self.get = lookup


def install_lifecycle(
    host: StageHost,
    vendors: Callable[[str], VendorProfile | None] | None = None,
) -> LifecycleStage:
    """Declare the stage's tables, runners, timer and rebalance hooks on `host`.

    `vendors` looks up vendor profiles (the engine's `directory.vendors` view): a vendor's
    calendar and `response_hours` then apply to its tickets. A profile change applies to a
    ticket from its next routing change on, not retroactively.
    """
    settings, emitter = host.settings, host.emitter
    config = load_sla_config(settings.sla_policies_file or DEFAULT_POLICY_FILE)
    table = host.table(LIFECYCLE_TABLE, "per-ticket lifecycle and SLA state (router.sla.state)")
    parked = host.table(PARKED_TABLE,
                        "actions read before their ticket's routed event (router.stages.parking)")
    # The ticket index reads the same events, keyed and partitioned alike: it runs on this
    # stream rather than consuming the topic a second time.
    index = host.table(TICKET_INDEX_TABLE, "thread, queue and buyer of each ticket").batch
    stage = LifecycleStage(
        settings, config, table.batch, table.local, host.emit, committed=host.committed,
        vendors=_Vendors(vendors) if vendors is not None else None,
        # the inputs that can stop a clock, as far as this worker reads them (the horizon)
        positions=host.positions(TICKETS_ACTIONS.name, TICKETS_EVENTS.name),
        parked=parked.batch, parked_local=parked.local, clock=host.clock,
        threads=lambda ticket_id: thread_of(index, ticket_id),
    )  # fmt: skip
    table.follow(stage.deadlines)
    # Both runners share the processor; only the first writes tables (forwarding an action
    # touches none), so one runner's flush never carries the other's writes.
    # The index first: an `opened` event may unpark a reply, which needs the ticket's thread.
    both = Combined((TicketIndexProcessor(index), frozenset({TICKETS_EVENTS.name})),
                    (stage.processor, None))  # fmt: skip
    apply = StageRunner(both, [table.batch, parked.batch, index], emitter, stage.clock,
                        settings.logical, with_headers=True)  # fmt: skip
    forward = StageRunner(stage.processor, [], emitter, stage.clock, settings.logical)
    host.stage("lifecycle", [TICKETS_EVENTS.name, TICKETS_COMMANDS.name], apply)
    host.stage("actions", [TICKETS_ACTIONS.name], forward)
    host.timer("sla-deadlines", stage.tick)
    host.on_revoked(stage.watermark.revoked)
    return stage
