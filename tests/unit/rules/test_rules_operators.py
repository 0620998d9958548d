"""Operator semantics, each checked through both evaluators (they must agree)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import RuleInput
from rules.facts import BuyerInfo, TicketInfo, words
from tests.unit.rules.rules_support import decide, make_input, parse


def matches(test: str, inp: RuleInput) -> bool:
    """Whether a one-test rule matches `inp` (both evaluators agree on it)."""
    ruleset = parse(
        f"""\
        - id: probe
          when: {test}
          then: {{route: "dept:disputes"}}
        - id: catch-all
          then: {{route: "dept:general"}}
        """
    )
    return decide(ruleset, inp).rule_id == "probe"


@pytest.mark.parametrize(
    ("test", "fields", "expected"),
    [
        ("{field: message.channel, eq: chat}", {"channel": "chat"}, True),
        ("{field: message.channel, eq: chat}", {"channel": "email"}, False),
        ("{field: message.channel, ne: chat}", {"channel": "email"}, True),
        ("{field: message.channel, in: [chat, social]}", {"channel": "social"}, True),
        ("{field: message.channel, not_in: [chat, social]}", {"channel": "social"}, False),
        ("{field: message.language, eq: DE-at}", {"language": "de-AT"}, True),
        ("{field: message.language_base, eq: de}", {"language": "de-AT"}, True),
        ("{field: message.language, eq: de}", {}, False),
        ("{field: message.language, ne: de}", {}, True),  # absent is "not equal"
        ("{field: message.language, not_in: [de]}", {}, True),
        ("{field: message.language, exists: false}", {}, True),
        ("{field: message.subject, exists: true}", {"subject": ""}, False),  # empty = absent
        ("{field: message.vendor_id, exists: true}", {"vendor_id": "acme"}, True),
        ("{field: sender.role, eq: seller}", {"sender": {"id": "s", "role": "seller"}}, True),
        ("{field: sender.domain, eq: Example.COM}",
         {"sender": {"id": "b", "role": "buyer", "address": "Ann@example.com"}}, True),
        ("{field: message.attributes.public, eq: true}", {"attributes": {"public": True}}, True),
        ("{field: message.attributes.public, eq: 1}", {"attributes": {"public": True}}, False),
        ("{field: message.attributes.count, in: [1, 2]}", {"attributes": {"count": 2}}, True),
        ("{field: message.attributes.count, gt: 1.5}", {"attributes": {"count": 2}}, True),
        ("{field: message.attributes.count, gt: 1}", {"attributes": {"count": "2"}}, False),
        ("{field: message.attributes.src, matches: '^app'}", {"attributes": {"src": "app/ios"}},
         True),
        ("{field: message.attachment_count, gte: 1}",
         {"attachments": [{"name": "a.png"}]}, True),
    ],
)  # fmt: skip
def test_scalar_operators(test: str, fields: dict[str, Any], expected: bool) -> None:
    assert matches(test, make_input(**fields)) is expected


@pytest.mark.parametrize(
    ("phrases", "body", "expected"),
    [
        ("[refund]", "I want a REFUND now", True),
        ("[refund]", "refunds are slow", False),  # whole words only
        ("[scam]", "the scampi were great", False),
        ("[never arrived]", "It   never\n arrived!", True),  # any separators between words
        ("[never arrived]", "never, ever arrived", False),
        ("[didn't arrive]", "it didn\u2019t arrive", True),  # a typographic apostrophe too
        ("[fraud]", "\uff26\uff52\uff41\uff55\uff44!", True),  # NFKC: full-width "Fraud"
        ("[strasse]", "Große STRASSE", True),
        ("[straße]", "in der Strasse", True),  # casefold: ß == ss
        ("[nie angekommen]", "Paket NIE ANGEKOMMEN", True),
        ("[pas reçu]", "colis PAS REÇU", True),
        ("[pas reçu]", "colis pas recu", False),
        ("[o-12345]", "order o-12345 please", True),
    ],
)
def test_contains_any_is_normalised_and_word_bounded(
    phrases: str, body: str, expected: bool
) -> None:
    assert (
        matches(f"{{field: message.body, contains_any: {phrases}}}", make_input(body)) is expected
    )


def test_contains_on_text_fields_and_sets() -> None:
    assert matches("{field: message.text, contains: order status}",
                   make_input("body", subject="Order status?"))  # fmt: skip
    assert matches("{field: message.intent, contains: refund}", make_input("a refund please"))
    assert not matches("{field: message.intent, contains: refund}", make_input("thanks"))
    assert matches("{field: message.intent, exists: true}", make_input("never arrived"))
    assert matches("{field: message.intent, exists: false}", make_input("thanks"))
    ticket = TicketInfo(message_count=2, channels=frozenset({"email", "chat"}), tags=("vip",))
    assert matches("{field: ticket.channels, contains: chat}", make_input(ticket=ticket))
    assert matches("{field: ticket.tags, contains_any: [vip, x]}", make_input(ticket=ticket))
    assert not matches("{field: ticket.tags, contains: x}", make_input(ticket=ticket))


def test_matches_uses_re2() -> None:
    assert matches(r"{field: message.body, matches: '(?i)order\s*#\d{6}'}",
                   make_input("ORDER #123456"))  # fmt: skip
    assert not matches(r"{field: message.body, matches: '^order'}", make_input("my order"))
    assert matches(r"{field: message.body, matches: 'a*'}", make_input(""))  # empty text


def test_matches_is_linear_time_on_a_catastrophic_pattern() -> None:
    body = "a" * 30_000 + "!"
    inp = make_input(body)
    started = time.process_time()
    assert not matches(r"{field: message.body, matches: '^(a+)+$'}", inp)
    assert time.process_time() - started < 2.0  # a backtracking engine would never finish


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ("{field: ticket.message_count, gt: 2}", True),
        ("{field: ticket.message_count, lte: 2}", False),
        ("{field: ticket.age_hours, gte: 30}", True),
        ("{field: ticket.age_hours, lt: 30}", False),
        ("{field: ticket.opened_at, lt: '2024-06-03T12:00:00Z'}", True),
        ("{field: ticket.opened_at, gte: '2024-06-03T12:00:00+00:00'}", False),
        ("{field: message.sent_at, gt: '2024-06-04T09:00:00'}", True),  # naive = UTC
        ("{field: buyer.lifetime_orders, gt: 10}", True),
        ("{field: buyer.open_tickets, eq: 0}", True),
        ("{field: vendor.response_hours, lt: 24}", False),  # absent
    ],
)
def test_comparisons_on_numbers_and_timestamps(test: str, expected: bool) -> None:
    opened = datetime(2024, 6, 3, 0, 0, tzinfo=UTC)
    ticket = TicketInfo(message_count=3, opened_at=opened, age_seconds=34 * 3600.0)
    inp = make_input(ticket=ticket, buyer=BuyerInfo(lifetime_orders=11),
                     sent_at="2024-06-04T09:30:00Z")  # fmt: skip
    assert matches(test, inp) is expected


@pytest.mark.parametrize(
    ("calendar", "now", "vendor_tz", "expected"),
    [
        ("office", "2024-06-04T08:30:00Z", None, True),  # Tue 10:30 Berlin
        ("office", "2024-06-04T06:30:00Z", None, False),  # 08:30 Berlin
        ("office", "2024-06-08T10:00:00Z", None, False),  # Saturday
        ("night", "2024-06-04T23:30:00Z", None, True),  # wraps past midnight
        ("night", "2024-06-05T05:59:00Z", None, True),
        ("night", "2024-06-05T06:00:00Z", None, False),
        ("vendor_hours", "2024-06-04T14:00:00Z", "America/New_York", True),  # 10:00 NY
        ("vendor_hours", "2024-06-04T23:30:00Z", "America/New_York", True),  # 19:30 NY
        ("vendor_hours", "2024-06-05T01:00:00Z", "America/New_York", False),  # 21:00 NY
        ("vendor_hours", "2024-06-04T21:00:00Z", None, False),  # no vendor: fallback UTC
        ("vendor_hours", "2024-06-04T21:00:00Z", "Not/AZone", False),
    ],
)
def test_within_hours(calendar: str, now: str, vendor_tz: str | None, expected: bool) -> None:
    vendor = {"vendor_id": "v1", "timezone": vendor_tz} if vendor_tz else None
    inp = make_input(now=datetime.fromisoformat(now), vendor=vendor, vendor_id="v1")
    assert matches(f"{{field: now, within_hours: {calendar}}}", inp) is expected


def test_vendor_and_buyer_fields_are_absent_without_tables() -> None:
    assert matches("{field: vendor.known, eq: false}", make_input())
    assert matches("{field: buyer.vip, ne: true}", make_input())
    assert not matches("{field: buyer.vip, eq: false}", make_input())  # absent, not false
    assert matches("{field: vendor.tier, eq: gold}",
                   make_input(vendor={"vendor_id": "v", "tier": "gold"}))  # fmt: skip
    assert matches("{field: buyer.vip, eq: true}", make_input(buyer=BuyerInfo(vip=True)))


def test_order_attributes() -> None:
    inp = make_input(order={"status": "delivered", "total": 129.5, "express": False})
    assert matches("{field: order.status, eq: delivered}", inp)
    assert matches("{field: order.total, gte: 100}", inp)
    assert matches("{field: order.express, eq: false}", inp)
    assert matches("{field: order.coupon, exists: false}", inp)
    assert not matches("{field: order.total, eq: '129.5'}", inp)  # no type coercion


def test_nested_all_any_not() -> None:
    test = """{all: [{any: [{field: message.channel, eq: chat},
                              {field: message.channel, eq: social}]},
                       {not: {field: message.intent, contains: refund}}]}"""
    assert matches(test, make_input("hello", channel="chat"))
    assert not matches(test, make_input("refund", channel="chat"))
    assert not matches(test, make_input("hello", channel="email"))


def test_words_fast_path_equals_the_unicode_path() -> None:
    import re
    import unicodedata

    text = "Hello, WORLD_1! it's 2FA-time\ttabs\nnew  lines"
    assert words(text) == re.findall(
        r"\w+", unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    )


def _reference_words(text: str) -> list[str]:
    """`words` as the language defines it: NFKC + casefold, then the `\\w+` runs."""
    import re
    import unicodedata

    return re.findall(
        r"\w+", unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    )


def test_latin1_table_equals_the_unicode_path_for_every_pair_of_characters() -> None:
    # Per pair: a character's folding could only depend on its neighbour through
    # composition, and Latin-1 has nothing that composes; every pair proves it.
    latin1 = [chr(c) for c in range(256)]
    for a in latin1:
        for b in latin1:
            text = f"{a}{b}\u00e9"  # not ASCII: the Latin-1 path, not the ASCII one
            assert words(text) == _reference_words(text), repr(text)


@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=40))
@settings(max_examples=400, deadline=None)
def test_words_of_european_text_equal_the_unicode_path(text: str) -> None:
    # Latin-1 (the table), Latin Extended (beyond it: the full path) and their mixes
    assert words(text) == _reference_words(text)


def test_inline_field_reads_equal_the_registered_getters() -> None:
    """The compiled code reads hot fields inline; each must agree with its getter."""
    from rules.codegen import INLINE, INLINE_NAMES
    from rules.compile import CompiledRuleset
    from rules.facts import Facts
    from rules.fields import resolve
    from rules.index import presence
    from tests.unit.rules.rules_support import parse

    derive = CompiledRuleset(parse("- id: c\n  then: {route: dept:general}\n"))._derive
    inputs = [
        make_input(),
        make_input("refund", subject="Hi", language="de-AT", vendor_id="v1", order_id="o1",
                   vendor={"vendor_id": "v1", "status": "suspended", "tier": "gold"},
                   buyer=BuyerInfo(open_tickets=2, recent_tickets=3, lifetime_orders=4, vip=True),
                   ticket=TicketInfo(message_count=3, channels=frozenset({"chat", "email"}),
                                     age_seconds=7200.0)),
    ]  # fmt: skip
    for inp in [*inputs, *inputs]:  # twice: memoised reads (language base) miss, then hit
        f = Facts(inp, derive)
        for path, expr in INLINE.items():
            spec = resolve(path.rstrip("?"))
            assert spec is not None, path
            getter = presence(spec).getter if path.endswith("?") else spec.getter
            namespace = {"f": f, **INLINE_NAMES}
            assert eval(expr, namespace) == getter(f), path  # our own table, not user input
