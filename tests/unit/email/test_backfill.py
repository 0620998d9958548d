"""Reading stored mail for `router email import`: which paths are what, mbox quoting undone,
oversize messages read only up to one byte past the limit."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from streams.email.backfill import MailSource, _unquote_from, mail_sources


def test_mboxrd_and_mboxo_quoting_is_undone_once() -> None:
    assert _unquote_from(b"a\n>From x\n>>From y\n>Fromage\nFrom z") == (
        b"a\nFrom x\n>From y\n>Fromage\nFrom z")  # fmt: skip


def test_paths_are_told_apart_and_read_within_the_limit(tmp_path: Path) -> None:
    maildir = mailbox.Maildir(tmp_path / "md", create=True)
    maildir.add(b"Subject: one\n\n" + b"x" * 5000)
    box = mailbox.mbox(tmp_path / "a.mbox", create=True)
    box.add(b"Subject: two\n\nFrom here\n")
    box.close()
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "m.eml").write_bytes(b"Subject: three\n\nhi\n")
    sources = mail_sources([tmp_path / "md", tmp_path / "a.mbox", tmp_path / "loose"], 1024)
    assert [(s.kind, len(s)) for s in sources] == [("maildir", 1), ("mbox", 1), ("file", 1)]
    found = [f for s in sources for f in s]
    assert len(found[0].raw) == 1025  # one byte past the limit: refused as oversize
    assert found[1].raw.endswith(b"\n\nFrom here\n")
    assert found[1].source.topic == f"mbox:{tmp_path / 'a.mbox'}"
    assert found[2].raw == b"Subject: three\n\nhi\n"
    with pytest.raises(ValueError, match="not a Maildir folder"):
        MailSource(tmp_path / "missing", 1024)
