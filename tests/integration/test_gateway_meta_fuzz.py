"""Any request to the Meta webhook (body, headers, signed or not, a handshake with any query)
gets a 2xx or a 4xx, never a 500 or a 503 from a healthy broker. Bodies are mostly Meta's own
shapes with values replaced, dropped or added, signed with the app secret, so the
normalisers and Kafka are reached. Against `router gateway` on a real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from router.intake import meta
from tests.gateway_support import (
    GatewayProcess,
    create_channel_topics,
    json_values,
    printable_text,
)
from tests.harness import wait_for
from tests.integration.test_gateway_meta import (
    APP_SECRET,
    FIXTURES,
    VERIFY_TOKEN,
    WEBHOOK,
    meta_settings,
)

pytestmark = pytest.mark.integration

_PRINTABLE = printable_text(40)
_JSON = json_values(40, 3, 8)
_DOCS = [orjson.loads(p.read_bytes()) for p in sorted(Path(FIXTURES).glob("*.json"))]


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(doc, dict | list):
        for key, value in doc.items() if isinstance(doc, dict) else enumerate(doc):
            yield from _paths(value, (*here, key))


def _mutated(draw: Any) -> Any:
    doc = orjson.loads(orjson.dumps(draw(st.sampled_from(_DOCS))))
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        *parent_path, key = draw(st.sampled_from(paths))
        parent = doc
        for step in parent_path:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(_JSON | st.sampled_from(["", "0", 0, -1, 2**63 - 1, "9" * 300]))
    return doc


@st.composite
def deliveries(draw: Any) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["meta"] * 6 + ["json", "bytes"]))
    if kind == "meta":
        body = orjson.dumps(_mutated(draw))
    elif kind == "json":
        body = orjson.dumps(draw(_JSON))
    else:
        body = draw(st.binary(max_size=400))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    how = draw(st.sampled_from(["signed"] * 6 + ["none", "garbage", "other"]))
    if how == "signed":
        headers[meta.SIGNATURE_HEADER] = meta.sign(APP_SECRET.encode(), body)
    elif how == "garbage":
        headers[meta.SIGNATURE_HEADER] = draw(_PRINTABLE)
    elif how == "other":
        headers[meta.SIGNATURE_HEADER] = meta.sign(b"not-the-app-secret", body)
    return body, headers


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    create_channel_topics(meta_settings(kafka_bootstrap, prefix))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ROUTER_TOPIC_PREFIX": prefix,
        "ROUTER_GATEWAY_META_VERIFY_TOKEN": VERIFY_TOKEN,
        "ROUTER_GATEWAY_META_APP_SECRETS": orjson.dumps([APP_SECRET]).decode(),
    }  # fmt: skip
    running = GatewayProcess(env, tmp_path_factory.mktemp("meta-fuzz") / "gateway.log").start()
    wait_for(lambda: running.get("/readyz").status == 200, 30, "the gateway ready")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_text()
    assert "Traceback" not in running.log_text()
    assert APP_SECRET not in running.log_text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery=deliveries())
def test_any_delivery_is_answered_with_a_2xx_or_a_4xx(
    gateway: GatewayProcess, delivery: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = delivery
    reply = gateway.post(WEBHOOK, body, headers)
    assert reply.status == 200 or 400 <= reply.status < 500, (reply.status, reply.raw)
    doc = reply.json
    event(f"{reply.status} {doc.get('reason', '')} accepted={doc.get('accepted', '-')}")
    if reply.status == 200:
        assert doc["accepted"] == len(doc["ids"])
    else:
        assert doc["status"] == reply.status


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.dictionaries(
    st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge"]) | _PRINTABLE,
    st.sampled_from(["subscribe", VERIFY_TOKEN]) | st.text(max_size=200), max_size=4,
))  # fmt: skip
def test_any_handshake_is_answered_with_200_400_or_403(
    gateway: GatewayProcess, query: dict[str, str]
) -> None:
    reply = gateway.get(f"{WEBHOOK}?{urlencode(query)}")
    assert reply.status in (200, 400, 403), (reply.status, reply.raw)
    good = query.get("hub.mode") == "subscribe" and query.get("hub.verify_token") == VERIFY_TOKEN
    if reply.status == 200:
        assert good
        assert reply.raw.decode() == query["hub.challenge"]
