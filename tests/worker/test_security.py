"""The worker against a broker that requires TLS, SASL/SCRAM-SHA-512 and ACLs
(`allow.everyone.if.no.acl.found=false`): with exactly the ACLs `reciprocity acls` prints it
alerts the seeded spam; a wrong password, an untrusted CA, a plaintext client on the TLS port
and a missing ACL each end it within seconds with a line that names the cause; the password
appears nowhere it writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import free_port
from service.kafka_acls import worker_acls
from tests.worker.harness import Worker, create_topics, produce, read_all
from tests.worker.secure_cluster import (
    PASSWORD,
    SecureCluster,
    grant,
    secure_cluster,
    security_env,
    settings_for,
    topics_for,
)

pytestmark = pytest.mark.kafka

# A refused start must end within this (the connect timeout is for brokers that are down).
FAIL_FAST_SECONDS = 20.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with secure_cluster(tmp_path_factory.mktemp("certificates")) as cluster:
        yield cluster


@contextlib.contextmanager
def alerting_worker(
    cluster: SecureCluster, tmp_path: Path, name: str, env: dict[str, str]
) -> Iterator[Worker]:
    """A worker on `cluster` with exactly the documented ACLs and `env`, fed traffic with
    seeded spam; yields it, still running, once every expected alert is out."""
    suffix = uuid.uuid4().hex[:8]
    app_id, topics = f"{name}-{suffix}", topics_for(suffix)
    admin = cluster.kafka.bootstrap_servers  # the administrator's plaintext door
    create_topics(admin, topics.values(), partitions=2)
    grant(cluster, app_id, topics)
    traffic = generate_traffic(3, users=500, organic_events=1_500)
    worker = Worker(admin, app_id, topics, 2, tmp_path, name)
    worker.env.update(env)
    worker.start()
    try:
        produce(admin, topics["events"], [orjson.dumps(event) for event in traffic.events])
        expected = {(alert.rule, alert.subject_id) for alert in traffic.expected if alert.alert}
        deadline = time.monotonic() + 120
        seen: set[tuple[str, str]] = set()
        while time.monotonic() < deadline and not expected <= seen:
            seen = {(a["rule"], a["subject_id"]) for a in read_all(admin, topics["alerts"])}
            time.sleep(1)
        assert expected <= seen, expected - seen
        yield worker
    finally:
        worker.stop()


def test_with_exactly_the_documented_acls_the_seeded_spam_is_alerted(
    secure: SecureCluster, tmp_path: Path
) -> None:
    with alerting_worker(secure, tmp_path, "secure", security_env(secure)) as worker:
        status, metrics = worker.get("/metrics")
        assert status == 200
    log = worker.log.read_bytes()
    assert PASSWORD.encode() not in log
    assert PASSWORD.encode() not in metrics


def run_refused(env: dict[str, str], tmp_path: Path) -> tuple[int, float, str]:
    """`reciprocity worker` that must not start: exit code, seconds, output."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "service", "worker"],
        env={
            **os.environ,
            "RECIPROCITY_WORKER__DATA_DIR": str(tmp_path / "data"),
            "RECIPROCITY_WORKER__WEB_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong password", "authentication"),
        ("untrusted CA", "certificate verify failed"),
        ("plaintext client on the TLS port", "TLS"),
    ],
)
def test_a_refused_connection_ends_the_worker_at_once_naming_the_cause(
    secure: SecureCluster, tmp_path: Path, case: str, says: str
) -> None:
    if case == "wrong password":
        env = security_env(secure, password="not-the-password")
    elif case == "untrusted CA":
        env = security_env(secure, cafile=secure.certificates.other_ca)
    else:
        env = security_env(secure, protocol="PLAINTEXT")
    code, seconds, output = run_refused(env, tmp_path)
    assert code != 0, output
    assert seconds < FAIL_FAST_SECONDS, output
    assert says.lower() in output.lower(), output
    assert "Traceback" not in output, output
    assert PASSWORD not in output


@pytest.mark.parametrize(
    "leave_out",
    range(len(worker_acls(settings_for("app", topics_for("x"))))),
    ids=lambda index: f"acl{index}",
)
def test_a_missing_acl_ends_the_worker_at_once_naming_what_is_refused(
    secure: SecureCluster, tmp_path: Path, leave_out: int
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id, topics = f"secure-{suffix}", topics_for(suffix)
    create_topics(secure.kafka.bootstrap_servers, topics.values(), partitions=2)
    acl = worker_acls(settings_for(app_id, topics))[leave_out]
    grant(secure, app_id, topics, leave_out=leave_out)
    env = {
        **security_env(secure),
        "RECIPROCITY_WORKER__APP_ID": app_id,
        "RECIPROCITY_TOPICS__EVENTS": topics["events"],
        "RECIPROCITY_TOPICS__ALERTS": topics["alerts"],
        "RECIPROCITY_TOPICS__SHADOW_ALERTS": topics["shadow_alerts"],
        "RECIPROCITY_TOPICS__DEAD_LETTERS": topics["dead_letters"],
        "RECIPROCITY_TOPICS__PARTITIONS": "2",
    }
    code, seconds, output = run_refused(env, tmp_path)
    assert code != 0, output
    assert seconds < FAIL_FAST_SECONDS, output
    assert "not authorized" in output, output
    # It names what is refused: the topic or group (for the prefix, a topic under it).
    assert acl.name in output, output
    assert PASSWORD not in output


# -- mTLS: a listener that also requires a client certificate (ssl.client.auth=required) --------


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with secure_cluster(tmp_path_factory.mktemp("mutual-certificates"), "required") as cluster:
        yield cluster


def client_certificate_env(certificate: Path, key: Path) -> dict[str, str]:
    return {
        "RECIPROCITY_KAFKA__SSL_CERTFILE": str(certificate),
        "RECIPROCITY_KAFKA__SSL_KEYFILE": str(key),
    }


def test_with_a_client_certificate_the_worker_runs_on_an_mtls_listener(
    mutual: SecureCluster, tmp_path: Path
) -> None:
    certificates = mutual.certificates
    env = {
        **security_env(mutual),
        **client_certificate_env(certificates.client, certificates.client_key),
    }
    with alerting_worker(mutual, tmp_path, "mutual", env):
        pass  # every expected alert came out: checked before it yields


@pytest.mark.parametrize("case", ["no client certificate", "a certificate another CA signed"])
def test_an_mtls_listener_refuses_the_worker_at_once_without_a_trusted_certificate(
    mutual: SecureCluster, tmp_path: Path, case: str
) -> None:
    env = security_env(mutual)
    if case != "no client certificate":
        env.update(
            client_certificate_env(mutual.certificates.stranger, mutual.certificates.stranger_key)
        )
    code, seconds, output = run_refused(env, tmp_path)
    assert code != 0, output
    assert seconds < FAIL_FAST_SECONDS, output
    assert "client certificate" in output, output
    if case == "no client certificate":
        assert "RECIPROCITY_KAFKA__SSL_CERTFILE is not set" in output, output
    else:
        assert str(mutual.certificates.stranger) in output, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output
