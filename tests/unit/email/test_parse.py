"""The email parser on messages written here: bodies, charsets, attachments, threading,
vendors and orders, auto-replies and bounces, limits."""

from __future__ import annotations

import base64
import quopri

import orjson
import pytest

from router.email.noise import Noise
from router.email.parse import Classified, Parsed
from router.email.threads import reply_address, thread_ref_for, thread_token
from router.inbound import Rejected, parse_inbound
from schemas.dead_letter import RejectReason
from schemas.message import Channel
from tests.unit.email.support import NOW, SOURCE, mail, parse


def parsed(raw: bytes | str, **overrides: object) -> Parsed:
    outcome = parse(raw, **overrides)
    assert isinstance(outcome, Parsed), outcome
    return outcome


def test_a_plain_message_becomes_a_record_the_engine_accepts() -> None:
    out = parsed(mail())
    data = out.event.data
    assert data.channel is Channel.EMAIL
    assert data.message_id == "first@buyer.example"
    assert data.sender.address == "ana@buyer.example"
    assert data.sender.name == "Ana Buyer"
    assert data.sender.id == "email:ana@buyer.example"
    assert data.subject == "Where is my parcel?"
    assert data.body == "Hello, my parcel has not arrived."
    assert data.sent_at is not None
    assert data.sent_at.utcoffset() is not None
    checked = parse_inbound(out.value, out.key, SOURCE, NOW, expected_channel=Channel.EMAIL)
    assert not isinstance(checked, Rejected)
    assert out.key == data.thread_ref.encode()


def test_the_same_message_twice_is_the_same_event() -> None:
    assert parsed(mail()).event.id == parsed(mail()).event.id
    assert parsed(mail()).event.id != parsed(mail(Message_ID="<other@x>")).event.id


def test_a_message_without_message_id_gets_one_from_its_bytes() -> None:
    a, b = parsed(mail(Message_ID="")), parsed(mail(Message_ID=""))
    assert a.event.data.message_id == b.event.data.message_id
    assert a.event.data.message_id.endswith("@sha256.invalid")


def test_the_original_travels_with_a_small_record_and_is_hashed_always() -> None:
    raw = mail()
    attrs = parsed(raw).event.data.attributes
    assert base64.b64decode(str(attrs["email_raw"])) == raw
    assert attrs["email_size"] == len(raw)
    big = parsed(raw, email_keep_raw_bytes=10).event.data.attributes
    assert "email_raw" not in big
    assert big["email_raw_omitted"] is True
    assert big["email_sha256"] == attrs["email_sha256"]


# --- threading ------------------------------------------------------------------------------

APPLE_ORIGINAL = mail(
    "My order arrived broken.\n",
    From="Ana Buyer <ana@buyer.example>",
    Message_ID="<5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example>",
    X_Mailer="Apple Mail (2.3774.300.61.1.2)",
)
OUTLOOK_REPLY = mail(
    "We are sorry, please send a photo.\n\n"
    "From: Ana Buyer <ana@buyer.example>\nSent: Tuesday, December 1, 2026 10:00\n"
    "To: support@shop.example\nSubject: Broken\n\nMy order arrived broken.\n",
    From="Shop Support <support@shop.example>",
    To="ana@buyer.example",
    Subject="RE: Broken",
    Message_ID="<DB9PR01MB1234567890ABCDEF@DB9PR01MB1234.eurprd01.prod.outlook.example>",
    In_Reply_To="<5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example>",
    References="<5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example>",
    Thread_Topic="Broken",
    Thread_Index="AQHZ1a2b3c4d5e6f7g8h9i0jAAAAAA==",
)
GMAIL_REPLY = mail(
    "Here is the photo.\n\nOn Tue, Dec 1, 2026 at 11:00 AM Shop Support "
    "<support@shop.example> wrote:\n> We are sorry, please send a photo.\n",
    From="Ana Buyer <ana.buyer@gmail.example>",
    Subject="Re: RE: Broken",
    Message_ID="<CAF=abc123+XyZ@mail.gmail.example>",
    In_Reply_To="<DB9PR01MB1234567890ABCDEF@DB9PR01MB1234.eurprd01.prod.outlook.example>",
    References="<5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example>\r\n "
    "<DB9PR01MB1234567890ABCDEF@DB9PR01MB1234.eurprd01.prod.outlook.example>",
)


def test_a_thread_across_three_clients_has_one_thread_ref() -> None:
    refs = {parsed(m).event.data.thread_ref for m in (APPLE_ORIGINAL, OUTLOOK_REPLY, GMAIL_REPLY)}
    assert refs == {
        thread_ref_for(thread_token("5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example"))
    }
    root = parsed(GMAIL_REPLY).event.data.attributes["email_thread_root"]
    assert root == "5A1B2C3D-0000-4E5F-9A8B-112233445566@buyer.example"


