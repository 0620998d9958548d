"""structlog JSON logs, one line per event; stdlib loggers (faust, aiokafka) rendered alike."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiokafka.errors import KafkaError

_SECRET_KEYS = frozenset({"password", "sasl_password", "secret", "token", "api_key"})


def redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A pure processor: never let a secret-looking key reach the log line."""
    for key in event.keys() & _SECRET_KEYS:
        event[key] = "**********"
    return event


# aiokafka messages about a condition it retries itself that carry no error object.
_TRANSIENT_MESSAGES = frozenset({"Topic %s not found in cluster metadata"})


def _retriable(arg: object) -> bool:
    if isinstance(arg, KafkaError):
        return bool(arg.retriable)
    # some messages pass the error class, not an instance
    return isinstance(arg, type) and issubclass(arg, KafkaError) and bool(
        getattr(arg, "retriable", False)
    )


class TransientKafkaErrors(logging.Filter):
    """aiokafka logs at error level conditions it retries by itself: no group coordinator yet
    on a fresh cluster, a leader moving while topics are created, a topic not yet in the
    metadata. They are warnings: an `error` line must mean something an operator acts on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and record.name.startswith("aiokafka")
            and (
                record.msg in _TRANSIENT_MESSAGES
                or any(_retriable(a) for a in _args(record))
            )
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RepeatedLines(logging.Filter):
    """A library line repeating (same logger, level and message template) is written once per
    `window_s`, the next one saying how many were left out: with every broker down, aiokafka
    logs a failed connection per request, hundreds a second, burying everything else."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s, self._clock = window_s, clock
        self._seen: dict[tuple[str, int, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("router", "streams")):  # the engine's own lines: all kept
            return True
        key, now = (record.name, record.levelno, record.msg), self._clock()
        since, left_out = self._seen.get(key, (-float("inf"), 0))
        if now - since < self.window_s:
            self._seen[key] = (since, left_out + 1)
            return False
        if len(self._seen) > 1000:  # bounded: templates are few, but never trust that
            self._seen.clear()
        self._seen[key] = (now, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like this left out in {self.window_s:g} s)"
        return True


def _args(record: logging.LogRecord) -> tuple[object, ...]:
    args = record.args
    if isinstance(args, tuple):
        return args
    return () if args is None else (args,)


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )
    )
    handler.addFilter(TransientKafkaErrors())
    handler.addFilter(RepeatedLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # warnings.warn lines as JSON too, not bare stderr text
    root.setLevel(level)
    # faust and aiokafka are chatty at INFO about every rebalance step.
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
