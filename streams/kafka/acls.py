"""Kafka ACLs that keep each vendor to its own tickets (`router vendors provision --acls`).

A vendor's principal (default `User:<vendor id>`) gets exactly:

- topic `queue.vendor.<id>`, LITERAL: READ, DESCRIBE. Its own queue and no other (a
  PREFIXED `queue.vendor.acme` would also match `queue.vendor.acme2`);
- group `vendor.<id>.`, PREFIXED, ending with the delimiter: READ. Its consumer groups,
  named `vendor.<id>.<anything>`;
- topic `tickets.actions`, LITERAL: WRITE, DESCRIBE (replies, notes, resolves; unless
  `--no-actions`).

Topic and group names carry the settings' topic prefix. Nothing else is granted, so with an
authorizer that denies by default (`allow.everyone.if.no.acl.found=false`) a vendor can
neither read another vendor's queue nor the department queues, `tickets.events`, or any
channel topic. The engine checks in addition that a vendor acts only on tickets in its own
queue (`action_refused` dead letters).

aiokafka's admin client has no ACL calls; its protocol module has the CreateAcls and
DescribeAcls requests, sent here through the admin client's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

from schemas.topics import QUEUE_VENDOR, TICKETS_ACTIONS
from streams.kafka.client import client_kwargs
from streams.kafka.faust_internals import admin_request
from streams.settings import RouterSettings

# Kafka's wire codes (org.apache.kafka.common.acl / resource)
_RESOURCE = {"any": 1, "topic": 2, "group": 3, "cluster": 4}
_PATTERN = {"any": 1, "match": 2, "literal": 3, "prefixed": 4}
_OPERATION = {"any": 1, "all": 2, "read": 3, "write": 4, "create": 5, "delete": 6,
              "alter": 7, "describe": 8}  # fmt: skip
_PERMISSION = {"any": 1, "deny": 2, "allow": 3}
_NAMES = {
    "resource": {v: k for k, v in _RESOURCE.items()},
    "pattern": {v: k for k, v in _PATTERN.items()},
    "operation": {v: k for k, v in _OPERATION.items()},
    "permission": {v: k for k, v in _PERMISSION.items()},
}


class AclError(RuntimeError):
    """The broker refused to create or list ACLs (no authorizer, not authorised, ...)."""


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    resource: str  # topic | group
    name: str
    pattern: str  # literal | prefixed
    principal: str
    operation: str  # read | write | describe | ...
    permission: str = "allow"
    host: str = "*"

    def __str__(self) -> str:
        return (f"{self.permission} {self.principal} {self.operation} on {self.resource} "
                f"{self.name!r} ({self.pattern})")  # fmt: skip


def vendor_principal(vendor_id: str, template: str = "User:{vendor}") -> str:
    return template.format(vendor=vendor_id)


def vendor_acls(
    settings: RouterSettings, vendor_id: str, principal: str, *, actions: bool = True
) -> list[AclBinding]:
    """The bindings of one vendor (see the module doc); pure."""
    queue = settings.topic(QUEUE_VENDOR.of(vendor_id))
    groups = settings.topic(f"vendor.{vendor_id}.")
    out = [
        AclBinding("topic", queue, "literal", principal, "read"),
        AclBinding("topic", queue, "literal", principal, "describe"),
        AclBinding("group", groups, "prefixed", principal, "read"),
    ]
    if actions:
        commands = settings.topic(TICKETS_ACTIONS.name)
        out += [
            AclBinding("topic", commands, "literal", principal, "write"),
            AclBinding("topic", commands, "literal", principal, "describe"),
        ]
    return out


async def _admin(settings: RouterSettings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="router-acls")
    await admin.start()
    return admin


async def create_acls(settings: RouterSettings, bindings: list[AclBinding]) -> None:
    """Create every binding (creating an existing one again is a no-op for Kafka)."""
    admin = await _admin(settings)
    try:
        for b in bindings:
            request = CreateAclsRequest(
                _RESOURCE[b.resource], b.name, _PATTERN[b.pattern], b.principal, b.host,
                _OPERATION[b.operation], _PERMISSION[b.permission],
            )  # fmt: skip
            response = await admin_request(admin, request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise AclError(f"{b}: error {code}: {message or 'refused by the broker'}")
    finally:
        await admin.close()


async def describe_acls(settings: RouterSettings, principal: str) -> list[AclBinding]:
    """Every ACL of `principal`, sorted."""
    admin = await _admin(settings)
    try:
        request = DescribeAclsRequest(
            _RESOURCE["any"], None, _PATTERN["any"], principal, None,  # nullable on the wire
            _OPERATION["any"], _PERMISSION["any"],
        )  # fmt: skip
        response: Any = await admin_request(admin, request)
    finally:
        await admin.close()
    if response.error_code != 0:
        raise AclError(f"describe ACLs of {principal}: error {response.error_code}: "
                       f"{response.error_message or 'refused by the broker'}")  # fmt: skip
    found = []
    for resource_type, name, pattern, acls in response.resources:
        for acl_principal, host, operation, permission in acls:
            found.append(AclBinding(
                _NAMES["resource"].get(resource_type, str(resource_type)), name,
                _NAMES["pattern"].get(pattern, str(pattern)), acl_principal,
                _NAMES["operation"].get(operation, str(operation)),
                _NAMES["permission"].get(permission, str(permission)), host,
            ))  # fmt: skip
    return sorted(found)
