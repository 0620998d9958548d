"""The scores stage's logic: two keyed steps (the Kafka side is `streams/stages/scores.py`).

1. `ScoreTicketsProcessor` on `tickets.events`, `sla.events` and `tickets.commands` (all keyed
   by ticket id by the engine's producer; survey responses arrive on the commands, validated
   on `tickets.actions` by the lifecycle stage, which dead-letters the bad ones): the
   per-ticket fold (`router.scores.tickets`, table `score-tickets`); its facts go to
   `scores.facts` keyed by subject, its surveys to the ticket's `outbound.<channel>`.
2. `ScoreBooksProcessor` on `scores.facts`: the per-subject fold (`router.scores.book`, table
   `score-books`); a vendor's change is published on `vendors.scores` (and `vendors.events`
   when its tier moves), a queue's on `metrics.support` (the fact's day).

Both steps skip what they already counted (by CloudEvents id, then by fact id), so a replay
after a crash, or of the topics from the start, counts nothing twice.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from router.ids import derive_id
from router.outbound import outbound_reply
from router.outputs import engine_record
from router.records import OutRecord
from router.scores.book import WINDOWS, Book, as_date
from router.scores.facts import QUEUE_SUBJECT, VENDOR_SUBJECT, Fact, FactKind
from router.scores.formula import ScoreFormula
from router.scores.tickets import (
    DEFAULT_SURVEY_MESSAGE,
    Input,
    SellerTime,
    SlaInput,
    SurveyDue,
    SurveyInput,
    SurveyPolicy,
    TicketInput,
    TicketTrack,
    fold_ticket,
)
from router.sla.render import CMD_ACTION, CMD_HEADER
from router.stages.contract import InRecord, Note, failure_note, processing_failed
from schemas.action import Actor, ActorRole, ReplyAction, SurveyResponseAction, TicketActionEvent
from schemas.outbound import DELIVERY_EVENT_TYPES
from schemas.scores import (
    SUPPORT_DAY,
    TIER_CHANGED,
    VENDOR_SCORES,
    ScoreTier,
    SupportDay,
    VendorScores,
)
from schemas.topics import (
    METRICS_SUPPORT,
    SCORES_FACTS,
    SLA_EVENTS,
    TICKETS_COMMANDS,
    TICKETS_EVENTS,
    VENDORS_EVENTS,
    VENDORS_SCORES,
)

SURVEY_ACTOR = Actor(id="survey", role=ActorRole.SYSTEM)
_TICKET_KINDS = frozenset({"opened", "routed", "replied", "resolved", "reopened"})
_DELIVERY = tuple(f'"type":"{t}"'.encode() for t in DELIVERY_EVENT_TYPES)
_SURVEY = b'"survey_response"'
# fields of a ticket event the fold reads (orjson, not the whole pydantic model)
_TICKET_FIELDS = (
    "queue", "actor", "sender_role", "priority", "sla_policy", "channel", "thread_ref",
)  # fmt: skip


def _epoch(text: Any) -> float:
    return datetime.fromisoformat(str(text)).timestamp()


def ticket_input(value: bytes) -> TicketInput | None:
    """The fold's view of a `tickets.events` record; None for what it does not count."""
    if any(t in value for t in _DELIVERY):
        return None
    doc = orjson.loads(value)
    data = doc["data"]
    if data.get("kind") not in _TICKET_KINDS:
        return None
    ticket = data.get("ticket") or {}
    opened_at = ticket.get("opened_at")
    return TicketInput(
        str(doc["id"]), str(data["ticket_id"]), str(data["kind"]), _epoch(data["at"]),
        opened_at=_epoch(opened_at) if opened_at else None,
        **{f: data.get(f) for f in _TICKET_FIELDS},
    )  # fmt: skip


