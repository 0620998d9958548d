"""Email intake benchmark: messages parsed per second, and the IMAP -> Kafka intake rate on a
local Dovecot, each next to a baseline run in the same process and run.

    python tests/bench/bench_email.py [--messages N] [--imap-messages M]

- Parse: `router.email.parse.parse_email` over a corpus of generated messages (plain, and
  multipart/alternative with quoted-printable text, base64 HTML, quoted history and a 20 KB
  attachment, encoded-word subjects, Latin-1 bodies), in process CPU time; the baseline is the
  standard library alone on the same corpus (`message_from_bytes` with `policy.default`, the
  preferred body's text and the attachments' names): what the parser adds to reading MIME.
- IMAP intake: M messages appended to a Dovecot mailbox, then `ImapIntake` takes them in
  (fetch, parse, produce with acks=all, flag) until none is left unflagged; the baseline
  produces the same M records straight to Kafka from one process (aiokafka, the engine's
  producer settings). Wall time: the broker and Dovecot share the machine's cores.
A benchmark prints figures; it is never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `router`, `streams`, `tests` importable
    sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaProducer  # noqa: E402
from imapclient import IMAPClient  # noqa: E402

from router.cli_email import email_config  # noqa: E402
from router.email.parse import Parsed, parse_email  # noqa: E402
from schemas.dead_letter import SourcePosition  # noqa: E402
from schemas.message import Channel  # noqa: E402
from schemas.topics import CHANNEL_DLQ, CHANNELS, EMAIL_THREADS  # noqa: E402
from streams.email.imap import ImapIntake  # noqa: E402
from streams.gateway.sink import ChannelSink  # noqa: E402
from streams.kafka.client import producer_kwargs  # noqa: E402
from streams.kafka.topics import TopicManager  # noqa: E402
from streams.local.broker import kafka_for_tests  # noqa: E402
from streams.local.dovecot import LocalDovecot, dovecot_binary  # noqa: E402
from streams.settings import RouterSettings  # noqa: E402

SOURCE = SourcePosition(topic="bench", partition=0, offset=0)
USER, PASSWORD = "bench", "bench-secret"
ATTACHMENT = base64.encodebytes(bytes(range(256)) * 80).decode()  # 20 KB


def message(n: int) -> bytes:
    """The n-th message of the corpus: one of four shapes, every one distinct."""
    head = (
        f"From: =?utf-8?q?Buyer_{n}_M=C3=BCller?= <buyer{n % 97}@buyer.example>\r\n"
        f"To: support+v.vendor{n % 13}@shop.example\r\nMessage-ID: <m{n}@buyer.example>\r\n"
        f"Date: Tue, 01 Dec 2026 10:{n % 60:02d}:00 +0100\r\nMIME-Version: 1.0\r\n"
    )
    shape = n % 4
    if shape == 0:
        return (head + f"Subject: Order ORD-{100000 + n} has not arrived\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                f"Hello, my order ORD-{100000 + n} has not arrived yet.\r\n").encode()
    if shape == 1:
        return (head + "Subject: =?iso-8859-1?q?R=E9clamation_colis?=\r\n"
                "Content-Type: text/plain; charset=iso-8859-1\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + (
                f"Bonjour, le colis n{n} est arrivé abîmé.\r\n".encode("latin-1"))
    html = base64.encodebytes(
        f"<html><body><p>Item {n} is <b>broken</b>.</p><blockquote>On Mon, support wrote:"
        "<br>How can we help?</blockquote></body></html>".encode()).decode()
    alternative = (
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"Item {n} is broken, see the photo.=0D=0A=0D=0AOn Mon, 30 Nov 2026, support wrote:\r\n"
        "> How can we help?\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{html}--alt--\r\n"
    )
    if shape == 2:
        return (head + f"Subject: Re: Broken item {n}\r\nIn-Reply-To: <r{n}@shop.example>\r\n"
                "Content-Type: multipart/alternative; boundary=alt\r\n\r\n"
                + alternative).encode()
    return (head + f"Subject: AW: Broken item {n}\r\nReferences: <r{n}@shop.example>\r\n"
            "Content-Type: multipart/mixed; boundary=mix\r\n\r\n--mix\r\n"
            "Content-Type: multipart/alternative; boundary=alt\r\n\r\n" + alternative
            + "--mix\r\nContent-Type: image/jpeg; name=photo.jpg\r\n"
            "Content-Disposition: attachment; filename=photo.jpg\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{ATTACHMENT}--mix--\r\n").encode()


def stdlib_read(raw: bytes) -> int:
    msg = message_from_bytes(raw, policy=policy.default)
    body = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    text = body.get_content() if body is not None else ""
    names = [part.get_filename() for part in msg.iter_attachments()]  # type: ignore[attr-defined]
    return len(text) + len(names)


def bench_parse(count: int, settings: RouterSettings) -> list[Parsed]:
    corpus = [message(n) for n in range(count)]
    config = email_config(settings)
    now = datetime.now(UTC)
    started = time.process_time()
    for raw in corpus:
        stdlib_read(raw)
    baseline = time.process_time() - started
    started = time.process_time()
    outcomes = [parse_email(raw, config, now, SOURCE) for raw in corpus]
    parsed_s = time.process_time() - started
    records = [o for o in outcomes if isinstance(o, Parsed)]
    print(f"parse: {count} messages ({len(records)} records), "
          f"{count / parsed_s:,.0f} msg/s ({parsed_s / count * 1e6:,.0f} µs CPU each); "
          f"standard library alone {count / baseline:,.0f} msg/s; "
          f"ratio {baseline / parsed_s:.2f}x of the baseline's rate")
    return records


async def produce_direct(settings: RouterSettings, records: list[Parsed]) -> float:
    producer = AIOKafkaProducer(**producer_kwargs(settings), client_id="bench-email-direct")
    await producer.start()
    try:
        topic = settings.topic(CHANNELS[Channel.EMAIL].name)
        started = time.perf_counter()
        futures = [await producer.send(topic, r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def take_in(settings: RouterSettings, server: LocalDovecot, count: int) -> float:
    intake = ImapIntake(settings, email_config(settings),
                        ChannelSink(settings, client_id="bench-email"))  # fmt: skip
    await intake.sink.start()
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(intake.run(stop))
    try:
        while sum(intake.counts.values()) < count:
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"took in {sum(intake.counts.values())} of {count}")
            await asyncio.sleep(0.05)  # wait-ok: polling the counter of the run under test
        return time.perf_counter() - started
    finally:
        stop.set()
        await task
        await intake.sink.stop()


def bench_imap(bootstrap: str, records: list[Parsed], count: int) -> None:
    if dovecot_binary() is None:
        print("imap: skipped, Dovecot (Debian package dovecot-imapd) is not installed")
        return
    prefix = f"bench{int(time.time())}."
    with LocalDovecot(user=USER, password=PASSWORD) as server:
        settings = RouterSettings(
            kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, email_imap_host="127.0.0.1",
            email_imap_port=server.port, email_imap_tls=False, email_imap_user=USER,
            email_imap_password=PASSWORD, email_imap_batch=100, email_sender_rate_per_hour=0,
            metrics_port=-1,
        )  # fmt: skip
        names = [t.name for t in CHANNELS.values()] + [CHANNEL_DLQ.name, EMAIL_THREADS.name]
        asyncio.run(TopicManager(settings).ensure(names))
        with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
            client.login(USER, PASSWORD)
            for n in range(count):
                client.append("INBOX", message(10_000 + n))
        intake_s = asyncio.run(take_in(settings, server, count))
        direct_s = asyncio.run(produce_direct(settings, records[:count]))
    intake_rate, direct_rate = count / intake_s, len(records[:count]) / direct_s
    print(f"imap intake: {count} messages in {intake_s:.2f} s, {intake_rate:,.0f} msg/s; "
          f"straight to Kafka from one process {direct_rate:,.0f} msg/s; "
          f"ratio {intake_rate / direct_rate:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--imap-messages", type=int, default=400)
    args = parser.parse_args()
    records = bench_parse(args.messages, RouterSettings(metrics_port=-1))
    with kafka_for_tests() as bootstrap:
        bench_imap(bootstrap, records, args.imap_messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
