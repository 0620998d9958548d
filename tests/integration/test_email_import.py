"""`router email import`: Maildir folders and mbox files onto a real broker, with the same
outcomes as live intake; importing again adds nothing new."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app
from schemas.topics import CHANNEL_DLQ
from tests.harness import Output
from tests.integration.test_email_intake import (
    AUTO_REPLY,
    NO_SENDER,
    create_topics,
    email_settings,
    mail,
    on_topics,
)

pytestmark = pytest.mark.integration

EMAIL = "channel.email"


def test_a_maildir_and_an_mbox_import_once_whatever_the_number_of_runs(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = email_settings(kafka_bootstrap, topic_prefix)
    create_topics(settings)
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for n in range(3):
        maildir.add(mail(f"<md-{n}@buyer.example>", f"Question {n}", "Hello"))
    maildir.add(AUTO_REPLY)
    box = mailbox.mbox(tmp_path / "archive.mbox", create=True)
    box.add(mail("<mb-1@buyer.example>", "Old question", "From the archive\nFrom here on"))
    box.add(NO_SENDER)
    box.close()
    oversize = tmp_path / "big.eml"
    oversize.write_bytes(mail("<big-1@buyer.example>", "Big", "x" * 3000))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ROUTER_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("ROUTER_EMAIL_MAX_BYTES", "2048")
    paths = [str(tmp_path / "Maildir"), str(tmp_path / "archive.mbox"), str(oversize)]
    runner = CliRunner()
    for _ in range(2):  # the second run writes the same ids again
        result = runner.invoke(app, ["email", "import", *paths], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "imported 7 messages: 4 record, 2 refused, 1 auto_reply, 0 bounce" in result.output

    def complete(outs: list[Output]) -> bool:
        return len([o for o in outs if o.topic == EMAIL]) == 8 and len(
            [o for o in outs if o.topic == CHANNEL_DLQ.name]) == 4  # fmt: skip

    outputs = on_topics(settings, [EMAIL, CHANNEL_DLQ.name], complete, "both runs' records")
    records = [o for o in outputs if o.topic == EMAIL]
    assert sorted({o.value["data"]["message_id"] for o in records}) == [
        "mb-1@buyer.example", "md-0@buyer.example", "md-1@buyer.example", "md-2@buyer.example"]
    assert len({o.value["id"] for o in records}) == 4  # two runs, one id per message
    by_id = {o.value["data"]["message_id"]: o.value["data"] for o in records}
    assert by_id["mb-1@buyer.example"]["body"] == "From the archive\nFrom here on"
    letters = [o.value for o in outputs if o.topic == CHANNEL_DLQ.name]
    assert sorted(v["data"]["reason"] for v in letters) == ["no_sender", "no_sender",
                                                            "oversize", "oversize"]
    assert len({v["id"] for v in letters}) == 2  # the same position, the same dead letter
    sources = {v["data"]["source"]["topic"] for v in letters}
    assert sources == {f"mbox:{tmp_path / 'archive.mbox'}", f"file:{oversize}"}
