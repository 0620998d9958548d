"""Every series the alert rules and the dashboard read is one a live worker or gateway really
exports (deploy/observability/)."""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from tests.factories import inbound_bytes, inbound_event
from tests.gateway_support import GatewayThread, create_channel_topics, gateway_settings, signed
from tests.harness import wait_for
from tests.integration.conftest import EngineUnderTest
from tests.unit.test_observability import named_series

pytestmark = pytest.mark.integration


def exported_names(url: str) -> set[str]:
    """Sample names a scrape can carry, empty families included (from their TYPE lines)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def test_alerts_and_dashboard_read_only_exported_series(engine: EngineUnderTest) -> None:
    worker = engine.start_worker()
    engine.send("email", [(b"ob-1", inbound_bytes("ob-in-1", thread_ref="ob-1"))])
    wait_for(lambda: worker.metrics_url() is not None, 60, "the metrics endpoint")
    url = worker.metrics_url()
    assert url is not None
    wait_for(lambda: _ready(url), 120, "the worker ready")
    exported = exported_names(url)

    settings = gateway_settings(engine.bootstrap, engine.prefix)
    create_channel_topics(settings)
    with GatewayThread(settings) as gateway:
        body = orjson.dumps(inbound_event("ob-gw-1", channel="chat", thread_ref="ob-2"))
        assert gateway.post("/v1/channels/chat/messages", body,
                            signed(body, "application/cloudevents+json")).status == 202
        exported |= exported_names(gateway.url + "/metrics")

    missing = named_series() - exported
    assert not missing, f"alerts or panels read series nobody exports: {sorted(missing)}"


def _ready(url: str) -> bool:
    """`/readyz` answers 200 (a 503 raises HTTPError, an OSError)."""
    try:
        with urllib.request.urlopen(url.replace("/metrics", "/readyz"), timeout=5):
            return True
    except OSError:
        return False
