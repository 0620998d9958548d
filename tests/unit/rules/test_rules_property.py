"""Property tests: the compiled evaluator decides exactly as the naive reference does, on
random rulesets and random inputs; and the fast text paths equal the reference ones."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import CompiledRuleset, NaiveEvaluator, RuleInput
from rules.facts import BuyerInfo, TicketInfo, words
from rules.load import parse_ruleset_text
from rules.operators import Phrase, has_phrase
from rules.textmatch import FieldMatcher
from schemas.message import InboundMessage
from schemas.vendor import VendorProfile
from tests.unit.rules.rules_support import same_decision

CHANNELS = ["email", "chat", "social"]
ROLES = ["buyer", "seller", "guest"]
LANGS = ["en", "de", "de-AT", "fr"]
VENDORS = ["v1", "v2", "v3"]
TAGS = ["a", "b", "c"]
PHRASES = ["refund", "money back", "never arrived", "lost", "hacked", "straße", "pas reçu",
           "o-123", "don't", "a b"]  # fmt: skip
VOCAB = [
    *PHRASES,
    "refunds",
    "Refund",
    "REFUND!",
    "never",
    "arrived.",
    "Strasse",
    "PAS REÇU",
    "\ufb01le",
    "\uff2c\uff4f\uff53\uff54",
    "hello",
    "123",
    "o-123",
    "don\u2019t",
    "x_y",
    "a",
    "b",
    ",",
    "--",
    "\n",
]  # fmt: skip  (\ufb01: "fi" ligature; \uff2c...: "Lost")
REGEXES = ["(?i)refund", "^hello", r"\d{3}", "a*", "lost$", r"(?i)\bstra(ss|ß)e\b"]
HEADER = {
    "name": "prop",
    "version": "1",
    "departments": ["d0", "d1", "d2", "fallback"],
    "sla_policies": ["s0", "s1", "s2"],
    "defaults": {"priority": "normal", "sla": "s2"},
    "intents": {
        "refund": ["refund", "money back"],
        "lost": ["never arrived", "lost"],
        "hack": ["hacked", "password"],
        "nonascii": ["straße", "pas reçu"],
    },
    "calendars": {
        "office": {"timezone": "Europe/Berlin", "hours": {"weekdays": ["09:00-17:00"]}},
        "vendor": {"timezone": "vendor", "hours": {"daily": ["20:00-04:00"]}},
    },
}


def _leaf(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, op: value}


def _some(items: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(items), min_size=1, max_size=3, unique=True)


LEAVES = st.one_of(
    st.builds(_leaf, st.just("message.channel"), st.sampled_from(["eq", "ne"]),
              st.sampled_from(CHANNELS)),
    st.builds(_leaf, st.just("message.channel"), st.sampled_from(["in", "not_in"]),
              _some(CHANNELS)),
    st.builds(_leaf, st.just("sender.role"), st.sampled_from(["eq", "ne"]), st.sampled_from(ROLES)),
    st.builds(_leaf, st.sampled_from(["message.language", "message.language_base"]),
              st.sampled_from(["eq", "in"]).flatmap(
                  lambda op: st.tuples(st.just(op), st.sampled_from(LANGS) if op == "eq"
                                       else _some(LANGS))).map(lambda t: t[0]),
              st.sampled_from(["en", "de"])),
    st.builds(_leaf, st.just("message.language"), st.just("in"), _some(["en", "de", "de-at"])),
    st.builds(_leaf, st.just("message.vendor_id"), st.just("eq"), st.sampled_from(VENDORS)),
    st.builds(_leaf, st.just("message.vendor_id"), st.just("in"), _some(VENDORS)),
    st.builds(_leaf, st.sampled_from(["message.vendor_id", "message.language", "message.subject",
                                      "message.intent", "order.status", "vendor.tier"]),
              st.just("exists"), st.booleans()),
    st.builds(_leaf, st.just("message.intent"), st.just("contains"),
              st.sampled_from(sorted(HEADER["intents"]))),
    st.builds(_leaf, st.just("message.intent"), st.just("contains_any"),
              _some(sorted(HEADER["intents"]))),
    st.builds(_leaf, st.sampled_from(["message.text", "message.body", "message.subject"]),
              st.just("contains"), st.sampled_from(PHRASES)),
    st.builds(_leaf, st.sampled_from(["message.text", "message.body"]), st.just("contains_any"),
              _some(PHRASES)),
    st.builds(_leaf, st.sampled_from(["message.body", "message.text", "message.attributes.n"]),
              st.just("matches"), st.sampled_from(REGEXES)),
    st.builds(_leaf, st.sampled_from(["ticket.message_count", "buyer.open_tickets"]),
              st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), st.integers(0, 4)),
    st.builds(_leaf, st.just("ticket.message_count"), st.just("in"),
              st.lists(st.integers(1, 4), min_size=1, max_size=3)),
    st.builds(_leaf, st.just("ticket.age_hours"), st.sampled_from(["gt", "lt"]),
              st.sampled_from([0, 1.5, 24])),
    st.builds(_leaf, st.just("ticket.tags"), st.just("contains"), st.sampled_from(TAGS)),
    st.builds(_leaf, st.just("ticket.tags"), st.just("contains_any"), _some(TAGS)),
    st.builds(_leaf, st.just("ticket.channels"), st.just("contains"), st.sampled_from(CHANNELS)),
    st.builds(_leaf, st.sampled_from(["buyer.vip", "vendor.known", "buyer.known"]),
              st.sampled_from(["eq", "ne"]), st.booleans()),
    st.builds(_leaf, st.just("vendor.status"), st.sampled_from(["eq", "ne"]),
              st.sampled_from(["active", "suspended"])),
    st.builds(_leaf, st.just("vendor.tier"), st.just("in"), _some(["standard", "gold"])),
    st.builds(_leaf, st.just("now"), st.just("within_hours"),
              st.sampled_from(["office", "vendor"])),
    st.builds(_leaf, st.just("ticket.opened_at"), st.sampled_from(["gt", "lte"]),
              st.just("2024-06-03T12:00:00Z")),
    st.builds(_leaf, st.just("order.status"), st.sampled_from(["eq", "ne"]),
              st.sampled_from(["shipped", "delivered"])),
    st.builds(_leaf, st.sampled_from(["order.total", "message.attributes.n"]),
              st.sampled_from(["eq", "gt", "lte", "in"]).flatmap(lambda op: st.just(op)),
              st.sampled_from([1, 2.5, 10])),
    st.builds(_leaf, st.just("message.attributes.n"), st.sampled_from(["eq", "ne"]),
              st.sampled_from([True, False, 1, "1", "x"])),
    st.builds(_leaf, st.just("message.attributes.n"), st.sampled_from(["in", "not_in"]),
              _some([0, 1, True, False, "1", "x"])),
)  # fmt: skip


def _fix_in(leaf: dict[str, Any]) -> dict[str, Any]:
    """`in` / `not_in` take lists: wrap scalar values drawn for the generic leaves."""
    for op in ("in", "not_in"):
        if op in leaf and not isinstance(leaf[op], list):
            leaf[op] = [leaf[op]]
    return leaf


CONDITIONS = st.recursive(
    LEAVES.map(_fix_in),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=0, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)

ACTIONS = st.one_of(
    st.fixed_dictionaries(
        {"route": st.sampled_from(["dept:d0", "dept:d1", "dept:d2"])},
        optional={"priority": st.sampled_from(["low", "normal", "high", "urgent"]),
                  "sla": st.sampled_from(["s0", "s1", "s2"]),
                  "tags": st.lists(st.sampled_from(["x", "y", "ch:{message.channel}"]),
                                   max_size=2)},
    ),
    st.fixed_dictionaries(
        {"route": st.sampled_from(["vendor:{message.vendor_id}", "vendor:v1",
                                   "vendor:{order.vendor}"]),
         "fallback": st.just("dept:fallback")},
        optional={"contract": CONDITIONS, "tags": st.just(["vendor"])},
    ),
    st.fixed_dictionaries(
        {"continue": st.just(True)},
        optional={"priority": st.sampled_from(["low", "high"]),
                  "sla": st.sampled_from(["s0", "s1"]),
                  "tags": st.lists(st.sampled_from(["x", "z", "l:{message.language}",
                                                    "n:{message.attributes.n}"]), max_size=2)},
    ),
)  # fmt: skip


class _NoAliases(yaml.SafeDumper):
    """Write shared sub-documents out in full: rulesets refuse YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@st.composite
