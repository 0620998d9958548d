"""The gateway's HTTP surface (aiohttp): routes, the order of checks, JSON answers.

Per request: channel -> size (before reading past the limit) -> source and signature -> replay
-> content type and validation (`router.intake.request`, the engine's own checks) -> rate limit
-> Kafka; 202 only once Kafka acknowledged. Every error is a JSON body
`{"status", "reason", "error", "errors"}`; nothing else (no traceback) reaches the client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
import structlog
from aiohttp import web

from router.intake import meta
from router.intake.limits import RateLimiter, ReplayGuard
from router.intake.request import Record, Refused, channel_of, read_batch, read_message
from router.intake.signature import SIGNATURE_HEADER, SOURCE_HEADER, Unverified, Verified, verify
from streams.gateway.sink import ChannelSink
from streams.settings import RouterSettings

log = structlog.get_logger("router.gateway")

MESSAGES_PATH = "/v1/channels/{channel}/messages"
BATCH_PATH = "/v1/channels/{channel}/messages:batch"
META_PATH = "/v1/webhooks/meta"
# a client that stops sending its body mid-way gets 408 instead of holding a handler forever
BODY_READ_TIMEOUT_S = 30.0
_CHUNK = 64 * 1024
# the seconds a 503 asks the caller to wait before retrying
RETRY_AFTER_UNAVAILABLE_S = 1

Clock = Callable[[], float]
SINK: web.AppKey[ChannelSink] = web.AppKey("sink", ChannelSink)
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")


def openapi_document() -> dict[str, Any]:
    """The checked-in description of these routes (`streams/gateway/openapi.json`)."""
    text = resources.files("streams.gateway").joinpath("openapi.json").read_bytes()
    doc: dict[str, Any] = orjson.loads(text)
    return doc


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _error(
    status: int, reason: str, error: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"status": status, "reason": reason, "error": error, "errors": []}
    return _json(status, body, headers)


def _refused(refused: Refused) -> web.Response:
    return _json(refused.problem.value, refused.body())


class Gateway:
    """The per-process state behind the handlers: secrets, limits, the sink."""

    def __init__(self, settings: RouterSettings, sink: ChannelSink, clock: Clock) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        # decoded once; kept out of every log line and response
        self._secrets = {
            source: [s.get_secret_value().encode() for s in secrets]
            for source, secrets in settings.gateway_secrets.items()
        }
        self._meta_secrets = [
            s.get_secret_value().encode() for s in settings.gateway_meta_app_secrets
        ]
        token = settings.gateway_meta_verify_token
        self._meta_token = token.get_secret_value().encode() if token is not None else None
        self.limiter = RateLimiter(settings.gateway_rate_per_s, settings.gateway_rate_burst)
        self.replays = ReplayGuard(settings.gateway_replay_window_s)

    async def message(self, request: web.Request) -> web.Response:
        return await self._handle(request, batch=False)

    async def batch(self, request: web.Request) -> web.Response:
        return await self._handle(request, batch=True)

    async def _handle(self, request: web.Request, *, batch: bool) -> web.Response:
        channel = channel_of(request.match_info["channel"])
        if isinstance(channel, Refused):
            return _refused(channel)
        limit = (
            self.settings.gateway_batch_max_bytes if batch else self.settings.max_record_bytes
        )
        body = await _read_body(request, limit)
        if isinstance(body, web.Response):
            return body
        now = self.clock()
        source = request.headers.get(SOURCE_HEADER, "")
        signed = self._authenticate(source, request.headers.get(SIGNATURE_HEADER), body, now)
        if isinstance(signed, web.Response):
            return signed
        final = False
        try:
            at = datetime.fromtimestamp(now, UTC)
            content_type = request.headers.get("Content-Type")
            if batch:
                outcomes = read_batch(
                    channel, content_type, body, source_id=source, now=at,
                    max_record_bytes=self.settings.max_record_bytes,
                    max_items=self.settings.gateway_batch_max_items,
                )  # fmt: skip
                if isinstance(outcomes, Refused):
                    return _refused(outcomes)
            else:
                outcome = read_message(
                    channel, content_type, request.headers, body, source_id=source, now=at,
                    max_record_bytes=self.settings.max_record_bytes,
                )  # fmt: skip
                if isinstance(outcome, Refused):
                    return _refused(outcome)
                outcomes = [outcome]
            records = [o for o in outcomes if isinstance(o, Record)]
            wait = self.limiter.take(source, len(records), now) if records else 0.0
            if wait > 0:
                return _error(
                    429, "rate_limited",
                    f"source {source!r} is over {self.settings.gateway_rate_per_s:g} messages/s",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )  # fmt: skip
            acked = iter(await self.sink.send(records))
            results = [
                _item_result(o, next(acked) if isinstance(o, Record) else False) for o in outcomes
            ]
            unavailable = any(r["status"] == 503 for r in results)
            final = not unavailable
            retry = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)} if unavailable else None
            if batch:
                accepted = sum(r["status"] == 202 for r in results)
                summary = {"accepted": accepted, "refused": len(results) - accepted}
                return _json(503 if unavailable else 200, {**summary, "results": results}, retry)
            return _json(results[0]["status"], results[0], retry)
        finally:
            if not final:  # refused or not acknowledged: the same request may come again
                self.replays.release(signed.digest)

    async def meta_handshake(self, request: web.Request) -> web.Response:
        """Meta's subscription check: the challenge back as text when the token is ours."""
        answer = meta.handshake(request.query, self._meta_token)
        if answer.status != 200:
            log.info("meta_handshake_refused", status=answer.status)
        return web.Response(status=answer.status, text=answer.text, content_type="text/plain")

    async def meta_webhook(self, request: web.Request) -> web.Response:
        """A signed Meta delivery: every message in it on its channel topic and every receipt on
        `delivery.receipts`, 200 only once Kafka
        acknowledged them all (Meta retries anything else; the ids make a retry add nothing).
        No rate limit: Meta paces its deliveries and a 429 would only bring them back."""
        body = await _read_body(request, self.settings.gateway_batch_max_bytes)
        if isinstance(body, web.Response):
            return body
        problem = meta.verify_signature(
            request.headers.get(meta.SIGNATURE_HEADER), body, self._meta_secrets
        )
        if problem is not None:
            log.info("gateway_unauthorized", reason=problem.problem.value, source=meta.SOURCE)
            return _error(401, problem.problem.value, problem.error)
        at = datetime.fromtimestamp(self.clock(), UTC)
        batch = meta.normalise(body, at, self.settings.max_record_bytes)
        if isinstance(batch, Refused):
            return _refused(batch)
        if batch.skipped:  # where and why only: the items may hold personal data
            log.warning(
                "meta_items_skipped", count=len(batch.skipped),
                items=[f"{s.where}: {s.error}" for s in batch.skipped[:10]],
            )  # fmt: skip
        produced = [*batch.records, *batch.receipts]
        acked = await self.sink.send(produced) if produced else []
        if not all(acked):
            return _error(
                503, "kafka_unavailable",
                f"Kafka acknowledged {sum(acked)} of {len(acked)} records in time; "
                "the same delivery may come again",
                {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            )  # fmt: skip
        return _json(200, batch.summary())

    def _authenticate(
        self, source: str, header: str | None, body: bytes, now: float
    ) -> Verified | web.Response:
        secrets = self._secrets.get(source)
        if secrets is None and header:  # an unsigned request hears that first
            log.info("gateway_unauthorized", reason="unknown_source")
            return _error(
                401, "unknown_source", f"{SOURCE_HEADER} must name a source the gateway knows"
            )
        checked = verify(header, body, secrets or [], now, self.settings.gateway_replay_window_s)
        if isinstance(checked, Unverified):
            log.info("gateway_unauthorized", reason=checked.problem.value, source=source)
            return _error(401, checked.problem.value, checked.error)
        if not self.replays.reserve(checked.digest, checked.timestamp, now):
            log.warning("gateway_replay_refused", source=source)
            return _error(401, "signature_replayed", "this signed request was already accepted")
        return checked


def _item_result(outcome: Record | Refused, acked: bool) -> dict[str, Any]:
    if isinstance(outcome, Refused):
        return outcome.body()
    if acked:
        return {"status": 202, "id": outcome.event_id}
    return {
        "status": 503, "id": outcome.event_id, "reason": "kafka_unavailable",
        "error": "Kafka did not acknowledge the record in time; retry the same request",
        "errors": [],
    }  # fmt: skip


async def _read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """At most `limit` bytes: a larger body is refused without being read to its end."""
    too_large = _error(413, "body_too_large", f"the request body is over {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        return too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            async for chunk in request.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    return too_large
                chunks.append(chunk)
    except TimeoutError:
        late = f"the body did not arrive within {BODY_READ_TIMEOUT_S:.0f} s"
        return _error(408, "body_timeout", late)
    return b"".join(chunks)


async def healthz(_: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = await request.app[SINK].ready()
    return _json(200 if state["ready"] else 503, state)


async def openapi(_: web.Request) -> web.Response:
    return _json(200, openapi_document())


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SINK].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer counted by route template and status (outermost: errors included)."""
    response = await handler(request)
    route = request.match_info.route.resource
    template = route.canonical if route is not None else None
    request.app[SINK].metrics.answered(template, response.status)
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, ...) as JSON; anything unexpected as a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = (exc.reason or "error").lower().replace(" ", "_")
        return _error(exc.status, reason, exc.reason or "", dict(_allow_header(exc)))
    except Exception:
        # the body and headers are left out: they may hold personal data or a signature
        log.exception("gateway_internal_error", path=request.path, method=request.method)
        return _error(500, "internal_error", "the gateway failed on this request")


def _allow_header(exc: web.HTTPException) -> Sequence[tuple[str, str]]:
    allow = exc.headers.get("Allow")
    return [("Allow", allow)] if allow else []


def create_app(
    settings: RouterSettings, sink: ChannelSink | None = None, clock: Clock = time.time
) -> web.Application:
    """The gateway application; the sink's producer starts with the app and stops with it."""
    app = web.Application(middlewares=[counted, json_errors])
    gateway = Gateway(settings, sink or ChannelSink(settings), clock)
    app[SINK] = gateway.sink
    app[GATEWAY] = gateway
    app.router.add_post(MESSAGES_PATH, gateway.message)
    app.router.add_post(BATCH_PATH, gateway.batch)
    app.router.add_get(META_PATH, gateway.meta_handshake)
    app.router.add_post(META_PATH, gateway.meta_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)

    async def lifecycle(app: web.Application) -> Any:
        await app[SINK].start()
        yield
        await app[SINK].stop()

    app.cleanup_ctx.append(lifecycle)
    return app