def sla_input(value: bytes) -> SlaInput:
    doc = orjson.loads(value)
    data = doc["data"]
    return SlaInput(str(doc["id"]), str(data["ticket_id"]), str(data["kind"]),
                    str(data["metric"]), int(data.get("cycle", 0)), int(data["level"]))  # fmt: skip


def survey_input(value: bytes) -> SurveyInput | None:
    """A forwarded action that is a survey response (validated where it was forwarded)."""
    action = TicketActionEvent.model_validate_json(value)
    data = action.data
    if not isinstance(data, SurveyResponseAction):
        return None
    return SurveyInput(action.id, data.ticket_id, data.at.timestamp(), data.csat, data.nps)


def survey_request(due: SurveyDue, message: str) -> OutRecord | None:
    """The survey as a public reply from the system on the ticket's outbound topic."""
    at = datetime.fromtimestamp(due.at, UTC)
    reply = ReplyAction(ticket_id=due.ticket_id, actor=SURVEY_ACTOR, at=at, body=message)
    return outbound_reply(reply, due.id, due.channel, due.thread_ref, at)


class ScoreTicketsProcessor:
    """Step 1: ticket inputs into facts and surveys (`counts` by outcome)."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        seller: SellerTime,
        surveys: SurveyPolicy | None = None,
        survey_message: str = DEFAULT_SURVEY_MESSAGE,
    ) -> None:
        self.table = table
        self.seller = seller
        self.surveys = surveys or SurveyPolicy()
        self.survey_message = survey_message
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        value = record.value
        if not value:
            return []
        try:
            item = self._input(record, value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
            self.counts["unreadable"] += 1  # the engine wrote it: a bug, noted, not fatal
            self.notes.append(Note("warning", "score_input_unreadable", {
                "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "error": repr(exc)[:300]}))  # fmt: skip
            return []
        if item is None:
            return []
        try:
            return self.apply(item)
        except Exception as exc:  # a bug must not stop the stage: park the record, go on
            return self._failed(exc, record, now)

    def _failed(self, exc: Exception, record: InRecord, now: datetime) -> list[OutRecord]:
        self.counts["failed"] += 1
        self.notes.append(failure_note("score_failed", record))
        return [processing_failed(exc, record, now)]

    def _input(self, record: InRecord, value: bytes) -> Input | None:
        topic = record.topic
        if topic == TICKETS_EVENTS.name:
            return ticket_input(value)
        if topic == SLA_EVENTS.name:
            return sla_input(value)
        if topic == TICKETS_COMMANDS.name:
            if record.headers.get(CMD_HEADER) != CMD_ACTION or _SURVEY not in value:
                return None
            return survey_input(value)
        return None

    def apply(self, item: Input) -> list[OutRecord]:
        """Fold one input (also how a disputes adapter feeds `DisputeSignal`s)."""
        key = item.ticket_id.encode()
        stored = self.table.get(key)
        track = TicketTrack.from_bytes(stored) if stored is not None else None
        done = fold_ticket(track, item, self.seller, self.surveys)
        if not done.changed:
            self.counts["duplicate"] += 1
            return []
        if done.dropped:
            self.counts["dropped"] += done.dropped
            self.notes.append(
                Note(
                    "warning",
                    "score_input_dropped",
                    {"ticket_id": item.ticket_id, "reason": "too many inputs before its routing"},
                )
            )
        self.table[key] = done.track.to_bytes()
        out = [OutRecord(SCORES_FACTS.name, f.subject.encode(), f.to_bytes()) for f in done.facts]
        self.counts["facts"] += len(done.facts)
        for due in done.surveys:
            request = survey_request(due, self.survey_message)
            if request is not None:
                out.append(request)
                self.counts["surveys"] += 1
        return out


class ScoreBooksProcessor:
    """Step 2: facts into per-subject books; vendor scores and queue days out."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        formula: ScoreFormula,
    ) -> None:
        self.table = table
        self.formula = formula
        self.counts: Counter[str] = Counter()
        self.notes: list[Note] = []
        # for metrics at scrape time: each queue's latest day, each vendor's tier and score
        self.latest_days: dict[str, SupportDay] = {}
        self.tiers: dict[str, ScoreTier] = {}
        self.scores: dict[str, float | None] = {}
        self.tier_changes: Counter[tuple[str, str]] = Counter()

    def process(self, record: InRecord, now: datetime) -> list[OutRecord]:
        if not record.value:
            return []
        try:
            fact = Fact.from_bytes(record.value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.counts["unreadable"] += 1
            self.notes.append(Note("warning", "score_fact_unreadable", {"error": repr(exc)}))
            return []
        try:
            return self.apply(fact, now)
        except Exception as exc:  # a bug must not stop the stage: park the record, go on
            self.counts["failed"] += 1
            self.notes.append(Note("error", "score_failed", {
                "subject": fact.subject, "partition": record.partition, "offset": record.offset,
                "exception": traceback.format_exc(limit=20)}))  # fmt: skip
            return [processing_failed(exc, record, now)]

    def apply(self, fact: Fact, now: datetime) -> list[OutRecord]:
        key = fact.subject.encode()
        stored = self.table.get(key)
        book = Book.from_bytes(stored) if stored is not None else Book()
        if not book.apply(fact):
            self.counts["duplicate"] += 1
            return []
        self.counts["applied"] += 1
        out: list[OutRecord] = []
        if fact.subject.startswith(VENDOR_SUBJECT):
            out.extend(self._vendor(fact.subject.removeprefix(VENDOR_SUBJECT), book, fact, now))
        elif fact.subject.startswith(QUEUE_SUBJECT):
            queue = fact.subject.removeprefix(QUEUE_SUBJECT)
            # a backlog change moves the backlog at the end of every later day too
            moves = fact.kind in (FactKind.OPENED, FactKind.BACKLOG)
            days = sorted(d for d in book.days if d == fact.day or (moves and d > fact.day))
            for day in days:
                figures = book.support_day(queue, day)
                latest = self.latest_days.get(queue)
                if latest is None or latest.day <= figures.day:
                    self.latest_days[queue] = figures
                out.append(engine_record(
                    METRICS_SUPPORT.name, queue, derive_id(fact.subject, fact.id, "day", str(day)),
                    SUPPORT_DAY, now, figures.model_dump(mode="json"),
                ))  # fmt: skip
        self.table[key] = book.to_bytes()
        return out

    def _vendor(self, vendor_id: str, book: Book, fact: Fact, now: datetime) -> list[OutRecord]:
        scores = vendor_scores(vendor_id, book, self.formula)
        out = [engine_record(
            VENDORS_SCORES.name, vendor_id, derive_id(fact.subject, fact.id, "scores"),
            VENDOR_SCORES, now, scores.model_dump(mode="json"),
        )]  # fmt: skip
        previous = book.tier
        book.tier = scores.tier.value
        self.tiers[vendor_id], self.scores[vendor_id] = scores.tier, scores.score
        if previous is not None and previous != scores.tier.value:
            before = ScoreTier(previous)
            self.tier_changes[(before.value, scores.tier.value)] += 1
            change = {"vendor_id": vendor_id, "previous": previous, "tier": scores.tier.value,
                      "score": scores.score, "as_of": scores.as_of.isoformat()}  # fmt: skip
            out.append(engine_record(
                VENDORS_EVENTS.name, vendor_id, derive_id(fact.subject, fact.id, "tier"),
                TIER_CHANGED, now, change,
            ))  # fmt: skip
        return out


def vendor_scores(vendor_id: str, book: Book, formula: ScoreFormula) -> VendorScores:
    short, long = (book.window(days) for days in WINDOWS)
    score = formula.score(long)
    return VendorScores(
        vendor_id=vendor_id, as_of=as_date(book.as_of or 0), score=score,
        tier=formula.tier(score, long.volume), window_7d=short, window_30d=long,
    )  # fmt: skip
