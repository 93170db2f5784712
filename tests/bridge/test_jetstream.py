"""The bridge's pieces around the mapping, without Kafka: the URL it connects to, its backoff,
its metrics, and the command as a user runs it when something is wrong before it starts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from service.bridge.jetstream import Backoff, subscribe_url, with_overrides
from service.bridge.metrics import BridgeMetrics
from service.devtools.local_kafka import free_port
from service.settings import ConfigurationError, Settings, settings_from_environment
from tests.bridge.jetstream_fixtures import t

COLLECTIONS = ["app.bsky.graph.follow", "app.bsky.feed.repost", "app.bsky.feed.post"]


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def test_the_url_asks_for_the_mapped_collections_and_a_cursor_only_when_resuming() -> None:
    base = "wss://jetstream2.us-east.bsky.network/subscribe"
    live = subscribe_url(base, None, 1_048_576)
    assert live.startswith(base + "?")
    assert query(live) == [
        *(("wantedCollections", c) for c in COLLECTIONS),
        ("maxMessageSizeBytes", "1048576"),
    ]
    assert ("cursor", str(t(3))) in query(subscribe_url(base, t(3), 1_048_576))


def test_the_urls_own_query_is_kept_and_ours_replaces_what_it_names() -> None:
    url = subscribe_url(
        "ws://localhost:6008/subscribe?wantedDids=did:plc:x&cursor=1&compress=true", t(3), 2048
    )
    pairs = query(url)
    assert ("wantedDids", "did:plc:x") in pairs
    assert [v for k, v in pairs if k == "cursor"] == [str(t(3))]
    assert "compress" not in dict(pairs)


def test_backoff_doubles_up_to_its_cap_with_jitter_and_starts_over_after_a_reset() -> None:
    lowest = Backoff(1.0, 8.0, draw=lambda: 0.0)
    highest = Backoff(1.0, 8.0, draw=lambda: 1.0)
    assert [highest.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [lowest.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    highest.reset()
    assert highest.next_delay() == 1.0


def test_the_metrics_are_prefixed_and_the_lag_is_the_wall_clock_minus_the_cursor() -> None:
    metrics = BridgeMetrics(now_us=lambda: t(100))
    before = metrics.render().decode()
    assert "reciprocity_bridge_cursor_lag_seconds NaN" in before
    metrics.set_cursor(t(40))
    metrics.skipped.labels("invalid_json").inc()
    text = metrics.render().decode()
    assert "reciprocity_bridge_cursor_lag_seconds 60.0" in text
    (cursor,) = [
        line for line in text.splitlines() if line.startswith("reciprocity_bridge_cursor ")
    ]
    assert float(cursor.split()[1]) == t(40)  # exact: a time_us fits a double's 53 bits
    assert 'reciprocity_bridge_frames_skipped_total{reason="invalid_json"} 1.0' in text
    assert 'reciprocity_bridge_frames_skipped_total{reason="unknown_follow"} 0.0' in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names and all(name.startswith("reciprocity_bridge_") for name in names)


def test_the_metrics_pass_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run scripts/install-system-packages")
    metrics = BridgeMetrics()
    metrics.set_cursor(t(1))
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=metrics.render(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_the_command_line_overrides_the_url_and_cursor_file(tmp_path: Path) -> None:
    settings = with_overrides(Settings(), "ws://localhost:6008/subscribe", tmp_path / "c")
    assert settings.bridge.jetstream_url == "ws://localhost:6008/subscribe"
    assert settings.bridge.cursor_path == tmp_path / "c"
    assert with_overrides(settings, None, None) is settings


def reciprocity(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_the_command_is_listed_with_whole_summaries() -> None:
    top = reciprocity("--help", env={}).stdout.decode()
    assert "bridge" in top and "Feed the events topic from another network's stream." in top
    group = reciprocity("bridge", "--help", env={}).stdout.decode()
    commands = group[group.index("Commands:") :]
    assert "jetstream" in commands
    assert "…" not in commands and "..." not in commands
    own = reciprocity("bridge", "jetstream", "--help", env={})
    assert own.returncode == 0
    for option in ("--url", "--cursor-file", "--from-now"):
        assert option in own.stdout.decode()


def test_unreachable_kafka_ends_it_non_zero_with_one_line() -> None:
    env = {
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens
        "RECIPROCITY_KAFKA__CONNECT_TIMEOUT_SECONDS": "2",
    }
    started = time.monotonic()
    result = reciprocity("bridge", "jetstream", "--cursor-file", "/nonexistent/c", env=env)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    (reason,) = [line for line in err.splitlines() if line.startswith("Error:")]
    assert "not reachable after" in reason
    assert time.monotonic() - started < 60


def test_a_cursor_file_that_holds_no_cursor_ends_it_before_kafka_is_tried(tmp_path: Path) -> None:
    cursor = tmp_path / "jetstream.cursor"
    cursor.write_text("garbage\n")
    env = {"RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    result = reciprocity("bridge", "jetstream", "--cursor-file", str(cursor), env=env)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert f"Error: the cursor file {cursor} does not hold a Jetstream time_us" in err
    assert "not reachable" not in err and "Traceback" not in err


def test_a_url_that_is_not_a_websocket_is_refused() -> None:
    result = reciprocity("bridge", "jetstream", "--url", "https://example.com/subscribe", env={})
    assert result.returncode == 2
    assert "--url" in result.stderr.decode() and "ws://" in result.stderr.decode()


def test_a_stop_while_waiting_for_kafka_ends_it_at_once() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens
        "RECIPROCITY_KAFKA__CONNECT_TIMEOUT_SECONDS": "300",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "bridge", "jetstream"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline().decode()  # the first failed attempt: it is waiting
        assert "not reachable (attempt 1" in first
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
        assert b"Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"JETSTREAM_URL": "https://example.com/subscribe"}, "RECIPROCITY_BRIDGE__JETSTREAM_URL"),
        ({"RECONNECT_MIN_SECONDS": "10", "RECONNECT_MAX_SECONDS": "5"}, "RECIPROCITY_BRIDGE"),
        ({"FOLLOW_STORE_MAX": "0"}, "RECIPROCITY_BRIDGE__FOLLOW_STORE_MAX"),
    ],
)
def test_bad_bridge_settings_are_refused_naming_the_variable(
    variables: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(f"RECIPROCITY_BRIDGE__{name}", value)
    with pytest.raises(ConfigurationError, match=named):
        settings_from_environment()
