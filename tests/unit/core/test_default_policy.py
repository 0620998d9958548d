from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.default_policy import DefaultPolicy, words_of
from router.routing import RoutingContext, TicketFacts
from schemas.message import InboundMessage
from schemas.vendor import VendorProfile, VendorStatus
from tests.factories import inbound_event

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def decide(vendor: VendorProfile | None = None, **kw: object) -> tuple[str, str]:
    msg = InboundMessage.model_validate(inbound_event(**kw)["data"])  # type: ignore[arg-type]
    facts = TicketFacts("T-1", True, 1, frozenset({msg.channel.value}), NOW, 0.0)
    decision = DefaultPolicy().decide(RoutingContext(msg, facts, NOW, vendor=vendor))
    return decision.queue, decision.priority.value


@pytest.mark.parametrize(
    ("kw", "queue"),
    [
        ({"vendor_id": "acme"}, "vendor:acme"),
        ({"vendor_id": "acme", "body": "This is fraud, I want a chargeback"}, "dept:disputes"),
        ({"vendor_id": None, "body": "My item was not received!"}, "dept:disputes"),
        ({"vendor_id": None, "body": "Where is my refund?"}, "dept:payments"),
        ({"vendor_id": None, "body": "The tracking number is wrong"}, "dept:shipping"),
        ({"vendor_id": None, "body": "I can't login to my account"}, "dept:trust_safety"),
        ({"vendor_id": "acme", "role": "seller", "body": "payout question"}, "dept:seller_support"),
        ({"vendor_id": None, "body": "hello there", "channel": "social"}, "dept:social"),
        ({"vendor_id": None, "body": "hello there"}, "dept:general"),
    ],
)
def test_queue_by_vendor_keywords_role_and_channel(kw: dict[str, object], queue: str) -> None:
    assert decide(**kw)[0] == queue


def test_suspended_vendor_goes_to_the_platform_desk() -> None:
    vendor = VendorProfile(vendor_id="acme", status=VendorStatus.SUSPENDED)
    assert decide(vendor=vendor)[0] == "dept:disputes"


def test_social_posts_get_higher_priority() -> None:
    assert decide(channel="social")[1] == "high"
    assert decide(channel="email")[1] == "normal"


# The definition: ASCII punctuation as spaces, per character, then a split on whitespace.
_PUNCTUATION_AS_SPACE = str.maketrans(dict.fromkeys(string.punctuation, " "))


@given(
    st.lists(  # not st.text, which leaves lone surrogates out
        st.one_of(
            st.characters(),
            st.characters(categories=["Cs"]),  # lone surrogates: JSON escapes can make them
            st.sampled_from(string.punctuation + string.whitespace + "\u00e9\u2019\u00a0"),
        )
    ).map("".join)
)
def test_words_are_the_text_split_on_whitespace_and_punctuation(text: str) -> None:
    assert words_of(text) == text.translate(_PUNCTUATION_AS_SPACE).split()


def test_words_keep_non_ascii_letters_and_drop_punctuation() -> None:
    assert words_of("Caf\u00e9: r\u00e9fund?! 2fa-code\u2014\ud800x") == [
        "Caf\u00e9", "r\u00e9fund", "2fa", "code\u2014\ud800x"
    ]
