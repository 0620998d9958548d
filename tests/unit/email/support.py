"""Messages the email tests write themselves, and the parser configured from the settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from router.cli_email import email_config
from router.email.config import EmailConfig
from router.email.parse import Outcome, parse_email
from schemas.dead_letter import SourcePosition
from streams.settings import RouterSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SOURCE = SourcePosition(topic="imap:INBOX", partition=0, offset=7)


def config(**overrides: Any) -> EmailConfig:
    return email_config(RouterSettings().model_copy(update=overrides))


def parse(raw: bytes | str, **overrides: Any) -> Outcome:
    data = raw.encode() if isinstance(raw, str) else raw
    return parse_email(data, config(**overrides), NOW, SOURCE)


def mail(body: str = "Hello, my parcel has not arrived.\n", **headers: str) -> bytes:
    """A plain message; header names with underscores (`Message_ID`) become dashes."""
    fields = {
        "From": "Ana Buyer <ana@buyer.example>",
        "To": "support@shop.example",
        "Subject": "Where is my parcel?",
        "Date": "Tue, 01 Dec 2026 10:00:00 +0100",
        "Message-ID": "<first@buyer.example>",
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=utf-8",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8")
