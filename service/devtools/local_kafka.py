"""A real, throwaway Apache Kafka broker (single-node KRaft) for development and tests.

The broker's jars come from Maven Central through `deploy/kafka/pom.xml` and are cached outside
the repository, in `~/.cache/reciprocity/kafka-<version>/libs` (or under the directory named by
`RECIPROCITY_KAFKA_CACHE`). Needs `java` (17+) and `mvn` on PATH; nothing else.

    with LocalKafka() as kafka:
        use(kafka.bootstrap_servers)   # "127.0.0.1:<port>"

`kafka_bootstrap()` yields `RECIPROCITY_TEST_KAFKA_BOOTSTRAP` instead when that names an existing
cluster. `python -m service.devtools.local_kafka` runs a broker until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

POM_PATH = Path(__file__).resolve().parents[2] / "deploy/kafka/pom.xml"
CACHE_ENV = "RECIPROCITY_KAFKA_CACHE"
BOOTSTRAP_ENV = "RECIPROCITY_TEST_KAFKA_BOOTSTRAP"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
DEFAULT_STARTUP_TIMEOUT = 90.0
DEFAULT_STOP_TIMEOUT = 20.0
MAVEN_TIMEOUT = 900.0
_MARKER = ".complete"
_WORKDIR_PREFIX = "reciprocity-kafka-"
_OWNER_FILE = "owner.pid"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Quiet logging: warnings and errors to a file, plus the one "Kafka Server started" line.
_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
"""


@dataclass(frozen=True)
class BrokerSecurity:
    """A second listener, `SASL_SSL`, for trying the worker's security settings: TLS with the
    given PEM files (the broker's key and certificate chain; the CA it trusts for client
    certificates), SASL/SCRAM-SHA-512 with `users` created when the storage is formatted, and
    the `StandardAuthorizer` with `allow.everyone.if.no.acl.found=false`. The plaintext
    listener stays, bound to 127.0.0.1, as the administrator's door: its clients are
    `User:ANONYMOUS`, a super user (readiness probe, topic setup, ACLs)."""

    keystore_pem: Path
    truststore_pem: Path
    users: Mapping[str, str]  # name -> password
    client_auth: str = "none"  # "required": clients must show a certificate too (mTLS)


class KafkaStartError(RuntimeError):
    """The broker, its storage formatter or the Maven fetch of its jars failed."""


def kafka_version(pom: Path = POM_PATH) -> str:
    """The Kafka version pinned in the pom (property `kafka.version`)."""
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not node.text:
        raise KafkaStartError(f"{pom} has no <kafka.version> property")
    return node.text.strip()


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`$RECIPROCITY_KAFKA_CACHE`, else `~/.cache/reciprocity/kafka-<version>`."""
    override = env.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "reciprocity" / f"kafka-{kafka_version()}"


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Fetch the broker's jars with Maven once; return the directory holding them.

    A marker file, written only after Maven succeeded, records the pom's hash: a complete cache
    for the same pom is reused without running Maven, a changed pom fetches again. A file lock
    keeps concurrent callers (parallel test workers) from fetching into the same place at once.
    """
    cache = (cache_dir if cache_dir is not None else default_cache_dir()).resolve()
    libs = cache / "libs"
    marker = cache / _MARKER
    pom_hash = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()
    if _cache_complete(marker, libs, pom_hash):
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cache_complete(marker, libs, pom_hash):
            return libs
        marker.unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaStartError("`mvn` (Apache Maven) is not on PATH; it fetches Kafka's jars")
        cmd = [
            mvn, "-B", "-q", "-f", str(POM_PATH),
            "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaStartError(f"Maven fetch of Kafka jars timed out: {cmd}") from exc
        if done.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            output = _tail_text(done.stdout + done.stderr, 60)
            raise KafkaStartError(
                f"Maven fetch of Kafka jars failed (exit {done.returncode}): {' '.join(cmd)}\n"
                f"{output}"
            )
        marker.write_text(pom_hash + "\n")
    return libs


def _cache_complete(marker: Path, libs: Path, pom_hash: str) -> bool:
    try:
        return marker.read_text().strip() == pom_hash and libs.is_dir()
    except OSError:
        return False


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in exclude:
            return port


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaStartError("`java` (17 or newer) is not on PATH; Kafka runs on the JVM")
    return java


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no output)"


