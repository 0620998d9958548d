"""Every topic the engine reads or writes: name, key, value, partitioning, configs, who uses it.

The one registry of topics. Names are logical: `RouterSettings.topic` adds the deployment's
prefix. A name with a `<placeholder>` describes a family: the queues (`queue.dept.<name>`,
`queue.vendor.<id>`) and the topics faust names after the app id (table changelogs, the
assignor's leader topic); `Topic.of` gives a member's name.

It lives in `schemas/` because it is part of the records contract and every layer may import
it (the core needs names, `streams/` the creation configs). The README's Topics table states
the same facts; `tests/unit/core/test_topic_registry.py` holds the two together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.action import TICKET_ACTION
from schemas.dead_letter import MESSAGE_REJECTED
from schemas.dispute import (
    DISPUTE_ACTION,
    DISPUTE_CHARGEBACK_RECORDED,
    DISPUTE_EVENT_TYPES,
    DISPUTE_PLATFORM_REVIEW,
    DISPUTE_POLICY_PUBLISHED,
    VENDOR_DISPUTE_EVENT_TYPES,
)
from schemas.message import MESSAGE_RECEIVED, Channel
from schemas.outbound import (
    DELIVERY_EVENT_TYPES,
    MESSAGE_RECEIPT,
    OUTBOUND_REPLY,
    REPLY_UNDELIVERABLE,
)
from schemas.payment import PAYMENT_CHARGEBACK
from schemas.rules_event import RULESET_PUBLISHED, RULESET_REFUSED
from schemas.scores import SUPPORT_DAY, TIER_CHANGED, VENDOR_SCORES
from schemas.sla import SLA_BREACHED, SLA_MET, SLA_WARNING
from schemas.ticket import ROUTING_DECIDED, TICKET_ROUTED, TicketEventKind
from schemas.vendor import VENDOR_PROFILE

# "compact,delete": compacted, and a record older than `retention.ms` goes too (a bounded memory)
Cleanup = Literal["delete", "compact", "compact,delete"]
# Who creates a topic: the worker at start-up (`streams.kafka.topics.core_topics`, also
# `router rules publish` / `router vendors publish`), the engine when a queue is first needed (or
# `router vendors provision`), or faust itself (its tables' changelogs, its leader topic).
Creation = Literal["startup", "on_demand", "faust"]

_PLACEHOLDER = re.compile(r"<[a-z_]+>")


@dataclass(frozen=True, slots=True)
class Topic:
    name: str  # logical name, or a pattern with one `<placeholder>` for a family
    key: str  # what the record key is
    value: str  # what the record value is
    written_by: str
    read_by: str
    types: tuple[str, ...] = ()  # CloudEvents types of the values, when they are CloudEvents
    cleanup: Cleanup = "delete"
    partitions: int | None = None  # None: the engine's `partitions` setting
    configs: tuple[tuple[str, str], ...] = ()  # topic configs besides cleanup.policy
    public: bool = True
    creation: Creation = "startup"

    @property
    def is_family(self) -> bool:
        return _PLACEHOLDER.search(self.name) is not None

    def of(self, part: str) -> str:
        """The name of one member of a family: `QUEUE_DEPT.of("payments")`."""
        if not self.is_family:
            raise ValueError(f"{self.name!r} is a single topic, not a family")
        return _PLACEHOLDER.sub(lambda _: part, self.name, count=1)

    @property
    def prefix(self) -> str:
        """What every member's name starts with (the whole name for a single topic)."""
        match = _PLACEHOLDER.search(self.name)
        return self.name[: match.start()] if match else self.name

    def matches(self, logical: str) -> bool:
        """Whether `logical` is this topic, or a member of this family."""
        if not self.is_family:
            return logical == self.name
        head, tail = _PLACEHOLDER.split(self.name, maxsplit=1)
        return (
            len(logical) > len(head) + len(tail)
            and logical.startswith(head)
            and logical.endswith(tail)
        )

    def topic_configs(self) -> dict[str, str]:
        """The configs to create it with."""
        configs: dict[str, str] = {}
        if self.cleanup != "delete":
            configs["cleanup.policy"] = self.cleanup
        configs.update(self.configs)
        return configs


def _channel(channel: Channel) -> Topic:
    return Topic(
        f"channel.{channel.value}", "thread ref", "inbound message", "connectors", "engine",
        types=(MESSAGE_RECEIVED,),
    )  # fmt: skip


