"""Meta webhooks in the core: the subscription handshake, `X-Hub-Signature-256`, and each
product's payload (fixtures written from Meta's documented shapes) -> the engine's records."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.ids import derive_id
from router.inbound import parse_inbound
from router.intake.meta import (
    MAX_CHALLENGE_CHARS,
    SIGNATURE_HEADER,
    Normalised,
    handshake,
    normalise,
    sign,
    verify_signature,
)
from router.intake.request import Problem, Record, Refused
from router.intake.signature import SignatureProblem
from schemas.dead_letter import SourcePosition
from schemas.message import Channel, InboundEvent, SenderRole
from schemas.outbound import MESSAGE_RECEIPT, DeliveryReceiptEvent, Platform, ReceiptStatus
from schemas.topics import DELIVERY_RECEIPTS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "meta"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
APP_SECRET = b"3f1c5e0a9b7d4c2e8f6a1b3d5c7e9f0a"
NEXT_SECRET = b"9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
TOKEN = b"a-verify-token-of-ours"

WABA_PHONE = "106540352242922"
CUSTOMER = "16505551234"
PAGE = "113388404420128"
PSID = "6894532317289912"
IG_ACCOUNT = "17841405822304914"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(fixture(name))
    return doc


def read(body: bytes | dict[str, Any]) -> Normalised:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    out = normalise(raw, NOW, 256 * 1024)
    assert isinstance(out, Normalised), out
    return out


def events(out: Normalised) -> list[InboundEvent]:
    """Each record as the engine reads it from its topic (its own check, once more)."""
    parsed = []
    for record in out.records:
        position = SourcePosition(topic=record.topic, partition=0, offset=0)
        event = parse_inbound(record.value, record.key, position, NOW)
        assert isinstance(event, InboundEvent), event
        assert record.key == event.data.thread_ref.encode()
        assert record.topic == f"channel.{event.data.channel.value}"
        parsed.append(event)
    return parsed


# --- handshake ------------------------------------------------------------------------------


def test_the_handshake_echoes_the_challenge_for_our_token() -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": TOKEN.decode(),
        "hub.challenge": "1158201444",
    }
    answer = handshake(params, TOKEN)
    assert (answer.status, answer.text) == (200, "1158201444")


def hub(mode: str | None = "subscribe", token: str | None = TOKEN.decode(),
        challenge: str | None = "1") -> dict[str, str]:  # fmt: skip
    given = {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}
    return {k: v for k, v in given.items() if v is not None}


@pytest.mark.parametrize(
    ("params", "token", "status"),
    [
        (hub(token="a-guess"), TOKEN, 403),
        (hub(token=None), TOKEN, 403),
        (hub(mode="unsubscribe"), TOKEN, 403),
        (hub(mode=None), TOKEN, 403),
        (hub(token=""), None, 403),  # no token configured
        (hub(challenge=None), TOKEN, 400),
        (hub(challenge="<b>x</b> y"), TOKEN, 400),
        (hub(challenge="9" * (MAX_CHALLENGE_CHARS + 1)), TOKEN, 400),
    ],
)
def test_the_handshake_refuses_a_wrong_token_or_a_bad_challenge(
    params: dict[str, str], token: bytes | None, status: int
) -> None:
    answer = handshake(params, token)
    assert answer.status == status
    assert params.get("hub.challenge", "-") not in answer.text


# --- signatures -----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = fixture("whatsapp_text")
    expected = hmac.new(APP_SECRET, body, hashlib.sha256).hexdigest()
    assert sign(APP_SECRET, body) == f"sha256={expected}"
    assert verify_signature(sign(APP_SECRET, body), body, [APP_SECRET]) is None
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"


def test_either_secret_of_a_rotation_verifies() -> None:
    body = fixture("messenger_text")
    assert verify_signature(sign(NEXT_SECRET, body), body, [APP_SECRET, NEXT_SECRET]) is None
    assert verify_signature(sign(APP_SECRET, body), body, [APP_SECRET, NEXT_SECRET]) is None


BODY = b'{"object":"page","entry":[]}'


@pytest.mark.parametrize(
    ("header", "body", "secrets", "problem"),
    [
        (None, BODY, [APP_SECRET], SignatureProblem.MISSING),
        ("", BODY, [APP_SECRET], SignatureProblem.MISSING),
        ("sha1=" + "0" * 40, BODY, [APP_SECRET], SignatureProblem.MALFORMED),
        ("sha256=" + "G" * 64, BODY, [APP_SECRET], SignatureProblem.MALFORMED),
        ("sha256=" + "0" * 63, BODY, [APP_SECRET], SignatureProblem.MALFORMED),
        (sign(APP_SECRET, BODY).upper(), BODY, [APP_SECRET], SignatureProblem.MALFORMED),
        (sign(APP_SECRET, BODY), BODY + b" ", [APP_SECRET], SignatureProblem.MISMATCH),
        (sign(b"someone-else's-app-secret", BODY), BODY, [APP_SECRET], SignatureProblem.MISMATCH),
        (sign(APP_SECRET, BODY), BODY, [], SignatureProblem.MISMATCH),  # not configured
    ],
)
def test_a_signature_is_refused(
    header: str | None, body: bytes, secrets: list[bytes], problem: SignatureProblem
) -> None:
    result = verify_signature(header, body, secrets)
    assert result is not None
    assert result.problem is problem
    for secret in secrets:
        assert secret.decode() not in result.error


# --- WhatsApp -------------------------------------------------------------------------------


def test_whatsapp_text_messages_become_chat_records_on_the_customer_thread() -> None:
    out = read(fixture("whatsapp_text"))
    assert (out.receipts, out.ignored, out.skipped) == ([], 0, [])
    first, second = events(out)
    thread = f"whatsapp:{WABA_PHONE}:{CUSTOMER}"
    for event in (first, second):
        assert event.data.channel is Channel.CHAT
        assert event.data.thread_ref == thread
        assert event.data.sender.id == CUSTOMER
        assert event.data.sender.role is SenderRole.GUEST
        assert event.data.sender.name == "Sheena Nelson"
        assert event.data.attributes["meta_platform"] == "whatsapp"
        assert event.data.attributes["meta_account_id"] == WABA_PHONE
        assert event.data.attributes["meta_user_id"] == CUSTOMER
        assert "public" not in event.data.attributes
    assert first.data.body == "Does it come in another color?"
    assert first.data.message_id.startswith("wamid.")
    assert first.data.sent_at == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)
    assert second.data.attributes["meta_reply_to"].startswith("wamid.")
    assert first.id == derive_id("gateway", "meta", "chat", first.data.message_id)


def test_whatsapp_media_are_listed_by_id_and_type_never_inline() -> None:
    body = fixture("whatsapp_image")
    image, document = events(read(body))
    assert image.data.body == "The box arrived like this"
    assert [a.model_dump(exclude_none=True) for a in image.data.attachments] == [
        {"name": "image", "content_type": "image/jpeg", "id": "1003383421387256"}
    ]
    assert [a.model_dump(exclude_none=True) for a in document.data.attachments] == [
        {"name": "invoice-4471.pdf", "content_type": "application/pdf", "id": "1290873466049937"}
    ]
    assert document.data.body == ""
    assert b"sha256" not in image.model_dump_json().encode()  # nothing of the file itself


def receipts(out: Normalised) -> list[DeliveryReceiptEvent]:
    for record in out.receipts:
        assert record.topic == DELIVERY_RECEIPTS.name
    found = [DeliveryReceiptEvent.model_validate_json(r.value) for r in out.receipts]
    for record, event in zip(out.receipts, found, strict=True):
        assert (record.key, record.event_id) == (event.data.thread_ref.encode(), event.id)
        assert event.type == MESSAGE_RECEIPT
    return found


def test_whatsapp_statuses_become_receipts_on_the_customer_thread_and_open_nothing() -> None:
    out = read(fixture("whatsapp_status"))
    assert (out.records, out.ignored, out.skipped) == ([], 0, [])
    delivered, seen = receipts(out)
    for receipt in (delivered, seen):
        assert receipt.data.channel is Channel.CHAT
        assert receipt.data.platform is Platform.WHATSAPP
        assert receipt.data.thread_ref == f"whatsapp:{WABA_PHONE}:{CUSTOMER}"
        assert receipt.data.message_ids == (
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
        )
    assert (delivered.data.status, seen.data.status) == (
        ReceiptStatus.DELIVERED, ReceiptStatus.READ,
    )  # fmt: skip
    assert delivered.data.at == datetime(2025, 6, 18, 16, 22, 53, tzinfo=UTC)
    assert delivered.id != seen.id
    assert [r.id for r in receipts(read(fixture("whatsapp_status")))] == [delivered.id, seen.id]


def test_a_failed_whatsapp_status_carries_metas_error_and_an_unknown_one_is_skipped() -> None:
    doc = fixture_doc("whatsapp_status")
    statuses = doc["entry"][0]["changes"][0]["value"]["statuses"]
    statuses[0] = {
        **statuses[0], "status": "failed",
        "errors": [{"code": 131047, "title": "Re-engagement message",
                    "message": "Re-engagement message"}],
    }  # fmt: skip
    statuses[1] = {**statuses[1], "status": "deleted"}
    out = read(doc)
    (failed,) = receipts(out)
    assert failed.data.status is ReceiptStatus.FAILED
    assert failed.data.error == "131047: Re-engagement message"
    assert [s.where for s in out.skipped] == ["entry[0].changes[0].statuses[1]"]


def test_whatsapp_reactions_are_ignored_and_other_types_still_open_a_ticket() -> None:
    doc = fixture_doc("whatsapp_text")
    messages = doc["entry"][0]["changes"][0]["value"]["messages"]
    messages[0] = {
        **messages[0],
        "type": "reaction",
        "reaction": {"message_id": "wamid.x", "emoji": "+"},
    }
    messages[1] = {
        "from": CUSTOMER,
        "id": "wamid.LOC",
        "timestamp": "1749416412",
        "type": "location",
        "location": {"latitude": 38.72, "longitude": -9.14, "name": "Depot"},
    }
    messages.append({"from": CUSTOMER, "id": "wamid.ODD", "timestamp": "1", "type": "contacts"})
    out = read(doc)
    assert out.ignored == 1
    location, odd = events(out)
    assert location.data.body == "[location] Depot 38.72,-9.14"
    assert odd.data.body == "[contacts message]"
    assert odd.data.sent_at is None  # 1970: not a time Meta sends


# --- Messenger ------------------------------------------------------------------------------


def test_messenger_text_becomes_a_chat_record_per_page_and_psid() -> None:
    (event,) = events(read(fixture("messenger_text")))
    assert event.data.channel is Channel.CHAT
    assert event.data.thread_ref == f"messenger:{PAGE}:{PSID}"
    assert event.data.body == "Hi, my refund has not arrived yet"
    assert event.data.message_id.startswith("m_")
    assert event.data.sent_at == datetime(2025, 6, 18, 16, 33, 32, 657000, tzinfo=UTC)  # ms


def test_messenger_attachments_are_listed_and_echoes_and_receipts_open_nothing() -> None:
    out = read(fixture("messenger_attachment"))
    assert out.ignored == 1  # the page's own echo
    (receipt,) = receipts(out)
    assert receipt.data.status is ReceiptStatus.DELIVERED
    assert receipt.data.thread_ref == f"messenger:{PAGE}:{PSID}"  # the customer's thread
    assert receipt.data.message_ids == (
        "m_Echo1pK3dT6yW1sE9uJ4hF5gA2cZ8bN0mV7xK1qP3rT6yU9iO2lS4dF7gH1a2b",
    )
    assert receipt.data.watermark == datetime(2025, 6, 18, 16, 35, 40, 1000, tzinfo=UTC)
    (event,) = events(out)
    assert event.data.body == ""
    assert [a.name for a in event.data.attachments] == ["image"]
    assert "fbcdn" not in event.model_dump_json()  # a link to the file is not the file
    assert event.data.attributes["meta_message_type"] == "attachment"


def test_instagram_direct_messages_are_chat() -> None:
    doc = fixture_doc("messenger_text")
    doc["object"] = "instagram"
    doc["entry"][0]["id"] = IG_ACCOUNT
    doc["entry"][0]["messaging"][0]["recipient"]["id"] = IG_ACCOUNT
    (event,) = events(read(doc))
    assert (event.data.channel, event.data.thread_ref) == (
        Channel.CHAT, f"instagram:{IG_ACCOUNT}:{PSID}"
    )  # fmt: skip


def test_read_receipts_name_a_watermark_or_instagrams_message_and_need_one() -> None:
    def read_event(platform: str, account: str, read_part: Any) -> dict[str, Any]:
        return {"object": platform, "entry": [{"id": account, "time": 1750264600000, "messaging": [{
            "sender": {"id": PSID}, "recipient": {"id": account}, "timestamp": 1750264600500,
            "read": read_part,
        }]}]}  # fmt: skip

    (messenger,) = receipts(read(read_event("page", PAGE, {"watermark": 1750264540001})))
    assert (messenger.data.platform, messenger.data.status) == (
        Platform.MESSENGER, ReceiptStatus.READ,
    )  # fmt: skip
    assert messenger.data.message_ids == ()
    assert messenger.data.thread_ref == f"messenger:{PAGE}:{PSID}"
    assert messenger.data.watermark == datetime(2025, 6, 18, 16, 35, 40, 1000, tzinfo=UTC)
    (instagram,) = receipts(read(read_event("instagram", IG_ACCOUNT, {"mid": "aWdfZAG1faXRl"})))
    assert instagram.data.platform is Platform.INSTAGRAM
    assert instagram.data.message_ids == ("aWdfZAG1faXRl",)
    empty = read(read_event("page", PAGE, {}))
    assert (empty.receipts, [s.error for s in empty.skipped]) == (
        [], ["a receipt names message ids or a watermark"],
    )  # fmt: skip


# --- social: Instagram comments and mentions, Facebook page comments ------------------------


def test_an_instagram_comment_is_public_social() -> None:
    (event,) = events(read(fixture("instagram_comment")))
    data = event.data
    assert data.channel is Channel.SOCIAL
    assert (
        data.thread_ref == f"instagram:{IG_ACCOUNT}:media:18023345678901234:user:17841401234567890"
    )
    assert data.message_id == "17865799348089039"
    assert data.sender.name == "lisbon.rider"
    assert data.body.startswith("@bolt.bikes my order")
    assert data.attributes["public"] is True
    assert data.attributes["meta_comment_id"] == "17865799348089039"


def test_an_instagram_mention_is_public_social_named_by_its_comment() -> None:
    (event,) = events(read(fixture("instagram_mention")))
    data = event.data
    assert data.channel is Channel.SOCIAL
    assert data.thread_ref == f"instagram:{IG_ACCOUNT}:media:17918195224117851"
    assert data.message_id == "17894227972186120"
    assert data.attributes["public"] is True
    assert data.attributes["meta_message_type"] == "mention"


def test_a_facebook_page_comment_is_public_social() -> None:
    (event,) = events(read(fixture("facebook_feed_comment")))
    data = event.data
    assert data.channel is Channel.SOCIAL
    post = f"{PAGE}_122134567890123456"
    assert data.thread_ref == f"facebook:{PAGE}:post:{post}:user:7012345678901234"
    assert data.message_id == "122134567890123456_1098765432109876"
    assert data.sender.name == "Marta Costa"
    assert data.attributes["public"] is True
    assert "meta_parent_id" not in data.attributes  # a top-level comment: its parent is the post


@pytest.mark.parametrize(
    "change",
    [
        {"item": "comment", "verb": "edited"},
        {"item": "comment", "verb": "remove"},
        {"item": "reaction", "verb": "add"},
        {"from": {"id": PAGE, "name": "Bolt Bikes"}},  # the page answering
    ],
)
def test_page_feed_changes_other_than_a_new_customer_comment_are_ignored(
    change: dict[str, Any],
) -> None:
    doc = fixture_doc("facebook_feed_comment")
    doc["entry"][0]["changes"][0]["value"].update(change)
    out = read(doc)
    assert (out.records, out.ignored) == ([], 1)


# --- one body, many items -------------------------------------------------------------------


def test_every_entry_change_and_message_becomes_its_own_record_with_a_stable_id() -> None:
    doc = fixture_doc("whatsapp_text")
    image = fixture_doc("whatsapp_image")
    doc["entry"].append(image["entry"][0])
    doc["entry"][0]["changes"].append(fixture_doc("whatsapp_status")["entry"][0]["changes"][0])
    body = orjson.dumps(doc)
    first, again = read(body), read(body)
    assert len(first.records) == 4
    assert len(first.receipts) == 2
    assert len({r.event_id for r in first.records}) == 4
    assert [r.event_id for r in first.records] == [r.event_id for r in again.records]  # retries


def test_a_malformed_item_is_skipped_with_where_it_was_and_the_rest_kept() -> None:
    doc = fixture_doc("whatsapp_text")
    del doc["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    doc["entry"].append("not an entry")
    out = read(doc)
    assert len(out.records) == 1
    assert [(s.where, s.error) for s in out.skipped] == [
        ("entry[0].changes[0].messages[0]", "from: expected an id"),
        ("entry[1]", "an entry is an object"),
    ]


def test_unknown_objects_and_fields_are_acknowledged_and_dropped() -> None:
    out = read(
        {"object": "user", "entry": [{"id": "1", "changes": [{"field": "email", "value": {}}]}]}
    )
    assert (out.records, out.ignored) == ([], 1)
    assert read({"object": "page"}).records == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "invalid_json"), (b"[]", "schema_violation"),
     (b'{"entry": {"id": 1}}', "schema_violation")],
)  # fmt: skip
def test_a_body_that_is_not_a_webhook_object_is_refused(body: bytes, reason: str) -> None:
    out = normalise(body, NOW, 256 * 1024)
    assert isinstance(out, Refused)
    assert (out.problem, out.reason) == (Problem.INVALID, reason)


def test_long_text_is_clipped_to_what_the_engine_accepts() -> None:
    doc = fixture_doc("whatsapp_text")
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"] = "x" * 70_000
    records = read(doc).records
    assert all(isinstance(r, Record) for r in records)
    assert len(events(read(doc))[0].data.body) == 65_536


def test_a_record_over_the_size_limit_is_skipped_not_produced() -> None:
    doc = fixture_doc("whatsapp_text")
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "x" * 5000
    out = normalise(orjson.dumps(doc), NOW, 4096)
    assert isinstance(out, Normalised)
    assert len(out.records) == 1
    assert out.skipped[0].where == "entry[0].changes[0].messages[0]"


def test_the_fixtures_are_not_changed_by_reading_them() -> None:
    doc = fixture_doc("facebook_feed_comment")
    before = copy.deepcopy(doc)
    read(doc)
    assert doc == before
