"""The per-ticket fold: ticket, SLA, survey and dispute inputs in, facts and surveys out.

Keyed by ticket id (the partitioning of `tickets.events`, `sla.events` and `tickets.commands`),
it keeps a `TicketTrack` per ticket and turns each input into facts for the ticket's vendor and
queue (`router.scores.facts`), counted on the ticket's opening day (its cohort):

- the ticket becomes known with its first `routed` event: vendor (of a `vendor:<id>` queue),
  queue, priority, SLA policy, and from them the seller's calendar and first-response target
  (`SellerTime`); inputs read before it (another topic can run ahead) wait in the track;
- the first `replied` by an agent or the vendor is the first response: business seconds since
  opening in the seller's calendar, and whether within the target;
- `resolved` / `reopened` move the backlog; the first of each counts for the rates; a
  resolution sends a satisfaction survey on the ticket's outbound topic, unless one went out
  within `survey_window_s` (a reopen-resolve pair gets one survey);
- `sla.events`: each (metric, cycle) settles once, met or breached (the first breach rung);
- the ticket's first survey response counts; later ones are ignored;
- disputes (`DisputeSignal`, what a disputes stage will feed): the first opened, and a
  decision against the seller, count once.

Every input is deduplicated by its CloudEvents id (the last `MAX_SEEN` per ticket), and each
fact's id derives from the ticket and what it counts, so a replay yields the same facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from router.ids import derive_id
from router.scores.facts import Fact, FactKind, day_of, queue_subject, vendor_subject
from router.sla.terms import SlaConfig
from router.sla.transitions import vendor_of
from schemas.sla import SlaMetric
from schemas.ticket import Priority
from schemas.vendor import VendorProfile

MAX_SEEN = 256  # input ids remembered per ticket
MAX_PENDING = 64  # inputs kept per ticket before its first routing
RESPONDERS = frozenset({"agent", "vendor"})  # whose reply is a response (not buyer, system)


@dataclass(frozen=True, slots=True)
class TicketInput:
    """An event of `tickets.events` (the fields the fold reads)."""

    id: str
    ticket_id: str
    kind: str
    at: float  # epoch seconds
    queue: str | None = None
    actor: str | None = None
    sender_role: str | None = None
    priority: str | None = None
    sla_policy: str | None = None
    opened_at: float | None = None  # routed: the ticket's opening time
    channel: str | None = None  # opened: where replies go
    thread_ref: str | None = None


@dataclass(frozen=True, slots=True)
class SlaInput:
    """An event of `sla.events`."""

    id: str
    ticket_id: str
    kind: str  # warning | breached | met
    metric: str
    cycle: int
    level: int


@dataclass(frozen=True, slots=True)
class SurveyInput:
    """A `survey_response` action (validated on `tickets.actions`)."""

    id: str
    ticket_id: str
    at: float
    csat: int | None
    nps: int | None


@dataclass(frozen=True, slots=True)
class DisputeSignal:
    """What a disputes stage feeds the scores: a dispute about a ticket's order was opened, or
    decided (`seller_lost`: against the seller). Its `id` is the dispute event's CloudEvents
    id. Adapter: one per `disputes.events` record that names a ticket."""

    id: str
    ticket_id: str
    vendor_id: str
    kind: Literal["opened", "decided"]
    at: float
    seller_lost: bool = False


Input = TicketInput | SlaInput | SurveyInput | DisputeSignal


@dataclass(frozen=True, slots=True)
class SurveyDue:
    """A satisfaction survey to send: `id` is its idempotency key."""

    id: str
    ticket_id: str
    channel: str
    thread_ref: str
    at: float


class SellerTime:
    """The seller's business time: the calendar and first-response target of a ticket.

    Calendar: the vendor profile's when the SLA policies define it, else the ticket's policy's
    (as the SLA clocks choose). Target: the profile's `response_hours`, else the policy's
    first-response target for the priority; None when neither exists."""

    def __init__(
        self, config: SlaConfig, vendors: Callable[[str], VendorProfile | None] | None = None
    ) -> None:
        self.config = config
        self.vendors = vendors

    def terms(
        self, policy: str | None, priority: str | None, vendor_id: str | None
    ) -> tuple[str, float | None]:
        config = self.config
        sla_policy = config.policy(policy)
        profile = self.vendors(vendor_id) if vendor_id and self.vendors is not None else None
        calendar = sla_policy.calendar
        if profile is not None and profile.calendar in config.calendars:
            calendar = profile.calendar
        if profile is not None and profile.response_hours:
            return calendar, profile.response_hours * 3600
        try:
            level = Priority(priority or Priority.NORMAL)
        except ValueError:
            level = Priority.NORMAL
        terms = config.terms(sla_policy.name, SlaMetric.FIRST_RESPONSE, level)
        return calendar, terms.target_seconds if terms is not None else None

    def between(self, calendar: str, start: float, end: float) -> float:
        """Business seconds from `start` to `end` (epoch seconds) in `calendar`."""
        if end <= start:
            return 0.0
        found = (
            self.config.calendars.get(calendar)
            or self.config.calendars[self.config.policy(None).calendar]
        )
        return found.business_seconds_between(
            datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        )


@dataclass(slots=True)
class TicketTrack:
    ready: bool = False
    vendor: str | None = None
    queue: str | None = None  # the queue it opened in (its cohort's)
    current: str | None = None  # the queue it is in now
    opened_at: float = 0.0
    calendar: str = ""
    target: float | None = None
    channel: str | None = None
    thread_ref: str | None = None
    open: bool = False
    flags: set[str] = field(default_factory=set)  # facts counted once: responded, resolved, ...
    settled: set[str] = field(default_factory=set)  # SLA "metric:cycle" counted
    survey_at: float | None = None  # when the last survey went out
    seen: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "ready": self.ready, "vendor": self.vendor, "queue": self.queue,
            "current": self.current, "opened_at": self.opened_at, "calendar": self.calendar,
            "target": self.target, "channel": self.channel, "thread_ref": self.thread_ref,
            "open": self.open, "flags": sorted(self.flags), "settled": sorted(self.settled),
            "survey_at": self.survey_at, "seen": self.seen, "pending": self.pending,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> TicketTrack:
        d = orjson.loads(raw)
        return cls(
            d["ready"], d.get("vendor"), d.get("queue"), d.get("current"), d["opened_at"],
            d["calendar"], d.get("target"), d.get("channel"), d.get("thread_ref"), d["open"],
            set(d.get("flags", ())), set(d.get("settled", ())), d.get("survey_at"),
            list(d.get("seen", ())), list(d.get("pending", ())),
        )  # fmt: skip


@dataclass(slots=True)
class Folded:
    track: TicketTrack
    facts: list[Fact] = field(default_factory=list)
    surveys: list[SurveyDue] = field(default_factory=list)
    changed: bool = False
    dropped: int = 0  # inputs that could not wait for the ticket (pending full)


DEFAULT_SURVEY_MESSAGE = (
    "Your request has been resolved. How satisfied are you with the help you got, "
    "from 1 (not at all) to 5 (very)?"
)


@dataclass(frozen=True, slots=True)
class SurveyPolicy:
    enabled: bool = True
    window_s: float = 7 * 86_400  # no second survey within this long of the last one


def fold_ticket(
    track: TicketTrack | None, item: Input, seller: SellerTime, surveys: SurveyPolicy
) -> Folded:
    """Apply one input to its ticket's track."""
    state = track if track is not None else TicketTrack()
    done = Folded(state)
    if item.id in state.seen:
        return done
    state.seen.append(item.id)
    del state.seen[:-MAX_SEEN]
    done.changed = True
    if isinstance(item, TicketInput) and item.kind == "opened":
        state.channel, state.thread_ref = item.channel, item.thread_ref
    if not state.ready:
        if isinstance(item, TicketInput) and item.kind == "routed":
            _start(state, item, seller, done)
            waiting, state.pending = state.pending, []
            for doc in waiting:
                _apply(state, _input_from_json(doc), seller, surveys, done)
        elif len(state.pending) < MAX_PENDING:
            state.pending.append(_input_to_json(item))
        else:
            done.dropped += 1
        return done
    _apply(state, item, seller, surveys, done)
    return done