def _remove_orphaned_workdirs() -> None:
    """Delete temp dirs of brokers whose Python owner died without cleaning up (e.g. SIGKILL).

    Their JVMs are gone already (they get SIGTERM when the owner dies); only the files remain.
    """
    for workdir in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / _OWNER_FILE).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(workdir, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: unreadable, or owner alive under another user


def _exit_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux), even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


# --- Kafka protocol, just enough to tell that the broker serves requests ---------------------


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client_id = b"reciprocity-local-kafka"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != corr:
        raise ConnectionError("Kafka response with the wrong correlation id")
    return response[4:]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


def broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a broker at host:port answers ApiVersions and lists itself in Metadata."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            # ApiVersions v0 (api key 18): error code, then [api_key, min, max] entries.
            body = _request(sock, 18, 0, 1, b"")
            error, count = struct.unpack(">hi", body[:6])
            if error != 0:
                return False
            versions = {
                key: (low, high)
                for key, low, high in struct.iter_unpack(">hhh", body[6 : 6 + 6 * count])
            }
            low, high = versions.get(3, (0, -1))
            if not low <= 4 <= high:
                return True  # no Metadata v4 to ask with; ApiVersions answered, good enough
            # Metadata v4 (api key 3), no topics, no auto-creation: the broker list must hold
            # at least one broker, which a serving KRaft broker reports once it is registered.
            body = _request(sock, 3, 4, 2, struct.pack(">ib", 0, 0))
            return len(body) >= 8 and struct.unpack(">i", body[4:8])[0] > 0
    except (OSError, struct.error, ConnectionError):
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the broker ----------------------------------------------------------------------------


