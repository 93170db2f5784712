"""One worker on a real broker, fed by aiokafka and kcat, compared with `replay`; a real
Prometheus scrapes it throughout, with deploy/prometheus rules and deploy/grafana's queries."""

from __future__ import annotations

import base64
import hashlib
import math
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from service.core.decoding import EventDecoder, Rejection
from service.core.models import Alert
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.settings import Settings
from tests.deploy import dashboard
from tests.deploy.exported import DEPLOY
from tests.worker.harness import Worker, create_topics, kcat, produce, read_all, wait_drained
from tests.worker.prometheus_server import SCRAPE_INTERVAL_S, PrometheusServer

pytestmark = pytest.mark.kafka

# The job the rules select and the dashboard's job variable defaults to.
JOB = "reciprocity"
RULES = DEPLOY / "prometheus" / "reciprocity.rules.yml"
# What Grafana makes of $__rate_interval at a 1 s scrape interval: four scrape intervals.
RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL_S}s"

MALFORMED = [
    (b"this is not json", "invalid_json"),
    (
        b'{"event_id":"bad-1","type":"like","actor_id":"a","target_id":"b","occurred_at":1}',
        "invalid_event_type",
    ),
    (b'{"event_id":"bad-2","type":"follow","actor_id":"a","occurred_at":1}', "target_mismatch"),
    (b"[1,2,3]", "not_an_object"),
]


def event_of_size(size: int, name: str) -> bytes:
    """A mention whose text pads it to exactly `size` bytes."""
    head = f'{{"event_id":"{name}","type":"mention","actor_id":"{name}","target_id":"u00001",'
    head += '"occurred_at":1,"text":"'
    return (head + "x" * (size - len(head) - 2) + '"}').encode()


# Past the contract's 64 KiB and up to the broker's default limit: the dead letters of the
# last two hold a prefix of the value (their whole base64 would not fit in one message).
OVERSIZED = [
    (event_of_size(64 * 1024, "big-64k"), "invalid_field", False),
    (event_of_size(800_000, "big-800k"), "message_too_large", True),
    (event_of_size(1_000_000, "big-1m"), "message_too_large", True),
]


@dataclass
class Run:
    bootstrap: str
    worker: Worker
    topics: dict[str, str]
    lines: list[bytes]
    alerts: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    replayer: Replayer
    replay_alerts: list[Alert]
    # Wall-clock seconds: the first message sent, and all of them processed and scraped.
    started: float
    finished: float


def replay_lines(lines: list[bytes]) -> tuple[Replayer, list[Alert]]:
    settings = Settings()
    decoder = EventDecoder(settings.input, lambda: 2**62)
    replayer = Replayer(settings.detection, lambda: 0)
    alerts: list[Alert] = []
    for line in lines:
        event = decoder.decode(line)
        if not isinstance(event, Rejection):
            alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return replayer, alerts


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Started before the traffic, so that it sees the counters move, not only their totals."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run scripts/install-system-packages")
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), JOB, [RULES]).start()
    try:
        yield server
    finally:
        server.stop()


def total(result: list[dict[str, Any]]) -> float:
    return sum(float(series["value"][1]) for series in result)


