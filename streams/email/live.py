"""The state the live email intake shares between its IMAP and SMTP sides
(`router.email.intake.LiveIntake`), and the follower that keeps its thread memory in step with
`email.threads` (every connector reads the topic whole)."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord

from router.email.config import EmailConfig
from router.email.fallback import ThreadMemory
from router.email.intake import LiveIntake
from router.intake.limits import RateLimiter
from schemas.topics import EMAIL_THREADS
from streams.kafka.compacted import CompactedFollower
from streams.settings import RouterSettings


def live_intake(settings: RouterSettings, config: EmailConfig) -> LiveIntake:
    per_hour = settings.email_sender_rate_per_hour
    limiter = RateLimiter(per_hour / 3600, settings.email_sender_burst) if per_hour else None
    return LiveIntake(config, limiter, ThreadMemory(settings.email_thread_fallback_s))


def memory_follower(settings: RouterSettings, memory: ThreadMemory) -> CompactedFollower:
    async def fold(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            memory.apply(record.key, record.value)

    return CompactedFollower(settings, EMAIL_THREADS.name, "email-threads", load=fold)