def _start(state: TicketTrack, routed: TicketInput, seller: SellerTime, done: Folded) -> None:
    state.ready, state.open = True, True
    state.queue = state.current = routed.queue
    state.vendor = vendor_of(routed.queue)
    state.opened_at = routed.opened_at if routed.opened_at is not None else routed.at
    state.calendar, state.target = seller.terms(routed.sla_policy, routed.priority, state.vendor)
    _cohort(state, routed.ticket_id, FactKind.OPENED, done)


def _cohort(
    state: TicketTrack, ticket_id: str, kind: FactKind, done: Folded, *parts: str,
    value: float = 0.0, flag: bool = False, extra: float = 0.0, vendor: str | None = None,
) -> None:  # fmt: skip
    """Facts of the ticket's cohort day, for its vendor and its opening queue."""
    fact_id = derive_id(ticket_id, "score", kind.value, *parts)
    day = day_of(state.opened_at)
    subjects = []
    if vendor or state.vendor:
        subjects.append(vendor_subject(vendor or state.vendor or ""))
    if state.queue:
        subjects.append(queue_subject(state.queue))
    for subject in subjects:
        done.facts.append(Fact(fact_id, subject, day, kind, value, flag, extra))


def _once(state: TicketTrack, flag: str) -> bool:
    if flag in state.flags:
        return False
    state.flags.add(flag)
    return True


