"""`router connect email` on real servers: a local Dovecot (IMAP) and a real broker; SMTP
intake through aiosmtpd, sent to with smtplib. Nothing here mocks a server."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from router.cli_email import email_config
from schemas.topics import CHANNEL_DLQ, CHANNELS, EMAIL_THREADS, TICKETS_EVENTS
from streams.email.connect import connect_email
from streams.email.imap import ImapIntake
from streams.email.smtp import SmtpIntake
from streams.gateway.sink import ChannelSink
from streams.kafka.topics import TopicManager
from streams.local.dovecot import INSTALL_HINT, LocalDovecot, dovecot_binary
from streams.local.install import free_port
from streams.settings import RouterSettings
from tests.harness import Collector, Output, metrics_url_in, router_command, scrape, wait_for
from tests.integration.conftest import IMAP_PASSWORD as PASSWORD
from tests.integration.conftest import IMAP_USER as USER
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

EMAIL = "channel.email"


def email_settings(bootstrap: str, prefix: str, server: LocalDovecot | None = None,
                   **overrides: Any) -> RouterSettings:  # fmt: skip
    imap: dict[str, Any] = {}
    if server is not None:
        imap = {
            "email_imap_host": "127.0.0.1", "email_imap_port": server.port,
            "email_imap_tls": False, "email_imap_user": USER, "email_imap_password": PASSWORD,
            "email_imap_poll_interval_s": 30,
        }  # fmt: skip
    return RouterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=3,
        **{**imap, **overrides},
    )  # fmt: skip


def create_topics(settings: RouterSettings) -> None:
    names = [t.name for t in CHANNELS.values()] + [CHANNEL_DLQ.name, EMAIL_THREADS.name]
    asyncio.run(TopicManager(settings).ensure(names))


def mail(message_id: str, subject: str, body: str, *, sender: str = "Ana <ana@buyer.example>",
         headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    fields = {
        "From": sender, "To": "support@shop.example", "Subject": subject,
        "Date": "Tue, 01 Dec 2026 10:00:00 +0100", "Message-ID": message_id,
        "MIME-Version": "1.0", "Content-Type": "text/plain; charset=utf-8",
        **(headers or {}),
    }  # fmt: skip
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode()


def append(server: LocalDovecot, *messages: bytes) -> None:
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        for raw in messages:
            client.append("INBOX", raw)


def flags(server: LocalDovecot) -> dict[int, set[bytes]]:
    with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        uids = client.search()
        answer = client.fetch(uids, ["FLAGS"]) if uids else {}
        return {uid: set(data[b"FLAGS"]) for uid, data in answer.items()}


class LoopThread:
    """Runs `body(stop)` on its own event loop in a thread until `stop` is set (or it ends)."""

    def __init__(self, body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self.body = body
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.body(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._started.set()

    def __enter__(self) -> LoopThread:
        self._thread.start()
        assert self._started.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the connector did not stop within 30 s"


class ImapThread(LoopThread):
    def __init__(self, intake: ImapIntake) -> None:
        async def body(stop: asyncio.Event) -> None:
            await intake.sink.start()
            try:
                await intake.run(stop)
            finally:
                await intake.sink.stop()

        super().__init__(body)
        self.intake = intake


def imap_connector(settings: RouterSettings, intake_class: type[ImapIntake] = ImapIntake
                   ) -> ImapThread:  # fmt: skip
    sink = ChannelSink(settings, 10.0, client_id="router-email-test")
    return ImapThread(intake_class(settings, email_config(settings), sink))


def on_topics(settings: RouterSettings, topics: list[str], done: Callable[[list[Output]], bool],
              what: str) -> list[Output]:  # fmt: skip
    collector = Collector(settings.kafka_bootstrap_servers, settings.topic_prefix, topics)
    return collector.poll_until(done, 60, what)


def ids_on(outputs: list[Output], topic: str) -> list[str]:
    return [o.value["data"]["message_id"] for o in outputs if o.topic == topic]


# --- a thread from three mail clients becomes one ticket ---------------------------------------

ORIGINAL = "<C8F1A2B4-1D2E-4F00-9A11-7E3B5D6C7A80@buyer.example>"  # Apple Mail
REPLY = "<AM0PR01MB1234ABCD5678EF90@AM0PR01MB1234.eurprd01.prod.outlook.com>"  # Outlook
REPLY_TO_REPLY = "<CAF=x4Zq7Lm+Qw3v9bT2kR8sYd1NpE@mail.gmail.com>"  # Gmail

THREAD = [
    mail(ORIGINAL, "Where is my parcel? Order ORD-778899", "Hello,\nmy parcel has not arrived.\n"
         "\nSent from my iPhone", headers={"X-Mailer": "iPhone Mail (20G75)"}),
    # Outlook: In-Reply-To only, Thread-Index, a German prefix and quoted history below
    mail(REPLY, "AW: Where is my parcel? Order ORD-778899",
         "Any news?\n\n-----Original Message-----\nFrom: Ana\nmy parcel has not arrived.",
         headers={"In-Reply-To": ORIGINAL, "Thread-Index": "AdnB3kL5r2WQk9XxT0+1aBcDeFgHiA==",
                  "Thread-Topic": "Where is my parcel? Order ORD-778899",
                  "X-MS-Has-Attach": "", "Content-Language": "de-DE"}),
    # Gmail: the whole References chain, "On ... wrote:" with a quote
    mail(REPLY_TO_REPLY, "Re: AW: Where is my parcel? Order ORD-778899",
         "Still nothing, please refund.\n\nOn Tue, Dec 1, 2026 at 11:00 AM Ana <ana@buyer.example>"
         " wrote:\n> Any news?",
         headers={"In-Reply-To": REPLY, "References": f"{ORIGINAL} {REPLY}"}),
]  # fmt: skip


def test_a_thread_from_three_mail_clients_becomes_one_ticket(
    engine: EngineUnderTest, dovecot: LocalDovecot
) -> None:
    settings = email_settings(engine.bootstrap, engine.prefix, dovecot)
    engine.start_worker()
    append(dovecot, *THREAD)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap, "ROUTER_TOPIC_PREFIX": engine.prefix,
        "ROUTER_PARTITIONS": "3", "ROUTER_EMAIL_IMAP_HOST": "127.0.0.1",
        "ROUTER_EMAIL_IMAP_PORT": str(dovecot.port), "ROUTER_EMAIL_IMAP_TLS": "false",
        "ROUTER_EMAIL_IMAP_USER": USER, "ROUTER_EMAIL_IMAP_PASSWORD": PASSWORD,
        "ROUTER_METRICS_PORT": "0",
    }  # fmt: skip
    with router_command(["connect", "email"], env, engine.tmp / "connect.log"):
        wanted = {ORIGINAL.strip("<>"), REPLY.strip("<>"), REPLY_TO_REPLY.strip("<>")}
        outputs = on_topics(
            settings, [EMAIL, TICKETS_EVENTS.name],
            lambda outs: wanted <= {o.value["data"].get("message_id") for o in outs
                                    if o.value["type"] == "support.ticket.message_added"},
            "a message_added event for each of the three messages",
        )  # fmt: skip
        wait_for(lambda: all(b"\\Seen" in f for f in flags(dovecot).values()), 30,
                 "every message flagged \\Seen")  # fmt: skip
        url = metrics_url_in(engine.tmp / "connect.log")
        assert url is not None
        taken = ("router_email_messages_total", (("intake", "imap"), ("outcome", "record")))
        assert scrape(url)[taken] == 3
    records = [o for o in outputs if o.topic == EMAIL]
    assert sorted(ids_on(records, EMAIL)) == sorted(wanted)
    assert len({o.key for o in records}) == 1  # one thread_ref, one partition, in order
    assert {o.value["data"]["order_id"] for o in records} == {"ORD-778899"}
    bodies = {o.value["data"]["message_id"]: o.value["data"]["body"] for o in records}
    assert bodies[REPLY.strip("<>")] == "Any news?"
    assert bodies[REPLY_TO_REPLY.strip("<>")] == "Still nothing, please refund."
    events = [o.value["data"] for o in outputs if o.topic == TICKETS_EVENTS.name]
    added = [e for e in events if e["kind"] == "message_added"]
    assert len({e["ticket_id"] for e in added}) == 1
    assert len([e for e in events if e["kind"] == "opened"]) == 1
    assert PASSWORD not in (engine.tmp / "connect.log").read_text()


# --- auto-replies and bounces open nothing; a refused message is dead-lettered -----------------

AUTO_REPLY = mail("<ooo-1@buyer.example>", "Out of office: Where is my parcel?",
                  "I am away until Monday.", headers={"Auto-Submitted": "auto-replied"})
BOUNCE_ID = "<bounce-1@mx.buyer.example>"
BOUNCE = mail(BOUNCE_ID, "Undelivered Mail Returned to Sender", "", sender="MAILER-DAEMON@mx."
              "buyer.example", headers={"Content-Type": 'multipart/report; report-type='
                                        'delivery-status; boundary="b1"'}).replace(b"\r\n\r\n", (
    b"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
    b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
    b"Final-Recipient: rfc822; nobody@buyer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    b"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <reply-9@shop.example>\r\n"
    b"\r\n--b1--\r\n"), 1)  # fmt: skip
NO_SENDER = b"Subject: who am I\r\nMessage-ID: <anon-1@x.example>\r\n\r\nno From at all\r\n"
SENTINEL = mail("<sentinel-1@buyer.example>", "Last one", "Hello again")
LATE = mail("<late-1@buyer.example>", "Arrived later", "Are you there?")


def test_auto_replies_and_bounces_open_nothing_and_a_refused_message_is_dead_lettered(
    kafka_bootstrap: str, topic_prefix: str, dovecot: LocalDovecot
) -> None:
    settings = email_settings(kafka_bootstrap, topic_prefix, dovecot,
                              email_imap_done_flag="$Routed")  # fmt: skip
    create_topics(settings)
    append(dovecot, AUTO_REPLY, BOUNCE, NO_SENDER, SENTINEL)
    with imap_connector(settings) as connector:
        wait_for(lambda: len(flags(dovecot)) == 4
                 and all(b"$Routed" in f for f in flags(dovecot).values()), 60,
                 "all four messages flagged $Routed")  # fmt: skip
        # the connector now waits in IDLE; the poll interval (30 s) is longer than this wait
        append(dovecot, LATE)
        wait_for(lambda: all(b"$Routed" in f for f in flags(dovecot).values()), 15,
                 "the message that arrived during IDLE flagged")  # fmt: skip
        assert len(flags(dovecot)) == 5
        assert connector.alive
    outputs = on_topics(
        settings, [EMAIL, CHANNEL_DLQ.name],
        lambda outs: {EMAIL, CHANNEL_DLQ.name} <= {o.topic for o in outs}
        and len(ids_on(outs, EMAIL)) == 2,
        "the two records and the dead letter",
    )  # fmt: skip
    assert sorted(ids_on(outputs, EMAIL)) == ["late-1@buyer.example", "sentinel-1@buyer.example"]
    (letter,) = [o for o in outputs if o.topic == CHANNEL_DLQ.name]
    assert letter.value["data"]["reason"] == "no_sender"
    assert letter.value["data"]["source"]["topic"] == f"imap:{USER}@127.0.0.1/INBOX"
    assert letter.value["data"]["original"]["value"] == NO_SENDER.decode()
    # a keyword leaves \Seen to the people who read the mailbox
    assert not any(b"\\Seen" in f for f in flags(dovecot).values())


def test_without_idle_the_connector_polls(kafka_bootstrap: str, topic_prefix: str) -> None:
    if dovecot_binary() is None:
        pytest.skip(f"dovecot is not installed: {INSTALL_HINT}")
    with LocalDovecot(user=USER, password=PASSWORD,
                      capabilities="IMAP4rev1 LITERAL+ UIDPLUS MOVE") as server:  # fmt: skip
        settings = email_settings(kafka_bootstrap, topic_prefix, server,
                                  email_imap_poll_interval_s=0.5)  # fmt: skip
        create_topics(settings)
        with IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            assert not client.has_capability("IDLE")
        with imap_connector(settings) as connector:
            wait_for(lambda: connector.intake.connected.is_set(), 30, "the connector to log in")
            append(server, SENTINEL)  # arrives while the connector waits between polls
            wait_for(lambda: connector.intake.counts["record"] == 1, 30, "the next poll")
            wait_for(lambda: all(b"\\Seen" in f for f in flags(server).values()), 30,
                     "the message flagged")  # fmt: skip


# --- over TLS, with the server's certificate checked against a private CA ---------------------


def test_imap_over_tls_checks_the_certificate_and_takes_mail_in(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    if dovecot_binary() is None or shutil.which("openssl") is None:
        pytest.skip(f"needs dovecot and openssl: {INSTALL_HINT}")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
    )  # fmt: skip
    with LocalDovecot(user=USER, password=PASSWORD, ssl_cert=cert, ssl_key=key) as server:
        settings = email_settings(kafka_bootstrap, topic_prefix, server, email_imap_tls=True,
                                  email_imap_ca_file=cert)  # fmt: skip
        create_topics(settings)
        untrusted = settings.model_copy(update={"email_imap_ca_file": None})
        with pytest.raises(ssl.SSLCertVerificationError):  # the system CAs do not know it
            ImapIntake(untrusted, email_config(untrusted), ChannelSink(untrusted)
                       )._connect_blocking()  # fmt: skip
        context = ssl.create_default_context(cafile=str(cert))
        with IMAPClient("127.0.0.1", port=server.port, ssl=True, ssl_context=context) as client:
            client.login(USER, PASSWORD)
            client.append("INBOX", mail("<tls-1@buyer.example>", "Over TLS", "Hello"))
            with imap_connector(settings) as connector:
                wait_for(lambda: connector.intake.counts["record"] == 1, 60, "the message taken in")
            client.select_folder("INBOX", readonly=True)
            assert [set(f[b"FLAGS"]) for f in client.fetch(client.search(), ["FLAGS"]).values()
                    ] == [{b"\\Seen"}]  # fmt: skip
    outputs = on_topics(settings, [EMAIL], lambda outs: bool(outs), "the record")
    assert ids_on(outputs, EMAIL) == ["tls-1@buyer.example"]


# --- a crash between Kafka's ack and the IMAP flag loses and duplicates nothing ----------------


class Crash(Exception):
    """Stands for the process dying: raised where the flag would be set."""


class CrashBeforeFlagging(ImapIntake):
    async def acknowledged(self, client: Any, uids: Any) -> None:
        raise Crash(f"crashed after Kafka acknowledged {list(uids)}, before flagging them")


def test_a_crash_between_the_kafka_ack_and_the_flag_loses_and_duplicates_nothing(
    engine: EngineUnderTest, dovecot: LocalDovecot
) -> None:
    settings = email_settings(engine.bootstrap, engine.prefix, dovecot)
    engine.start_worker()
    first = mail("<crash-1@buyer.example>", "Refund please", "My order never came.")
    append(dovecot, first)
    with imap_connector(settings, CrashBeforeFlagging) as crashing:
        wait_for(lambda: not crashing.alive, 60, "the connector to crash")
    assert isinstance(crashing.error, Crash)
    assert not any(b"\\Seen" in f for f in flags(dovecot).values())  # not flagged: unread
    # the restarted connector reads the message again; a later one shows it moved past it
    append(dovecot, mail("<crash-2@buyer.example>", "Re: Refund please", "Hello?",
                         headers={"In-Reply-To": "<crash-1@buyer.example>"}))  # fmt: skip
    with imap_connector(settings):
        wait_for(lambda: all(b"\\Seen" in f for f in flags(dovecot).values()), 60,
                 "both messages flagged after the restart")  # fmt: skip
    outputs = on_topics(
        settings, [EMAIL, TICKETS_EVENTS.name],
        lambda outs: "crash-2@buyer.example" in {o.value["data"].get("message_id") for o in outs
                                                 if o.topic == TICKETS_EVENTS.name},
        "the engine to take in the message after the replayed one",
    )  # fmt: skip
    records = [o for o in outputs if o.topic == EMAIL]
    replayed = [o for o in records if o.value["data"]["message_id"] == "crash-1@buyer.example"]
    assert len(replayed) == 2  # produced before the crash and again after it
    assert len({o.value["id"] for o in replayed}) == 1  # with the same event id
    added = [o.value["data"] for o in outputs if o.topic == TICKETS_EVENTS.name
             and o.value["data"]["kind"] == "message_added"]  # fmt: skip
    assert sorted(e["message_id"] for e in added) == ["crash-1@buyer.example",
                                                      "crash-2@buyer.example"]  # fmt: skip
    assert len({e["ticket_id"] for e in added}) == 1


# --- SMTP: 451 while Kafka cannot acknowledge, 250 after --------------------------------------


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                  port: int) -> None:  # fmt: skip
    """A plain TCP relay to the broker: the way to Kafka, opened and closed by the test."""
    upstream_reader, upstream_writer = await asyncio.open_connection(host, port)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def send(port: int, raw: bytes, sender: str = "ana@buyer.example") -> tuple[int, str]:
    """The SMTP answer to DATA (or to the first refused command)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            client.sendmail(sender, ["support@shop.example"], raw)
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode()
        code, _text = client.noop()  # the session is still fine after the message
        assert code == 250
        return 250, "accepted"


