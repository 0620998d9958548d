"""Any request (body, headers, content type, path, signed or not) gets an answer that is a 4xx
or an acceptance, as a JSON body: never a 500, a 503 from a healthy broker, or a hang (each
request has a client timeout). Against the real gateway on a real broker; kept to a few
seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.factories import inbound_event
from tests.gateway_support import (
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    GatewayProcess,
    create_channel_topics,
    gateway_settings,
    json_values,
    printable_text,
    signed,
)
from tests.harness import wait_for

pytestmark = pytest.mark.integration

_PRINTABLE = printable_text(80)
_TOKEN = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True).filter(
    lambda h: h.lower() not in ("content-length", "transfer-encoding", "host", "connection")
)
_JSON = json_values(80, 4, 12)
_MESSAGE = inbound_event("fuzz", channel="chat", thread_ref="fuzz-thread")


def _near_valid(draw: Any) -> Any:
    """A valid message or event with some fields replaced, dropped or added."""
    doc: dict[str, Any] = dict(_MESSAGE if draw(st.booleans()) else _MESSAGE["data"])
    for key in draw(st.lists(st.sampled_from([*doc, "extra"]), max_size=3)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(_JSON)
    return doc


@st.composite
def requests(draw: Any) -> tuple[str, bytes, dict[str, str]]:
    # weighted towards what gets past the early checks, so validation and Kafka are reached
    odd = draw(st.integers(0, 9)) == 0
    channel = draw(
        st.from_regex(r"[a-z0-9._~-]{1,20}", fullmatch=True) if odd
        else st.sampled_from(["chat"] * 8 + ["email", "social"])
    )  # fmt: skip
    path = f"/v1/channels/{channel}/messages" + draw(st.sampled_from(["", ":batch"]))
    kind = draw(st.sampled_from(["bytes", "json", "near", "batch"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=600))
    elif kind == "json":
        body = orjson.dumps(draw(_JSON))
    elif kind == "near":
        body = orjson.dumps(_near_valid(draw))
    else:
        body = orjson.dumps([_near_valid(draw) for _ in range(draw(st.integers(0, 4)))])
    content_type = draw(
        st.sampled_from(["application/json"] * 4 + [
            "application/cloudevents+json", "application/cloudevents-batch+json",
            "application/json; charset=utf-8", "application/json; charset=latin-1",
            "text/plain", "multipart/form-data",
        ])
        if draw(st.integers(0, 9))
        else st.none() | _PRINTABLE
    )  # fmt: skip
    headers = draw(st.dictionaries(
        st.sampled_from(["ce-id", "ce-specversion", "ce-source", "ce-type", "ce-time",
                         "ce-data", "ce-Bad_Name", "ce-subject"]) | _TOKEN,
        _PRINTABLE, max_size=5,
    ))  # fmt: skip
    how = draw(st.sampled_from(["signed"] * 5 + ["unsigned", "garbage", "stale"]))
    if how == "signed":
        headers.update(signed(body, content_type))
    elif how == "stale":
        headers.update(signed(body, content_type, at=1))
    else:
        if content_type is not None:
            headers["Content-Type"] = content_type
        if how == "garbage":
            headers[SOURCE_HEADER] = draw(_PRINTABLE)
            headers[SIGNATURE_HEADER] = draw(_PRINTABLE)
    return path, body, headers


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """`router gateway` in its own process: aiokafka's use of `random` in a thread of this
    process would trip hypothesis' check that strategies do not use it."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    create_channel_topics(gateway_settings(kafka_bootstrap, prefix))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ROUTER_TOPIC_PREFIX": prefix}
    running = GatewayProcess(env, tmp_path_factory.mktemp("fuzz") / "gateway.log").start()
    wait_for(lambda: running.get("/readyz").status == 200, 30, "the gateway ready")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_text()
    assert "Traceback" not in running.log_text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_any_request_is_answered_with_a_4xx_or_an_acceptance(
    gateway: GatewayProcess, request: tuple[str, bytes, dict[str, str]]
) -> None:
    path, body, headers = request
    reply = gateway.post(path, body, headers)
    assert reply.status in (200, 202) or 400 <= reply.status < 500, (reply.status, reply.raw)
    doc = reply.json
    event(f"{reply.status} {doc.get('reason', '')}")  # --hypothesis-show-statistics
    if reply.status >= 400:
        assert doc["status"] == reply.status
        assert doc["reason"]
    elif reply.status == 200:
        assert all(r["status"] == 202 or 400 <= r["status"] < 500 for r in doc["results"])
