"""What a compacted topic's records do to the in-memory view every worker keeps of it.

Pure: `streams.kafka.compacted` reads the topic and hands each batch to `KeyedView.apply`.

A view maps each key to the newest valid value: a record replaces its key's value, a
tombstone (null value) removes the key, and an invalid value is reported and skipped, so the
key keeps its previous value. The decoders say what valid means for each topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import ValidationError

from router.buyers import BuyerTickets
from router.routing import VendorStanding
from rules.source import LoadError, parse_text, printable
from schemas.envelope import CloudEvent
from schemas.scores import VENDOR_SCORES, VendorScores
from schemas.vendor import VENDOR_PROFILE, VendorProfile

V = TypeVar("V")


class KeyedRecord(Protocol):
    """The parts of a consumed record a view reads (a Kafka consumer record has them)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Invalid:
    """A record skipped: the view kept the key's previous value."""

    key: str | None
    partition: int
    offset: int
    error: str


@dataclass(slots=True)
class Folded:
    changed: list[str] = field(default_factory=list)  # keys whose value changed, in order
    invalid: list[Invalid] = field(default_factory=list)


class InvalidValue(ValueError):
    """A value that decodes but is not valid for its key (the message is the reason)."""


class KeyedView(Generic[V]):
    """key -> newest valid value; `decode(key, value)` raises ValueError (or KeyError,
    TypeError) with the reason when a value is not valid for its key."""

    def __init__(self, decode: Callable[[str, bytes], V]) -> None:
        self._decode = decode
        self._values: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        return self._values.get(key)

    def __len__(self) -> int:
        return len(self._values)

    def snapshot(self) -> dict[str, V]:
        return dict(self._values)

    def apply(self, records: Iterable[KeyedRecord]) -> Folded:
        """Fold records in order."""
        out = Folded()
        for record in records:
            if record.key is None:
                out.invalid.append(Invalid(None, record.partition, record.offset, "no key"))
                continue
            key = record.key.decode("utf-8", "replace")
            if record.value is None:
                if self._values.pop(key, None) is not None:
                    out.changed.append(key)
                continue
            try:
                value = self._decode(key, record.value)
            except (KeyError, TypeError, ValueError) as exc:
                error = str(exc) if isinstance(exc, InvalidValue) else repr(exc)
                out.invalid.append(Invalid(key, record.partition, record.offset, error))
                continue
            if self._values.get(key) != value:
                self._values[key] = value
                out.changed.append(key)
        return out


def vendor_profile(key: str, value: bytes) -> VendorProfile:
    """A `directory.vendors` value: a `support.vendor.profile` CloudEvent for vendor `key`."""
    try:  # the shared loader refuses a key given twice (JSON parsers keep the last one)
        doc = parse_text(value.decode("utf-8"), f"{key}@directory.vendors", "json").data
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"not UTF-8: {exc}") from None
    except LoadError as exc:
        raise InvalidValue(exc.message if exc.field else str(exc)) from None
    try:
        event = CloudEvent[VendorProfile].model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()[:10]
        where = (".".join(str(p) for p in e["loc"]) for e in errors)
        raise InvalidValue(
            "; ".join(printable(f"{w}: {e['msg']}") for w, e in zip(where, errors, strict=True))
        ) from None
    if event.type != VENDOR_PROFILE:
        raise InvalidValue(f"type {event.type!r} is not {VENDOR_PROFILE!r}")
    if event.data.vendor_id != key:
        raise InvalidValue(f"data.vendor_id {event.data.vendor_id!r} is not the record key {key!r}")
    return event.data


def buyer_tickets(key: str, value: bytes) -> BuyerTickets:
    """A value of the `buyers` table's changelog (`router.buyers`)."""
    return BuyerTickets.from_bytes(value)


def vendor_standing(key: str, value: bytes) -> VendorStanding:
    """A `vendors.scores` value: a `support.vendor.scores` CloudEvent for vendor `key`."""
    try:
        event = CloudEvent[VendorScores].model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)[:5]
        raise InvalidValue("; ".join(
            printable(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") for e in errors
        )) from None  # fmt: skip
    if event.type != VENDOR_SCORES:
        raise InvalidValue(f"type {event.type!r} is not {VENDOR_SCORES!r}")
    if event.data.vendor_id != key:
        raise InvalidValue(f"data.vendor_id {event.data.vendor_id!r} is not the record key {key!r}")
    return VendorStanding(event.data.score, event.data.tier.value)
