"""faust's Kafka transport with the producer we want: acks=all and idempotence always on.

faust only enables idempotence inside transactions; at-least-once processing still needs it,
or a retried produce after a timeout can write a record twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class IdempotentProducer(faust_aiokafka.Producer):  # type: ignore[misc]  # faust is untyped
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class RouterTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Producer = IdempotentProducer


class RouterApp(faust.App):  # type: ignore[misc]
    def _new_transport(self) -> RouterTransport:
        return RouterTransport(self.conf.broker_consumer, self)
