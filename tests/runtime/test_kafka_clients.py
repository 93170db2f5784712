"""What a refused connection says: aiokafka logs why each connection failed and raises a generic
error; the worker's start-up check reads the first and ends at once for what no retry fixes."""

from __future__ import annotations

import ssl

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from service.runtime.kafka_clients import describe_failure, refusal
from service.settings import KafkaSettings

SECURE = KafkaSettings(
    bootstrap_servers="kafka-1:9093",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="reciprocity",
    sasl_password=SecretStr("hunter2-secret"),
)


def untrusted() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate in certificate chain"
    return error


@pytest.mark.parametrize(
    ("errors", "says"),
    [
        ([untrusted()], "RECIPROCITY_KAFKA__SSL_CAFILE"),
        ([ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")], "TLS handshake"),
        ([SaslAuthenticationFailed("Authentication failed")], "SASL authentication failed"),
        ([KafkaConnectionError("Connection at kafka-1:9093 closed"), untrusted()], "not trusted"),
        ([KafkaConnectionError("Connection at kafka-1:9093 closed")], None),  # may come back
        ([ConnectionRefusedError(111, "Connection refused")], None),  # a broker down
        ([], None),
    ],
)
def test_what_no_retry_can_fix_is_told_apart(errors: list[BaseException], says: str | None) -> None:
    told = refusal(SECURE, errors)
    if says is None:
        assert told is None
    else:
        assert told is not None and says in told
        assert "hunter2-secret" not in told


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (
            TopicAuthorizationFailedError("app-stage2-by-target"),
            "refused topic app-stage2-by-target",
        ),
        (GroupAuthorizationFailedError("app"), "refused group app"),
        (ValueError("boom"), "ValueError('boom')"),
    ],
)
def test_a_failure_mid_run_is_described_by_its_cause(failure: BaseException, says: str) -> None:
    line = describe_failure(failure)
    assert says in line
    assert ("reciprocity acls" in line) == ("refused" in says)
