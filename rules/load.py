"""Loading entry points: file, text or record bytes -> compiled ruleset, or the problems.

The worker's hot-reload path calls `load_ruleset_document(record.value)` for each record on
`routing.rules`: a list back means "refuse this version and keep the current one".
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path

import orjson

from rules.ast import Ruleset
from rules.compile import CompiledRuleset
from rules.source import MAX_DOCUMENT_CHARS, LoadError, SourceDoc, gc_paused, parse_text
from rules.validate import Problem, validate_source
from schemas.envelope import envelope
from schemas.rules_event import RULESET_PUBLISHED
from schemas.topics import ROUTING_RULES


def parse_ruleset_text(
    text: str,
    file: str = "<string>",
    *,
    fmt: str | None = None,
    sla_policies: Collection[str] | None = None,
) -> Ruleset | list[Problem]:
    """Parse and validate YAML or JSON text (format from the file name, else sniffed)."""
    try:
        src = parse_text(text, file, fmt)
    except LoadError as exc:
        return [Problem(exc.file, exc.line, None, exc.message)]
    return parse_source(src, sla_policies=sla_policies)


def parse_source(
    src: SourceDoc, *, sla_policies: Collection[str] | None = None
) -> Ruleset | list[Problem]:
    with gc_paused():
        ruleset, problems = validate_source(src, sla_policies=sla_policies)
    if ruleset is None:
        return problems
    return ruleset


def parse_ruleset_file(
    path: str | Path, *, sla_policies: Collection[str] | None = None
) -> Ruleset | list[Problem]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(str(p), None, None, f"cannot read: {exc}")]
    return parse_ruleset_text(text, str(p), sla_policies=sla_policies)


def compile_ruleset(ruleset: Ruleset) -> CompiledRuleset:
    with gc_paused():
        return CompiledRuleset(ruleset)


def load_ruleset_file(
    path: str | Path, *, sla_policies: Collection[str] | None = None
) -> CompiledRuleset | list[Problem]:
    parsed = parse_ruleset_file(path, sla_policies=sla_policies)
    return parsed if isinstance(parsed, list) else compile_ruleset(parsed)


def load_ruleset_document(
    data: bytes,
    *,
    source: str = ROUTING_RULES.name,
    sla_policies: Collection[str] | None = None,
) -> CompiledRuleset | list[Problem]:
    """Bytes of a `routing.rules` record (a CloudEvent whose `data` is the ruleset document),
    or of a bare ruleset document in JSON or YAML -> a compiled ruleset, or the problems."""
    if len(data) > MAX_DOCUMENT_CHARS:
        return [Problem(source, None, None, f"document larger than {MAX_DOCUMENT_CHARS} bytes")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(source, None, None, f"not UTF-8: {exc}")]
    try:
        src = parse_text(text, source)
    except LoadError as exc:
        return [Problem(exc.file, exc.line, None, exc.message)]
    doc = src.data
    if isinstance(doc, dict) and "specversion" in doc and "data" in doc:
        src = src.child("data")  # a CloudEvent: the ruleset is its data
    parsed = parse_source(src, sla_policies=sla_policies)
    return parsed if isinstance(parsed, list) else compile_ruleset(parsed)


def ruleset_record(ruleset: Ruleset, *, at: datetime, source: str = "router-cli") -> bytes:
    """The CloudEvent value published on `routing.rules` (key: the ruleset name)."""
    event = envelope(
        event_id=f"{ruleset.name}@{ruleset.version}",
        source=source,
        event_type=RULESET_PUBLISHED,
        time=at,
        subject=ruleset.name,
        data=ruleset.doc.to_document(),
    )
    return orjson.dumps(event)