@pytest.fixture(scope="module")
def run(
    kafka: str, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: run scripts/install-system-packages")
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    # One partition per stage: every stage then sees events in event-time order, as replay
    # does, so alert ids must match exactly (see test_two_workers for several partitions).
    create_topics(kafka, [topics["events"]], partitions=1)
    workdir = tmp_path_factory.mktemp("worker")
    worker = Worker(kafka, f"e2e-{suffix}", topics, 1, workdir, "worker").start()
    traffic = generate_traffic(7)
    lines = [orjson.dumps(event) for event in traffic.events]
    try:
        prometheus.add_target(f"127.0.0.1:{worker.port}")
        prometheus.wait_for(f'up{{job="{JOB}"}} == 1', bool)
        started = time.time()
        # Most traffic through aiokafka; a slice, and the malformed messages, through kcat.
        third = len(lines) // 3
        produce(kafka, topics["events"], lines[:third])
        kcat(
            "-P",
            "-b",
            kafka,
            "-t",
            topics["events"],
            stdin=b"\n".join(lines[third : third + 2000] + [m for m, _ in MALFORMED]) + b"\n",
        )
        # The oversized ones amid valid events: none of those may be lost (a dead letter
        # too large to send once took its whole ingest batch down with it).
        rest = lines[third + 2000 :]
        for n, (raw, _, _) in enumerate(OVERSIZED):
            produce(kafka, topics["events"], rest[n * 1000 : (n + 1) * 1000])
            produce(kafka, topics["events"], [raw])
        produce(kafka, topics["events"], rest[len(OVERSIZED) * 1000 :])
        wait_drained(kafka, f"e2e-{suffix}", topics["events"])
        prometheus.wait_for(
            f"sum(reciprocity_events_total{{job='{JOB}'}})",
            lambda result: total(result) == len(lines),
        )
        finished = time.time()
        replayer, replay_alerts = replay_lines(lines)
        yield Run(
            kafka,
            worker,
            topics,
            lines,
            read_all(kafka, topics["alerts"]),
            read_all(kafka, topics["dead_letters"]),
            replayer,
            replay_alerts,
            started,
            finished,
        )
    finally:
        worker.stop()


def test_alert_ids_match_replay_exactly(run: Run) -> None:
    assert run.replay_alerts, "the generated traffic must alert"
    # (rule, subject, id) so that a failure shows which rule diverged
    assert sorted((a["rule"], a["subject_id"], a["alert_id"]) for a in run.alerts) == sorted(
        (a.rule, a.subject_id, a.alert_id) for a in run.replay_alerts
    )


def test_alert_payloads_follow_the_contract(run: Run) -> None:
    # Evidence read from another stage's writes (follow-backs are flagged at stage 2 and read
    # at stage 1) depends on how far each stage has got, so its numbers may differ from
    # replay's; everything else must be equal.
    by_id = {a.alert_id: a for a in run.replay_alerts}
    varying = {"detected_at", "evidence", "summary"}
    for payload in run.alerts:
        alert = Alert.model_validate(payload)
        expected = by_id[alert.alert_id]
        assert alert.model_dump(exclude=varying) == expected.model_dump(exclude=varying)
        assert alert.evidence.keys() == expected.evidence.keys()


def test_malformed_messages_are_dead_lettered_with_their_codes(run: Run) -> None:
    got = {d["value_sha256"]: d for d in run.dead_letters}
    assert len(run.dead_letters) == len(MALFORMED) + len(OVERSIZED)
    for raw, code in MALFORMED:
        record = got[hashlib.sha256(raw).hexdigest()]
        assert base64.b64decode(record["value_b64"]) == raw
        assert record["code"] == code
        assert record["source_topic"] == run.topics["events"]
        assert record["source_partition"] == 0 and record["source_offset"] >= 0
        assert record["message"]


def test_oversized_messages_are_dead_lettered_within_the_message_limit(run: Run) -> None:
    by_hash = {d["value_sha256"]: d for d in run.dead_letters}
    for raw, code, truncated in OVERSIZED:
        record = by_hash[hashlib.sha256(raw).hexdigest()]
        assert (record["code"], record["value_size"], record["truncated"]) == (
            code,
            len(raw),
            truncated,
        )
        kept = base64.b64decode(record["value_b64"])
        assert raw.startswith(kept) and len(kept) == min(len(raw), 64 * 1024)


def test_metrics_count_what_was_processed(run: Run) -> None:
    status, body = run.worker.get("/metrics")
    assert status == 200
    text = body.decode()
    events = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("reciprocity_events_total{")
    )
    assert events == len(run.lines)
    assert 'reciprocity_events_rejected_total{code="invalid_json"} 1.0' in text
    for alert in run.replay_alerts:
        assert (
            f'reciprocity_alerts_total{{mode="enforce",rule="{alert.rule}",'
            f'severity="{alert.severity.value}"}}'
        ) in text


