"""IMAP intake: a mailbox's new messages onto `channel.email`, at least once.

Each round searches the mailbox for messages without the done flag (`\\Seen`, or a keyword),
fetches a batch (`BODY.PEEK[]`, so reading sets no flag; at most `email_max_bytes` + 1 bytes
each, so an oversize message is refused without being read whole), parses each with the core
(`router.email.parse`), produces the records of every message, and flags (then, if set, moves)
exactly those whose records Kafka acknowledged. A crash in between leaves a message unflagged:
the next run reads it again and produces a record with the same event id, which the engine
keeps once. Between rounds the connector waits in IDLE (re-issued every poll interval), or
polls where the server has no IDLE; a lost connection is re-opened with a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from router.email.config import EmailConfig
from router.email.intake import Kind, LiveIntake, Step, imap_source
from streams.email.live import live_intake
from streams.gateway.sink import ChannelSink
from streams.settings import RouterSettings

log = structlog.get_logger("router.email.imap")

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
KAFKA_RETRY_S = 1.0  # a round whose records Kafka did not take is tried again after this
IDLE_SLICE_S = 1.0  # an IDLE checks this often whether the connector is stopping
# the connection, the server, the protocol: each ends the session, which is opened again
SESSION_ERRORS = (OSError, TimeoutError, IMAPClientError)


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    raw: bytes


def fetched_messages(answer: Mapping[int, Mapping[bytes, Any]]) -> list[Fetched]:
    """The bodies of a `UID FETCH (BODY.PEEK[]<0.n>)` answer, in UID order (the server names
    the item `BODY[]<0>`, or `BODY[]` when the message is shorter)."""
    out: list[Fetched] = []
    for uid in sorted(answer):
        body = next((v for k, v in answer[uid].items() if k.startswith(b"BODY[")), None)
        if isinstance(body, bytes):
            out.append(Fetched(int(uid), body))
    return out


class ImapIntake:
    def __init__(
        self,
        settings: RouterSettings,
        config: EmailConfig,
        sink: ChannelSink,
        live: LiveIntake | None = None,
    ) -> None:
        if not settings.email_imap_host or not settings.email_imap_user:
            raise ValueError("IMAP intake needs email_imap_host and email_imap_user")
        self.settings = settings
        self.config = config
        self.sink = sink
        self.live = live or live_intake(settings, config)
        self.account = f"{settings.email_imap_user}@{settings.email_imap_host}"
        self.counts: Counter[str] = Counter()
        self.connected = asyncio.Event()  # set while logged in with the mailbox selected
        self._uidvalidity = 0
        self._halt = threading.Event()  # the IMAP thread's view of `stop`

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: connect, take in what waits, wait for more; reconnect on loss."""
        watcher = asyncio.ensure_future(_relay(stop, self._halt))
        backoff = RECONNECT_MIN_S
        try:
            while not stop.is_set():
                client: IMAPClient | None = None
                try:
                    client = await self._connect()
                    backoff = RECONNECT_MIN_S
                    await self._serve(client, stop)
                except SESSION_ERRORS as exc:
                    log.warning("imap_session_failed", account=self.account, error=repr(exc),
                                retry_in_s=backoff)  # fmt: skip
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, RECONNECT_MAX_S)
                finally:
                    self.connected.clear()
                    if client is not None:
                        await asyncio.to_thread(_logout, client)
        finally:
            watcher.cancel()

    async def _connect(self) -> IMAPClient:
        client = await asyncio.to_thread(self._connect_blocking)
        self.connected.set()  # here, on the loop: an asyncio.Event is not thread-safe
        return client

    def _connect_blocking(self) -> IMAPClient:
        s = self.settings
        context = None
        if s.email_imap_tls:
            context = ssl.create_default_context(
                cafile=str(s.email_imap_ca_file) if s.email_imap_ca_file else None
            )
        client = IMAPClient(
            s.email_imap_host or "", port=s.email_imap_port, ssl=s.email_imap_tls,
            ssl_context=context, timeout=s.email_imap_timeout_s,
        )  # fmt: skip
        try:
            password = s.email_imap_password.get_secret_value() if s.email_imap_password else ""
            client.login(s.email_imap_user or "", password)
            selected = client.select_folder(s.email_imap_mailbox)
        except BaseException:
            _logout(client)
            raise
        self._uidvalidity = int(selected.get(b"UIDVALIDITY", 0))
        idle = client.has_capability("IDLE")
        log.info("imap_connected", account=self.account, mailbox=s.email_imap_mailbox, idle=idle)
        return client

    async def _serve(self, client: IMAPClient, stop: asyncio.Event) -> None:
        batch = self.settings.email_imap_batch
        while not stop.is_set():
            pending = await asyncio.to_thread(self._pending, client)
            if pending:
                if await self.take(client, pending[:batch]):
                    await _wait(stop, KAFKA_RETRY_S)  # Kafka did not take them all: later
                continue
            await asyncio.to_thread(self._wait_for_mail, client)

    def _pending(self, client: IMAPClient) -> list[int]:
        flag = self.settings.email_imap_done_flag
        criteria = ["UNSEEN"] if flag.lower() == "\\seen" else ["UNKEYWORD", flag]
        return sorted(int(u) for u in client.search(criteria))

    async def take(self, client: IMAPClient, uids: Sequence[int]) -> int:
        """Fetch, parse and produce these messages; mark those Kafka acknowledged. How many it
        did not (they stay unmarked, to be read again); one expunged meanwhile is not counted."""
        limit = self.config.max_bytes + 1  # one byte more tells an oversize message
        item = f"BODY.PEEK[]<0.{limit}>".encode()
        answer = await asyncio.to_thread(client.fetch, list(uids), [item])
        now = datetime.now(UTC)
        steps: list[tuple[Fetched, Step]] = []
        for message in fetched_messages(answer):
            source = imap_source(self.account, self.settings.email_imap_mailbox,
                                 self._uidvalidity, message.uid)  # fmt: skip
            steps.append((message, self.live.step(message.raw, now, source)))
        records = [r for _, step in steps for r in step.records]
        acked = await self.sink.send(records) if records else []
        done: list[int] = []
        at = 0
        for message, step in steps:
            mine, at = acked[at : at + len(step.records)], at + len(step.records)
            if all(mine):
                done.append(message.uid)
                self._count(message.uid, step)
        if done:
            await self.acknowledged(client, done)
        return len(steps) - len(done)

    async def acknowledged(self, client: IMAPClient, uids: Sequence[int]) -> None:
        """Kafka holds these messages' records: mark them so they are not read again."""
        await asyncio.to_thread(self._mark, client, list(uids))

    def _mark(self, client: IMAPClient, uids: list[int]) -> None:
        client.add_flags(uids, [self.settings.email_imap_done_flag], silent=True)
        if self.settings.email_imap_move_to:
            client.move(uids, self.settings.email_imap_move_to)

    def _count(self, uid: int, step: Step) -> None:
        self.counts[step.kind.value] += 1
        if step.kind is Kind.RECORD:
            return
        event = "email_refused" if step.kind is Kind.REFUSED else "email_not_a_ticket"
        reason = step.reason.value if step.reason else None
        log.info(event, account=self.account, uid=uid, kind=step.kind.value, reason=reason,
                 detail=step.detail[:300])  # fmt: skip

    def _wait_for_mail(self, client: IMAPClient) -> None:
        """Until the server reports a change, the poll interval passes or the connector stops:
        in IDLE where the server has it, else by waiting out the interval."""
        deadline = time.monotonic() + self.settings.email_imap_poll_interval_s
        if not client.has_capability("IDLE"):
            self._halt.wait(max(0.0, deadline - time.monotonic()))
            return
        client.idle()
        try:
            while not self._halt.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or client.idle_check(timeout=min(IDLE_SLICE_S, left)):
                    return
        finally:
            client.idle_done()


async def _relay(stop: asyncio.Event, halt: threading.Event) -> None:
    await stop.wait()
    halt.set()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Up to `seconds`, less when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _logout(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.logout()
