"""The live intake's memory between messages: replies that drop every threading header join
their sender's thread under the subject, within the window; a mail storm from one sender is
dead-lettered past the per-sender rate."""

from __future__ import annotations

from datetime import timedelta

import orjson

from router.email.fallback import (
    SWEEP_MIN_ENTRIES,
    ThreadMemory,
    is_reply,
    memory_key,
    memory_value,
)
from router.email.intake import Kind, LiveIntake, Step
from router.intake.limits import RateLimiter
from schemas.topics import CHANNEL_DLQ, EMAIL_THREADS
from tests.unit.email.support import NOW, SOURCE, config, mail

DAY = 86400.0


def live(window_s: float = 14 * DAY, limiter: RateLimiter | None = None) -> LiveIntake:
    return LiveIntake(config(), limiter, ThreadMemory(window_s))


def thread_of(step: Step) -> str:
    (channel,) = [r for r in step.records if r.topic == "channel.email"]
    return str(orjson.loads(channel.value)["data"]["thread_ref"])


def attributes(step: Step) -> dict[str, object]:
    (channel,) = [r for r in step.records if r.topic == "channel.email"]
    found: dict[str, object] = orjson.loads(channel.value)["data"]["attributes"]
    return found


def test_a_headerless_reply_joins_its_senders_thread_under_the_subject() -> None:
    intake = live()
    first = intake.step(mail(), NOW, SOURCE)
    (noted,) = [r for r in first.records if r.topic == EMAIL_THREADS.name]
    assert noted.key == (memory_key("ana@buyer.example", "Where is my parcel?") or "").encode()
    assert orjson.loads(noted.value)["thread_ref"] == thread_of(first)

    # a client that keeps no References / In-Reply-To, a German reply prefix
    reply = mail(Message_ID="<second@buyer.example>", Subject="AW: Where is my parcel?")
    joined = intake.step(reply, NOW + timedelta(days=2), SOURCE)
    assert thread_of(joined) == thread_of(first)
    assert attributes(joined)["email_thread_fallback"] == "subject_and_sender"


def test_the_fallback_needs_the_same_sender_a_reply_prefix_and_the_window() -> None:
    intake = live(window_s=7 * DAY)
    first = thread_of(intake.step(mail(), NOW, SOURCE))
    other_sender = mail(Message_ID="<x1@buyer.example>", From="bob@buyer.example",
                        Subject="Re: Where is my parcel?")  # fmt: skip
    not_a_reply = mail(Message_ID="<x2@buyer.example>")  # the same subject, no prefix
    late = mail(Message_ID="<x3@buyer.example>", Subject="Re: Where is my parcel?")
    threaded = mail(Message_ID="<x4@buyer.example>", Subject="Re: Where is my parcel?",
                    In_Reply_To="<elsewhere@shop.example>")  # fmt: skip
    assert thread_of(intake.step(other_sender, NOW, SOURCE)) != first
    assert thread_of(intake.step(not_a_reply, NOW, SOURCE)) != first
    assert thread_of(intake.step(threaded, NOW, SOURCE)) != first  # its headers decide
    too_late = intake.step(late, NOW + timedelta(days=8), SOURCE)
    assert thread_of(too_late) != first
    assert "email_thread_fallback" not in attributes(too_late)


def test_the_memory_round_trips_through_its_topic_records() -> None:
    written = ThreadMemory(DAY)
    key = written.remember("Ana@Buyer.example", "Re: Where is my parcel?", "email:abc", 1000.0)
    assert key == memory_key("ana@buyer.example", "where is my parcel?")
    read = ThreadMemory(DAY)
    read.apply(key.encode() if key else None, memory_value("email:abc", 1000.0))
    read.apply(b"junk", b"not json")  # someone else's record: ignored
    assert read.recall("ana@buyer.example", "Fwd: Where is my parcel?", 1000.0 + DAY) == "email:abc"
    assert read.recall("ana@buyer.example", "Where is my parcel?", 1001.0 + DAY) is None
    read.apply(key.encode() if key else None, None)  # a tombstone forgets
    assert read.entries == {}
    assert memory_key("ana@buyer.example", "Re: ") is None  # nothing to go by
    assert [is_reply(s) for s in ("SV: Hej", "Rif: ordine", "Hello")] == [True, True, False]


def test_a_storm_from_one_sender_is_dead_lettered_past_its_rate() -> None:
    intake = live(limiter=RateLimiter(rate=1 / 3600, burst=2))
    storm = [mail(Message_ID=f"<storm-{n}@buyer.example>", Subject=f"Help {n}") for n in range(4)]
    steps = [intake.step(m, NOW + timedelta(seconds=n), SOURCE) for n, m in enumerate(storm)]
    assert [s.kind for s in steps] == [Kind.RECORD, Kind.RECORD, Kind.REFUSED, Kind.REFUSED]
    (letter,) = steps[2].records
    data = orjson.loads(letter.value)["data"]
    assert (letter.topic, data["reason"]) == (CHANNEL_DLQ.name, "sender_rate_limited")
    assert "ana@buyer.example" in data["error"]
    kept = orjson.loads(data["original"]["value"])  # the record it would have been, whole
    assert kept["data"]["message_id"] == "storm-2@buyer.example"
    other = intake.step(mail(Message_ID="<calm@buyer.example>", From="bob@buyer.example"),
                        NOW + timedelta(seconds=5), SOURCE)  # fmt: skip
    assert other.kind is Kind.RECORD


def test_smtp_holds_a_storms_message_with_250_and_no_bounce() -> None:
    from router.email.intake import smtp_answer

    intake = live(limiter=RateLimiter(rate=1 / 3600, burst=1))
    intake.step(mail(Message_ID="<a@buyer.example>"), NOW, SOURCE)
    held = intake.step(mail(Message_ID="<b@buyer.example>"), NOW, SOURCE)
    assert smtp_answer(held, acknowledged=True) == "250 2.0.0 OK, held: sender_rate_limited"
    assert smtp_answer(held, acknowledged=False).startswith("451")


def test_entries_past_the_window_are_swept_as_the_memory_grows() -> None:
    memory = ThreadMemory(DAY)
    for n in range(SWEEP_MIN_ENTRIES - 1):  # old: noted a day and more before the last ones
        memory.remember(f"old-{n}@buyer.example", "Parcel", f"email:old-{n}", 1000.0)
    recent = memory.remember("new@buyer.example", "Parcel", "email:new", 1000.0 + 2 * DAY)
    assert recent is not None
    assert list(memory.entries) == [recent]  # the sweep ran at the threshold
    assert memory.recall("new@buyer.example", "Re: Parcel", 1000.0 + 2 * DAY) == "email:new"
    assert memory.sweep_at == SWEEP_MIN_ENTRIES
    fresh = [memory.remember(f"b-{n}@buyer.example", "Parcel", "email:x", 1000.0 + 2 * DAY)
             for n in range(SWEEP_MIN_ENTRIES + 5)]  # fmt: skip
    assert len(memory.entries) == len(set(fresh)) + 1  # within the window: all kept
    assert memory.sweep_at == 2 * SWEEP_MIN_ENTRIES  # the next sweep waits for twice as many
