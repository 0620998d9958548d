"""The scores stage on Kafka: two runners and their tables, declared on the worker's host
(logic: `router.stages.scores`).

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
from streams.settings import RouterSettings
from streams.stages.host import StageHost
from streams.stages.runner import StageRunner


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
    host: StageHost, vendors: Callable[[str], VendorProfile | None] | None = None
) -> tuple[ScoreTicketsProcessor, ScoreBooksProcessor]:
    """Declare the stage's tables and runners on `host`; returns its two processors
    (counts)."""
    settings, emitter, clock = host.settings, host.emitter, host.clock
    config = load_sla_config(settings.sla_policies_file or DEFAULT_POLICY_FILE)
    formula = load_formula(settings.scores_formula_file)
    tracks = host.table(SCORE_TICKETS_TABLE, "what the scores count of each ticket").batch
    books = host.table(SCORE_BOOKS_TABLE, "daily tallies per vendor and per queue").batch
    surveys = SurveyPolicy(settings.survey_enabled, settings.survey_window_s)
    tickets = ScoreTicketsProcessor(
        tracks, SellerTime(config, vendors), surveys, settings.survey_message
    )
    folds = ScoreBooksProcessor(books, formula)
    first = StageRunner(tickets, [tracks], emitter, clock, settings.logical, with_headers=True)
    host.stage("scores-tickets", [TICKETS_EVENTS.name, SLA_EVENTS.name, TICKETS_COMMANDS.name],
               first)  # fmt: skip
    second = StageRunner(folds, [books], emitter, clock, settings.logical)
    host.stage("scores-books", [SCORES_FACTS.name], second)
    return tickets, folds