CHANNEL_EMAIL = _channel(Channel.EMAIL)
CHANNEL_CHAT = _channel(Channel.CHAT)
CHANNEL_SOCIAL = _channel(Channel.SOCIAL)
CHANNELS: Mapping[Channel, Topic] = {
    Channel.EMAIL: CHANNEL_EMAIL,
    Channel.CHAT: CHANNEL_CHAT,
    Channel.SOCIAL: CHANNEL_SOCIAL,
}
# logical channel topic -> the channel its records must carry
CHANNEL_TOPICS: Mapping[str, Channel] = {t.name: c for c, t in CHANNELS.items()}

# Big enough for an oversize inbound record kept whole (base64) inside its DLQ envelope.
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHANNEL_DLQ = Topic(
    "channel.dlq", "original key", "rejected record, reason, source topic/partition/offset",
    "engine", "platform engineers", types=(MESSAGE_REJECTED,),
    configs=(("max.message.bytes", str(DLQ_MAX_MESSAGE_BYTES)),),
)  # fmt: skip
TICKETS_ACTIONS = Topic(
    "tickets.actions", "ticket id (a dispute action: order id)",
    "a desk's, vendor's or buyer's command on a ticket or a dispute",
    "desks, vendors, buyers; engine (a routing rule's `open_dispute`)", "engine",
    types=(TICKET_ACTION, DISPUTE_ACTION),
)  # fmt: skip
TICKETS_EVENTS = Topic(
    "tickets.events", "ticket id", "ticket lifecycle events; delivery state of replies",
    "engine, `router deliver`",
    "analytics, desks",
    types=(*(kind.event_type for kind in TicketEventKind), *DELIVERY_EVENT_TYPES),
)  # fmt: skip
TICKETS_DECISIONS = Topic(
    "tickets.decisions", "ticket id", "routing decision with rule, ruleset version and trace",
    "engine", "audit", types=(ROUTING_DECIDED,),
)  # fmt: skip
QUEUE_DEPT = Topic(
    "queue.dept.<name>", "ticket id (a dispute event: order id)",
    "ticket as routed; disputes for platform review", "engine", "department desks",
    types=(TICKET_ROUTED, DISPUTE_PLATFORM_REVIEW, DISPUTE_CHARGEBACK_RECORDED),
    creation="on_demand",
)  # fmt: skip
QUEUE_VENDOR = Topic(
    "queue.vendor.<id>", "ticket id (a dispute event: order id)",
    "ticket as routed; the vendor's own dispute events", "engine", "that vendor only",
    types=(TICKET_ROUTED, *VENDOR_DISPUTE_EVENT_TYPES), creation="on_demand",
)  # fmt: skip
# what the names of both queue families start with (one series, one check for "a queue")
QUEUE_PREFIX = "queue."
SLA_EVENTS = Topic(
    "sla.events", "ticket id", "SLA warning, breach or met", "engine", "desks, SREs",
    types=(SLA_WARNING, SLA_BREACHED, SLA_MET),
)  # fmt: skip
DISPUTES_EVENTS = Topic(
    "disputes.events", "order id", "every dispute transition (platform-only notes included)",
    "engine", "desks, payments, analytics", types=DISPUTE_EVENT_TYPES,
)  # fmt: skip
PAYMENTS_EVENTS = Topic(
    "payments.events", "order id",
    "chargebacks reported by the payments system (open or escalate the order's dispute)",
    "payments",
    "engine (disputes stage)", types=(PAYMENT_CHARGEBACK,),
)  # fmt: skip
# Compaction keeps one record per ruleset name. Without a lag, a broken version written past
# `router rules publish` could compact away the last good one, and a restarted worker would
# fall back to its startup policy; for 30 days every version stays (that is also what
# `router rules history` lists and a rollback republishes).
RULES_COMPACTION_LAG_MS = 30 * 24 * 3600 * 1000
ROUTING_RULES = Topic(
    "routing.rules", "ruleset name", "versioned ruleset document", "`router rules publish`",
    "every worker (hot reload)", types=(RULESET_PUBLISHED,), cleanup="compact",
    # one partition: every worker reads it whole, in publication order
    partitions=1, configs=(("min.compaction.lag.ms", str(RULES_COMPACTION_LAG_MS)),),
)  # fmt: skip
# The dispute policy in force, followed by every worker like the rules; every version kept as
# long as a ruleset's, for the same reason.
DISPUTES_POLICY = Topic(
    "disputes.policy", "`disputes`", "the dispute policy file's text",
    "`router disputes policy publish`", "every worker (hot reload)",
    types=(DISPUTE_POLICY_PUBLISHED,), cleanup="compact", partitions=1,
    configs=(("min.compaction.lag.ms", str(RULES_COMPACTION_LAG_MS)),),
)  # fmt: skip
ROUTING_RULES_EVENTS = Topic(
    "routing.rules.events", "ruleset name", "a refused ruleset version", "engine",
    "platform engineers", types=(RULESET_REFUSED,),
)  # fmt: skip
# The email intake's memory of threads for replies that drop every threading header
# (router/email/fallback.py); every connector reads it whole. An entry older than the longest
# window a connector may use is never recalled, so the topic lets it go a day after that.
EMAIL_THREAD_MAX_WINDOW_S = 365 * 86_400
EMAIL_THREADS = Topic(
    "email.threads", "sender and subject (a digest)",
    "the thread a sender last wrote to under a subject", "`router connect email`",
    "`router connect email`", cleanup="compact,delete",
    configs=(("retention.ms", str((EMAIL_THREAD_MAX_WINDOW_S + 86_400) * 1000)),),
)  # fmt: skip
DIRECTORY_VENDORS = Topic(
    "directory.vendors", "vendor id", "vendor profile", "`router vendors publish`",
    "every worker", types=(VENDOR_PROFILE,), cleanup="compact",
)  # fmt: skip