def test_smtp_answers_451_while_kafka_is_unreachable_and_250_once_it_is_back(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    relay_port = free_port()
    broker_host, _, broker_port = kafka_bootstrap.rpartition(",")[-1].rpartition(":")
    settings = email_settings(f"127.0.0.1:{relay_port}", topic_prefix, email_smtp_port=0,
                              email_ack_timeout_s=2)  # fmt: skip
    create_topics(settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap}))
    intake = SmtpIntake(settings, email_config(settings),
                        ChannelSink(settings, 2.0, client_id="router-email-test"))  # fmt: skip

    async def body(stop: asyncio.Event) -> None:
        await intake.sink.start()
        await intake.start()
        try:
            await stop.wait()
        finally:
            await intake.stop()
            await intake.sink.stop()

    message = mail("<smtp-1@buyer.example>", "Order ORD-123456 is late", "Where is it?")
    with LoopThread(body) as server:
        wait_for(lambda: intake.port != 0, 30, "the SMTP intake to listen")
        code, text = send(intake.port, message)
        assert (code, text.split(" ")[0]) == (451, "4.3.0"), text  # Kafka cannot be reached
        relay = server.call(asyncio.start_server(
            lambda r, w: forward(r, w, broker_host, int(broker_port)), "127.0.0.1", relay_port))
        try:
            answers: list[tuple[int, str]] = []
            # the sending server retries, as any MTA does after a 4xx
            wait_for(lambda: answers.append(send(intake.port, message)) or answers[-1][0] == 250,
                     60, "a 250 once Kafka is reachable again", poll=0.5)  # fmt: skip
            assert {a[0] for a in answers} <= {250, 451}
            refused = send(intake.port, NO_SENDER)
            noise = send(intake.port, AUTO_REPLY)
        finally:
            relay.close()
    assert refused[0] == 554, refused
    assert "no_sender" in refused[1], refused
    assert noise[0] == 250
    outputs = on_topics(
        settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap}),
        [EMAIL, CHANNEL_DLQ.name],
        lambda outs: {EMAIL, CHANNEL_DLQ.name} <= {o.topic for o in outs},
        "the SMTP message's record and the dead letter",
    )  # fmt: skip
    assert set(ids_on(outputs, EMAIL)) == {"smtp-1@buyer.example"}
    assert len({o.value["id"] for o in outputs if o.topic == EMAIL}) == 1  # retries: one id
    (letter,) = [o for o in outputs if o.topic == CHANNEL_DLQ.name]
    assert letter.value["data"]["reason"] == "no_sender"


