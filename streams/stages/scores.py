"""The scores stage on Kafka: two agents and their tables (logic: `router.stages.scores`).

- `scores-tickets` reads `tickets.events`, `sla.events` and `tickets.commands` (one stream; all
  three keyed by ticket id by the engine's producer, so a ticket's records and its
  `score-tickets` entry share a partition number) and writes facts to `scores.facts` and
  satisfaction surveys to `outbound.<channel>`.
- `scores-books` reads `scores.facts` (keyed by vendor or queue) into `score-books` and writes
  `vendors.scores`, `vendors.events` and `metrics.support`.
- `VendorStandings`: a worker that routes reads `vendors.scores` whole (a groupless follower,
  like the vendor directory) and gives the rules `vendor.score` and `vendor.score_tier`.

Crash safety is the runner's (outputs before table writes, offsets committed after both)
plus the folds' deduplication: a batch read again re-emits facts with the same ids, which the
books count once. A worker with a new `app_id` (a fresh group and fresh tables) rebuilds
every figure from the start of the topics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router.clock import Clock
from router.routing import VendorStanding
from router.scores.formula import load_formula
from router.scores.tickets import SellerTime, SurveyPolicy
from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config
from router.stages.scores import ScoreBooksProcessor, ScoreTicketsProcessor
from router.views import KeyedView, vendor_standing
from schemas.topics import (
    SCORE_BOOKS_TABLE,
    SCORE_TICKETS_TABLE,
    SCORES_FACTS,
    SLA_EVENTS,
    TICKETS_COMMANDS,
    TICKETS_EVENTS,
    VENDORS_SCORES,
)
from schemas.vendor import VendorProfile
from streams.kafka.compacted import install_follower, view_follower
from streams.kafka.emit import Emitter
from streams.kafka.topics import raw_table, raw_topic
from streams.settings import RouterSettings
from streams.stages.runner import BatchTable, StageRunner, install_stage


class VendorStandings(KeyedView[VendorStanding]):
    """vendor id -> latest score and tier, from `vendors.scores` (every routing worker)."""

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(vendor_standing)
        self.follower = view_follower(
            settings, VENDORS_SCORES.name, self, name="vendor_scores", what="vendor_standings",
            invalid="vendor_scores_invalid", key_field="vendor_id", log_updates=False,
        )  # fmt: skip


def install_standings(app: Any, settings: RouterSettings) -> VendorStandings:
    """Follow `vendors.scores` on this worker (caught up before faust starts)."""
    standings = VendorStandings(settings)
    install_follower(app, standings.follower)
    return standings


def install_scores(
    app: Any,
    settings: RouterSettings,
    emitter: Emitter,
    clock: Clock,
    vendors: Callable[[str], VendorProfile | None] | None = None,
) -> tuple[ScoreTicketsProcessor, ScoreBooksProcessor]:
    """Add the stage's tables and agents to `app`; returns its two processors (counts)."""
    config = load_sla_config(settings.sla_policies_file or DEFAULT_POLICY_FILE)
    formula = load_formula(settings.scores_formula_file)
    tracks = BatchTable.over(raw_table(app, settings, SCORE_TICKETS_TABLE,
                                       "what the scores count of each ticket"))  # fmt: skip
    books = BatchTable.over(raw_table(app, settings, SCORE_BOOKS_TABLE,
                                      "daily tallies per vendor and per queue"))  # fmt: skip
    surveys = SurveyPolicy(settings.survey_enabled, settings.survey_window_s)
    tickets = ScoreTicketsProcessor(
        tracks, SellerTime(config, vendors), surveys, settings.survey_message
    )
    folds = ScoreBooksProcessor(books, formula)
    wait_s = settings.batch_max_wait_ms / 1000
    inputs = raw_topic(app, settings, TICKETS_EVENTS.name, SLA_EVENTS.name, TICKETS_COMMANDS.name)
    first = StageRunner(tickets, [tracks], emitter, clock, settings.logical, with_headers=True)
    install_stage(app, inputs, "scores-tickets", first, settings.batch_max_records, wait_s)
    facts = raw_topic(app, settings, SCORES_FACTS.name)
    second = StageRunner(folds, [books], emitter, clock, settings.logical)
    install_stage(app, facts, "scores-books", second, settings.batch_max_records, wait_s)
    return tickets, folds
