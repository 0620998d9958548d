"""The container image (`make image`, deploy/Containerfile) run with podman against the test
broker: it routes a record, as a non-root user, with the compiled modules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.containers import logs, podman
from tests.factories import inbound_bytes
from tests.harness import Collector, produce, wait_for
from tests.integration.conftest import OUTPUT_TOPICS

pytestmark = pytest.mark.integration


@pytest.fixture
def container(image: str, kafka_bootstrap: str, topic_prefix: str) -> Iterator[str]:
    name = f"router-test-{uuid.uuid4().hex[:8]}"
    podman("run", "--detach", "--name", name, "--network=host",
           "-e", f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}",
           "-e", f"ROUTER_TOPIC_PREFIX={topic_prefix}", "-e", "ROUTER_PARTITIONS=3",
           "-e", "ROUTER_METRICS_PORT=0", "-e", "ROUTER_COMMIT_INTERVAL_S=0.5",
           image, "worker")  # fmt: skip
    try:
        yield name
    finally:
        written = logs(name)
        podman("rm", "--force", "--time", "10", name, check=False)
        print(written[-6000:])  # shown by pytest only when the test failed


def test_the_image_routes_a_record_as_a_non_root_user(
    image: str, container: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    assert podman("run", "--rm", "--entrypoint", "id", image, "-u").strip() == "10001"
    assert podman("run", "--rm", image, "--version").strip().startswith("ticket-router ")
    statuses = podman("run", "--rm", "--entrypoint", "python", image, "-m",
                      "router.native_build", "status")  # fmt: skip
    states = {line.split()[0] for line in statuses.splitlines() if line.strip()}
    assert states == {"compiled"}, statuses

    topic = f"{topic_prefix}channel.email"
    wait_for(lambda: "direct_partitions_assigned" in logs(container), 120,
             "the worker in the container to have its partitions")  # fmt: skip
    produce(kafka_bootstrap, topic, [(b"img-1", inbound_bytes("img-in-1", thread_ref="img-1",
                                                              vendor_id="acme"))])  # fmt: skip
    outputs = Collector(kafka_bootstrap, topic_prefix, OUTPUT_TOPICS).poll_until(
        lambda outs: any(o.topic == "queue.vendor.acme" for o in outs), 90, "the routed record"
    )
    (routed,) = [o for o in outputs if o.topic == "queue.vendor.acme"]
    assert routed.value["data"]["messages"][0]["inbound_id"] == "img-in-1"
