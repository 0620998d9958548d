"""deploy/k8s/ run for real: `podman kube play` starts the worker Deployment (its ConfigMap,
probes, security context and all) against the test broker; the probes answer and it routes."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers import podman, podman_env
from tests.factories import inbound_bytes
from tests.harness import REPO, Collector, produce, wait_for
from tests.integration.conftest import OUTPUT_TOPICS

pytestmark = pytest.mark.integration

K8S = REPO / "deploy" / "k8s"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def for_the_test_broker(image: str, bootstrap: str, prefix: str) -> tuple[dict[str, Any], ...]:
    """The manifests as shipped, pointed at the test broker: image, brokers, no SASL, one
    replica (what an operator edits before applying). The broker listens on loopback, so the pod
    shares the host's network: its container ports are the host's (podman maps none there) and
    the probes name them by number."""
    (configmap,) = documents("configmap.yaml")
    configmap["data"].update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ROUTER_SECURITY_PROTOCOL": "PLAINTEXT",
        "ROUTER_TOPIC_PREFIX": prefix, "ROUTER_PARTITIONS": "3", "ROUTER_REPLICATION_FACTOR": "1",
        "ROUTER_MIN_INSYNC_REPLICAS": "1", "ROUTER_TABLE_STANDBY_REPLICAS": "0",
        "ROUTER_COMMIT_INTERVAL_S": "0.5",
    })  # fmt: skip
    (deployment,) = [d for d in documents("worker.yaml") if d["kind"] == "Deployment"]
    deployment["spec"]["replicas"] = 1
    pod = deployment["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    (container,) = pod["containers"]
    container["image"] = image
    ports = {p["name"]: p["containerPort"] for p in container.pop("ports")}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[kind]["httpGet"]
        http["port"] = ports.get(http["port"], http["port"])
    return configmap, deployment


def probe(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def played(
    image: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    configmap, deployment = for_the_test_broker(image, kafka_bootstrap, topic_prefix)
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(configmap))
    manifest = tmp_path / "worker.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    try:  # a failed or timed-out play may leave its pod: taken down below as well
        podman("kube", "play", "--configmap", str(tmp_path / "configmap.yaml"),
               str(manifest), timeout=300)  # fmt: skip
        yield deployment
    finally:
        pods = subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}}"], env=podman_env(),
                              capture_output=True, text=True, timeout=60).stdout  # fmt: skip
        for pod in pods.split():
            if pod.startswith(deployment["metadata"]["name"]):
                print(subprocess.run(["podman", "pod", "logs", pod], env=podman_env(),
                                     capture_output=True, text=True, timeout=60).stderr[-6000:])
        podman("kube", "down", str(manifest), timeout=120, check=False)


def test_the_worker_deployment_runs_answers_its_probes_and_routes(
    played: dict[str, Any], kafka_bootstrap: str, topic_prefix: str
) -> None:
    (container,) = played["spec"]["template"]["spec"]["containers"]
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    ready_port, live_port = readiness["port"], liveness["port"]

    wait_for(lambda: probe(ready_port, readiness["path"]) == 200, 180,
             "the pod's readiness probe to answer 200")  # fmt: skip
    assert probe(live_port, liveness["path"]) == 200
    produce(kafka_bootstrap, f"{topic_prefix}channel.email",
            [(b"k8s-1", inbound_bytes("k8s-in-1", thread_ref="k8s-1", vendor_id="acme"))])

    def decided(outs: list[Any]) -> list[Any]:
        return [o for o in outs if o.topic == "tickets.decisions"]

    outputs = Collector(kafka_bootstrap, topic_prefix, OUTPUT_TOPICS).poll_until(
        lambda outs: bool(decided(outs)), 90, "the routing decision"
    )
    (decision,) = decided(outputs)
    # routed by the ConfigMap's ruleset (rules/examples/starter.json), read from its volume
    assert decision.value["data"]["ruleset"] == "starter"
    queued = [o for o in outputs if o.topic.startswith("queue.")]
    assert [o.value["data"]["messages"][0]["inbound_id"] for o in queued] == ["k8s-in-1"]
