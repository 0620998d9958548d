"""Seller scores and support metrics: a scripted week figured by hand, checked exactly
(quantiles within the sketch's relative accuracy), and folded again twice, shuffled and
replayed with the same figures."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.inbound import Rejected
from router.outbound import idempotency_key
from router.records import OutRecord
from router.routing import VendorStanding
from router.scores.book import Book
from router.scores.facts import Fact, FactKind, day_of
from router.scores.formula import ScoreFormula, ScoreFormulaError, load_formula
from router.scores.sketch import RELATIVE_ACCURACY, Sketch
from router.scores.tickets import DisputeSignal, SellerTime, SurveyPolicy
from router.sla.policy import parse_sla_config
from router.sla.render import CMD_ACTION, CMD_HEADER, parse_action
from router.stages.contract import InRecord
from router.stages.scores import ScoreBooksProcessor, ScoreTicketsProcessor
from router.views import InvalidValue, vendor_standing
from rules.inputs import input_from_mapping
from schemas.dead_letter import RejectReason, SourcePosition
from schemas.scores import ScoreTier
from schemas.vendor import VendorProfile
from tests.unit.rules.rules_support import make_input
from tests.unit.rules.test_rules_operators import matches

SLA = """
version: 1
default_policy: std
calendars:
  shop: {kind: business_hours, timezone: UTC, weekly: {mon: ["09:00-17:00"],
         tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"],
         fri: ["09:00-17:00"]}}
  always: {kind: always}
policies:
  std:
    calendar: always
    metrics:
      first_response: {targets: {low: 4h, normal: 2h, high: 1h, urgent: 30m}}
