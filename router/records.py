"""Output records as data: the core says what to write; `streams/` writes it."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.topics import QUEUE_DEPT, QUEUE_VENDOR

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce. `topic` is the logical name; streams applies the prefix."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


def queue_topic(queue: str) -> str:
    """`dept:payments` -> `queue.dept.payments`; `vendor:acme` -> `queue.vendor.acme`."""
    kind, _, name = queue.partition(":")
    family = {"dept": QUEUE_DEPT, "vendor": QUEUE_VENDOR}.get(kind)
    if family is None or not name:
        raise ValueError(f"queue must be 'dept:<name>' or 'vendor:<id>', got {queue!r}")
    return family.of(name)
