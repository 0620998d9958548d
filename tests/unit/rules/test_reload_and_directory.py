"""Hot-reload decisions, the vendor directory and buyer facts, without a broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import typer
from aiokafka import ConsumerRecord

from router.cli import _load_policy
from router.default_policy import DefaultPolicy
from router.records import OutRecord
from router.routing import BuyerHistory, RoutingPolicy
from router.rules_policy import policy_from_file
from router.stages.routing import PolicyHolder
from router.tickets import Threaded, buyer_from_attributes, thread_message
from rules import parse_ruleset_file, ruleset_record
from schemas.dead_letter import SourcePosition
from schemas.envelope import CloudEvent
from schemas.message import InboundEvent, InboundMessage
from schemas.rules_event import RULESET_REFUSED, RulesetRefused
from schemas.vendor import VendorProfile, VendorStatus
from streams.settings import RouterSettings
from streams.stages.rules_reload import RulesReload
from streams.stages.vendor_directory import VendorDirectory, profile_value
from tests.factories import inbound_event
from tests.unit.rules.rules_support import EXAMPLES

V1, V2 = EXAMPLES / "marketplace.yaml", EXAMPLES / "marketplace-v2.yaml"
AT = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)


def record(offset: int, key: str | None, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="routing.rules",
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key.encode() if key is not None else None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def ruleset_value(path: Any, **changes: Any) -> bytes:
    parsed = parse_ruleset_file(path)
    assert not isinstance(parsed, list)
    value = ruleset_record(parsed, at=AT)
    if not changes:
        return value
    event = orjson.loads(value)
    event["data"].update(changes)
    return orjson.dumps(event)


class FakeTopics:
    def __init__(self) -> None:
        self.ensured: list[str] = []

    async def ensure(self, names: Any, configs: Any = None) -> None:
        self.ensured.extend(names)


class FakeReader:
    topic = "routing.rules"

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records = records

    async def read_to_end(self) -> list[ConsumerRecord[bytes, bytes]]:
        return self.records


def reload_for(policy: RoutingPolicy) -> tuple[RulesReload, FakeTopics, list[dict[str, Any]]]:
    topics = FakeTopics()
    reload = RulesReload(RouterSettings(), PolicyHolder(policy), topics)  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []

    async def publish(record: OutRecord) -> None:
        assert record.topic == "routing.rules.events"
        events.append(orjson.loads(record.value))

    reload._publish = publish  # type: ignore[method-assign]
    return reload, topics, events


def test_catch_up_takes_the_newest_good_version_and_reports_newer_broken_ones() -> None:
    reload, topics, events = reload_for(policy_from_file(V1))
    reload.follower.reader = FakeReader(
        [  # type: ignore[assignment]
            record(0, "marketplace", ruleset_value(V1)),
            record(1, "marketplace", ruleset_value(V2)),
            record(2, "other", ruleset_value(V2, name="other")),  # another ruleset: not followed
            record(3, "marketplace", None),  # tombstone: ignored
            record(4, "marketplace", ruleset_value(V2, version="2.1.0", rules=[])),
        ]
    )
    asyncio.run(reload.follower.catch_up())
    assert (reload.holder.policy.name, reload.holder.policy.version) == ("marketplace", "2.0.0")
    assert "queue.dept.desk_it" in topics.ensured
    assert [e["type"] for e in events] == [RULESET_REFUSED]
    data = events[0]["data"]
    assert (data["ruleset"], data["version"], data["offset"]) == ("marketplace", "2.1.0", 4)
    assert data["kept"] == {"ruleset": "marketplace", "version": "2.0.0"}
    assert events[0]["id"] == "ruleset-refused:routing.rules:0:4"
    assert reload.caught_up
    # the event is what the exported schema (`ruleset-refused`) promises
    parsed = CloudEvent[RulesetRefused].model_validate(events[0])
    assert parsed.data.problems[0].message


def test_follow_swaps_good_records_and_keeps_the_last_good_one() -> None:
    reload, _, events = reload_for(policy_from_file(V1))
    broken = b'{"specversion": "1.0", "id": "x", "data": {"name": "marketplace", "version": 3'
    asyncio.run(
        reload._on_records(
            [
                record(0, "marketplace", ruleset_value(V2)),
                record(1, "marketplace", broken),
                record(2, "marketplace", ruleset_value(V1, name="renamed")),  # key != name
            ]
        )
    )
    assert reload.holder.policy.version == "2.0.0"
    assert [e["data"]["offset"] for e in events] == [1, 2]
    assert "not the ruleset name" in events[1]["data"]["problems"][0]["message"]


def test_a_ruleset_naming_an_sla_policy_the_worker_lacks_is_refused(tmp_path: Any) -> None:
    """Otherwise every ticket it sends to `gold` would silently run on the default policy."""
    reload, _, events = reload_for(policy_from_file(V1))
    strictest_first = ["gold", "vip", "disputes", "priority", "vendor_standard", "standard"]
    asyncio.run(reload._on_records(
        [record(0, "marketplace", ruleset_value(V2, sla_policies=strictest_first))]
    ))  # fmt: skip
    assert reload.holder.policy.version == "1.0.0"
    [problem] = events[0]["data"]["problems"]
    assert problem["message"].startswith("SLA policy 'gold' is unknown to the engine")
    # The same file at worker start: the worker refuses to start, saying why.
    bad = tmp_path / "gold.yaml"
    bad.write_text(V2.read_text().replace("sla_policies: [vip,", "sla_policies: [gold, vip,"))
    with pytest.raises(typer.Exit):
        _load_policy(bad)


def test_a_worker_on_the_builtin_policy_follows_any_ruleset() -> None:
    reload, _, _ = reload_for(DefaultPolicy())
    assert reload.pinned is None
    asyncio.run(
        reload._on_records([record(0, "starter", ruleset_value(EXAMPLES / "starter.json"))])
    )
    assert reload.holder.policy.name == "starter"


def _vendor_record(offset: int, key: str, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return record(offset, key, value)


def test_vendor_directory_applies_profiles_tombstones_and_skips_bad_records() -> None:
    directory = VendorDirectory(RouterSettings())
    acme = VendorProfile(vendor_id="acme", tier="gold")  # type: ignore[arg-type]
    folded = directory.apply(
        [
            _vendor_record(0, "acme", profile_value(acme, AT)),
            _vendor_record(1, "bolt", profile_value(VendorProfile(vendor_id="bolt"), AT)),
            _vendor_record(2, "bolt", None),
            _vendor_record(3, "zed", profile_value(acme, AT)),  # key is not the profile's id
            _vendor_record(4, "acme", b"not json"),  # keeps the previous profile
        ]
    )
    assert folded.changed == ["acme", "bolt", "bolt"]
    assert [(i.key, i.offset) for i in folded.invalid] == [("zed", 3), ("acme", 4)]
    assert "is not the record key" in folded.invalid[0].error
    assert directory.get("acme") == acme
    assert directory.get("bolt") is None
    assert directory.get("zed") is None
    suspended = acme.model_copy(update={"status": VendorStatus.SUSPENDED})
    assert directory.apply([_vendor_record(5, "acme", profile_value(suspended, AT))]).changed == [
        "acme"
    ]
    assert directory.get("acme") == suspended


def _message(**attributes: Any) -> InboundMessage:
    return InboundEvent.model_validate(inbound_event(attributes=attributes)).data


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, None),
        ({"vip": True}, BuyerHistory(vip=True)),
        ({"lifetime_orders": 12}, BuyerHistory(lifetime_orders=12)),
        ({"vip": False, "lifetime_orders": 3}, BuyerHistory(vip=False, lifetime_orders=3)),
        ({"vip": "yes", "lifetime_orders": True}, None),  # never coerced
        ({"lifetime_orders": -1}, None),
    ],
)
def test_buyer_facts_from_attributes(attributes: dict[str, Any], expected: Any) -> None:
    assert buyer_from_attributes(_message(**attributes)) == expected


def test_buyer_facts_only_for_buyers_and_they_reach_the_rules() -> None:
    seller = InboundEvent.model_validate(inbound_event(role="seller", attributes={"vip": True}))
    assert buyer_from_attributes(seller.data) is None
    event = InboundEvent.model_validate(
        inbound_event(vendor_id=None, body="Hello", attributes={"vip": True})
    )
    source = SourcePosition(topic="channel.email", partition=0, offset=0)
    result = thread_message(event, b"thread-1", source, None, policy_from_file(V1), AT)
    assert isinstance(result, Threaded)
    assert result.decision is not None
    assert "vip" in result.decision.tags
    assert result.decision.sla_policy == "vip"
