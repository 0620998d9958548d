"""The ticket index: one agent on `tickets.events` (key ticket id) feeding two other stages.

Table `ticket-index`: per ticket, what the routing stage announced when it opened (channel,
thread reference, queue, priority, opener if a buyer; `router.reroutes.TicketIndexEntry`).
From the events of that ticket it derives:

- buyer history changes (`opened` by a buyer, `resolved`, `reopened`) for `buyers.changes`,
  keyed by buyer id (`router.buyers`, folded by `streams.buyers`);
- reroute notices when the lifecycle stage moves the ticket (a `routed` event with actor
  `lifecycle` that changes queue or priority) for `tickets.reroutes`, keyed by the thread
  reference, which the inbound agent applies to its ticket state (`router.reroutes`).

Only `opened`, `routed`, `resolved` and `reopened` events are parsed; the others (most of
the topic: `message_added`, replies) are skipped on a byte test. Outputs are sent before
the table write and faust flushes both before committing the input, and both consumers
are idempotent, so a replay after a crash changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import faust
import orjson
import structlog

from router.buyers import ticket_change
from router.reroutes import TicketIndexEntry, lifecycle_reroute
from schemas.topics import BUYERS_CHANGES, TICKET_INDEX_TABLE, TICKETS_EVENTS, TICKETS_REROUTES
from streams.settings import RouterSettings
from streams.topics import raw_table, raw_topic

log = structlog.get_logger("router.ticket_index")

_WANTED = tuple(
    f'"support.ticket.{kind}"'.encode() for kind in ("opened", "routed", "resolved", "reopened")
)


def _fields(value: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(value)
        data = event["data"]
        data["_at"] = datetime.fromisoformat(str(data["at"])).timestamp()
        return data if isinstance(data.get("ticket_id"), str) else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # not ours to judge: the engine itself writes this topic


def install_ticket_index(app: Any, settings: RouterSettings) -> None:
    index = raw_table(app, settings, TICKET_INDEX_TABLE, "thread, queue and buyer of each ticket")
    events = raw_topic(app, settings, TICKETS_EVENTS.name)
    buyer_changes = raw_topic(app, settings, BUYERS_CHANGES.name)
    reroutes = raw_topic(app, settings, TICKETS_REROUTES.name)

    @app.agent(events, name="ticket-index")
    async def ticket_index(stream: faust.StreamT) -> None:
        async for event in stream.events():
            value = event.message.value
            if not value or not any(t in value for t in _WANTED):
                continue
            data = _fields(value)
            if data is None:
                continue
            await _on_event(data)

    async def _on_event(data: dict[str, Any]) -> None:
        ticket_id: str = data["ticket_id"]
        key = ticket_id.encode()
        stored = index.get(key)
        entry = TicketIndexEntry.from_bytes(stored) if stored is not None else None
        kind = data.get("kind")
        if kind == "opened":
            if entry is not None or not data.get("thread_ref") or not data.get("channel"):
                return  # a replay, or an event without the thread (older engine versions)
            role = data.get("sender_role")
            entry = TicketIndexEntry(
                str(data["channel"]), str(data["thread_ref"]), data.get("queue"), None,
                data.get("actor") if role == "buyer" else None,
            )  # fmt: skip
        if entry is None:
            return
        buyer, change = ticket_change(
            entry.buyer, ticket_id, str(kind), data["_at"],
            sender_role=data.get("sender_role"), actor=data.get("actor"),
        )  # fmt: skip
        if change is not None and buyer is not None:
            await buyer_changes.send(key=buyer.encode(), value=change.to_bytes())
        updated = entry
        if kind == "routed":
            if data.get("actor") is None:  # the routing stage's own: the priority it chose
                updated = TicketIndexEntry(entry.channel, entry.thread_ref, entry.queue,
                                           data.get("priority"), entry.buyer)  # fmt: skip
            else:
                updated, notice = lifecycle_reroute(
                    entry, ticket_id, actor=data.get("actor"), queue=data.get("queue"),
                    priority=data.get("priority"),
                )  # fmt: skip
                if notice is not None:
                    await reroutes.send(key=notice.thread_ref.encode(), value=notice.to_bytes())
                    log.info("ticket_moved", ticket_id=ticket_id, queue=notice.queue)
        if updated is not None and (stored is None or updated != entry):
            index[key] = updated.to_bytes()
