"""`router email import PATH...`: backfill `channel.email` from Maildir folders, mbox files and
single `.eml` files, with a progress bar.

Messages go through the same core as live intake (`router.email.parse`, `router.email.intake`):
records keyed by thread, refused messages to `channel.dlq` with their reason and where they sat
(`maildir:<folder>:<key>`, `mbox:<file>` and the message's index, `file:<path>`; mbox files
are read as mboxrd, `>From ` quoting undone), auto-replies
and bounces open nothing. Event ids derive from each Message-ID, so importing the same mail
twice (an interrupted import run again, or mail the live intake already took) adds nothing.
Records are sent in batches; a batch Kafka does not acknowledge after `IMPORT_ATTEMPTS` tries
stops the import with the count of messages that are surely in Kafka.
"""

from __future__ import annotations

import mailbox
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from router.email.config import EmailConfig
from router.email.intake import Step, intake_step
from router.email.parse import parse_email
from router.records import OutRecord
from schemas.dead_letter import SourcePosition
from streams.gateway.sink import ChannelSink

log = structlog.get_logger("router.email.import")

BATCH = 200  # messages per round trip to Kafka
IMPORT_ATTEMPTS = 5


class _Readable(Protocol):
    def read(self, size: int | None = None, /) -> bytes: ...

    def close(self) -> None: ...


class ImportStopped(RuntimeError):
    """Kafka did not acknowledge a batch; everything before it is in Kafka."""


@dataclass(frozen=True, slots=True)
class Found:
    source: SourcePosition
    raw: bytes


class MailSource:
    """One path: a Maildir folder, an mbox file, or a single message file."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        if (path / "cur").is_dir() or (path / "new").is_dir():
            self.kind = "maildir"
            self._maildir: mailbox.Maildir | None = mailbox.Maildir(path, factory=None,
                                                                    create=False)  # fmt: skip
        elif path.is_file() and _is_mbox(path):
            self.kind = "mbox"
            self._maildir = None
        elif path.is_file():
            self.kind = "file"
            self._maildir = None
        else:
            raise ValueError(f"{path}: not a Maildir folder (cur/, new/), an mbox or a file")

    def __len__(self) -> int:
        if self._maildir is not None:
            return len(self._maildir)
        if self.kind == "mbox":
            box = mailbox.mbox(self.path, create=False)
            try:
                return len(box)
            finally:
                box.close()
        return 1

    def __iter__(self) -> Iterator[Found]:
        if self._maildir is not None:
            for key in sorted(self._maildir.iterkeys()):
                where = SourcePosition(topic=f"maildir:{self.path}:{key}", partition=0, offset=0)
                yield Found(where, self._head(self._maildir.get_file(key)))
        elif self.kind == "mbox":
            box = mailbox.mbox(self.path, create=False)
            try:
                for index, key in enumerate(box.iterkeys()):
                    where = SourcePosition(topic=f"mbox:{self.path}", partition=0, offset=index)
                    yield Found(where, _unquote_from(self._head(box.get_file(key))))
            finally:
                box.close()
        else:
            with self.path.open("rb") as handle:
                raw = self._head(handle)
            yield Found(SourcePosition(topic=f"file:{self.path}", partition=0, offset=0), raw)

    def _head(self, handle: _Readable) -> bytes:
        """At most one byte more than the limit: an oversize message is refused as such
        without being read whole."""
        try:
            return handle.read(self.max_bytes + 1)
        finally:
            handle.close()


_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def _unquote_from(raw: bytes) -> bytes:
    """mbox writers quote body lines starting with `From ` as `>From `; read as mboxrd (one
    `>` less on any `>...>From ` line), which undoes both mboxo and mboxrd quoting."""
    return _QUOTED_FROM.sub(rb"\1", raw)


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


async def import_mail(
    sources: list[MailSource],
    config: EmailConfig,
    sink: ChannelSink,
    advance: Callable[[int], None] = lambda n: None,
) -> Counter[str]:
    """Every message of `sources` onto Kafka; counts by outcome (`record`, `refused`,
    `auto_reply`, `bounce`)."""
    counts: Counter[str] = Counter()
    batch: list[Step] = []
    for source in sources:
        for found in source:
            now = datetime.now(UTC)
            batch.append(intake_step(parse_email(found.raw, config, now, found.source), now))
            if len(batch) >= BATCH:
                await _send(batch, sink, counts)
                advance(len(batch))
                batch = []
    if batch:
        await _send(batch, sink, counts)
        advance(len(batch))
    return counts


async def _send(steps: list[Step], sink: ChannelSink, counts: Counter[str]) -> None:
    records: list[OutRecord] = [r for step in steps for r in step.records]
    for attempt in range(1, IMPORT_ATTEMPTS + 1):
        if not records or all(await sink.send(records)):
            counts.update(step.kind.value for step in steps)
            return
        log.warning("import_batch_not_acknowledged", attempt=attempt, records=len(records))
    done = sum(counts.values())
    raise ImportStopped(
        f"Kafka did not acknowledge a batch after {IMPORT_ATTEMPTS} tries; the first {done} "
        "messages are in Kafka (importing again adds nothing for those)"
    )


def mail_sources(paths: list[Path], max_bytes: int) -> list[MailSource]:
    """Each path as a source; a directory that is not a Maildir contributes its files."""
    out: list[MailSource] = []
    for path in paths:
        if path.is_dir() and not ((path / "cur").is_dir() or (path / "new").is_dir()):
            for name in sorted(os.listdir(path)):
                if (path / name).is_file():
                    out.append(MailSource(path / name, max_bytes))
            continue
        out.append(MailSource(path, max_bytes))
    return out