# --- replies without threading headers, mail storms: the connector's memory ------------------


def smtp_connector(settings: RouterSettings) -> LoopThread:
    """`router connect email` with only its SMTP side, as the command runs it."""

    async def body(stop: asyncio.Event) -> None:
        await connect_email(settings, email_config(settings), stop, imap=False, smtp=True)

    return LoopThread(body)


def listening(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def test_headerless_replies_join_their_thread_across_restarts_and_storms_are_held(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    port = free_port()
    settings = email_settings(kafka_bootstrap, topic_prefix, email_smtp_port=port,
                              email_sender_burst=2, email_sender_rate_per_hour=1,
                              metrics_port=-1)  # fmt: skip
    create_topics(settings)
    original = mail("<zip-1@buyer.example>", "Broken zipper", "The zipper broke on day one.")
    # an old webmail: no References, no In-Reply-To, no reply address kept
    reply = mail("<zip-2@buyer.example>", "Re: Broken zipper", "Any news?")
    with smtp_connector(settings):
        wait_for(lambda: listening(port), 30, "the SMTP intake to listen")
        assert send(port, original)[0] == 250
        assert send(port, reply)[0] == 250
    # a new process: it reads the memory back from email.threads before it matters
    again = mail("<zip-3@buyer.example>", "AW: Broken zipper", "Hallo?")
    more = mail("<zip-4@buyer.example>", "Broken zipper!", "Hallo??")
    storm = mail("<zip-5@buyer.example>", "Broken zipper!!", "Hallo???")
    with smtp_connector(settings):
        wait_for(lambda: listening(port), 30, "the SMTP intake to listen again")
        outputs = on_topics(settings, [EMAIL_THREADS.name], lambda outs: len(outs) >= 2,
                            "the remembered thread")  # fmt: skip
        assert send(port, again)[0] == 250
        assert send(port, more)[0] == 250
        held = send(port, storm)  # past the burst of 2 of this process, within the hour
    outputs = on_topics(
        settings, [EMAIL, CHANNEL_DLQ.name],
        lambda outs: len(ids_on(outs, EMAIL)) >= 4 and any(
            o.topic == CHANNEL_DLQ.name for o in outs),
        "four records and the held storm message",
    )  # fmt: skip
    threads = {o.value["data"]["message_id"]: o.value["data"]["thread_ref"]
               for o in outputs if o.topic == EMAIL}  # fmt: skip
    assert threads["zip-2@buyer.example"] == threads["zip-1@buyer.example"]
    assert threads["zip-3@buyer.example"] == threads["zip-1@buyer.example"]
    assert "zip-5@buyer.example" not in threads
    (letter,) = [o for o in outputs if o.topic == CHANNEL_DLQ.name]
    assert letter.value["data"]["reason"] == "sender_rate_limited"
    assert held == (250, "accepted")  # held, not bounced