def test_in_reply_to_alone_names_the_root() -> None:
    out = parsed(mail(Message_ID="<r@x>", In_Reply_To="<first@buyer.example>"))
    assert out.event.data.thread_ref == parsed(mail()).event.data.thread_ref


def test_quoted_history_is_cut_from_the_body() -> None:
    gmail = parsed(GMAIL_REPLY).event.data
    assert gmail.body == "Here is the photo."
    assert gmail.attributes["email_quoted_removed"] is True
    outlook = parsed(OUTLOOK_REPLY).event.data
    assert outlook.body == "We are sorry, please send a photo."


@pytest.mark.parametrize(
    "attribution",
    [
        "Am 01.12.2026 um 10:00 schrieb Shop Support <support@shop.example>:",
        "Le 1 déc. 2026 à 10:00, Shop Support <support@shop.example> a écrit :",
        "Il giorno mar 1 dic 2026 alle ore 10:00 Shop Support <support@shop.example> ha scritto:",
    ],
)
def test_quoted_history_in_other_languages_is_cut(attribution: str) -> None:
    body = f"Danke, merci, gracias.\n\n{attribution}\n> Bitte ein Foto.\n"
    assert parsed(mail(body)).event.data.body == "Danke, merci, gracias."


def test_a_reply_token_in_a_plus_address_joins_a_ticket_without_headers() -> None:
    token = thread_token("first@buyer.example")
    to = reply_address("support@shop.example", token)
    out = parsed(
        mail(Message_ID="<lost-headers@x>", To=to),
        email_support_addresses=["support@shop.example"],
    )
    assert out.event.data.thread_ref == parsed(mail()).event.data.thread_ref
    assert out.event.data.attributes["email_reply_token"] == token


def test_plus_tags_on_other_mailboxes_are_ignored_when_ours_are_configured() -> None:
    token = thread_token("first@buyer.example")
    out = parsed(
        mail(Message_ID="<m@x>", To=f"someone+t.{token}@elsewhere.example"),
        email_support_addresses=["support@shop.example"],
    )
    assert out.event.data.thread_ref == thread_ref_for(thread_token("m@x"))


def test_vendor_from_plus_address_or_address_map() -> None:
    assert parsed(mail(To="support+v.acme-tools@shop.example")).event.data.vendor_id == "acme-tools"
    mapped = parsed(
        mail(To="Help <Help@Acme.example>"),
        email_vendor_addresses={"help@acme.example": "acme"},
    )
    assert mapped.event.data.vendor_id == "acme"
    assert parsed(mail()).event.data.vendor_id is None


def test_order_id_by_the_configured_pattern() -> None:
    assert parsed(mail(Subject="Order #A1234567 broken")).event.data.order_id == "A1234567"
    assert parsed(mail("my order no. 55-889-221 is late")).event.data.order_id == "55-889-221"
    custom = parsed(mail("ref PO-77"), email_order_pattern=r"PO-(\d+)")
    assert custom.event.data.order_id == "77"
    assert parsed(mail("nothing here")).event.data.order_id is None


# --- encodings ------------------------------------------------------------------------------


def test_encoded_word_subjects_and_names() -> None:
    out = parsed(mail(
        Subject="=?UTF-8?B?UsOpY2xhbWF0aW9u?= =?ISO-8859-1?Q?_commande_n=B0_42?= ok",
        From="=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@x.example>",
    ))  # fmt: skip
    assert out.event.data.subject == "Réclamation commande n° 42 ok"
    assert out.event.data.sender.name == "Jürgen Müller"


def test_an_unknown_charset_in_an_encoded_word_does_not_fail() -> None:
    out = parsed(mail(Subject="=?x-no-such-charset?B?w6TDtsO8?= =?utf-8?Q?bad=ZZ?="))
    assert out.event.data.subject is not None
    assert "äöü" in out.event.data.subject


def _part_mail(payload: bytes, ctype: str, cte: str) -> bytes:
    head = mail(Content_Type=ctype, Content_Transfer_Encoding=cte, body="").rstrip(b"\r\n")
    return head + b"\r\n\r\n" + payload


def test_quoted_printable_body() -> None:
    text = "Grüße aus Köln, die Lieferung fehlt."
    payload = quopri.encodestring(text.encode("iso-8859-1"))
    out = parsed(_part_mail(payload, "text/plain; charset=iso-8859-1", "quoted-printable"))
    assert out.event.data.body == text