def _backlog(item: TicketInput, queue: str | None, delta: int, done: Folded) -> None:
    if queue:
        fact_id = derive_id(item.ticket_id, "score", "backlog", item.id, queue)
        done.facts.append(Fact(fact_id, queue_subject(queue), day_of(item.at),
                               FactKind.BACKLOG, float(delta)))  # fmt: skip


def _apply(
    state: TicketTrack, item: Input, seller: SellerTime, surveys: SurveyPolicy, done: Folded
) -> None:
    tid = item.ticket_id
    if isinstance(item, TicketInput):
        kind = item.kind
        if kind == "replied" and item.sender_role in RESPONDERS and _once(state, "responded"):
            seconds = seller.between(state.calendar, state.opened_at, item.at)
            within = state.target is not None and seconds <= state.target
            _cohort(state, tid, FactKind.RESPONDED, done, value=seconds, flag=within)
        elif kind == "resolved" and state.open:
            state.open = False
            _backlog(item, state.current, -1, done)
            if _once(state, "resolved"):
                seconds = seller.between(state.calendar, state.opened_at, item.at)
                _cohort(state, tid, FactKind.RESOLVED, done, value=seconds)
            _survey(state, item, surveys, done)
        elif kind == "reopened" and not state.open:
            state.open = True
            _backlog(item, state.current, +1, done)
            if _once(state, "reopened"):
                _cohort(state, tid, FactKind.REOPENED, done)
        elif kind == "routed" and item.queue and item.queue != state.current:
            if state.open:
                _backlog(item, state.current, -1, done)
                _backlog(item, item.queue, +1, done)
            state.current = item.queue
    elif isinstance(item, SlaInput):
        settles = item.kind == "met" or (item.kind == "breached" and item.level <= 1)
        key = f"{item.metric}:{item.cycle}"
        if settles and key not in state.settled:
            state.settled.add(key)
            met = item.kind == "met"
            _cohort(state, tid, FactKind.SLA, done, item.metric, str(item.cycle), flag=met)
            if not met and _once(state, "breached"):
                _cohort(state, tid, FactKind.BREACHED, done)
    elif isinstance(item, SurveyInput):
        if _once(state, "surveyed"):
            _cohort(state, tid, FactKind.SURVEY, done, value=float(item.csat or 0),
                    extra=float(item.nps if item.nps is not None else -1))  # fmt: skip
    elif item.kind == "opened":
        if _once(state, "disputed"):
            _cohort(state, tid, FactKind.DISPUTED, done, vendor=item.vendor_id)
    elif item.seller_lost and _once(state, "dispute_lost"):
        _cohort(state, tid, FactKind.DISPUTE_LOST, done, vendor=item.vendor_id)


def _survey(state: TicketTrack, resolved: TicketInput, policy: SurveyPolicy, done: Folded) -> None:
    if not policy.enabled or state.channel is None or state.thread_ref is None:
        return
    last = state.survey_at
    if last is not None and resolved.at - last < policy.window_s:
        return
    state.survey_at = resolved.at
    survey_id = derive_id(resolved.ticket_id, resolved.id, "survey")
    done.surveys.append(
        SurveyDue(survey_id, resolved.ticket_id, state.channel, state.thread_ref, resolved.at)
    )


_TYPES: dict[str, type[TicketInput] | type[SlaInput] | type[SurveyInput] | type[DisputeSignal]] = {
    "ticket": TicketInput, "sla": SlaInput, "survey": SurveyInput, "dispute": DisputeSignal,
}  # fmt: skip


def _input_to_json(item: Input) -> dict[str, Any]:
    name = next(n for n, t in _TYPES.items() if isinstance(item, t))
    fields = {f: getattr(item, f) for f in item.__dataclass_fields__}
    return {"type": name, **fields}


def _input_from_json(doc: dict[str, Any]) -> Input:
    fields = dict(doc)
    return _TYPES[fields.pop("type")](**fields)
