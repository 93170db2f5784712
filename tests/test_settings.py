"""Settings are validated at start, with a message that names the variable."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SECURITY_PROTOCOL": "SSL", "SSL_KEYFILE": "{pem}"}, "ssl_keyfile needs ssl_certfile"),
        ({"SECURITY_PROTOCOL": "PLAINTEXT", "SSL_CERTFILE": "{pem}"}, "ssl_certfile needs TLS"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "{missing}"}, "is not a readable file"),
    ],
)
def test_client_certificate_settings_are_checked_at_start(
    env: dict[str, str], says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("not read here")
    for name, value in env.items():
        value = value.format(pem=pem, missing=tmp_path / "missing.pem")
        monkeypatch.setenv(f"RECIPROCITY_KAFKA__{name}", value)
    with pytest.raises(ConfigurationError) as refused:
        settings_from_environment()
    assert says in str(refused.value)


def test_a_client_certificate_with_its_key_in_the_same_file_is_accepted(tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("not read here")
    settings = KafkaSettings(security_protocol="SSL", ssl_certfile=pem)
    assert settings.ssl_keyfile is None