def test_base64_body() -> None:
    text = "Привет! Заказ не пришёл."
    payload = base64.encodebytes(text.encode("koi8-r"))
    out = parsed(_part_mail(payload, "text/plain; charset=koi8-r", "base64"))
    assert out.event.data.body == text


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("gb2312", "您好\uff0c我的订单还没有到。"),
        ("iso-2022-jp", "こんにちは、注文がまだ届きません。"),
        ("windows-1258", "Xin chào, đơn hàng chưa giao."),
    ],
)
def test_declared_charsets(charset: str, text: str) -> None:
    encoding = "cp1258" if charset == "windows-1258" else charset
    payload = base64.encodebytes(text.encode(encoding))
    out = parsed(_part_mail(payload, f"text/plain; charset={charset}", "base64"))
    assert out.event.data.body == text
    assert out.event.data.attributes["email_charset_repaired"] is False


def test_a_mislabelled_charset_is_repaired() -> None:
    text = "Grüße, straße, ça va"
    out = parsed(_part_mail(text.encode("utf-8"), "text/plain; charset=iso-8859-1", "8bit"))
    assert out.event.data.body == text
    assert out.event.data.attributes["email_charset_repaired"] is True


def test_an_unknown_charset_falls_back_to_detection() -> None:
    text = "Das ist ein längerer Text über die Lieferung, die nicht ankam. Grüße!"
    raw = _part_mail(text.encode("cp1252"), "text/plain; charset=x-bogus", "8bit")
    out = parsed(raw)
    assert "Lieferung" in out.event.data.body
    assert "\ufffd" not in out.event.data.body
    assert out.event.data.attributes["email_charset_repaired"] is True


def test_raw_8bit_headers_are_decoded() -> None:
    raw = mail(Subject="SUBJ").replace(b"SUBJ", "Zamówienie".encode())
    assert parsed(raw).event.data.subject == "Zamówienie"


# --- structure ------------------------------------------------------------------------------

BOUNDARY = "b1_xyz"


def _multipart(kind: str, *parts: str, boundary: str = BOUNDARY) -> bytes:
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    head = mail(Content_Type=f'multipart/{kind}; boundary="{boundary}"', body="")
    return head.rstrip(b"\r\n") + b"\r\n\r\n" + body.encode("utf-8")


PLAIN = "Content-Type: text/plain; charset=utf-8\r\n\r\nThe plain text."
HTML = (
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><body><p>The <b>HTML</b> text.</p><ul><li>one</li><li>two</li></ul>"
    "<script>ignored()</script></body></html>"
)


def test_alternative_prefers_plain_text() -> None:
    out = parsed(_multipart("alternative", PLAIN, HTML))
    assert out.event.data.body == "The plain text."
    assert out.event.data.attributes["email_body_html"] is False
    assert out.event.data.attachments == []


def test_html_only_is_converted_to_readable_text() -> None:
    body = parsed(_multipart("alternative", HTML)).event.data.body
    assert "The HTML text." in body
    assert "one" in body
    assert "two" in body
    assert "<" not in body
    assert "ignored" not in body


def test_attachments_are_listed_not_inlined() -> None:
    pdf = base64.encodebytes(b"%PDF-1.4 " + b"x" * 1000).decode()
    out = parsed(_multipart(
        "mixed", PLAIN,
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="=?utf-8?q?Rechnung_M=C3=A4rz.pdf?="'
        f"\r\n\r\n{pdf}",
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=",
    ))  # fmt: skip
    data = out.event.data
    assert data.body == "The plain text."
    assert [(a.name, a.content_type, a.size, a.id) for a in data.attachments] == [
        ("Rechnung März.pdf", "application/pdf", 1009, "2"),
        ("part-3.png", "image/png", 8, "3"),
    ]
    assert "PDF-1.4" not in data.body


def test_a_forwarded_message_is_an_attachment() -> None:
    inner = "Subject: Old order\r\nFrom: a@b.example\r\n\r\nold text"
    out = parsed(_multipart("mixed", PLAIN, f"Content-Type: message/rfc822\r\n\r\n{inner}"))
    (attachment,) = out.event.data.attachments
    assert attachment.name == "Old order.eml"
    assert attachment.content_type == "message/rfc822"


# --- noise ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated; owner-email=x@y"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"Precedence": "list"},
        {"X_Autoreply": "yes"},
        {"X_Autorespond": "Out of office"},
        {"X_Auto_Response_Suppress": "All"},
    ],
)
def test_auto_replies_are_classified(headers: dict[str, str]) -> None:
    out = parse(mail("I am out of office until Monday.", **headers))
    assert isinstance(out, Classified)
    assert out.classification.kind is Noise.AUTO_REPLY
    assert out.sender == "ana@buyer.example"


