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
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from mypy_extensions import mypyc_attr

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


@mypyc_attr(native_class=False)  # tests give ill-typed values on purpose
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


@mypyc_attr(native_class=False)  # tests give ill-typed values on purpose
@dataclass(frozen=True, slots=True)
class BuyerInfo:
    """A concrete BuyerView for tools and tests."""

    open_tickets: int = 0
    recent_tickets: int = 0
    lifetime_orders: int = 0
    vip: bool = False


class StandingView(Protocol):
    """A vendor's responsiveness score and tier (`vendors.scores`, router.scores)."""

    @property
    def score(self) -> float | None: ...
    @property
    def tier(self) -> str: ...


class InputView(Protocol):
    """What an evaluator reads: `RuleInput`, or any record with these attributes
    (`router.routing.RoutingContext` is one, so the router passes it as it is)."""

    @property
    def message(self) -> InboundMessage: ...
    @property
    def now(self) -> datetime: ...
    @property
    def ticket(self) -> TicketView | None: ...
    @property
    def vendor(self) -> VendorProfile | None: ...
    @property
    def buyer(self) -> BuyerView | None: ...
    @property
    def order(self) -> Mapping[str, Any]: ...
    @property
    def standing(self) -> StandingView | None: ...


class RuleInput(NamedTuple):
    """Everything a rule may look at. `ticket=None` means a new single-message ticket."""

    message: InboundMessage
    now: datetime
    ticket: TicketView | None = None
    vendor: VendorProfile | None = None
    buyer: BuyerView | None = None
    order: Mapping[str, Any] = EMPTY_ORDER
    standing: StandingView | None = None


# --- text normalisation -------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
# ASCII fast path: lower-case letters, keep [a-z0-9_], everything else becomes a space.
ASCII_TABLE = bytes(
    (c | 0x20) if 65 <= c <= 90 else (c if c in _WORD_BYTES else 0x20) for c in range(256)
)


# Latin-1 path (after folding): keep the characters `\w` matches, everything else -> space.
_LATIN1_TABLE = bytes(c if _WORD.fullmatch(chr(c)) else 0x20 for c in range(256))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _latin1_fold_byte(c: int) -> int:
    """What Latin-1 character `c` becomes in `_spaced`, when that is one Latin-1 word
    character or only non-word characters (a space); 0 when it needs the full path
    (ß -> ss, µ -> Greek mu, ½ -> 1, fraction slash, 2: several characters or beyond Latin-1)."""
    folded = _fold(chr(c))
    if not _WORD.search(folded):
        return 0x20
    if len(folded) == 1 and ord(folded) < 256:
        return ord(folded)
    return 0


# The whole of `_spaced` as one byte table for Latin-1 text: in Latin-1 text, NFKC + casefold
# act per character (it has no combining marks, and the marks some of its characters decompose
# to follow a space, which composes with nothing), so the table gives the same tokens
# (property-tested). The NUL byte marks the characters the table cannot map: a NUL of the
# text itself is not a word character, so it becomes a space.
_LATIN1_FOLD_TABLE = bytes(_latin1_fold_byte(c) for c in range(256))


def _spaced(text: str) -> str:
    """Non-ASCII text, NFKC + casefolded, its word tokens separated by spaces (any number)."""
    try:
        folded_latin1 = text.encode("latin-1").translate(_LATIN1_FOLD_TABLE)
    except UnicodeEncodeError:  # beyond Latin-1
        pass
    else:
        if folded_latin1.find(0) < 0:  # ~5x cheaper than normalising twice and casefolding
            return folded_latin1.decode("latin-1")
    folded = _fold(text)
    try:  # a byte table instead of the regex engine: the same tokens
        return folded.encode("latin-1").translate(_LATIN1_TABLE).decode("latin-1")
    except UnicodeEncodeError:  # beyond Latin-1
        return " ".join(_WORD.findall(folded))


def words(text: str) -> list[str]:
    """NFKC + casefold, then the Unicode word tokens (`\\w+`) of `text`, in order.

    ASCII and Latin-1 text take byte-level fast paths that yield exactly the same tokens.
    """
    if text.isascii():
        return text.encode("ascii").translate(ASCII_TABLE).decode("ascii").split()
    return _spaced(text).split()


def spaced_bytes(text: str) -> bytes:
    """The tokens of `words`, UTF-8 encoded, separated by spaces (one or more, maybe also
    before the first and after the last): word characters never encode to an ASCII space."""
    if text.isascii():
        return text.encode("ascii").translate(ASCII_TABLE)
    return _spaced(text).encode()


def word_bytes(text: str) -> list[bytes]:
    """The tokens of `words`, UTF-8 encoded."""
    return spaced_bytes(text).split()


class TextView(NamedTuple):
    """Normalised words of one text field: in order, joined (`" a b "`), and as a set."""

    tokens: tuple[str, ...]
    joined: str
    token_set: frozenset[str]

    @classmethod
    def of(cls, text: str | None) -> TextView:
        if not text:
            return EMPTY_TEXT
        toks = words(text)
        return cls(tuple(toks), " " + " ".join(toks) + " ", frozenset(toks))


EMPTY_TEXT = TextView((), "  ", frozenset())


