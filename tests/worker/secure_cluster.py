"""A broker that requires TLS, SASL/SCRAM-SHA-512 and ACLs: certificates made with `openssl`,
users created at format time, ACLs added with Kafka's own `AclCommand` (what `kafka-acls.sh`
runs) through the administrator's plaintext door."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.devtools.local_kafka import BrokerSecurity, LocalKafka, ensure_kafka_jars
from service.kafka_acls import kafka_acls_arguments, worker_acls
from service.settings import Settings, TopicSettings, WorkerSettings

ACL_COMMAND_MAIN = "org.apache.kafka.tools.AclCommand"
USER = "reciprocity"
PASSWORD = "s3cret-Pa55word-do-not-log"  # a test broker's


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the broker's certificate (clients trust it)
    broker: Path  # the broker's key and certificate chain, PEM
    other_ca: Path  # a CA that signed nothing of this broker's
    client: Path  # a client certificate the CA signed (mTLS), and its key
    client_key: Path
    stranger: Path  # a client certificate the other CA signed, and its key
    stranger_key: Path


def _openssl(*arguments: str, cwd: Path) -> None:
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-subj", f"/CN=reciprocity test {name}",
            cwd=directory,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "broker.crt", "-extfile", "san.cnf",
        cwd=directory,
    )  # fmt: skip
    broker = directory / "broker.pem"
    key, chain = (directory / "broker.key").read_text(), (directory / "broker.crt").read_text()
    broker.write_text(key + chain)
    for name, ca in (("client", "ca"), ("stranger", "other-ca")):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN=reciprocity test {name}",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
            cwd=directory,
        )  # fmt: skip
    return Certificates(
        directory / "ca.pem",
        broker,
        directory / "other-ca.pem",
        directory / "client.crt",
        directory / "client.key",
        directory / "stranger.crt",
        directory / "stranger.key",
    )


def run_acl_commands(kafka: LocalKafka, arguments: list[list[str]]) -> None:
    """Run `kafka-acls.sh` once per argument list, as the administrator."""
    libs = ensure_kafka_jars()
    java = os.environ.get("JAVA", "java")
    for one in arguments:
        done = subprocess.run(
            [java, "-Xmx256m", "-cp", f"{libs}/*", ACL_COMMAND_MAIN,
             "--bootstrap-server", kafka.bootstrap_servers, *one],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"kafka-acls {shlex.join(one)} failed:\n{done.stdout}{done.stderr}")


@dataclass
class SecureCluster:
    kafka: LocalKafka
    certificates: Certificates


def topics_for(suffix: str) -> dict[str, str]:
    return {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "shadow_alerts": f"alerts-{suffix}.shadow",
        "dead_letters": f"dlq-{suffix}",
    }


def settings_for(app_id: str, topics: dict[str, str]) -> Settings:
    return Settings(
        worker=WorkerSettings(app_id=app_id),
        topics=TopicSettings(
            events=(topics["events"],),
            alerts=topics["alerts"],
            shadow_alerts=topics["shadow_alerts"],
            dead_letters=topics["dead_letters"],
        ),
    )


def grant(secure: SecureCluster, app_id: str, topics: dict[str, str], leave_out: int = -1) -> None:
    acls = worker_acls(settings_for(app_id, topics))
    run_acl_commands(
        secure.kafka,
        [
            kafka_acls_arguments(acl, f"User:{USER}")
            for index, acl in enumerate(acls)
            if index != leave_out
        ],
    )


def security_env(
    secure: SecureCluster,
    *,
    password: str = PASSWORD,
    cafile: Path | None = None,
    protocol: str = "SASL_SSL",
) -> dict[str, str]:
    env = {
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": secure.kafka.secure_bootstrap_servers,
        "RECIPROCITY_KAFKA__SECURITY_PROTOCOL": protocol,
        "RECIPROCITY_KAFKA__CONNECT_TIMEOUT_SECONDS": "60",
    }
    if protocol != "PLAINTEXT":
        env.update(
            {
                "RECIPROCITY_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                "RECIPROCITY_KAFKA__SASL_USERNAME": USER,
                "RECIPROCITY_KAFKA__SASL_PASSWORD": password,
                "RECIPROCITY_KAFKA__SSL_CAFILE": str(cafile or secure.certificates.ca),
            }
        )
    return env


@contextlib.contextmanager
def secure_cluster(directory: Path, client_auth: str = "none") -> Iterator[SecureCluster]:
    """A local broker with TLS, SASL/SCRAM (`USER`, `PASSWORD`) and ACLs, its certificates
    made in `directory`; `client_auth="required"` also demands a client certificate."""
    certificates = make_certificates(directory)
    security = BrokerSecurity(
        certificates.broker, certificates.ca, {USER: PASSWORD}, client_auth=client_auth
    )
    with LocalKafka(security=security) as kafka:
        yield SecureCluster(kafka, certificates)
