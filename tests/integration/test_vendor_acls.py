"""Vendor isolation on a broker that enforces ACLs (SASL/PLAIN, StandardAuthorizer, deny by
default): after `router vendors provision --acls`, a vendor reads its own queue and nobody
else's, not even a vendor whose id starts with its own, and writes only desk actions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from typer.testing import CliRunner

from router.cli import app
from streams.kafka.topics import ensure_core_topics
from streams.local.broker import LocalKafka, local_kafka_available
from streams.local.install import sasl_acl_overrides
from streams.settings import RouterSettings
from tests.harness import wait_for

pytestmark = pytest.mark.integration

USERS = {"admin": "admin-secret", "acme": "acme-pw", "acme2": "acme2-pw", "bolt": "bolt-pw"}
PREFIX = "acl."
TOPIC_AUTHORIZATION_FAILED = 29


def credentials(user: str) -> dict[str, Any]:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user, "sasl_plain_password": USERS[user]}  # fmt: skip


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[str]:
    """A broker of its own: the suite's shared broker runs without an authorizer."""
    if not local_kafka_available():
        pytest.skip("needs Java 17 and the Kafka jars (the local broker)")
    with LocalKafka(overrides=sasl_acl_overrides(USERS), client_config=credentials("admin")) as k:
        yield k.bootstrap


ENV = {"ROUTER_TOPIC_PREFIX": PREFIX, "ROUTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
       "ROUTER_SASL_MECHANISM": "PLAIN", "ROUTER_SASL_USERNAME": "admin",
       "ROUTER_SASL_PASSWORD": USERS["admin"], "ROUTER_PARTITIONS": "1"}  # fmt: skip


def cli(bootstrap: str, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **ENV})


def engine_topics(bootstrap: str) -> None:
    """The topics a worker creates at start (the admin is the engine's principal here)."""
    settings = RouterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=PREFIX, partitions=1,
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="admin",
        sasl_password=USERS["admin"],  # type: ignore[arg-type]  # pydantic makes it a SecretStr
    )
    asyncio.run(ensure_core_topics(settings))


async def _produce(bootstrap: str, user: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **credentials(user))
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(PREFIX + topic, b"{}", key=b"T-1"), 20)
    finally:
        await producer.stop()


async def _topic_errors(bootstrap: str, user: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **credentials(user))
    await admin.start()
    try:
        found = await admin.describe_topics([PREFIX + t for t in topics])
    finally:
        await admin.close()
    return {t["topic"][len(PREFIX) :]: t["error_code"] for t in found}


async def _read_with_group(bootstrap: str, user: str, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(
        PREFIX + topic, bootstrap_servers=bootstrap, group_id=PREFIX + group,
        auto_offset_reset="earliest", enable_auto_commit=False, **credentials(user),
    )  # fmt: skip
    try:
        await consumer.start()
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=1000)
            if batch:
                return sum(len(records) for records in batch.values())
        return 0
    finally:
        await consumer.stop()


def test_each_vendor_reads_its_own_queue_only(secured_kafka: str) -> None:
    engine_topics(secured_kafka)
    vendors = ["acme", "acme2", "bolt"]
    done = cli(secured_kafka, "vendors", "provision", "--acls", *vendors)
    assert done.exit_code == 0, done.output
    assert f"allow User:acme read on topic '{PREFIX}queue.vendor.acme' (literal)" in done.stdout
    listed = cli(secured_kafka, "vendors", "acls", "acme")
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.splitlines()) == 5
    for v in vendors:  # one ticket on each queue, written as the engine would
        asyncio.run(_produce(secured_kafka, "admin", f"queue.vendor.{v}"))

    def reads_own_queue() -> bool:  # ACLs reach the authorizer shortly after creation
        try:
            got = _read_with_group(secured_kafka, "acme", "queue.vendor.acme", "vendor.acme.desk")
            return asyncio.run(got) == 1
        except (GroupAuthorizationFailedError, TopicAuthorizationFailedError):
            return False

    wait_for(reads_own_queue, 60, "acme to read its own queue")
    errors = asyncio.run(_topic_errors(
        secured_kafka, "acme", ["queue.vendor.acme", "queue.vendor.acme2", "queue.vendor.bolt",
                                "queue.dept.disputes", "tickets.events"]))  # fmt: skip
    assert errors["queue.vendor.acme"] == 0
    # a LITERAL grant: `acme` does not reach `acme2`'s queue
    assert errors["queue.vendor.acme2"] == TOPIC_AUTHORIZATION_FAILED
    assert errors["queue.vendor.bolt"] == TOPIC_AUTHORIZATION_FAILED
    assert errors["tickets.events"] == TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(GroupAuthorizationFailedError):  # another vendor's consumer group
        asyncio.run(_read_with_group(secured_kafka, "acme", "queue.vendor.acme", "vendor.bolt.x"))
    # desk actions may be written; another vendor's queue may not
    asyncio.run(_produce(secured_kafka, "acme", "tickets.actions"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(secured_kafka, "acme", "queue.vendor.bolt"))
    # and the other vendors likewise see their own
    assert asyncio.run(_read_with_group(secured_kafka, "bolt", "queue.vendor.bolt",
                                        "vendor.bolt.desk")) == 1  # fmt: skip


def test_provision_refuses_a_principal_shared_by_every_vendor(secured_kafka: str) -> None:
    res = cli(secured_kafka, "vendors", "provision", "--acls", "--principal", "User:vendors",
              "acme")  # fmt: skip
    assert res.exit_code == 2
    assert "{vendor}" in res.output
