"""The CloudEvents 1.0 structured-mode envelope every record on every topic uses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# Bumped when a record's shape changes incompatibly; carried as a CloudEvents extension.
SCHEMA_VERSION = "1"

DataT = TypeVar("DataT")

EventId = Annotated[str, Field(min_length=1, max_length=256)]


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0 structured JSON. Unknown top-level attributes are extensions and kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"]
    id: EventId
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: Annotated[str, Field(min_length=1, max_length=256)]
    time: datetime | None = None
    subject: Annotated[str, Field(max_length=1024)] | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    schemaversion: str = SCHEMA_VERSION
    data: DataT


def envelope(
    *,
    event_id: str,
    source: str,
    event_type: str,
    time: datetime,
    subject: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """Build an outbound envelope as a plain dict (fast path: serialised once with orjson)."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": time,
        "subject": subject,
        "datacontenttype": "application/json",
        "schemaversion": SCHEMA_VERSION,
        "data": data,
    }
