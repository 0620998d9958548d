"""Connection settings shared by every Kafka client the engine opens (faust, admin, tools)."""

from __future__ import annotations

from typing import Any

from streams.settings import RouterSettings


def client_kwargs(settings: RouterSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap and authentication."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return kwargs


def producer_kwargs(settings: RouterSettings) -> dict[str, Any]:
    """Durable and fast: acks=all + idempotence, lingering batches, compressed JSON."""
    compression = None if settings.producer_compression == "none" else settings.producer_compression
    return {
        **client_kwargs(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "max_request_size": 8 * 1024 * 1024,
        "compression_type": compression,
    }
