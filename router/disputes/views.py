"""What `router disputes show|list` print: disputes folded from their `disputes.events`
records (pure; the CLI reads the topic)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from schemas.dispute import DisputeEventData, DisputeState, RefundInstruction
from schemas.envelope import CloudEvent


class DisputeEventRecord(CloudEvent[DisputeEventData]):
    """A `support.dispute.*` record as it sits on `disputes.events`."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    event_id: str
    kind: str  # the event type's last part: opened, decided, note_added, ...
    action: str
    party: str
    actor: str
    state: DisputeState
    note: str | None = None  # a flag, a platform note, a verdict's reason, a chargeback


@dataclass(slots=True)
class DisputeView:
    latest: DisputeEventData
    timeline: list[TimelineEntry] = field(default_factory=list)
    refund: RefundInstruction | None = None  # from the resolved or decided event

    @property
    def order_id(self) -> str:
        return self.latest.order_id


def fold(values: Iterable[bytes]) -> tuple[dict[str, DisputeView], int]:
    """Disputes by order id from `disputes.events` values in topic order (a re-sent record,
    same id, counts once); also how many values were not dispute events."""
    views: dict[str, DisputeView] = {}
    seen: set[str] = set()
    skipped = 0
    for value in values:
        try:
            record = DisputeEventRecord.model_validate_json(value)
        except ValidationError:
            skipped += 1
            continue
        if record.id in seen:
            continue
        seen.add(record.id)
        data = record.data
        view = views.get(data.order_id)
        if view is None:
            view = views[data.order_id] = DisputeView(data)
        view.latest = data
        view.refund = data.refund or view.refund
        view.timeline.append(TimelineEntry(
            at=data.at, event_id=record.id, kind=record.type.rsplit(".", 1)[-1],
            action=data.action, party=data.acted_by.party, actor=data.acted_by.id,
            state=data.state, note=data.flag or data.internal_note or (
                data.verdict_reason if data.state is DisputeState.DECIDED else None) or (
                f"chargeback {data.chargeback_id}" if data.chargeback_id else None),
        ))  # fmt: skip
    return views, skipped


def select(
    views: dict[str, DisputeView], state: DisputeState | None = None, vendor: str | None = None
) -> list[DisputeView]:
    """The disputes in `state` and of `vendor` (either optional), oldest first."""
    found = [
        v for v in views.values()
        if (state is None or v.latest.state is state)
        and (vendor is None or v.latest.vendor_id == vendor)
    ]  # fmt: skip
    return sorted(found, key=lambda v: (v.timeline[0].at, v.order_id))


def show_lines(view: DisputeView) -> list[str]:
    """The dispute's summary, its pending deadlines, and its timeline (who acted, when)."""
    d = view.latest
    lines = [
        f"order {d.order_id}: {d.state.value}"
        + (f" ({d.outcome.value})" if d.outcome else ""),
        f"  buyer {d.buyer_id}, seller {d.vendor_id}, {d.reason_code.value}, "
        f"{d.amount} {d.currency}" + (f", category {d.category}" if d.category else ""),
    ]
    if d.offer is not None:
        amount = f" {d.offer.amount}" if d.offer.amount is not None else ""
        lines.append(f"  offer: {d.offer.kind.value}{amount}")
    if d.verdict is not None:
        lines.append(f"  verdict: {d.verdict.value}: {d.verdict_reason or ''}")
    refund = view.refund
    if refund is not None:
        what = "replacement" if refund.replacement else f"refund {refund.amount} {refund.currency}"
        lines.append(f"  payments: {what} (instruction {refund.instruction_id})")
    lines.append("  deadlines:" + ("" if d.deadlines else " none"))
    lines.extend(f"    {name}: {due.isoformat()}" for name, due in sorted(d.deadlines.items()))
    lines.append("  timeline:")
    for e in view.timeline:
        note = f" - {e.note}" if e.note else ""
        lines.append(f"    {e.at.isoformat()}  {e.kind:<17} {e.party}:{e.actor} "
                     f"({e.action}){note}")  # fmt: skip
    return lines


def list_row(view: DisputeView) -> str:
    d = view.latest
    due = min(d.deadlines.values(), default=None)
    return "\t".join([
        d.order_id, d.state.value, d.vendor_id, d.buyer_id, d.reason_code.value,
        f"{d.amount} {d.currency}", due.isoformat() if due else "-",
    ])  # fmt: skip