class LocalKafka:
    """One single-node KRaft Kafka broker+controller in a temp dir, for the life of the object."""

    def __init__(
        self,
        *,
        port: int | None = None,
        libs_dir: Path | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        heap: str = "512m",
        extra_properties: Mapping[str, str] | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        self._requested_port = port
        self._libs_dir = libs_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.security = security
        self.host = "127.0.0.1"
        self.port = 0
        self.controller_port = 0
        self.secure_port = 0
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._halted = False
        self._lock = threading.Lock()

    @property
    def bootstrap_servers(self) -> str:
        if self._process is None:
            raise RuntimeError("LocalKafka is not started")
        return f"{self.host}:{self.port}"

    @property
    def secure_bootstrap_servers(self) -> str:
        """The SASL_SSL listener (with `security` only)."""
        if self._process is None or self.security is None:
            raise RuntimeError("LocalKafka is not started with a secure listener")
        return f"{self.host}:{self.secure_port}"

    @property
    def log_file(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("LocalKafka is not started")
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalKafka:
        """Format storage, launch the broker and wait until it serves requests."""
        with self._lock:
            if self._process is not None:
                raise RuntimeError("LocalKafka is already started")
            libs = self._libs_dir if self._libs_dir is not None else ensure_kafka_jars()
            java = _java()
            attempts = 1 if self._requested_port is not None else 3
            for attempt in range(1, attempts + 1):
                self.port = self._requested_port or free_port()
                self.controller_port = free_port(frozenset({self.port}))
                if self.security is not None:
                    self.secure_port = free_port(frozenset({self.port, self.controller_port}))
                _remove_orphaned_workdirs()
                self.workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
                (self.workdir / _OWNER_FILE).write_text(f"{os.getpid()}\n")
                atexit.register(self.stop)
                try:
                    self._format_storage(java, libs)
                    self._launch(java, libs)
                    self._wait_ready()
                    return self
                except KafkaStartError as exc:
                    # Another process may take a probed port before the broker binds it.
                    lost_port = "already in use" in str(exc) or self._log_mentions(
                        "Address already in use"
                    )
                    self._stop_locked()
                    if not lost_port or attempt == attempts:
                        raise
                except BaseException:  # Ctrl-C or anything else mid-start: leave nothing behind
                    self._stop_locked()
                    raise
            raise AssertionError("unreachable")

    def halt(self) -> None:
        """Stop the broker process (SIGTERM, then SIGKILL), keeping its data and ports for
        `resume()`: a broker outage."""
        with self._lock:
            process = self._end_process()
            self._halted = process is not None

    def resume(self) -> None:
        """Start the halted broker again, on the same ports and data."""
        with self._lock:
            if not self._halted:
                raise RuntimeError("LocalKafka is not halted")
            libs = self._libs_dir if self._libs_dir is not None else ensure_kafka_jars()
            self._launch(_java(), libs)
            self._wait_ready()
            self._halted = False

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its temp dir. Idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        atexit.unregister(self.stop)
        process = self._end_process()
        if process is not None:
            _signal_group(process, signal.SIGKILL)  # stray children of the group, if any
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _end_process(self) -> subprocess.Popen[bytes] | None:
        """SIGTERM the broker's process group, SIGKILL if it outlasts `stop_timeout`; returns
        the process it ended, if any."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        return process

    def _properties(self) -> dict[str, str]:
        assert self.workdir is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "log.dirs": str(self.workdir / "data"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
        }
        if self.security is not None:
            props.update(self._secure_properties(self.security))
        props.update(self.extra_properties)
        return props

    def _secure_properties(self, security: BrokerSecurity) -> dict[str, str]:
        secure = f"SASL_SSL://{self.host}:{self.secure_port}"
        prefix = "listener.name.sasl_ssl."
        return {
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},{secure},"
                f"CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},{secure}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            f"{prefix}scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(security.keystore_pem),
            f"{prefix}ssl.truststore.type": "PEM",
            f"{prefix}ssl.truststore.location": str(security.truststore_pem),
            f"{prefix}ssl.client.auth": security.client_auth,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": "User:ANONYMOUS",
        }

    def _java_cmd(self, java: str, libs: Path, main: str, *args: str) -> list[str]:
        assert self.workdir is not None
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format_storage(self, java: str, libs: Path) -> None:
        assert self.workdir is not None
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log_file=self.log_file))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = self._java_cmd(
            # `=` form: a base64 id may start with "-", which would read as an option.
            java,
            libs,
            STORAGE_TOOL_MAIN,
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(config),
            *(
                f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
                for name, password in (self.security.users.items() if self.security else ())
            ),
        )
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise KafkaStartError(
                f"Kafka storage format failed (exit {done.returncode}):\n"
                f"{_tail_text(done.stdout + done.stderr, 40)}"
            )

    def _launch(self, java: str, libs: Path) -> None:
        assert self.workdir is not None
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):  # else the readiness probe could find someone else
                raise KafkaStartError(f"port {self.host}:{port} is already in use")
        cmd = self._java_cmd(java, libs, BROKER_MAIN, str(self.workdir / "server.properties"))
        with open(self.workdir / "stdout.log", "wb") as out:
            self._process = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the whole group
                preexec_fn=_exit_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,  # PDEATHSIG follows the forking *thread*: only safe from main
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise KafkaStartError(
                    f"Kafka broker exited with code {code} during startup.\n{self._log_tails()}"
                )
            if port_open(self.host, self.port) and broker_answers(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise KafkaStartError(
                    f"Kafka broker on {self.host}:{self.port} not ready after "
                    f"{self.startup_timeout:.0f} s.\n{self._log_tails()}"
                )
            time.sleep(0.1)

    def _log_mentions(self, text: str) -> bool:
        if self.workdir is None:
            return False
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                if text in (self.workdir / name).read_text(errors="replace"):
                    return True
        return False

    def _log_tails(self) -> str:
        assert self.workdir is not None
        return (
            f"--- tail of {self.log_file} ---\n{_tail_file(self.log_file)}\n"
            f"--- tail of JVM output ---\n{_tail_file(self.workdir / 'stdout.log')}"
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def kafka_bootstrap(env: Mapping[str, str] = os.environ) -> Iterator[str]:
    """Yield bootstrap servers: `$RECIPROCITY_TEST_KAFKA_BOOTSTRAP` if set, else a LocalKafka."""
    existing = env.get(BOOTSTRAP_ENV, "").strip()
    if existing:
        yield existing
        return
    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.devtools.local_kafka",
        description="Run a throwaway single-node Kafka broker until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="broker port (default: free one)")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # A shell starts background jobs with SIGINT ignored; make `kill -INT` stop us anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    print(f"Starting Kafka {kafka_version()} ...", file=sys.stderr, flush=True)
    try:
        with LocalKafka(port=args.port) as kafka:
            print(
                f"Kafka ready in {time.monotonic() - started:.1f} s; log: {kafka.log_file}",
                file=sys.stderr,
                flush=True,
            )
            print(kafka.bootstrap_servers, flush=True)
            while kafka.running:
                time.sleep(0.5)
            print("Kafka broker exited unexpectedly.", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 0
    except KafkaStartError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