"""
CONFIG = parse_sla_config(SLA)
PROFILES = {"acme": VendorProfile(vendor_id="acme", calendar="shop")}
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
NOW = datetime(2026, 1, 7, tzinfo=UTC)


def at(day: int, hour: float) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour)


def envelope(event_id: str, event_type: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": event_id, "source": "test",
                         "type": event_type, "time": NOW, "data": data})  # fmt: skip


def ticket_event(tid: str, kind: str, when: datetime, n: int = 0, **data: Any) -> InRecord:
    body = {"ticket_id": tid, "kind": kind, "at": when.isoformat(), **data}
    value = envelope(f"{tid}-{kind}-{n}", f"support.ticket.{kind}", body)
    return InRecord("tickets.events", 0, 0, tid.encode(), value)


def opened(tid: str, queue: str, when: datetime) -> list[InRecord]:
    return [
        ticket_event(tid, "opened", when, queue=queue, channel="email", thread_ref=f"th-{tid}",
                     actor="buyer-1", sender_role="buyer"),
        ticket_event(tid, "routed", when, queue=queue, priority="normal", sla_policy="std",
                     ticket={"opened_at": when.isoformat()}),
    ]  # fmt: skip


def replied(tid: str, when: datetime, role: str, n: int = 0) -> InRecord:
    return ticket_event(tid, "replied", when, n, actor="someone", sender_role=role)


def sla(tid: str, kind: str, level: int, metric: str = "first_response") -> InRecord:
    data = {"ticket_id": tid, "kind": kind, "metric": metric, "level": level, "cycle": 0}
    value = envelope(f"{tid}-sla-{kind}-{level}", f"support.sla.{kind}", data)
    return InRecord("sla.events", 0, 0, tid.encode(), value)


def survey(tid: str, action_id: str, csat: int | None, nps: int | None) -> InRecord:
    data = {
        "action": "survey_response",
        "ticket_id": tid,
        "at": at(1, 12).isoformat(),
        "actor": {"id": "buyer-1", "role": "buyer"},
        "csat": csat,
        "nps": nps,
    }
    value = envelope(action_id, "support.ticket.action", data)
    return InRecord("tickets.commands", 0, 0, tid.encode(), value,
                    headers={CMD_HEADER: CMD_ACTION})  # fmt: skip


def scripted() -> list[InRecord | DisputeSignal]:
    """Vendor acme (calendar `shop`, Mon-Fri 09-17 UTC; first response target 2 h)."""
    q = "vendor:acme"
    return [
        # T1: opened before hours, answered 09:30 (1800 s), resolved 10:00 (3600 s)
        *opened("T1", q, at(0, 8)), replied("T1", at(0, 9.5), "agent"),
        ticket_event("T1", "resolved", at(0, 10)),
        # T2: 10:00, the vendor answers 13:00 (10800 s, late), resolved 14:00 (14400 s),
        # reopened 15:00, resolved again 16:00 (one survey for the pair)
        *opened("T2", q, at(0, 10)), replied("T2", at(0, 13), "vendor"),
        ticket_event("T2", "resolved", at(0, 14)), ticket_event("T2", "reopened", at(0, 15)),
        ticket_event("T2", "resolved", at(0, 16), 1),
        # T3: 16:00, an auto-reply (not a response), answered Tuesday 09:30 (5400 s); then
        # escalated to another queue
        *opened("T3", q, at(0, 16)), replied("T3", at(0, 16.01), "system"),
        replied("T3", at(1, 9.5), "agent", 1),
        ticket_event("T3", "routed", at(1, 10), 1, queue="dept:escalations", actor="lifecycle"),
        # T4: 11:00, only the buyer writes; first response breached (rungs 1 and 2), a dispute
        # is opened and lost
        *opened("T4", q, at(0, 11)), replied("T4", at(0, 11.5), "buyer"),
        sla("T4", "warning", 0), sla("T4", "breached", 1), sla("T4", "breached", 2),
        DisputeSignal("D1-opened", "T4", "acme", "opened", at(1, 9).timestamp()),
        DisputeSignal("D1-decided", "T4", "acme", "decided", at(2, 9).timestamp(), True),
        # T5: 12:00, answered at once (0 s), SLA met, resolved 12:30 (1800 s)
        *opened("T5", q, at(0, 12)), replied("T5", at(0, 12), "agent"), sla("T5", "met", 0),
        ticket_event("T5", "resolved", at(0, 12.5)),
        # surveys: T1 5/10, T2 2/6; T1's second answer does not count
        survey("T1", "s-1", 5, 10), survey("T2", "s-2", 2, 6), survey("T1", "s-3", 1, 0),
    ]  # fmt: skip


@dataclass
class Run:
    """Both steps over dict tables, facts handed from the first to the second in order."""

    tickets: ScoreTicketsProcessor = field(default_factory=lambda: ScoreTicketsProcessor(
        {}, SellerTime(CONFIG, PROFILES.get), SurveyPolicy(window_s=86_400)))  # fmt: skip
    books: ScoreBooksProcessor = field(
        default_factory=lambda: ScoreBooksProcessor({}, ScoreFormula())
    )
    out: list[OutRecord] = field(default_factory=list)

    def feed(self, items: list[InRecord | DisputeSignal]) -> Run:
        for item in items:
            if isinstance(item, DisputeSignal):
                produced = self.tickets.apply(item)
            else:
                produced = self.tickets.process(item, NOW)
            for record in produced:
                if record.topic == "scores.facts":
                    self.out.extend(
                        self.books.process(
                            InRecord("scores.facts", 0, 0, record.key, record.value), NOW
                        )
                    )
                else:
                    self.out.append(record)
        return self

    def data(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value)["data"] for r in self.out if r.topic == topic]

    def scores(self) -> dict[str, dict[str, Any]]:
        return {d["vendor_id"]: d for d in self.data("vendors.scores")}

    def days(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["queue"], d["day"]): d for d in self.data("metrics.support")}


def close(got: float | None, want: float) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=RELATIVE_ACCURACY, abs_tol=1e-9)


def test_a_scripted_week_gives_the_figures_worked_out_by_hand() -> None:
    run = Run().feed(scripted())
    acme = run.scores()["acme"]
    assert acme["as_of"] == "2026-01-05"
    for name in ("window_7d", "window_30d"):
        w = acme[name]
        # first responses 0, 1800, 5400, 10800 s: p50 rank 1.5 -> 1800, p90 rank 2.7 -> 5400
        assert close(w["frt_p50"], 1800), w
        assert close(w["frt_p90"], 5400), w
        assert {k: v for k, v in w.items() if not k.startswith("frt_")} == {
            "days": w["days"], "volume": 5, "answered": 4, "answered_within": 3 / 5,
            "resolution_rate": 3 / 5, "reopen_rate": 1 / 3, "sla_breach_rate": 1 / 5,
            "dispute_rate": 1 / 5, "disputes_lost": 1, "csat_avg": 3.5, "csat_responses": 2,
            "nps": 0.0, "nps_responses": 2,
        }  # fmt: skip
    # 100 * (30*.6 + 20*.6 + 10*(2/3) + 15*.8 + 15*(1-.2-.2) + 10*(3.5-1)/4) / 100
    assert acme["score"] == round(18 + 12 + 10 * 2 / 3 + 12 + 9 + 6.25, 2) == 63.92
    assert acme["tier"] == ScoreTier.STANDARD

    monday = run.days()[("vendor:acme", "2026-01-05")]
    # resolutions 1800, 3600, 14400 s: p50 rank 1 -> 3600, p90 rank 1.8 -> 3600; backlog:
    # 5 opened, T1, T2 (twice), T5 resolved, T2 reopened once; SLA: T4 breached, T5 met
    assert close(monday["ttr_p50"], 3600)
    assert close(monday["ttr_p90"], 3600)
    assert (monday["opened"], monday["backlog"], monday["resolution_rate"]) == (5, 2, 0.6)
    assert (monday["sla_attainment"], monday["csat_avg"], monday["nps"]) == (0.5, 3.5, 0.0)
    # Tuesday T3 moved to the escalations desk
    assert run.days()[("vendor:acme", "2026-01-06")]["backlog"] == 1
    assert run.days()[("dept:escalations", "2026-01-06")]["backlog"] == 1


def test_a_survey_goes_out_once_per_resolution_not_twice_for_a_reopen_in_the_window() -> None:
    run = Run().feed(scripted())
    surveys = [orjson.loads(r.value) for r in run.out if r.topic == "outbound.email"]
    assert sorted(s["data"]["ticket_id"] for s in surveys) == ["T1", "T2", "T5"]
    first = surveys[0]
    assert first["type"] == "support.reply.outbound"
    assert first["data"]["actor"] == {"id": "survey", "role": "system"}
    assert first["data"]["thread_ref"] == "th-T1"
    assert first["id"] == idempotency_key("T1", first["data"]["action_id"])
    # resolved again a day and a bit later (past the one-day window): a second survey
    again = Run().feed([*scripted(), ticket_event("T2", "reopened", at(1, 16), 2),
                        ticket_event("T2", "resolved", at(1, 17), 2)])  # fmt: skip
    assert sum(r.topic == "outbound.email" for r in again.out) == 4


def test_the_same_events_twice_or_shuffled_give_the_same_figures() -> None:
    baseline = Run().feed(scripted())
    twice = Run().feed([x for item in scripted() for x in (item, item)])
    assert twice.scores() == baseline.scores()
    assert twice.days() == baseline.days()
    assert twice.tickets.counts["duplicate"] > 0
    assert twice.books.counts["applied"] == (baseline.books.counts["applied"])
    # tickets interleaved differently; SLA events and disputes (reversed) and surveys (in
    # their order: one ticket's commands share a partition) ahead of their tickets
    items = scripted()
    loose = [i for i in items if isinstance(i, DisputeSignal) or i.topic == "sla.events"]
    surveys = [i for i in items if isinstance(i, InRecord) and i.topic == "tickets.commands"]
    events = [i for i in items if i not in loose and i not in surveys]

    def by_ticket(r: InRecord | DisputeSignal) -> bytes:
        return (r.key or b"") if isinstance(r, InRecord) else b""

    shuffled = Run().feed([*reversed(loose), *surveys, *sorted(events, key=by_ticket)])
    assert shuffled.scores() == baseline.scores()
    assert shuffled.days() == baseline.days()


def interleavings() -> st.SearchStrategy[list[InRecord | DisputeSignal]]:
    """Orders a live run or a replay could read: each ticket's `tickets.events`, and its
    `tickets.commands`, in order (a partition each), the rest anywhere; some records read
    twice (a crash before a commit)."""
    items = scripted()

    @st.composite
    def build(draw: st.DrawFn) -> list[InRecord | DisputeSignal]:
        rng = random.Random(draw(st.integers(0, 2**32)))
        lanes: dict[str, list[InRecord | DisputeSignal]] = {}
        loose: list[InRecord | DisputeSignal] = []
        for item in items:
            if isinstance(item, InRecord) and item.topic in ("tickets.events", "tickets.commands"):
                lanes.setdefault(f"{item.topic}/{item.key!r}", []).append(item)
            else:
                loose.append(item)
        order: list[InRecord | DisputeSignal] = []
        queues = [list(lane) for lane in lanes.values()] + [[x] for x in loose]
        while queues:
            lane = rng.choice(queues)
            order.append(lane.pop(0))
            if not lane:
                queues.remove(lane)
        repeats = draw(st.lists(st.integers(0, len(order) - 1), max_size=8))
        for n in sorted(repeats, reverse=True):
            order.insert(n + 1, order[n])
        return order

    return build()


BASELINE = Run().feed(scripted())


@settings(max_examples=40, deadline=None)
@given(interleavings())
def test_any_replay_order_gives_the_same_figures(order: list[InRecord | DisputeSignal]) -> None:
    run = Run().feed(order)
    assert run.scores() == BASELINE.scores()
    assert run.days() == BASELINE.days()


def test_the_sketch_quantiles_are_within_its_relative_accuracy_and_merge() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(8, 1.5) for _ in range(2000)] + [0.0] * 30
    whole, halves = Sketch(), (Sketch(), Sketch())
    for n, v in enumerate(values):
        whole.add(v)
        halves[n % 2].add(v)
    halves[0].merge(halves[1])
    ordered = sorted(values)
    for q in (0.01, 0.5, 0.9, 0.99):
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        assert close(whole.quantile(q), exact), q
        assert halves[0].quantile(q) == whole.quantile(q)
    assert Sketch.from_json(whole.to_json()) == whole
    assert Sketch().quantile(0.5) is None
    with pytest.raises(ValueError, match="negative"):
        whole.add(-1)


def test_a_vendor_moving_tier_is_announced_once_per_move() -> None:
    formula = ScoreFormula(min_volume=1, top_at=90, at_risk_below=50)
    books = ScoreBooksProcessor({}, formula)
    day = day_of(MONDAY.timestamp())
    subject = "vendor/acme"
    out: list[OutRecord] = []
    out += books.apply(Fact("f1", subject, day, FactKind.OPENED), NOW)
    out += books.apply(Fact("f2", subject, day, FactKind.RESPONDED, 60, True), NOW)
    out += books.apply(Fact("f3", subject, day, FactKind.RESOLVED, 600), NOW)
    # opened only: (15 sla + 15 disputes) / 80 = 37.5; answered in time: 60 / 80 = 75;
    # resolved: 90 / 90 = 100
    tiers = [orjson.loads(r.value)["data"]["tier"] for r in out if r.topic == "vendors.scores"]
    assert tiers == ["at_risk", "standard", "top"]
    out += books.apply(Fact("f3", subject, day, FactKind.RESOLVED, 600), NOW)  # again: nothing
    changes = [orjson.loads(r.value) for r in out if r.topic == "vendors.events"]
    assert [(c["type"], c["data"]["previous"], c["data"]["tier"]) for c in changes] == [
        ("support.vendor.tier_changed", "at_risk", "standard"),
        ("support.vendor.tier_changed", "standard", "top"),
    ]
    assert books.tier_changes == {("at_risk", "standard"): 1, ("standard", "top"): 1}


def test_the_formula_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "formula.yaml"
    good.write_text("weights: {csat: 0, disputes: 40}\ntop_at: 90\nmin_volume: 10\n")
    formula = load_formula(good)
    assert (formula.weights.csat, formula.weights.disputes, formula.top_at) == (0, 40, 90)
    assert load_formula(None) == ScoreFormula()
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: {speed: 3}\ntop_at: 40\nat_risk_below: 60\n")
    with pytest.raises(ScoreFormulaError, match=r"bad.yaml: weights.speed: Extra inputs"):
        load_formula(bad)
    bad.write_text("top_at: 40\nat_risk_below: 60\n")
    with pytest.raises(ScoreFormulaError, match=r"at_risk_below \(60\) must not exceed top_at"):
        load_formula(bad)


def test_days_past_the_retention_leave_the_book_but_keep_the_backlog() -> None:
    book = Book()
    assert book.apply(Fact("a", "queue/dept:x", 100, FactKind.OPENED))
    assert book.apply(Fact("b", "queue/dept:x", 140, FactKind.BACKLOG, 1.0))
    assert list(book.days) == [140]
    assert book.backlog_before == 1
    assert not book.apply(Fact("c", "queue/dept:x", 105, FactKind.OPENED))  # too old
    assert book.support_day("dept:x", 140).backlog == 2
    assert Book.from_bytes(book.to_bytes()) == book


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"csat": 7}, "data.survey_response.csat: Input should be less than or equal to 5"),
        ({"nps": -1}, "data.survey_response.nps: Input should be greater than or equal to 0"),
        ({"csat": "5"}, "data.survey_response.csat: Input should be a valid integer"),
        ({"comment": "no score"}, "needs `csat` (1-5), `nps` (0-10) or both"),
        ({"csat": 5, "role": "vendor"}, "comes from the buyer, not a vendor"),
    ],
)
def test_a_bad_survey_response_is_dead_lettered_with_its_reason(
    fields: dict[str, Any], error: str
) -> None:
    role = fields.pop("role", "buyer")
    data = {"action": "survey_response", "ticket_id": "T1", "at": NOW.isoformat(),
            "actor": {"id": "b-1", "role": role}, **fields}  # fmt: skip
    value = envelope("s-bad", "support.ticket.action", data)
    source = SourcePosition(topic="tickets.actions", partition=0, offset=9)
    parsed = parse_action(value, b"T1", source, NOW, max_record_bytes=65_536)
    assert isinstance(parsed, Rejected), parsed
    assert parsed.reason is RejectReason.SCHEMA_VIOLATION
    assert error in parsed.error
    assert parsed.record.topic == "channel.dlq"
    good = envelope(
        "s-ok",
        "support.ticket.action",
        {**data, "csat": 4, "nps": 9, "actor": {"id": "b-1", "role": "buyer"}},
    )
    assert not isinstance(parse_action(good, b"T1", source, NOW, max_record_bytes=65_536),
                          Rejected)  # fmt: skip


@pytest.mark.parametrize(
    ("test", "standing", "expected"),
    [
        ("{field: vendor.score_tier, eq: at_risk}", VendorStanding(42.5, "at_risk"), True),
        ("{field: vendor.score_tier, eq: at_risk}", VendorStanding(91.0, "top"), False),
        ("{field: vendor.score_tier, eq: at_risk}", None, False),
        ("{field: vendor.score, lt: 60}", VendorStanding(42.5, "at_risk"), True),
        ("{field: vendor.score, lt: 60}", VendorStanding(None, "standard"), False),
        ("{field: vendor.scored, eq: true}", VendorStanding(None, "standard"), True),
        ("{field: vendor.scored, eq: true}", None, False),
    ],
)
def test_rules_see_the_vendors_score_and_tier(
    test: str, standing: VendorStanding | None, expected: bool
) -> None:
    assert matches(test, make_input()._replace(standing=standing)) is expected


def test_the_published_scores_are_what_the_routing_stage_reads() -> None:
    run = Run().feed(scripted())
    [latest] = [r for r in run.out if r.topic == "vendors.scores"][-1:]
    standing = vendor_standing("acme", latest.value)
    assert standing == VendorStanding(63.92, "standard")
    with pytest.raises(InvalidValue, match="is not the record key 'other'"):
        vendor_standing("other", latest.value)
    with pytest.raises(InvalidValue, match=r"data\.tier"):
        vendor_standing("acme", latest.value.replace(b'"tier":"standard"', b'"tier":"gold"'))


def test_a_failure_while_folding_parks_the_record_and_the_stage_goes_on() -> None:
    class Broken(SellerTime):
        def terms(self, *args: Any) -> tuple[str, float | None]:
            raise RuntimeError("calendar gone")

    tickets = ScoreTicketsProcessor({}, Broken(CONFIG))
    first, routed = opened("T9", "vendor:acme", at(0, 9))
    assert tickets.process(first, NOW) == []
    [parked] = tickets.process(routed, NOW)
    assert parked.topic == "channel.dlq"
    letter = orjson.loads(parked.value)["data"]
    assert (letter["reason"], letter["source"]["topic"]) == ("processing_error", "tickets.events")
    assert "calendar gone" in letter["error"]
    assert tickets.counts["failed"] == 1
    assert tickets.notes[-1].event == "score_failed"


def test_a_rules_case_can_give_the_vendors_standing() -> None:
    case = {"message": {"body": "where is it?", "vendor_id": "acme"},
            "standing": {"score": 41.5, "tier": "at_risk"}}  # fmt: skip
    assert matches("{field: vendor.score_tier, eq: at_risk}", input_from_mapping(case))
    assert not matches("{field: vendor.score, gt: 50}", input_from_mapping(case))
    with pytest.raises(ValueError, match=r"standing\.tier"):
        input_from_mapping({**case, "standing": {"tier": "gold"}})
