"""Running the gateway for tests (its own serving code on a free port, in a thread or as the
`router gateway` process) and talking to it over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from hypothesis import strategies as st

from router.intake.signature import SIGNATURE_HEADER, SOURCE_HEADER, sign
from schemas.topics import CHANNELS, DELIVERY_RECEIPTS
from streams.gateway.server import serve
from streams.kafka.topics import TopicManager
from streams.local.install import die_with_parent
from streams.settings import RouterSettings
from tests.harness import REPO, Collector, Output, wait_for

SOURCE = "acme-chat"
SECRET = "0123456789abcdef-current"
NEXT_SECRET = "0123456789abcdef-next-one"
HTTP_TIMEOUT_S = 30.0


def gateway_settings(bootstrap: str, prefix: str, **overrides: Any) -> RouterSettings:
    fields: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap, "topic_prefix": prefix, "partitions": 3,
        "gateway_port": 0, "gateway_secrets": {SOURCE: [SECRET, NEXT_SECRET]},
    }  # fmt: skip
    return RouterSettings(**{**fields, **overrides})


def records_on(settings: RouterSettings, topics: list[str], *ids: str) -> list[Output]:
    """What `topics` hold once every one of `ids` is there, by topic, partition and offset.
    Records of one thread share a partition, so a record sent last (a sentinel) comes after
    whatever its thread had before."""
    collector = Collector(settings.kafka_bootstrap_servers, settings.topic_prefix, topics)
    outputs = collector.poll_until(
        lambda outs: set(ids) <= {o.value["id"] for o in outs}, 30, f"records {ids}"
    )
    return sorted(outputs, key=lambda o: (o.topic, o.partition, o.offset))


def printable_text(max_size: int) -> st.SearchStrategy[str]:
    """One-line printable text (header-safe)."""
    return st.text(alphabet=string.printable.strip("\r\n\x0b\x0c") + " ", max_size=max_size)


def json_values(text: int, size: int, leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value orjson writes: printable strings of up to `text` characters, 64-bit
    integers, finite floats; lists and objects of up to `size` items, `leaves` in all."""
    printable = printable_text(text)
    scalar = (
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False) | printable
    )  # fmt: skip
    def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(inner, max_size=size) | st.dictionaries(printable, inner, max_size=size)

    return st.recursive(scalar, containers, max_leaves=leaves)


def create_channel_topics(settings: RouterSettings) -> None:
    """What a worker creates at start of what the gateway writes, for tests that run the
    gateway without one."""
    written = [*CHANNELS.values(), DELIVERY_RECEIPTS]
    asyncio.run(TopicManager(settings).ensure([t.name for t in written]))


def signed(
    body: bytes,
    content_type: str | None = "application/json",
    *,
    secret: str = SECRET,
    at: int | None = None,
    source: str = SOURCE,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request signed the way a connector signs it."""
    signature = sign(secret.encode(), body, at or int(time.time()))
    out = {SOURCE_HEADER: source, SIGNATURE_HEADER: signature}
    if content_type is not None:
        out["Content-Type"] = content_type
    return {**out, **(extra or {})}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)


def request(
    base_url: str, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:  # fmt: skip
    """One HTTP request on a fresh connection; any status comes back (no exception)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


class GatewayThread:
    """`streams.gateway.server.serve` on a free port, on its own event loop in a thread."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def serving(urls: list[str]) -> None:
                self.url = urls[0]
                self._ready.set()

            await serve(self.settings, self._stop, serving)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise AssertionError(f"the gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the gateway did not stop within 30 s"

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return request(self.url, "POST", path, body, headers)

    def get(self, path: str) -> Reply:
        return request(self.url, "GET", path)


@dataclass
class GatewayProcess:
    """`router gateway` as its own process (PR_SET_PDEATHSIG: it dies with the test run)."""

    settings_env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self, timeout: float = 60) -> GatewayProcess:
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "ROUTER_GATEWAY_PORT": "0",
            "ROUTER_GATEWAY_SECRETS": orjson.dumps({SOURCE: [SECRET, NEXT_SECRET]}).decode(),
            **self.settings_env,
        }  # fmt: skip
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router", "gateway"], env=env, cwd=REPO, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent(os.getpid()),
        )  # fmt: skip
        proc = self.proc
        wait_for(lambda: self._serving() or proc.poll() is not None, timeout, "the gateway")
        assert self.url, f"the gateway exited:\n{self.log_text()}"
        return self

    def _serving(self) -> bool:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"gateway_serving"' in line:
                self.url = orjson.loads(line)["url"]
                return True
        return False

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM; the exit code (the log file is closed either way)."""
        assert self.proc is not None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return request(self.url, "POST", path, body, headers)

    def get(self, path: str) -> Reply:
        return request(self.url, "GET", path)