class _NewTicket:
    """Ticket facts of a first message when the caller gives none (tools, tests)."""

    __slots__ = (
        "age_seconds",
        "channels",
        "is_new",
        "message_count",
        "opened_at",
        "priority",
        "queue",
        "tags",
        "ticket_id",
    )

    def __init__(self, msg: InboundMessage, now: datetime) -> None:
        opened = msg.sent_at or now
        self.ticket_id = msg.thread_ref
        self.is_new = True
        self.message_count = 1
        self.channels = frozenset((msg.channel.value,))
        self.opened_at = opened if opened.tzinfo is not None else opened.replace(tzinfo=UTC)
        self.age_seconds = 0.0
        self.queue: str | None = None
        self.priority: Priority | None = None
        self.tags: tuple[str, ...] = ()


class Hits(NamedTuple):
    """Phrase and regex ids found in a text (the type of `rules.naive`'s empty `matchers`)."""

    phrases: frozenset[int]
    regexes: frozenset[int]


NONE: frozenset[int] = frozenset()


@mypyc_attr(native_class=False)  # the native build cannot subclass frozenset natively
class Found(frozenset[int]):
    """Ids of the phrases (or regexes) a matcher found in one text, and what the compiled
    evaluator derives from them: the ids its index looks rules up by (`indexed`) and, for
    `message.text`, the intents they name. One object per distinct outcome, reused."""

    __slots__ = ("indexed", "intents")

    indexed: frozenset[int]
    intents: frozenset[str]

    @classmethod
    def of(
        cls, ids: Iterable[int], indexed: frozenset[int], intent_of: Mapping[int, Iterable[str]]
    ) -> Found:
        found = cls(ids)
        found.indexed = indexed.intersection(found)
        found.intents = frozenset(name for i in found for name in intent_of.get(i, ()))
        return found


NOTHING = Found.of((), NONE, {})


class Derivations(Protocol):
    """How an evaluator derives intents (computed once per decision)."""

    def intents(self, facts: Facts) -> frozenset[str]: ...


class TextMatcher(Protocol):
    """The compiled evaluator's phrase and regex matching on one text field
    (`rules.textmatch.FieldMatcher`); ids are the positions the matcher registered."""

    @property
    def regex_cache_key(self) -> object: ...
    def text_of(self, facts: Facts) -> Any: ...
    def phrases(self, text: str) -> Found: ...
    def regexes(self, text: str) -> Found: ...


class Facts:
    """One input, one decision: field values and cached derivations."""

    __slots__ = (
        "_intents",
        "_views",
        "buyer",
        "derive",
        "hits",
        "msg",
        "msg_fields",
        "now",
        "order",
        "standing",
        "text_cache",
        "ticket",
        "vendor",
    )

    def __init__(self, inp: InputView, derive: Derivations) -> None:
        if type(inp) is RuleInput:  # one tuple unpacking instead of six attribute reads
            msg, now, ticket, vendor, buyer, order, standing = inp
        else:
            msg, now, ticket = inp.message, inp.now, inp.ticket
            vendor, buyer, order = inp.vendor, inp.buyer, inp.order
            standing = inp.standing
        self.msg = msg
        # The pydantic message's field values: a dict read costs a fraction of a pydantic
        # attribute read (which goes through BaseModel's __getattr__ hook); `rules.codegen`
        # reads hot message fields from here. The message is frozen, so this stays valid.
        self.msg_fields: dict[str, Any] = msg.__dict__
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        self.ticket: TicketView = ticket if ticket is not None else _NewTicket(msg, self.now)
        self.vendor = vendor
        self.buyer = buyer
        self.order = order
        self.standing = standing
        self.derive = derive
        self._views: dict[str, TextView] | None = None
        self._intents: frozenset[str] | None = None
        # `message.text` once built (`text`; `rules.textmatch.FieldMatcher.scan` inlines it).
        self.text_cache: str | None = None
        # Phrase ids found per matcher (keyed by the matcher) and regex ids found per matcher
        # (keyed by its `regex_cache_key`): one dict, as nearly every decision needs both.
        self.hits: dict[object, Found] = {}

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
        text = self.text_cache
        if text is None:
            fields = self.msg_fields
            subject, body = fields["subject"], fields["body"]
            text = self.text_cache = f"{subject}\n{body}" if subject else body
        return text

    def intents(self) -> frozenset[str]:
        found = self._intents
        if found is None:
            found = self._intents = self.derive.intents(self)
        return found

    def phrase_hits(self, m: TextMatcher) -> Found:
        """Ids of `m`'s phrases found in its field, computed once per decision."""
        found = self.hits.get(m)
        if found is None:
            raw = m.text_of(self)
            found = self.hits[m] = m.phrases(raw) if isinstance(raw, str) else NOTHING
        return found

    def regex_hits(self, m: TextMatcher) -> Found:
        """Ids of `m`'s regexes found in its field, computed once per decision."""
        key = m.regex_cache_key
        found = self.hits.get(key)
        if found is None:
            raw = m.text_of(self)
            found = self.hits[key] = m.regexes(raw) if isinstance(raw, str) else NOTHING
        return found


def text_of(f: Facts) -> str:
    """The `message.text` field: subject and body."""
    return f.text()


def aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
