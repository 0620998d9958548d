"""One frozen settings object for the engine, from environment variables and an optional file.

Environment variables use the `ROUTER_` prefix (`ROUTER_PARTITIONS=12`), except the broker
address, which also answers to the ecosystem-standard `KAFKA_BOOTSTRAP_SERVERS`. A YAML or JSON
file named by `ROUTER_SETTINGS_FILE` (or `router worker --settings FILE`) supplies defaults that
the environment overrides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from router.scores.tickets import DEFAULT_SURVEY_MESSAGE
from rules.source import LoadError, dotted, parse_text
from schemas.message import VendorId
from schemas.topics import EMAIL_THREAD_MAX_WINDOW_S


class SettingsFileError(ValueError):
    """The settings file cannot be read or parsed (one line: `file:line: field: message`)."""


class _FileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            self._data = read_settings_file(path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping of a YAML or JSON settings file; SettingsFileError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsFileError(f"{path}: cannot read: {reason}") from None
    try:
        src = parse_text(text, str(path), "json" if path.suffix == ".json" else "yaml",
                         aliases=True)  # fmt: skip
    except LoadError as exc:
        raise SettingsFileError(str(exc)) from None
    if not isinstance(src.data, dict):
        raise SettingsFileError(f"{path}:{src.line(()) or 1}: a settings file holds a mapping")
    unknown = [k for k in src.data if k not in RouterSettings.model_fields]
    if unknown:  # a misspelt setting would otherwise be ignored without a word
        key = unknown[0]
        raise SettingsFileError(f"{path}:{src.line((key,))}: {dotted((key,))}: unknown setting")
    return src.data


# A gateway source: who signs requests (`X-Router-Source`), one rate limit each.
GatewaySource = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
GatewaySecret = Annotated[SecretStr, Field(min_length=16, max_length=256)]  # characters
GatewaySecrets = Annotated[list[GatewaySecret], Field(min_length=1, max_length=4)]
MetaVerifyToken = Annotated[SecretStr, Field(min_length=8, max_length=256)]
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
# (fetch_min_bytes, fetch_max_wait_ms) of the direct runtime's consumer. A routing worker's:
# aiokafka's defaults, a fetch returns as soon as a record is there (latency first). Any other
# worker's clocks count minutes, so fewer, fuller batches (each one a commit and changelog
# writes) are worth 100 ms per hop.
ROUTING_FETCH = (1, 500)
STAGE_FETCH = (1024 * 1024, 100)


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ROUTER_",
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        hide_input_in_errors=True,  # a refused secret must not be echoed in the startup error
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ROUTER_KAFKA_BOOTSTRAP_SERVERS"),
    )
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    app_id: str = "ticket-router"
    # Which stages this worker runs: `routing` (channel topics -> queues), `lifecycle` (SLA
    # clocks, actions, ticket index, buyer history; its own consumer group `<app_id>-lifecycle`)
    # or `all` in one process and group. Split, each stage scales and lags on its own.
    # `scores` runs only the scores stage (group `<app_id>-scores`; see `scores_enabled`).
    stage: Literal["all", "routing", "lifecycle", "scores"] = "all"
    # Where the worker's stages consume: together on one plain aiokafka consumer in the worker's
    # group, with their own table loads and commits (`direct`, streams/stages/direct.py), or
    # each as a faust agent on faust's consumer (`faust`). Both read the same changelogs and
    # commit in the same group: switch with every worker of the group stopped. `auto`: direct.
    runtime: Literal["auto", "faust", "direct"] = "auto"
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=6, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=7)
    min_insync_replicas: int = Field(default=1, ge=1, le=7)

    max_record_bytes: int = Field(default=256 * 1024, ge=1024, le=8 * 1024 * 1024)
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    producer_max_batch_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=64 << 20)
    # zstd: aiokafka compresses lz4 at level 9 (~5 us per 1 KB JSON record, 7:1); zstd level 3
    # takes ~1 us and writes a third less
    producer_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "zstd"
    consumer_max_poll_records: int = Field(default=1000, ge=1, le=100_000)
    # A direct-runtime fetch waits up to the wait for the bytes to arrive: fewer, fuller
    # fetches cost less CPU per record (aiokafka parses every fetch response in Python, each
    # partition of it) and add up to the wait to latency. Unset: `ROUTING_FETCH` where the
    # routing stage runs, `STAGE_FETCH` on a lifecycle or scores worker.
    consumer_fetch_min_bytes: int | None = Field(default=None, ge=1, le=64 << 20)
    consumer_fetch_max_wait_ms: int | None = Field(default=None, ge=0, le=10_000)
    # A stage processes what arrived within this long, up to this many records, as one batch
    # (one table write per key per batch); the wait bounds the latency it adds. More records
    # per batch fill producer batches better (2000 costs the routing worker ~10% less CPU per
    # inbound than 500 on a backlog); a crash replays up to two batches: a message that more
    # than a ticket's kept messages (20) followed is re-sent without its history.
    batch_max_records: int = Field(default=2000, ge=1, le=100_000)
    batch_max_wait_ms: float = Field(default=5.0, gt=0, le=1000)
    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    table_standby_replicas: int = Field(default=0, ge=0, le=3)
    consumer_group_instance_id: str | None = None
    # A crashed worker's partitions move after this long; shorter means faster failover.
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    # A consumer request (a fetch, a commit) unanswered this long fails and is retried on a
    # fresh connection: how long a hung broker can hold the stages. More than the session.
    consumer_request_timeout_s: float = Field(default=90.0, gt=0, le=600)
    # An action read before any event of its ticket waits this long for one, then it is
    # refused to the dead-letter topic as for an unknown ticket (router/stages/parking.py).
    action_park_s: float = Field(default=900.0, ge=1, le=7 * 86400)
    # Where workers share a host's CPUs (a lifecycle worker beside a routing one), a positive
    # niceness lets the others run first: routing keeps its latency under a backlog and this
    # worker catches up when they idle. Only ever raised: lowering it takes privileges.
    cpu_niceness: int = Field(default=0, ge=0, le=19)
    # SIGTERM to exit; past it the worker logs where it waits and exits 70 (streams/shutdown.py)
    shutdown_timeout_s: float = Field(default=8.0, gt=0, le=600)

    data_dir: Path = Path(".cache/faust-data")
    # Prometheus `/metrics` (streams/metrics.py) with `/healthz` and `/readyz`
    # (streams/health.py); 0 picks a free port, -1 turns it off. Bound to loopback by default:
    # set 0.0.0.0 where a scraper or the kubelet reaches the worker's pod.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=-1, le=65535)
    # `/healthz` fails when, once ready, committed offsets stand still this long with lag
    # (a consumer that no longer fetches), or the event loop does not answer in the timeout.
    health_commit_stall_s: float = Field(default=300.0, ge=10, le=86400)
    health_loop_timeout_s: float = Field(default=5.0, gt=0, le=120)
    web_enabled: bool = False
    web_port: int = Field(default=6066, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rules_file: Path | None = None

    # The channel gateway (`router gateway`, streams/gateway/): connectors POST messages over
    # HTTP. Records keep `max_record_bytes`; the producer is the engine's (acks=all, idempotent).
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    # source -> its shared secrets, several during a rotation; as JSON in the environment:
    # ROUTER_GATEWAY_SECRETS='{"acme-chat": ["<secret>", "<next secret>"]}'
    gateway_secrets: dict[GatewaySource, GatewaySecrets] = {}
    gateway_replay_window_s: float = Field(default=300.0, ge=1, le=3600)
    gateway_rate_per_s: float = Field(default=200.0, gt=0, le=1_000_000)  # messages, per source
    gateway_rate_burst: int = Field(default=400, ge=1, le=1_000_000)
    gateway_batch_max_items: int = Field(default=100, ge=1, le=10_000)
    gateway_batch_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # how long a request waits for Kafka's acknowledgement before it answers 503
    gateway_ack_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Meta webhooks (`/v1/webhooks/meta`): the token Meta's subscription handshake must name,
    # and the app secrets that sign its deliveries (two while rotating); JSON list in the env.
    gateway_meta_verify_token: MetaVerifyToken | None = None
    gateway_meta_app_secrets: Annotated[list[GatewaySecret], Field(max_length=4)] = []
    sla_policies_file: Path | None = None  # SLA policies; default: router/sla/policies/default.yaml
    # dispute windows and buyer protection, read at start (a policy published on
    # disputes.policy wins over it); default: rules/examples/disputes/policy.yaml
    disputes_policy_file: Path | None = None

    # Seller scores and support metrics (router/scores/): the scores stage runs in a worker of
    # stage `all` or `lifecycle` when enabled, and in a worker of stage `scores` always.
    scores_enabled: bool = False
    scores_formula_file: Path | None = None  # YAML (router/scores/formula.py); default weights
    # When a ticket is resolved, a satisfaction survey goes out on its outbound topic; not
    # again for the same ticket within `survey_window_s` (a reopen and a new resolution).
    survey_enabled: bool = True
    survey_window_s: float = Field(default=7 * 86400, ge=0, le=366 * 86400)
    survey_message: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = (
        DEFAULT_SURVEY_MESSAGE
    )
    # Prometheus series per vendor (one per vendor and tier); off: per queue and tier only.
    scores_vendor_metrics: bool = False

    # `router deliver` (streams/deliver.py): replies from `outbound.<channel>` to the Graph API.
    deliver_base_url: str = Field(default="https://graph.facebook.com/v21.0", pattern=r"^https?://")
    deliver_token: SecretStr | None = None  # sent as `Authorization: Bearer`; never logged
    deliver_max_attempts: int = Field(default=5, ge=1, le=20)  # in all, the first included
    deliver_base_delay_s: float = Field(default=0.5, gt=0, le=60)  # doubled per attempt
    deliver_max_delay_s: float = Field(default=30.0, gt=0, le=600)  # also caps Retry-After
    deliver_timeout_s: float = Field(default=10.0, gt=0, le=120)  # per attempt

    # Email (router/email/, `router email parse`): a message over `email_max_bytes`, nesting
    # MIME deeper than `email_max_mime_depth` or holding more than `email_max_parts` parts is
    # dead-lettered with that reason. Up to `email_keep_raw_bytes` the original travels with
    # the record (base64, `email_raw`); above it, its SHA-256 and size do.
    email_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    email_max_mime_depth: int = Field(default=12, ge=1, le=100)
    email_max_parts: int = Field(default=200, ge=1, le=10_000)
    email_keep_raw_bytes: int = Field(default=64 * 1024, ge=0, le=8 * 1024 * 1024)
    # our mailboxes; `support+t.<token>@` / `support+v.<vendor>@` on them carry a thread or a
    # vendor (empty: a plus-tag on any recipient counts)
    email_support_addresses: list[EmailAddress] = []
    # recipient address -> vendor id, e.g. {"help@acme.example": "acme"}
    email_vendor_addresses: dict[EmailAddress, VendorId] = {}
    # RE2 syntax, searched in subject then body; group 1 (else the whole match) is the order id
    email_order_pattern: str | None = (
        r"(?i)\border\s*(?:no\.?|number|#)?\s*[:#]?\s*([A-Z0-9][A-Z0-9-]{5,39})\b"
    )
    # languages whose "On ... wrote:" lines and signatures the reply parser knows
    email_reply_languages: list[str] = [
        "en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "zh", "ko",
    ]  # fmt: skip
    # `router connect email` (streams/email/): a message is flagged (or moved) in IMAP, or
    # answered 250 in SMTP, only once Kafka acknowledged its record or its dead letter.
    email_imap_host: str | None = None  # unset: no IMAP intake
    email_imap_port: int = Field(default=993, ge=1, le=65535)
    email_imap_tls: bool = True  # implicit TLS (IMAPS); false only on a trusted network
    email_imap_ca_file: Path | None = None  # a private CA for the server's certificate
    email_imap_user: str | None = None
    email_imap_password: SecretStr | None = None  # never logged
    email_imap_mailbox: str = Field(default="INBOX", min_length=1, max_length=200)
    # set on a message once Kafka has it; a keyword (`$Routed`) leaves \Seen to people
    email_imap_done_flag: str = Field(default="\\Seen", pattern=r"^\\?[A-Za-z0-9$_.-]{1,64}$")
    email_imap_move_to: str | None = Field(default=None, min_length=1, max_length=200)
    # how long an IDLE waits before checking again; without IDLE, the polling interval
    email_imap_poll_interval_s: float = Field(default=60.0, gt=0, le=1740)
    email_imap_batch: int = Field(default=20, ge=1, le=1000)  # messages fetched per round
    email_imap_timeout_s: float = Field(default=30.0, gt=0, le=600)  # per IMAP command
    # SMTP receiving (aiosmtpd): -1 off, 0 any free port
    email_smtp_host: str = "127.0.0.1"
    email_smtp_port: int = Field(default=-1, ge=-1, le=65535)
    # how long a message waits for Kafka before the answer is 451 (the sender retries)
    email_ack_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Mail storms: messages per hour one sender may open or add to tickets through the live
    # intake (bursts of `email_sender_burst`); past it they are dead-lettered as
    # `sender_rate_limited`. 0: no limit.
    email_sender_rate_per_hour: float = Field(default=60.0, ge=0, le=1_000_000)
    email_sender_burst: int = Field(default=20, ge=1, le=100_000)
    # A reply whose client dropped every threading header joins the thread its sender last
    # wrote to under the same subject, within this window (router/email/fallback.py).
    email_thread_fallback_s: float = Field(default=14 * 86400, ge=0, le=EMAIL_THREAD_MAX_WINDOW_S)
    # `router deliver --channel email`: replies go to this relay (retries: deliver_*), from
    # `email_reply_from` (default: the first of email_support_addresses)
    email_relay_host: str | None = None
    email_relay_port: int = Field(default=587, ge=1, le=65535)
    email_relay_starttls: bool = True
    email_relay_user: str | None = None
    email_relay_password: SecretStr | None = None  # never logged
    email_reply_from: EmailAddress | None = None

    @model_validator(mode="after")
    def _requests_outlast_the_session(self) -> RouterSettings:
        if self.consumer_request_timeout_s <= self.session_timeout_s:
            raise ValueError(
                f"consumer_request_timeout_s ({self.consumer_request_timeout_s:g}) must be more "
                f"than session_timeout_s ({self.session_timeout_s:g}), as Kafka's consumer needs"
            )
        return self

    @property
    def direct_runtime(self) -> bool:
        """The stages run on their own aiokafka consumer (`streams/stages/direct.py`)."""
        return self.runtime != "faust"

    @property
    def routes(self) -> bool:
        """This worker runs the routing stage."""
        return self.stage in ("all", "routing")

    @property
    def fetch(self) -> tuple[int, int]:
        """(fetch_min_bytes, fetch_max_wait_ms) of the direct runtime's consumer."""
        min_bytes, wait_ms = ROUTING_FETCH if self.routes else STAGE_FETCH
        if self.consumer_fetch_min_bytes is not None:
            min_bytes = self.consumer_fetch_min_bytes
        if self.consumer_fetch_max_wait_ms is not None:
            wait_ms = self.consumer_fetch_max_wait_ms
        return min_bytes, wait_ms

    @model_validator(mode="after")
    def _a_full_batch_fits_the_burst(self) -> RouterSettings:
        if self.gateway_rate_burst < self.gateway_batch_max_items:
            raise ValueError(
                f"gateway_rate_burst ({self.gateway_rate_burst}) must be at least "
                f"gateway_batch_max_items ({self.gateway_batch_max_items}): a batch takes a "
                "token per message"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file = os.environ.get("ROUTER_SETTINGS_FILE")
        return (
            init_settings,
            env_settings,
            _FileSource(settings_cls, Path(file) if file else None),
        )

    @field_validator("email_order_pattern")
    @classmethod
    def _order_pattern_compiles(cls, raw: str | None) -> str | None:
        if raw:
            import re2

            try:
                re2.compile(raw)
            except re2.error as exc:
                raise ValueError(f"not an RE2 pattern: {exc}") from None
        return raw or None

    @field_validator(
        "data_dir", "rules_file", "sla_policies_file", "disputes_policy_file",
        "scores_formula_file", mode="before"
    )
    @classmethod
    def _path_not_empty(cls, raw: Any) -> Any:
        if isinstance(raw, str) and not raw.strip():  # Path("") would be the working directory
            raise ValueError("an empty path: leave the setting out instead")
        return raw

    def topic(self, logical: str) -> str:
        """The physical name of a logical topic (`tickets.events` -> `<prefix>tickets.events`)."""
        return f"{self.topic_prefix}{logical}"

    def logical(self, physical: str) -> str:
        return physical[len(self.topic_prefix) :] if self.topic_prefix else physical

    def group_id(self, stage: str | None = None) -> str:
        """The consumer group (and faust app id) of a worker running `stage` (default: this
        worker's). Changelog topics keep the base name whichever group hosts a table."""
        base = f"{self.topic_prefix}{self.app_id}"
        chosen = stage or self.stage
        return f"{base}-{chosen}" if chosen in ("lifecycle", "scores") else base

    def masked(self) -> dict[str, Any]:
        """For logs: secrets stay masked (SecretStr renders as '**********')."""
        return {k: _mask(v) for k, v in self}


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return str(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value
