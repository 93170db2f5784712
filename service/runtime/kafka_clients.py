"""aiokafka client options from the Kafka settings: one place for security."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from service.settings import KafkaSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        return context
    return None


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # settings validation guarantees it
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value(),
        )
    return options