# Created when the engine first writes a reply for the channel (or `router deliver` starts).
OUTBOUND = Topic(
    "outbound.<channel>", "ticket id", "a public reply to deliver to the customer",
    "engine", "`router deliver`, email connector", types=(OUTBOUND_REPLY,),
    creation="on_demand",
)  # fmt: skip
# Keyed like the channel topics, so the routing stage reads a thread's receipts where it keeps
# the thread's ticket.
DELIVERY_RECEIPTS = Topic(
    "delivery.receipts", "thread ref", "a platform's delivery or read receipt for messages sent",
    "`router gateway`", "engine", types=(MESSAGE_RECEIPT,),
)  # fmt: skip
OUTBOUND_DLQ = Topic(
    "outbound.dlq", "ticket id", "a reply not delivered after its last attempt, with the reason",
    "`router deliver`", "platform engineers", types=(REPLY_UNDELIVERABLE,),
)  # fmt: skip
# Seller responsiveness and support metrics (the scores stage, `router.scores`).
VENDORS_SCORES = Topic(
    "vendors.scores", "vendor id", "a vendor's figures over 7 and 30 days, score and tier",
    "engine (scores stage)", "marketplace, rules, `router report`", types=(VENDOR_SCORES,),
    cleanup="compact",
)  # fmt: skip
VENDORS_EVENTS = Topic(
    "vendors.events", "vendor id", "a vendor moved tier", "engine (scores stage)",
    "marketplace, platform oversight", types=(TIER_CHANGED,),
)  # fmt: skip
METRICS_SUPPORT = Topic(
    "metrics.support", "queue", "a queue's figures for one day (latest record per day wins)",
    "engine (scores stage)", "support leads, `router report`", types=(SUPPORT_DAY,),
)  # fmt: skip

# Internal: written and read by the engine only.
TICKETS_COMMANDS = Topic(
    "tickets.commands", "ticket id",
    "actions re-keyed by the engine's own partitioner, and timer `due` commands",
    "engine", "engine (lifecycle stage)", types=(TICKET_ACTION,), public=False,
)  # fmt: skip
TICKETS_REROUTES = Topic(
    "tickets.reroutes", "thread ref", "a ticket the lifecycle moved (router.reroutes)",
    "engine (ticket index)", "engine (inbound agent)", public=False,
)  # fmt: skip
DISPUTES_COMMANDS = Topic(
    "disputes.commands", "order id",
    "dispute actions re-keyed by the engine's own partitioner, and timer `due` commands",
    "engine", "engine (disputes stage)", types=(DISPUTE_ACTION,), public=False,
)  # fmt: skip
BUYERS_CHANGES = Topic(
    "buyers.changes", "buyer id", "a buyer's ticket opened, resolved or reopened (router.buyers)",
    "engine (ticket index)", "engine (buyers stage)", public=False,
)  # fmt: skip
SCORES_FACTS = Topic(
    "scores.facts", "`vendor/<id>` or `queue/<queue>`",
    "what a ticket event adds to a vendor's or a queue's figures (router.scores.facts)",
    "engine (scores stage)", "engine (scores stage)", public=False,
)  # fmt: skip

# faust's tables, and their changelogs (faust names them `<app_id>-<table>-changelog`).
TICKETS_TABLE = "tickets"
TICKET_INDEX_TABLE = "ticket-index"
LIFECYCLE_TABLE = "lifecycle"
PARKED_TABLE = "lifecycle-parked"
BUYERS_TABLE = "buyers"
DISPUTES_TABLE = "disputes"
SCORE_TICKETS_TABLE = "score-tickets"
SCORE_BOOKS_TABLE = "score-books"