def test_auto_submitted_no_is_a_person() -> None:
    assert isinstance(parse(mail(Auto_Submitted="no", Precedence="normal")), Parsed)


def test_a_delivery_status_notification_is_a_bounce_of_our_message() -> None:
    raw = mail(
        From="Mail Delivery System <MAILER-DAEMON@mx.shop.example>",
        Subject="Undelivered Mail Returned to Sender",
        Auto_Submitted="auto-replied",
        Content_Type=f'multipart/report; report-type=delivery-status; boundary="{BOUNDARY}"',
        body=(
            f"--{BOUNDARY}\nContent-Type: text/plain\n\nThe mail could not be delivered.\n"
            f"--{BOUNDARY}\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.shop.example\n\n"
            "Final-Recipient: rfc822; gone@buyer.example\nAction: failed\n"
            "Status: 5.1.1\n\n"
            f"--{BOUNDARY}\nContent-Type: message/rfc822\n\n"
            "From: support@shop.example\nTo: gone@buyer.example\n"
            "Message-ID: <reply-1@shop.example>\nSubject: Your ticket\n\nHello\n"
            f"--{BOUNDARY}--\n"
        ),
    )
    out = parse(raw)
    assert isinstance(out, Classified)
    assert out.classification.kind is Noise.BOUNCE
    assert out.classification.original_message_id == "reply-1@shop.example"
    assert out.classification.action == "failed"


def test_a_bounce_with_returned_headers_only() -> None:
    raw = _multipart(
        "report",
        "Content-Type: text/plain\r\n\r\nDelayed.",
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; x@y\r\nAction: delayed\r\nStatus: 4.4.1\r\n",
        "Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ours-2@shop.example>\r\n"
        "Subject: hi\r\n",
    ).replace(b"multipart/report;", b"multipart/report; report-type=delivery-status;")
    out = parse(raw)
    assert isinstance(out, Classified)
    assert out.classification.original_message_id == "ours-2@shop.example"
    assert out.classification.action == "delayed"


# --- refusals -------------------------------------------------------------------------------


def _reason(outcome: object) -> RejectReason:
    assert isinstance(outcome, Rejected), outcome
    letter = orjson.loads(outcome.record.value)
    assert letter["data"]["reason"] == outcome.reason.value
    assert dict(outcome.record.headers)["dlq.reason"] == outcome.reason.value.encode()
    return outcome.reason


def test_too_large() -> None:
    out = parse(mail("x" * 3000), email_max_bytes=2048)
    assert _reason(out) is RejectReason.OVERSIZE
    assert isinstance(out, Rejected)
    assert "limit is 2048" in out.error


def test_too_deep() -> None:
    inner = PLAIN
    for level in range(5):
        b = f"lvl{level}"
        inner = (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
                 f"--{b}\r\n{inner}\r\n--{b}--")  # fmt: skip
    assert isinstance(parse(_multipart("mixed", inner)), Parsed)
    out = parse(_multipart("mixed", inner), email_max_mime_depth=3)
    assert _reason(out) is RejectReason.MIME_TOO_DEEP


def test_too_many_parts() -> None:
    raw = _multipart("mixed", *[PLAIN] * 12)
    assert isinstance(parse(raw), Parsed)
    assert _reason(parse(raw, email_max_parts=10)) is RejectReason.TOO_MANY_PARTS


def test_no_sender() -> None:
    assert _reason(parse(mail(From="undisclosed"))) is RejectReason.NO_SENDER
    fallback = parsed(mail(From="", Reply_To="ana@buyer.example"))
    assert fallback.event.data.sender.address == "ana@buyer.example"
    assert fallback.event.data.attributes["email_sender_header"] == "reply-to"


def test_empty_input() -> None:
    assert _reason(parse(b"  \r\n")) is RejectReason.NOT_AN_EMAIL


def test_a_refused_message_keeps_its_bytes_in_the_dead_letter() -> None:
    raw = mail(From="nobody")
    out = parse(raw)
    assert isinstance(out, Rejected)
    original = orjson.loads(out.record.value)["data"]["original"]
    assert original["value"].encode() == raw
    assert orjson.loads(out.record.value)["data"]["source"]["topic"] == "imap:INBOX"


def test_a_long_body_is_clipped_to_the_record_limit() -> None:
    out = parsed(mail("word " * 20_000))
    assert len(out.event.data.body) <= 65_536
    assert out.event.data.body.endswith("[...]")