def rulesets(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for i in range(draw(st.integers(1, 18))):
        then = draw(ACTIONS)
        rule: dict[str, Any] = {"id": f"r{i}", "then": then}
        if not then.get("continue") or draw(st.booleans()):
            rule["when"] = draw(CONDITIONS)  # terminal rules always have one: no shadowing
        priority = draw(st.sampled_from([None, -1, 0, 1, 2]))
        if priority is not None:
            rule["priority"] = priority
        rules.append(rule)
    rules.append({"id": "catch-all", "priority": -100, "then": {"route": "dept:d0"}})
    return {**HEADER, "rules": rules}


TEXT = st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join)
TIMES = [datetime(2024, 6, 4, h, 30, tzinfo=UTC) for h in (2, 10, 21)]


@st.composite
def inputs(draw: st.DrawFn) -> RuleInput:
    data: dict[str, Any] = {
        "channel": draw(st.sampled_from(CHANNELS)),
        "message_id": "m",
        "thread_ref": "t",
        "sender": {"id": "s", "role": draw(st.sampled_from(ROLES))},
        "body": draw(TEXT),
    }
    optional = {
        "subject": TEXT,
        "language": st.sampled_from(["en", "DE", "de-AT", "fr-CA"]),
        "vendor_id": st.sampled_from(VENDORS),
        "order_id": st.just("o-1"),
        "attributes": st.fixed_dictionaries(
            {"n": st.one_of(st.integers(0, 2), st.booleans(), st.sampled_from(["x", "1", "123"]))}
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            data[key] = draw(strategy)
    msg = InboundMessage.model_validate(data)
    now = draw(st.sampled_from(TIMES))
    ticket = None
    if draw(st.booleans()):
        age = draw(st.sampled_from([0.0, 3600.0, 90_000.0]))
        ticket = TicketInfo(
            message_count=draw(st.integers(1, 5)),
            channels=frozenset(draw(st.lists(st.sampled_from(CHANNELS), min_size=1))),
            opened_at=now - timedelta(seconds=age),
            age_seconds=age,
            tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        )
    vendor = None
    if draw(st.booleans()):
        vendor = VendorProfile(
            vendor_id=draw(st.sampled_from(VENDORS)),
            status=draw(st.sampled_from(["active", "active", "suspended"])),
            tier=draw(st.sampled_from(["standard", "gold"])),
            timezone=draw(st.sampled_from(["UTC", "Asia/Tokyo", "Bad/Zone"])),
        )
    buyer = None
    if draw(st.booleans()):
        buyer = BuyerInfo(open_tickets=draw(st.integers(0, 3)), vip=draw(st.booleans()))
    order: dict[str, Any] = {}
    if draw(st.booleans()):
        order = {"status": draw(st.sampled_from(["shipped", "delivered"])),
                 "total": draw(st.sampled_from([1, 2.5, 12, "10"])),
                 "vendor": draw(st.sampled_from([*VENDORS, "Bad Id"]))}  # fmt: skip
    return RuleInput(message=msg, now=now, ticket=ticket, vendor=vendor, buyer=buyer, order=order)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=rulesets(), batch=st.lists(inputs(), min_size=1, max_size=6), as_json=st.booleans())
def test_compiled_and_naive_evaluators_decide_alike(
    doc: dict[str, Any], batch: list[RuleInput], as_json: bool
) -> None:
    if as_json:
        ruleset = parse_ruleset_text(json.dumps(doc), "random.json")
    else:
        ruleset = parse_ruleset_text(yaml.dump(doc, Dumper=_NoAliases, allow_unicode=True),
                                     "random.yaml")  # fmt: skip
    assert not isinstance(ruleset, list), "\n".join(map(str, ruleset))
    compiled = CompiledRuleset(ruleset)
    naive = NaiveEvaluator(ruleset)
    for inp in batch + batch:  # twice: the second pass runs on warm caches
        fast = compiled.evaluate(inp)
        slow = naive.evaluate(inp, full_trace=True)
        assert same_decision(fast, slow), f"{fast}\n!=\n{slow}"
        # The compact trace names only rules the reference tried, with the same reasons.
        reasons = {(t.rule_id, t.matched): t.reason for t in slow.trace}
        for entry in fast.trace:
            assert reasons[(entry.rule_id, entry.matched)] == entry.reason


ASCII_TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ019_ -.,'!?\t\n#")), max_size=40)


MIXED_TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ019_ -.,'!?\t\n#éÉßẞ\u017f\ufb01\u2019")), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(ASCII_TEXT, MIXED_TEXT), phrases=st.lists(MIXED_TEXT, min_size=1, max_size=6))
def test_token_phrase_matching_equals_the_reference(text: str, phrases: list[str]) -> None:
    matcher = FieldMatcher("message.body", lambda f: f.msg.body)
    for p in phrases:
        toks = tuple(words(p))
        if toks:
            matcher.add_phrase(Phrase(p, toks, " " + " ".join(toks) + " "))
    matcher.build()
    tokens = tuple(words(text))
    expected = {i for i, p in enumerate(matcher.phrase_list) if has_phrase(tokens, p.tokens)}
    assert set(matcher.phrases(text)) == expected
    assert set(matcher.phrases(text + " \u2014")) == expected  # a non-word, non-ASCII char


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_word_tokens_fast_path_equals_the_unicode_definition(text: str) -> None:
    reference = re.findall(
        r"\w+", unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    )
    assert words(text) == reference
