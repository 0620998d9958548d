"""A realistic marketplace message mix for benchmarks and the demo. Pure: no Kafka, no clock.

    traffic = MarketplaceTraffic(seed=7)            # same seed -> byte-identical records
    for channel, key, value, inbound_id in traffic.take(20_000):
        producer.send(f"{prefix}channel.{channel}", value, key=key)
    traffic.counts                                   # Counter: opened, followup, seller, ...

Each record is what a channel connector would write: a CloudEvents `support.message.received`
document keyed by its thread reference. The mix: dozens of vendors, hundreds of buyers,
email/chat/social, follow-ups on recent threads (~30%), sellers writing in about their own
shop, guests posting on social, and a small fraction of malformed records (invalid JSON,
schema violation, unknown channel, oversize) whose `inbound_id` is None. A malformed record
is keyed by a thread reference of its own, so a test can find its dead letter by key.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from router import traffic_corpus as corpus

CHANNEL_WEIGHTS = {"email": 50, "chat": 35, "social": 15}
# Kind of malformed record -> the dead-letter reason the engine gives it.
MALFORMED_KINDS = {
    "invalid_json": "invalid_json",
    "schema_violation": "schema_violation",
    "unknown_channel": "unknown_channel",
    "oversize": "oversize",
}
_MALFORMED_WEIGHTS = {
    "invalid_json": 35,
    "schema_violation": 35,
    "unknown_channel": 22,
    "oversize": 8,
}
START_TIME = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class TrafficRecord(NamedTuple):
    channel: str  # email | chat | social: the record goes to `<prefix>channel.<channel>`
    key: bytes  # the thread key (thread_ref), as connectors key their records
    value: bytes  # CloudEvents JSON, or deliberately broken bytes when malformed
    inbound_id: str | None  # the CloudEvent id; None for a malformed record


@dataclass(frozen=True, slots=True)
class Vendor:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Buyer:
    id: str
    name: str
    address: str


@dataclass
class Thread:
    channel: str
    thread_ref: str
    sender: dict[str, Any]
    subject: str
    vendor_id: str | None
    order_id: str | None
    language: str
    messages: int = 1


class MarketplaceTraffic:
    """A deterministic, endless stream of inbound records; `take(n)` for a fixed-size mix."""

    def __init__(
        self,
        seed: int | str = 0,
        *,
        vendors: int = 40,
        buyers: int = 600,
        followup_ratio: float = 0.30,
        seller_ratio: float = 0.08,
        malformed_ratio: float = 0.01,
        message_bytes: int = 1024,
        oversize_bytes: int = 270 * 1024,
        open_threads: int = 2_000,
        seconds_between_messages: float = 0.05,
    ) -> None:
        self._rng = random.Random(f"marketplace-traffic:{seed}")
        self.followup_ratio = followup_ratio
        self.seller_ratio = seller_ratio
        self.malformed_ratio = malformed_ratio
        self.message_bytes = message_bytes
        self.oversize_bytes = oversize_bytes
        self.open_threads = open_threads
        self.step = timedelta(seconds=seconds_between_messages)
        self.vendors = self._make_vendors(vendors)
        self.buyers = self._make_buyers(buyers)
        self.counts: Counter[str] = Counter()
        self._threads: list[Thread] = []
        self._sent = 0

    def take(self, count: int) -> list[TrafficRecord]:
        return [self.next_record() for _ in range(count)]

    def __iter__(self) -> Iterator[TrafficRecord]:
        while True:
            yield self.next_record()

    def next_record(self) -> TrafficRecord:
        rng = self._rng
        self._sent += 1
        sent_at = START_TIME + self.step * self._sent
        if rng.random() < self.malformed_ratio:
            return self._malformed(sent_at)
        if self._threads and rng.random() < self.followup_ratio:
            thread = rng.choice(self._threads[-self.open_threads :])
            thread.messages += 1
            self.counts["followup"] += 1
            body = self._follow_up_body(thread)
        else:
            thread, body = self._open_thread()
            self._threads.append(thread)
            if len(self._threads) > 2 * self.open_threads:
                del self._threads[: self.open_threads]
        return self._encode(thread, body, sent_at)

    # -- the cast ------------------------------------------------------------------------------

    def _make_vendors(self, count: int) -> list[Vendor]:
        names = [f"{a}-{n}" for a in corpus.ADJECTIVES for n in corpus.NOUNS]
        self._rng.shuffle(names)
        picked = names[:count] + [f"shop-{i}" for i in range(max(0, count - len(names)))]
        return [Vendor(id=v, name=v.replace("-", " ").title()) for v in picked]

    def _make_buyers(self, count: int) -> list[Buyer]:
        rng = self._rng
        buyers = []
        for i in range(count):
            first, last = rng.choice(corpus.FIRST_NAMES), rng.choice(corpus.LAST_NAMES)
            address = f"{first}.{last}{i}@mail.example".lower()
            buyers.append(Buyer(id=f"buyer-{100_000 + i}", name=f"{first} {last}", address=address))
        return buyers

    # -- new threads ---------------------------------------------------------------------------

    def _open_thread(self) -> tuple[Thread, str]:
        rng = self._rng
        channel = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0]
        vendor = rng.choice(self.vendors)
        order = f"ORD-{rng.randrange(10**7, 10**8)}"
        product = rng.choice(corpus.PRODUCTS)
        fill = {"order": order, "product": product, "vendor": vendor.name}
        language = rng.choice(corpus.LANGUAGES)
        if channel != "social" and rng.random() < self.seller_ratio:
            self.counts["seller"] += 1
            subject, lines = rng.choice(corpus.SELLER_TOPICS)
            sender = {
                "id": f"seller-{vendor.id}",
                "role": "seller",
                "name": f"{vendor.name} team",
                "address": f"support@{vendor.id}.example",
            }
            thread = Thread(
                channel,
                self._thread_ref(channel),
                sender,
                subject.format(**fill),
                vendor.id,
                None,
                language,
            )
            return thread, " ".join(line.format(**fill) for line in lines)
        self.counts["opened"] += 1
        if channel == "social":
            guest = rng.random() < 0.5
            buyer = rng.choice(self.buyers)
            sender = (
                {"id": f"tw-{rng.randrange(10**9)}", "role": "guest"}
                if guest
                else {"id": buyer.id, "role": "buyer", "name": buyer.name}
            )
            thread = Thread(
                channel,
                self._thread_ref(channel),
                sender,
                "",
                None if guest else vendor.id,
                None,
                language,
            )
            return thread, rng.choice(corpus.SOCIAL_POSTS).format(**fill)
        buyer = rng.choice(self.buyers)
        _, subject, lines = rng.choice(corpus.BUYER_TOPICS)
        sender = {"id": buyer.id, "role": "buyer", "name": buyer.name, "address": buyer.address}
        names_vendor = rng.random() < 0.7  # connectors enrich most messages with the order
        thread = Thread(
            channel,
            self._thread_ref(channel),
            sender,
            subject.format(**fill),
            vendor.id if names_vendor else None,
            order if names_vendor else None,
            language,
        )
        return thread, " ".join(line.format(**fill) for line in lines)

    def _thread_ref(self, channel: str) -> str:
        token = f"{self._rng.getrandbits(64):016x}"
        if channel == "email":
            return f"<{token}@mail.marketplace.example>"
        if channel == "chat":
            return f"chat-session-{token}"
        return f"social:post:{int(token, 16) % 10**18}"

    def _follow_up_body(self, thread: Thread) -> str:
        line = self._rng.choice(corpus.FOLLOW_UPS)
        if thread.channel == "email":
            return f"{line}\n\nOn an earlier date {thread.sender.get('name', 'you')} wrote:\n> ..."
        return line

    # -- encoding ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _document(self, thread: Thread, body: str, sent_at: datetime) -> dict[str, Any]:
        rng = self._rng
        event_id = self._new_id()
        data: dict[str, Any] = {
            "channel": thread.channel,
            "message_id": f"{thread.channel}-{event_id[:18]}",
            "thread_ref": thread.thread_ref,
            "sender": thread.sender,
            "body": body,
            "language": thread.language,
            "sent_at": sent_at.isoformat().replace("+00:00", "Z"),
            "attributes": {
                "connector": f"{thread.channel}-connector-{rng.randrange(1, 4)}",
                "thread_messages": thread.messages,
            },
        }
        if thread.subject:
            prefix = "Re: " if thread.messages > 1 and thread.channel == "email" else ""
            data["subject"] = prefix + thread.subject
        if thread.vendor_id:
            data["vendor_id"] = thread.vendor_id
        if thread.order_id:
            data["order_id"] = thread.order_id
        if thread.channel == "email" and rng.random() < 0.15:
            data["attachments"] = [
                {
                    "name": "photo.jpg",
                    "content_type": "image/jpeg",
                    "size": rng.randrange(40_000, 900_000),
                }
            ]
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": f"urn:connector:{thread.channel}",
            "type": "support.message.received",
            "time": sent_at.isoformat().replace("+00:00", "Z"),
            "subject": thread.thread_ref,
            "datacontenttype": "application/json",
            "data": data,
        }

    def _padded(self, doc: dict[str, Any]) -> bytes:
        """Grow the body with plausible sentences up to a jittered share of `message_bytes`."""
        target = int(self.message_bytes * self._rng.uniform(0.7, 1.3))
        value = orjson.dumps(doc)
        data = doc["data"]
        while len(value) < target:
            sentence = self._rng.choice(corpus.FILLER)
            data["body"] = f"{data['body']} {sentence}"
            value = orjson.dumps(doc)
        return value

    def _encode(self, thread: Thread, body: str, sent_at: datetime) -> TrafficRecord:
        doc = self._document(thread, body, sent_at)
        return TrafficRecord(
            thread.channel, thread.thread_ref.encode(), self._padded(doc), doc["id"]
        )

    def _malformed(self, sent_at: datetime) -> TrafficRecord:
        rng = self._rng
        kind = rng.choices(list(_MALFORMED_WEIGHTS), weights=list(_MALFORMED_WEIGHTS.values()))[0]
        self.counts[f"malformed:{kind}"] += 1
        channel = rng.choice(list(CHANNEL_WEIGHTS))
        buyer = rng.choice(self.buyers)
        thread = Thread(
            channel,
            self._thread_ref(channel),
            {"id": buyer.id, "role": "buyer", "name": buyer.name},
            "Help",
            None,
            None,
            "en",
        )
        doc = self._document(thread, rng.choice(corpus.FOLLOW_UPS), sent_at)
        key = thread.thread_ref.encode()
        if kind == "invalid_json":
            value = orjson.dumps(doc)
            return TrafficRecord(channel, key, value[: rng.randrange(10, len(value) - 1)], None)
        if kind == "schema_violation":
            del doc["data"][rng.choice(("sender", "body", "message_id"))]
        elif kind == "unknown_channel":
            doc["data"]["channel"] = rng.choice(("fax", "whatsapp", "carrier-pigeon"))
        else:
            doc["data"]["body"] = " ".join(corpus.FILLER) * (self.oversize_bytes // 400 + 1)
        return TrafficRecord(channel, key, orjson.dumps(doc), None)


def generate(count: int, seed: int | str = 0, **options: Any) -> list[TrafficRecord]:
    """`count` records of a fresh `MarketplaceTraffic(seed, **options)`."""
    return MarketplaceTraffic(seed, **options).take(count)
