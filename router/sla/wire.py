"""Datetimes as pydantic's JSON mode writes them, for records built as plain dicts."""

from __future__ import annotations

from datetime import datetime

from pydantic import TypeAdapter

from router.sla.instants import from_us

_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def iso(moment: datetime) -> str:
    """`2025-03-03T09:00:00Z` for UTC (the usual case, formatted here); pydantic otherwise."""
    offset = moment.utcoffset()
    if offset is not None and not offset:
        return moment.replace(tzinfo=None).isoformat() + "Z"
    return str(_DATETIME.dump_python(moment, mode="json"))


def iso_us(us: int) -> str:
    """The UTC instant `us` microseconds after the epoch."""
    return from_us(us).replace(tzinfo=None).isoformat() + "Z"
