"""What a ruleset evaluates: a plain input record and the per-decision fact view over it.

`RuleInput` is the layer boundary: the router builds one from its `RoutingContext` (see
`router/rules_policy.py`). Ticket and buyer facts are protocols, so the router's own frozen
dataclasses can be passed as they are, without copying.

`Facts` wraps one input for one decision and caches derived values (normalised text,
detected intents, regex hits) so that each is computed at most once per decision, however
many rules look at it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from schemas.message import InboundMessage
from schemas.ticket import Priority
from schemas.vendor import VendorProfile

EMPTY_ORDER: Mapping[str, Any] = MappingProxyType({})


class TicketView(Protocol):
    """Ticket facts before this message is added (router.routing.TicketFacts fits)."""

    @property
    def ticket_id(self) -> str: ...
    @property
    def is_new(self) -> bool: ...
    @property
    def message_count(self) -> int: ...
    @property
    def channels(self) -> AbstractSet[str]: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def age_seconds(self) -> float: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def priority(self) -> Priority | None: ...
    @property
    def tags(self) -> Sequence[str]: ...


class BuyerView(Protocol):
    """Buyer history kept by the engine (router.routing.BuyerHistory fits)."""

    @property
    def open_tickets(self) -> int: ...
    @property
    def recent_tickets(self) -> int: ...
    @property
    def lifetime_orders(self) -> int: ...
    @property
    def vip(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TicketInfo:
    """A concrete TicketView for tools and tests."""

    ticket_id: str = "t-0"
    is_new: bool = True
    message_count: int = 1
    channels: frozenset[str] = frozenset()
    opened_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    age_seconds: float = 0.0
    queue: str | None = None
    priority: Priority | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BuyerInfo:
    """A concrete BuyerView for tools and tests."""

    open_tickets: int = 0
    recent_tickets: int = 0
    lifetime_orders: int = 0
    vip: bool = False


@dataclass(frozen=True, slots=True)
class RuleInput:
    """Everything a rule may look at. `ticket=None` means a new single-message ticket."""

    message: InboundMessage
    now: datetime
    ticket: TicketView | None = None
    vendor: VendorProfile | None = None
    buyer: BuyerView | None = None
    order: Mapping[str, Any] = field(default_factory=lambda: EMPTY_ORDER)


# --- text normalisation -------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
# ASCII fast path: lower-case letters, keep [a-z0-9_], everything else becomes a space.
_ASCII_TABLE = bytes(
    (c | 0x20) if 65 <= c <= 90 else (c if c in _WORD_BYTES else 0x20) for c in range(256)
)


def words(text: str) -> list[str]:
    """NFKC + casefold, then the Unicode word tokens (`\\w+`) of `text`, in order.

    ASCII text takes a byte-level fast path that yields exactly the same tokens.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split()
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return _WORD.findall(folded)


@dataclass(frozen=True, slots=True)
class TextView:
    """Normalised words of one text field: in order, joined (`" a b "`), and as a set."""

    tokens: tuple[str, ...]
    joined: str
    token_set: frozenset[str]

    @classmethod
    def of(cls, text: str | None) -> TextView:
        toks = words(text) if text else []
        return cls(tuple(toks), " " + " ".join(toks) + " ", frozenset(toks))


EMPTY_TEXT = TextView((), "  ", frozenset())


class Derivations(Protocol):
    """Ruleset-level tables the fact view consults (intent keywords, regex sets)."""

    def intents_of(self, view: TextView) -> frozenset[str]: ...

    def regex_hits(self, field_path: str, text: str) -> frozenset[int]: ...


class Facts:
    """One input, one decision: field values and cached derivations."""

    __slots__ = ("_intents", "_rx", "_views", "buyer", "derive", "msg", "now", "order", "ticket",
                 "vendor")

    def __init__(self, inp: RuleInput, derive: Derivations) -> None:
        msg = inp.message
        self.msg = msg
        now = inp.now
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        ticket = inp.ticket
        if ticket is None:
            opened = msg.sent_at or self.now
            ticket = TicketInfo(
                ticket_id=msg.thread_ref,
                channels=frozenset((msg.channel.value,)),
                opened_at=opened if opened.tzinfo is not None else opened.replace(tzinfo=UTC),
            )
        self.ticket: TicketView = ticket
        self.vendor = inp.vendor
        self.buyer = inp.buyer
        self.order = inp.order
        self.derive = derive
        self._views: dict[str, TextView] | None = None
        self._intents: frozenset[str] | None = None
        self._rx: dict[str, frozenset[int]] | None = None

    def view(self, path: str, text_of: Callable[[Facts], Any]) -> TextView:
        """Normalised words of a text field, computed once per decision."""
        views = self._views
        if views is None:
            views = self._views = {}
        v = views.get(path)
        if v is None:
            raw = text_of(self)
            v = views[path] = TextView.of(raw if isinstance(raw, str) else None)
        return v

    def text(self) -> str:
        subject = self.msg.subject
        return f"{subject}\n{self.msg.body}" if subject else self.msg.body

    def intents(self) -> frozenset[str]:
        found = self._intents
        if found is None:
            found = self._intents = self.derive.intents_of(self.view("message.text", _text))
        return found

    def regex_hits(self, path: str, text: str) -> frozenset[int]:
        """Indices (in the ruleset's regex set for `path`) of the patterns found in `text`."""
        rx = self._rx
        if rx is None:
            rx = self._rx = {}
        hits = rx.get(path)
        if hits is None:
            hits = rx[path] = self.derive.regex_hits(path, text)
        return hits


def _text(f: Facts) -> str:
    return f.text()


def aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
