"""Scores benchmark, no Kafka: events folded per second per core, and memory per vendor.

Run from the repository root (not collected by pytest):

    .venv/bin/python tests/bench/bench_scores.py [--vendors 100000] [--tickets-per-vendor 2]

Each ticket is opened, routed, answered by the vendor and resolved (4 `tickets.events`
records) and met its first-response SLA (1 `sla.events` record), spread over 30 days. Both
steps run as the stage runs them (`router.stages.scores`: records parsed from bytes, state read
from and written to bytes tables), timed in process CPU time: a per-core figure (the stage
scales out by partitions). Memory per vendor: the bytes its `score-books` entry holds (key and
value objects, as the faust memory store keeps them, and its share of the dict), at `--vendors`
vendors; the per-ticket `score-tickets` entries are reported apart (they grow with tickets, not
vendors).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson

from router.scores.formula import ScoreFormula
from router.scores.tickets import SellerTime, SurveyPolicy
from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config
from router.stages.contract import InRecord
from router.stages.scores import ScoreBooksProcessor, ScoreTicketsProcessor

START = datetime(2026, 3, 2, tzinfo=UTC)
NOW = START + timedelta(days=31)


def _event(event_id: str, kind: str, tid: str, at: datetime, **data: object) -> bytes:
    body = {"ticket_id": tid, "kind": kind, "at": at.isoformat(), **data}
    return orjson.dumps({"specversion": "1.0", "id": event_id, "source": "bench",
                         "type": f"support.ticket.{kind}", "data": body})  # fmt: skip


def records(vendors: int, per_vendor: int) -> list[InRecord]:
    out: list[InRecord] = []
    for v in range(vendors):
        queue = f"vendor:v{v}"
        for t in range(per_vendor):
            tid = f"T-{v}-{t}"
            key = tid.encode()
            at = START + timedelta(hours=(v * 7 + t * 13) % (30 * 24))
            rows = [
                _event(f"{tid}-o", "opened", tid, at, queue=queue, channel="email",
                       thread_ref=f"th-{tid}", actor="b", sender_role="buyer"),
                _event(f"{tid}-r", "routed", tid, at, queue=queue, priority="normal",
                       sla_policy="standard", ticket={"opened_at": at.isoformat()}),
                _event(f"{tid}-a", "replied", tid, at + timedelta(minutes=40), actor=f"v{v}",
                       sender_role="vendor"),
                _event(f"{tid}-x", "resolved", tid, at + timedelta(hours=5)),
            ]  # fmt: skip
            out.extend(InRecord("tickets.events", 0, 0, key, row) for row in rows)
            sla = {"ticket_id": tid, "kind": "met", "metric": "first_response", "level": 0,
                   "cycle": 0}  # fmt: skip
            value = orjson.dumps({"specversion": "1.0", "id": f"{tid}-m", "source": "bench",
                                  "type": "support.sla.met", "data": sla})  # fmt: skip
            out.append(InRecord("sla.events", 0, 0, key, value))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendors", type=int, default=100_000)
    parser.add_argument("--tickets-per-vendor", type=int, default=2)
    args = parser.parse_args()
    inputs = records(args.vendors, args.tickets_per_vendor)
    config = load_sla_config(DEFAULT_POLICY_FILE)
    tracks: dict[bytes, bytes] = {}
    books: dict[bytes, bytes] = {}
    tickets = ScoreTicketsProcessor(tracks, SellerTime(config), SurveyPolicy(enabled=False))
    folds = ScoreBooksProcessor(books, ScoreFormula())
    facts = 0
    gc.collect()
    started = time.process_time()
    for record in inputs:
        for out in tickets.process(record, NOW):
            facts += 1
            folds.process(InRecord("scores.facts", 0, 0, out.key, out.value), NOW)
    cpu = time.process_time() - started

    vendor_entries = [(k, v) for k, v in books.items() if k.startswith(b"vendor/")]
    slot = sys.getsizeof(books) / max(1, len(books))  # the store dict's own share per entry
    vendor_bytes = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in vendor_entries)
    value_sizes = sorted(len(v) for k, v in books.items() if k.startswith(b"vendor/"))
    track_bytes = sum(len(k) + len(v) for k, v in tracks.items()) / max(1, len(tracks))

    rows = [
        ("input records", f"{len(inputs):,}"),
        ("facts folded", f"{facts:,}"),
        ("CPU seconds (both steps)", f"{cpu:.1f}"),
        ("input events folded per second per core", f"{len(inputs) / cpu:,.0f}"),
        ("vendors", f"{sum(k.startswith(b'vendor/') for k in books):,}"),
        ("memory per vendor (score-books entry, B)",
         f"{vendor_bytes / max(1, len(vendor_entries)) + slot:,.0f}"),
        ("  serialised book, median / max (B)",
         f"{value_sizes[len(value_sizes) // 2]:,} / {value_sizes[-1]:,}"),
        ("per-ticket entry, serialised (B)", f"{track_bytes:,.0f}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>16}")


if __name__ == "__main__":
    main()
