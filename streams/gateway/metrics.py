"""Prometheus metrics of one gateway process, `GET /metrics` on the gateway's own HTTP port.

- `router_gateway_requests_total{route,status}`: answers by route template (never the channel
  or source a caller typed) and HTTP status;
- `router_gateway_records_total{topic}`: records Kafka acknowledged, by logical topic;
- `router_gateway_kafka_seconds`: from a request's first send to Kafka's last acknowledgement
  (or the deadline), the gateway's share of its latency;
- `process_*`: CPU, memory, open files.

Labels stay bounded: routes and topics are fixed sets, a path no route matched counts as
`unmatched`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)

UNMATCHED = "unmatched"
# gateway acknowledgements sit between a millisecond and the ack timeout (seconds)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "router_gateway_requests", "HTTP requests answered, by route and status.",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.records = Counter(
            "router_gateway_records", "Records Kafka acknowledged, by logical topic.",
            ["topic"], registry=self.registry,
        )  # fmt: skip
        self.kafka_seconds = Histogram(
            "router_gateway_kafka_seconds",
            "From a request's first send to Kafka's last acknowledgement.",
            buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def answered(self, route: str | None, status: int) -> None:
        self.requests.labels(route or UNMATCHED, str(status)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