def test_metrics_pass_promtool(run: Run) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run scripts/install-system-packages")
    _, body = run.worker.get("/metrics")
    ours = (
        b"\n".join(
            line
            for line in body.splitlines()
            if line.startswith((b"reciprocity_", b"# HELP reciprocity_", b"# TYPE reciprocity_"))
        )
        + b"\n"
    )
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=ours, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_profile_endpoint_matches_replay(run: Run) -> None:
    for account in ("spam-rt-1", "churn-1", "u00118", "u00042"):
        status, body = run.worker.get(f"/users/{account}/reciprocity")
        assert status == 200, body
        served = orjson.loads(body)
        expected = run.replayer.profile(account)
        # Follow-backs are credited at stage 2 from a relation stage 1 writes; when stage 1
        # has already applied a later unfollow, the credit is missed (README, limitations).
        for profile in (served, expected):
            for key in ("follow_backs", "follow_back_rate"):
                del profile["windows"]["7d"][key]
        assert served["windows"]["7d"] == expected["windows"]["7d"], account
        assert served["usage_mode"] == expected["usage_mode"]


def test_health_and_readiness(run: Run) -> None:
    assert run.worker.get("/healthz")[0] == 200
    assert run.worker.get("/readyz")[0] == 200


def test_prometheus_scrapes_our_counters(run: Run, prometheus: PrometheusServer) -> None:
    # The run fixture waits for this total; here it must also be the final one.
    events = prometheus.query(f'sum(reciprocity_events_total{{job="{JOB}"}})')
    assert total(events) == len(run.lines)
    rejected = prometheus.query(f'reciprocity_events_rejected_total{{job="{JOB}"}}')
    expected = Counter(code for _, code in MALFORMED) + Counter(code for _, code, _ in OVERSIZED)
    assert {series["metric"]["code"]: float(series["value"][1]) for series in rejected} == {
        code: float(n) for code, n in expected.items()
    }


def moved(result: list[dict[str, Any]]) -> bool:
    """Some point of some series is a positive number (not 0, not NaN)."""
    return any(
        math.isfinite(float(value)) and float(value) > 0
        for series in result
        for _, value in series["values"]
    )


# Panels whose series exist in this run but may stay at zero, and why. Every other panel must
# show a positive value at some point of the run.
MAY_STAY_AT_ZERO = {
    # Each (rule, severity) and each rejection code appears here a few times at most, and the
    # first increment of a counter is invisible to rate(): the series starts at 1.
    "Alerts/min by rule and severity": "sparse counters born at their first increment",
    "Dead letters/min by code": "sparse counters born at their first increment",
    # The worker's one rebalance is over before it is ready, and the run starts after that.
    "Rebalancing workers": "no rebalance during the run",
}


def test_every_dashboard_panel_has_data(run: Run, prometheus: PrometheusServer) -> None:
    board = dashboard.load()
    titles = {panel["title"] for panel in dashboard.panels(board)}
    assert MAY_STAY_AT_ZERO.keys() <= titles
    jobs = prometheus.api("/api/v1/label/job/values", **{"match[]": "reciprocity_tracked_accounts"})
    assert jobs == [JOB]  # the dashboard's job variable offers exactly this
    by_panel: dict[str, list[list[dict[str, Any]]]] = {}
    for query in dashboard.queries(board):
        expr = query.for_prometheus(JOB, RATE_INTERVAL)
        result = prometheus.query_range(expr, run.started, run.finished)
        assert result, f"{query.panel} ({query.ref_id}) has no data: {expr}"
        by_panel.setdefault(query.panel, []).append(result)
    for panel, results in by_panel.items():
        if panel not in MAY_STAY_AT_ZERO:
            assert any(moved(result) for result in results), f"{panel} stays at zero"


def test_recording_rules_have_data(run: Run, prometheus: PrometheusServer) -> None:
    groups = prometheus.api("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    recorded = [rule["name"] for rule in rules if rule["type"] == "recording"]
    assert recorded, "deploy/prometheus rules were not loaded"
    for name in recorded:
        assert prometheus.query_range(name, run.started, run.finished), f"{name} has no data"
    for rule in rules:
        # Errors such as many-to-many matches only show with real series.
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_faust_command_finds_the_app() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "service.worker.faust_app", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