# Each table's changelog: what a worker of either runtime reads its table back from.
TABLE_CHANGELOGS: dict[str, Topic] = {}


def _changelog(
    table: str, key: str, value: str, read_by: str = "engine (its table's partitions)", *,
    max_message_bytes: int | None = None, creation: Creation = "faust",
) -> Topic:  # fmt: skip
    configs = (("max.message.bytes", str(max_message_bytes)),) if max_message_bytes else ()
    topic = TABLE_CHANGELOGS[table] = Topic(
        f"<app_id>-{table}-changelog", key, value, "engine", read_by, cleanup="compact",
        configs=configs, public=False, creation=creation,
    )  # fmt: skip
    return topic


TICKETS_CHANGELOG = _changelog(
    TICKETS_TABLE, "channel and thread ref", "ticket state", max_message_bytes=2 * 1024 * 1024
)
TICKET_INDEX_CHANGELOG = _changelog(
    TICKET_INDEX_TABLE, "ticket id", "thread, queue and buyer of a ticket"
)
LIFECYCLE_CHANGELOG = _changelog(
    LIFECYCLE_TABLE, "ticket id", "lifecycle and SLA state", max_message_bytes=4 * 1024 * 1024
)
PARKED_CHANGELOG = _changelog(
    PARKED_TABLE, "ticket id", "actions read before their ticket's `routed` event"
)
DISPUTES_CHANGELOG = _changelog(
    DISPUTES_TABLE, "order id", "a dispute's state and deadlines (router.disputes.machine)"
)
# created at start-up: every routing worker follows it whole from the start (`buyer.*` facts)
BUYERS_CHANGELOG = _changelog(
    BUYERS_TABLE, "buyer id", "open and recent tickets of a buyer",
    "every worker that routes (`buyer.*` facts)", creation="startup",
)  # fmt: skip
SCORE_TICKETS_CHANGELOG = _changelog(
    SCORE_TICKETS_TABLE, "ticket id", "what the scores count of a ticket so far"
)
SCORE_BOOKS_CHANGELOG = _changelog(
    SCORE_BOOKS_TABLE, "`vendor/<id>` or `queue/<queue>`", "daily tallies of the last 30 days"
)
ASSIGNOR_LEADER = Topic(
    "<app_id>-__assignor-__leader", "none", "faust's partition assignor leader election",
    "engine", "engine", partitions=1, public=False, creation="faust",
)  # fmt: skip

TOPICS: tuple[Topic, ...] = (
    CHANNEL_EMAIL,
    CHANNEL_CHAT,
    CHANNEL_SOCIAL,
    CHANNEL_DLQ,
    TICKETS_ACTIONS,
    TICKETS_EVENTS,
    TICKETS_DECISIONS,
    QUEUE_DEPT,
    QUEUE_VENDOR,
    SLA_EVENTS,
    DISPUTES_EVENTS,
    PAYMENTS_EVENTS,
    ROUTING_RULES,
    ROUTING_RULES_EVENTS,
    DISPUTES_POLICY,
    DIRECTORY_VENDORS,
    EMAIL_THREADS,
    OUTBOUND,
    OUTBOUND_DLQ,
    DELIVERY_RECEIPTS,
    VENDORS_SCORES,
    VENDORS_EVENTS,
    METRICS_SUPPORT,
    TICKETS_COMMANDS,
    TICKETS_REROUTES,
    DISPUTES_COMMANDS,
    BUYERS_CHANGES,
    SCORES_FACTS,
    *TABLE_CHANGELOGS.values(),
    ASSIGNOR_LEADER,
)
# What the names of the families created on first write start with (the emitter creates them).
ON_DEMAND_PREFIXES: tuple[str, ...] = tuple(
    t.prefix for t in TOPICS if t.creation == "on_demand" and t.is_family
)


def resolved(app_id: str) -> dict[str, Topic]:
    """Logical name -> topic, with `<app_id>` filled in; the queue families stay patterns."""
    return {(t.of(app_id) if t.name.startswith("<app_id>") else t.name): t for t in TOPICS}


def topic_of(logical: str, app_id: str) -> Topic | None:
    """The registry entry a concrete logical name belongs to (None: not ours)."""
    for name, topic in resolved(app_id).items():
        if name == logical or (topic.is_family and topic.matches(logical)):
            return topic
    return None
