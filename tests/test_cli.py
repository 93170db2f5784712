"""The `reciprocity` command as a user runs it: real processes, real pipes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from service.core.models import Alert
from service.devtools.local_kafka import free_port

SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3}


def reciprocity(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=300,
        env=env,
    )


def score(alerts: list[Alert], expected: list[dict[str, object]]) -> list[str]:
    """Problems: missed scenarios, alerting near-misses, alerts no scenario explains."""
    problems = []
    explained = set()
    for item in expected:
        key = (item["rule"], item["subject_id"])
        got = [a for a in alerts if (a.rule, a.subject_id) == key]
        if item["alert"]:
            top = max((SEVERITY_RANK[a.severity.value] for a in got), default=0)
            if top < SEVERITY_RANK[str(item["min_severity"])]:
                problems.append(f"missed {item['scenario']} {key}: highest {top}")
            explained.add(key)
        elif got:
            problems.append(f"near-miss alerted: {item['scenario']} {key}")
    problems += [
        f"unexpected {a.rule} for {a.subject_id}"
        for a in alerts
        if (a.rule, a.subject_id) not in explained
    ]
    return problems


def test_generate_piped_into_replay_finds_every_scenario_and_no_near_miss(
    tmp_path: Path,
) -> None:
    expected_path = tmp_path / "expected.jsonl"
    generated = reciprocity("generate", "--seed", "7", "--expected", str(expected_path))
    assert generated.returncode == 0, generated.stderr.decode()
    replayed = reciprocity("replay", "-", stdin=generated.stdout)
    assert replayed.returncode == 0, replayed.stderr.decode()
    alerts = [Alert.model_validate_json(line) for line in replayed.stdout.splitlines()]
    expected = [orjson.loads(line) for line in expected_path.read_bytes().splitlines()]
    assert {e["rule"] for e in expected if e["alert"]} == {
        "unsolicited_retweet_request",
        "follower_spike",
        "follow_churn",
        "duplicate_reply_spam",
    }
    assert score(alerts, expected) == []
    summary = replayed.stderr.decode()
    assert "alerts by rule" in summary and "0 rejected" in summary


def test_bad_lines_are_reported_with_line_number_and_code_and_the_run_goes_on() -> None:
    good = b'{"event_id":"e1","type":"post","actor_id":"a","occurred_at":"2026-01-05T00:00:00Z"}'
    lines = [
        good,
        b"not json",
        b'{"event_id":"e2","type":"like","actor_id":"a","occurred_at":1}',
        b"\xff\xfe",
        b"",
        good.replace(b"e1", b"e3"),
    ]
    result = reciprocity("replay", "-", "--profile", "a", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    err = result.stderr.decode()
    assert "line 2: invalid_json" in err
    assert "line 3: invalid_event_type" in err
    assert "line 4: invalid_utf8" in err
    assert "Traceback" not in err
    assert "3 rejected" in err
    assert '"posts": 2' in err  # the profile of `a`, printed at the end


def test_bad_configuration_names_the_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS": "many"}
    result = reciprocity("replay", "-", stdin=b"", env=env)
    assert result.returncode != 0
    assert "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS" in result.stderr.decode()


@pytest.mark.parametrize("command", ["replay", "generate", "schemas", "acls", "config", "worker"])
def test_help(command: str) -> None:
    assert reciprocity(command, "--help").returncode == 0


def test_the_command_list_gives_whole_summaries() -> None:
    listing = reciprocity("--help").stdout.decode()
    commands = listing[listing.index("Commands:") :]
    assert "…" not in commands and "..." not in commands
    assert "config" in commands


def test_worker_help_says_where_its_configuration_comes_from() -> None:
    text = " ".join(reciprocity("worker", "--help").stdout.decode().split())
    assert "RECIPROCITY_<SECTION>__<FIELD>" in text
    assert "reciprocity config" in text


def test_config_prints_every_setting_with_its_source_and_masks_secrets() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_WORKER__LOG_LEVEL": "debug",
        "RECIPROCITY_KAFKA__SASL_PASSWORD": "s3cret-not-shown",
        "RECIPROCITY_DETECTION__FOLLOW_CHURN": '{"min_churned_pairs": 60}',
    }
    result = reciprocity("config", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert "RECIPROCITY_WORKER__LOG_LEVEL=debug  # variable" in lines
    assert "RECIPROCITY_KAFKA__SASL_PASSWORD=********  # variable" in lines
    assert "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS=60  # variable" in lines
    assert "RECIPROCITY_DETECTION__FOLLOW_CHURN__WINDOW_SECONDS=86400  # default" in lines
    assert "RECIPROCITY_TOPICS__ALERTS=social.alerts  # default" in lines
    assert b"s3cret-not-shown" not in result.stdout + result.stderr
    as_json = [
        orjson.loads(line) for line in reciprocity("config", "--json", env=env).stdout.splitlines()
    ]
    assert len(as_json) == len(lines)
    assert {"variable", "value", "source"} == set(as_json[0])


def test_config_with_a_bad_value_names_the_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "RECIPROCITY_WORKER__WEB_PORT": "http"}
    result = reciprocity("config", env=env)
    assert result.returncode != 0
    assert "RECIPROCITY_WORKER__WEB_PORT" in result.stderr.decode()


def test_a_worker_that_cannot_reach_kafka_retries_then_says_why_and_exits() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens
        "RECIPROCITY_KAFKA__CONNECT_TIMEOUT_SECONDS": "4",
    }
    started = time.monotonic()
    result = reciprocity("worker", env=env)
    elapsed = time.monotonic() - started
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "not reachable (attempt 1:" in err and "not reachable (attempt 2:" in err
    assert "not reachable after" in err
    assert "Traceback" not in err
    assert elapsed < 60


def test_acls_prints_one_kafka_acls_command_per_grant_for_the_configured_names() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_WORKER__APP_ID": "fraud-watch",
        "RECIPROCITY_TOPICS__EVENTS": "in.a,in.b",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9093",
    }
    result = reciprocity("acls", "--principal", "User:fw", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    # two events topics, the prefix, alerts, shadow alerts, dead letters, two groups
    assert len(lines) == 8
    assert any(line.endswith("--topic social.alerts.shadow") for line in lines)
    assert all(
        line.startswith("kafka-acls.sh --bootstrap-server kafka-1:9093 --command-config ")
        and "--add --allow-principal User:fw" in line
        for line in lines
    )
    assert any("--resource-pattern-type prefixed --topic fraud-watch-" in line for line in lines)
    assert any(line.endswith("--group fraud-watch-ingest") for line in lines)
    assert not any("--cluster" in line or "--transactional-id" in line for line in lines)


def test_acls_for_the_bridge_grant_write_on_the_first_events_topic_only() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_TOPICS__EVENTS": "in.a,in.b",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9093",
    }
    result = reciprocity("acls", "--for", "bridge", "--principal", "User:bridge", env=env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.decode().splitlines()
    assert "--allow-principal User:bridge" in line
    assert line.endswith("--operation Write --operation Describe --topic in.a")


# -- operating the rules: modes and backtests ---------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """`reciprocity generate --seed 7`: the traffic file and its expected alerts."""
    path = tmp_path_factory.mktemp("traffic") / "traffic.jsonl"
    result = reciprocity("generate", "--seed", "7", "-o", str(path))
    assert result.returncode == 0, result.stderr.decode()
    expected = Path(f"{path}.expected.jsonl").read_bytes().splitlines()
    return path, [orjson.loads(line) for line in expected]


def replayed(path: Path, *args: str, **variables: str) -> tuple[list[dict[str, object]], str]:
    """`reciprocity replay PATH ARGS` with RECIPROCITY_DETECTION__<NAME>=value for each
    keyword: the alerts printed (detected_at, the wall clock, left out) and stderr."""
    env = {**os.environ, **{f"RECIPROCITY_DETECTION__{k.upper()}": v for k, v in variables.items()}}
    result = reciprocity("replay", str(path), *args, env=env)
    assert result.returncode == 0, result.stderr.decode()
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    for alert in alerts:
        del alert["detected_at"]
    return alerts, result.stderr.decode()


@pytest.fixture(scope="module")
def enforced(generated: tuple[Path, list[dict[str, object]]]) -> list[dict[str, object]]:
    alerts, _ = replayed(generated[0])
    assert {a["rule"] for a in alerts} == {
        "unsolicited_retweet_request",
        "follower_spike",
        "follow_churn",
        "duplicate_reply_spam",
    }
    return alerts


def test_a_rule_turned_off_raises_nothing_and_changes_no_other_alert(
    generated: tuple[Path, list[dict[str, object]]], enforced: list[dict[str, object]]
) -> None:
    alerts, err = replayed(generated[0], "--include-shadow", follower_spike__mode="off")
    assert [a for a in alerts if a["rule"] == "follower_spike"] == []
    assert alerts == [a for a in enforced if a["rule"] != "follower_spike"]
    assert "shadow alerts" not in err


def test_a_shadow_rule_is_printed_only_with_include_shadow_and_marked(
    generated: tuple[Path, list[dict[str, object]]], enforced: list[dict[str, object]]
) -> None:
    spikes = [a for a in enforced if a["rule"] == "follower_spike"]
    others = [a for a in enforced if a["rule"] != "follower_spike"]
    alerts, err = replayed(generated[0], follower_spike__mode="shadow")
    assert alerts == others
    assert f"{len(spikes)} shadow alerts (not printed: --include-shadow)" in err
    alerts, err = replayed(generated[0], "--include-shadow", follower_spike__mode="shadow")
    assert [a for a in alerts if "mode" not in a] == others
    assert [a for a in alerts if "mode" in a] == [{**a, "mode": "shadow"} for a in spikes]
    assert f"{len(spikes)} shadow alerts (printed, marked)" in err
    # The summary table gives each rule's mode beside its counts.
    assert re.search(r"follower_spike\s+│\s+shadow", err), err


def test_replay_takes_the_detection_file_over_the_variables(
    generated: tuple[Path, list[dict[str, object]]],
    enforced: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    detection = tmp_path / "detection.yaml"
    detection.write_text("follow_churn:\n  min_churned_pairs: 5\n")
    lowered, _ = replayed(generated[0], follow_churn__min_churned_pairs="5")
    assert lowered != enforced
    env = {
        **os.environ,
        "RECIPROCITY_DETECTION_FILE": str(detection),
        # shadowed by the file: it has no effect
        "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS": "500",
    }
    result = reciprocity("replay", str(generated[0]), env=env)
    assert result.returncode == 0, result.stderr.decode()
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    for alert in alerts:
        del alert["detected_at"]
    assert alerts == lowered


def test_config_names_the_detection_file_as_a_source_and_a_bad_one_stops_it(
    tmp_path: Path,
) -> None:
    detection = tmp_path / "detection.json"
    detection.write_text('{"follow_churn": {"min_churned_pairs": 5, "mode": "shadow"}}')
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_DETECTION_FILE": str(detection),
        "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS": "500",
    }
    result = reciprocity("config", env=env)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert (
        "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS=5  # file, over the variable"
        in lines
    )
    assert "RECIPROCITY_DETECTION__FOLLOW_CHURN__MODE=shadow  # file" in lines
    assert f"RECIPROCITY_DETECTION_FILE={detection}  # variable" in lines

    detection.write_text('{"follow_churn": {"min_churned_pairs": "few"}}')
    result = reciprocity("config", env=env)
    assert result.returncode != 0
    assert "follow_churn.min_churned_pairs" in result.stderr.decode()


def test_past_its_quota_a_rule_is_diverted_to_the_shadow_alerts_and_its_breaker_trips(
    generated: tuple[Path, list[dict[str, object]]], enforced: list[dict[str, object]]
) -> None:
    rule = "unsolicited_retweet_request"
    # One an hour: in each event-time hour (UTC) of the enforced run, the rule's first alert is
    # sent and the others are diverted; an hour with a diverted alert trips the breaker once.
    by_hour: dict[str, list[dict[str, object]]] = {}
    for alert in enforced:
        if alert["rule"] == rule:
            by_hour.setdefault(str(alert["window_end"])[:13], []).append(alert)
    diverted = [alert for alerts in by_hour.values() for alert in alerts[1:]]
    tripped_hours = sorted(f"{hour}:00:00.000Z" for hour, alerts in by_hour.items() if alerts[1:])
    assert diverted, "the traffic must raise the rule twice within an hour"

    alerts, err = replayed(generated[0], **{f"{rule}__quota_per_hour": "1"})
    trips = [a for a in alerts if a["rule"] == "rule_breaker_tripped"]
    assert [a for a in alerts if a not in trips] == [a for a in enforced if a not in diverted]
    assert sorted(str(trip["window_start"]) for trip in trips) == tripped_hours
    assert {(trip["subject_id"], trip["severity"]) for trip in trips} == {(rule, "high")}
    assert f"{len(diverted)} shadow alerts (not printed: --include-shadow)" in err
    assert f"{len(diverted)} of them diverted past a rule's quota" in err
    # The summary table gives the quota and the diverted alerts beside the rule's counts.
    assert re.search(rf"enforce.*│\s+1/h\s+│\s+{len(diverted)}\s+│", err), err

    alerts, _ = replayed(generated[0], "--include-shadow", **{f"{rule}__quota_per_hour": "1"})
    assert [a for a in alerts if "mode" in a] == [
        {**a, "mode": "shadow", "diverted_by": "quota"} for a in diverted
    ]
    # A daily quota as high as the whole run's alerts diverts nothing.
    alerts, err = replayed(generated[0], **{f"{rule}__quota_per_day": str(len(enforced))})
    assert alerts == enforced
    assert "diverted" not in err.splitlines()[0]


def test_compare_settings_shows_the_breaker_trips_a_quota_adds(
    generated: tuple[Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    rule = "unsolicited_retweet_request"
    other = tmp_path / "quota.env"
    other.write_text(f"RECIPROCITY_DETECTION__{rule.upper()}__QUOTA_PER_HOUR=1\n")
    result = reciprocity("replay", str(generated[0]), "--compare-settings", str(other))
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    limited, _ = replayed(generated[0], **{f"{rule}__quota_per_hour": "1"})
    trips = [a for a in limited if a["rule"] == "rule_breaker_tripped"]
    assert trips
    # Diverted alerts keep their ids: the rule itself changes nothing; the trips are new.
    assert any(line.startswith(f"{rule} (") and "0 only new, 0 only old" in line for line in lines)
    (heading,) = [line for line in lines if line.startswith("rule_breaker_tripped (")]
    assert f": 0 old, {len(trips)} new;" in heading
    assert listed(lines, "+") == Counter(("rule_breaker_tripped", rule, "high") for _ in trips)


def only_one_side(
    old: list[dict[str, object]], new: list[dict[str, object]]
) -> tuple[Counter[tuple[object, ...]], Counter[tuple[object, ...]]]:
    """(only new, only old) as (rule, subject, severity) counts of two separate replays."""
    old_counts = Counter((a["rule"], a["subject_id"], a["severity"]) for a in old)
    new_counts = Counter((a["rule"], a["subject_id"], a["severity"]) for a in new)
    return new_counts - old_counts, old_counts - new_counts


def listed(lines: list[str], sign: str) -> Counter[tuple[object, ...]]:
    """The (rule, subject, severity) counts of the comparison's lines starting with `sign`."""
    fields = [line.split()[1:] for line in lines if line.startswith(f"{sign} ")]
    return Counter((rule, subject, severity) for rule, severity, subject, *_ in fields)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("lower.env", "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS=5\n"),
        ("lower.json", '{"detection": {"follow_churn": {"min_churned_pairs": 5}}}'),
        ("lower.yaml", "detection:\n  follow_churn:\n    min_churned_pairs: 5\n"),
    ],
)
def test_compare_settings_lists_what_a_lowered_threshold_adds(
    name: str,
    content: str,
    generated: tuple[Path, list[dict[str, object]]],
    enforced: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    path, expected = generated
    other = tmp_path / name
    other.write_text(content)
    out_dir = tmp_path / "compared"
    result = reciprocity(
        "replay", str(path), "--compare-settings", str(other), "--compare-out", str(out_dir)
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    # `+ RULE SEVERITY SUBJECT WINDOW MODE` and `- …`: alerts of one side only.
    shown = {sign: listed(lines, sign) for sign in "+-"}
    lowered, _ = replayed(path, follow_churn__min_churned_pairs="5")
    only_new, only_old = only_one_side(enforced, lowered)
    assert only_new, "the lower bar must add alerts"
    assert (shown["+"], shown["-"]) == (only_new, only_old)
    # Among them, the generator's near-miss of the rule: what the default bar is there for.
    near_misses = {
        e["subject_id"] for e in expected if e["rule"] == "follow_churn" and not e["alert"]
    }
    assert near_misses and near_misses <= {subject for _, subject, _ in only_new}
    assert any(line.startswith("follow_churn (") and "-> " in line for line in lines)
    # Both sides written whole: what each configuration's own replay prints.
    for side, alone in (("old", enforced), ("new", lowered)):
        written = [
            orjson.loads(line) for line in (out_dir / f"{side}.jsonl").read_bytes().splitlines()
        ]
        for alert in written:
            del alert["detected_at"]
        assert written == alone, side


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        (
            "typo.env",
            "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIR=5\n",
            "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIR",
        ),
        (
            "bad.json",
            '{"detection": {"follow_churn": {"min_churned_pairs": "few"}}}',
            "detection.follow_churn.min_churned_pairs",
        ),
    ],
)
def test_compare_settings_with_a_bad_file_exits_naming_the_file_and_the_field(
    name: str, content: str, field: str, tmp_path: Path
) -> None:
    other = tmp_path / name
    other.write_text(content)
    result = reciprocity("replay", "-", "--compare-settings", str(other), stdin=b"")
    err = result.stderr.decode()
    assert result.returncode != 0
    assert str(other) in err and field in err
    assert "Traceback" not in err


def test_compare_out_needs_compare_settings(tmp_path: Path) -> None:
    result = reciprocity("replay", "-", "--compare-out", str(tmp_path), stdin=b"")
    assert result.returncode == 2
    assert "--compare-settings" in result.stderr.decode()


def test_compare_settings_decodes_again_only_where_the_input_settings_differ(
    tmp_path: Path,
) -> None:
    short = b'{"event_id":"e1","type":"post","actor_id":"a","occurred_at":"2026-01-05T00:00:00Z"}'
    long = short.replace(b'"e1"', b'"e2"').replace(
        b'"post"', b'"post","text":"' + b"x" * 300 + b'"'
    )
    other = tmp_path / "strict.env"
    other.write_text("RECIPROCITY_INPUT__MAX_MESSAGE_BYTES=200\n")
    result = reciprocity(
        "replay", "-", "--compare-settings", str(other), stdin=short + b"\n" + long + b"\n"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "0 rejected (1 with the new input settings)" in result.stderr.decode()
