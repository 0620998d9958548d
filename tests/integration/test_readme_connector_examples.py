"""The README's two ways in for a connector, run as written: kcat straight to Kafka, and curl
through the gateway with a signature computed by openssl; the engine routes both."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.gateway_support import GatewayThread, gateway_settings
from tests.harness import Output
from tests.integration.conftest import EngineUnderTest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
GATEWAY_URL = "http://127.0.0.1:8080"


def example_after(lead: str) -> str:
    """The first ```sh block after the paragraph that starts with `lead`."""
    text = README.read_text()
    start = text.index(lead)
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert match is not None, f"no sh example after {lead!r}"
    return match.group(1)


def secret_of(script: str) -> str:
    match = re.search(r"SECRET='([^']+)'", script)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("kcat", "curl", "openssl")),
    reason="kcat (Debian package), curl and openssl are needed to run the examples",
)
def test_the_kcat_and_curl_examples_are_routed(engine: EngineUnderTest) -> None:
    kcat = example_after("Straight to Kafka with kcat:")
    curl = example_after("Through the gateway with curl")
    engine.start_worker()
    # the test's topics carry a per-test prefix; the gateway's address is the test's own
    kcat = kcat.replace("-t channel.email", f"-t {engine.prefix}channel.email")
    settings = gateway_settings(
        engine.bootstrap, engine.prefix,
        gateway_secrets={"acme-chat": [secret_of(curl)]},
    )  # fmt: skip
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", kcat], check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": engine.bootstrap},
    )  # fmt: skip
    with GatewayThread(settings) as gateway:
        answered = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", curl.replace(GATEWAY_URL, gateway.url)],
            check=True, timeout=60, capture_output=True, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    reply = orjson.loads(answered.stdout)
    assert reply["status"] == 202, reply

    def inbound_ids(outputs: list[Output]) -> set[str]:
        return {
            m["inbound_id"] for o in outputs if o.topic == "queue.vendor.acme"
            for m in o.value["data"]["messages"]
        }  # fmt: skip

    outputs = engine.collector().poll_until(
        lambda outs: {"m-1", reply["id"]} <= inbound_ids(outs), 90, "both examples routed"
    )
    channels = {
        o.value["data"]["channel"] for o in outputs if o.topic == "queue.vendor.acme"
    }  # fmt: skip
    assert channels == {"email", "chat"}
