"""What the email parser needs to know; the values come from the settings object
(`streams.settings.RouterSettings.email_*`), so each limit is defined once, there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EmailConfig:
    max_bytes: int  # a raw message above this is refused (oversize)
    max_depth: int  # nesting of multiparts and attached messages
    max_parts: int  # MIME parts in all, nested ones included
    keep_raw_bytes: int  # a raw message up to this size travels in the record (base64)
    max_record_bytes: int  # the engine's record limit
    # Our own mailboxes (`support@shop.example`): `support+<token>@shop.example` carries a
    # reply token. Empty: a plus-token on any recipient counts.
    support_addresses: tuple[str, ...] = ()
    vendor_addresses: Mapping[str, str] = field(default_factory=dict)  # address -> vendor id
    order_pattern: str | None = None  # RE2 syntax; group 1 (or the whole match) is the id
    reply_languages: tuple[str, ...] = ("en",)
    # compiled order pattern, built once (re2 ships no types)
    _order: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.order_pattern:
            import re2

            object.__setattr__(self, "_order", re2.compile(self.order_pattern))

    @property
    def order_regex(self) -> Any:
        return self._order
