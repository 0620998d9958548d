"""What a worker makes of `routing.rules` records (hot reload): pure; the I/O is
`streams/stages/rules_reload.py`.

- `ignored`: why a record is not considered (a tombstone, or another ruleset than the one
  the worker was started on), or None;
- `mismatch`: a record whose key is not the name of the ruleset it holds is refused;
- `refusal`: the `support.routing.ruleset_refused` record for `routing.rules.events`, its id
  derived from the refused record's position so every worker reports it with the same id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from router.outputs import engine_record
from router.records import OutRecord
from router.routing import RoutingPolicy
from router.rules_policy import RulesetPolicy
from rules import Problem
from schemas.rules_event import RULESET_REFUSED, RulesetProblem, RulesetRef, RulesetRefused
from schemas.topics import ROUTING_RULES, ROUTING_RULES_EVENTS


def record_key(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key is not None else None


def ignored(pinned: str | None, key: str | None, value: bytes | None) -> str | None:
    """Why a worker following `pinned` (None: any ruleset) skips this record, or None."""
    if value is None:
        return "tombstone"  # deleting a ruleset never leaves a worker without one
    if pinned is not None and key != pinned:
        return "another ruleset"
    return None


def mismatch(where: str, key: str | None, loaded: RulesetPolicy) -> list[Problem] | None:
    """The problem of a record keyed otherwise than the name of the ruleset it holds."""
    if key is None or key == loaded.name:
        return None
    message = f"record key {key!r} is not the ruleset name {loaded.name!r}"
    return [Problem(where, None, None, message)]


def peek(value: bytes) -> tuple[str | None, str | None]:
    """Name and version of a (possibly broken) ruleset record, when readable."""
    try:
        event: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    doc = event.get("data", event) if isinstance(event, dict) else None
    if not isinstance(doc, dict):
        return None, None
    name, version = doc.get("name"), doc.get("version")
    return (
        str(name) if isinstance(name, str | int | float) else None,
        str(version) if isinstance(version, str | int | float) else None,
    )


def same_version(a: RoutingPolicy, b: RulesetPolicy) -> bool:
    return isinstance(a, RulesetPolicy) and (a.name, a.version) == (b.name, b.version)


def same_document(a: RoutingPolicy, b: RulesetPolicy) -> bool:
    assert isinstance(a, RulesetPolicy)
    return bool(a.compiled.ruleset.doc.to_document() == b.compiled.ruleset.doc.to_document())


def refusal(
    name: str,
    version: str | None,
    partition: int,
    offset: int,
    timestamp_ms: int,
    problems: Sequence[Problem],
    kept: RoutingPolicy,
    now: datetime,
) -> OutRecord:
    """The event reporting a refused ruleset record (key: the ruleset name)."""
    data = RulesetRefused(
        ruleset=name,
        version=version,
        topic=ROUTING_RULES.name,
        partition=partition,
        offset=offset,
        published_at=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        problems=[
            RulesetProblem(file=p.file, line=p.line, rule=p.rule_id, message=p.message)
            for p in problems
        ],
        kept=RulesetRef(ruleset=kept.name, version=kept.version),
    ).model_dump(mode="json")
    event_id = f"ruleset-refused:{ROUTING_RULES.name}:{partition}:{offset}"
    return engine_record(ROUTING_RULES_EVENTS.name, name, event_id, RULESET_REFUSED, now, data)
