"""Threads for clients that drop the threading headers: a reply (`Re:`, `AW:`, ...) that carries
no References, no In-Reply-To and no reply token joins the ticket its sender last wrote to under
the same subject, within a window. The intake remembers (sender, subject) -> thread ref for every
message it publishes, on the compacted `email.threads` topic (every connector reads it whole).
Entries past the window are never recalled: the memory sweeps them out as it grows, and the
topic lets them go after the longest window a connector may set (`retention.ms`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from router.email.text import subject_key

# what a record of `email.threads` says
THREAD_FIELD, AT_FIELD = "thread_ref", "at"
SWEEP_MIN_ENTRIES = 1024


def memory_key(sender: str, subject: str) -> str | None:
    """The key of a sender's thread under a subject; None without a subject to go by."""
    topic = subject_key(subject)
    if not topic or not sender:
        return None
    raw = f"{sender.strip().lower()}\x1f{topic}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def is_reply(subject: str) -> bool:
    """The subject starts with a reply or forward prefix."""
    key = subject_key(subject)
    return bool(key) and " ".join(subject.split()).casefold() != key


@dataclass
class ThreadMemory:
    """(sender, subject) -> the thread ref last published and when (unix seconds)."""

    window_s: float
    entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    # entries past the window are swept when the memory has doubled since the last sweep
    sweep_at: int = field(default=SWEEP_MIN_ENTRIES, init=False, repr=False)

    def recall(self, sender: str, subject: str, now: float) -> str | None:
        key = memory_key(sender, subject)
        found = self.entries.get(key) if key is not None else None
        if found is None or now - found[1] > self.window_s:
            return None
        return found[0]

    def remember(self, sender: str, subject: str, thread_ref: str, at: float) -> str | None:
        """Note a published message; the key it was noted under (None: no subject)."""
        key = memory_key(sender, subject)
        if key is not None:
            self.entries[key] = (thread_ref, at)
            if len(self.entries) >= self.sweep_at:
                self.forget_before(at - self.window_s)
        return key

    def forget_before(self, cutoff: float) -> int:
        """Drop the entries noted before `cutoff` (past the window: never recalled again);
        how many. Amortised: the next sweep waits until the memory has doubled."""
        old = [key for key, (_, at) in self.entries.items() if at < cutoff]
        for key in old:
            del self.entries[key]
        self.sweep_at = max(SWEEP_MIN_ENTRIES, 2 * len(self.entries))
        return len(old)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of `email.threads` (a tombstone forgets)."""
        if not key:
            return
        name = key.decode("utf-8", "replace")
        if not value:
            self.entries.pop(name, None)
            return
        try:
            doc = orjson.loads(value)
            self.entries[name] = (str(doc[THREAD_FIELD]), float(doc[AT_FIELD]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not ours: ignored, the memory is a hint


def memory_value(thread_ref: str, at: float) -> bytes:
    return orjson.dumps({THREAD_FIELD: thread_ref, AT_FIELD: at})
