"""Settings are validated at start, with a message that names the variable."""

from __future__ import annotations

import pytest

from service.settings import ConfigurationError, KafkaSettings, settings_from_environment


@pytest.mark.parametrize(
    "servers",
    ["kafka-1:9092", "kafka-1:9092, kafka-2:9093", "10.0.0.7:9092", "[::1]:9092", "a.b.c:1"],
)
def test_good_bootstrap_servers(servers: str) -> None:
    assert KafkaSettings(bootstrap_servers=servers).bootstrap_servers.count(":") >= 1


@pytest.mark.parametrize(
    ("servers", "says"),
    [
        ("127.0.0.1:notaport", "port must be a number"),
        ("kafka-1", "is not host:port"),
        ("kafka-1:9092,", "is not host:port"),
        (":9092", "is not host:port"),
        ("kafka-1:0", "port must be a number"),
        ("kafka-1:65536", "port must be a number"),
        ("kafka://kafka-1:9092", "is not host:port"),
        ("kafka 1:9092", "is not host:port"),
    ],
)
def test_bad_bootstrap_servers_are_refused_naming_the_variable(
    servers: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS", servers)
    with pytest.raises(ConfigurationError) as refused:
        settings_from_environment()
    message = str(refused.value)
    assert "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS" in message
    assert says in message
