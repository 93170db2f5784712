"""Settings are validated at start, with a message that names the variable."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from service.core.context import Config
from service.core.models import Rule
from service.detectors import RULES
from service.settings import (
    ConfigurationError,
    DetectionSettings,
    KafkaSettings,
    RuleSection,
    settings_from_environment,
    settings_over_environment,
)


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


# -- rule modes ---------------------------------------------------------------------------------


def test_every_rule_has_a_mode_enforced_by_default_with_a_reason() -> None:
    detection = DetectionSettings()
    sections = [
        name for name, field in DetectionSettings.model_fields.items() if name in get_args(Rule)
    ]
    assert sorted(sections) == sorted(get_args(Rule))
    for name in sections:
        section = getattr(detection, name)
        assert isinstance(section, RuleSection)
        assert section.mode == "enforce"
        assert type(section).model_fields["mode"].description


@pytest.mark.parametrize("mode", ["enforce", "shadow", "off"])
def test_a_mode_comes_from_its_variable(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE", mode)
    settings = settings_from_environment()
    assert settings.detection.follower_spike.mode == mode
    assert settings.detection.follow_churn.mode == "enforce"


def test_an_unknown_mode_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE", "paused")
    with pytest.raises(ConfigurationError) as refused:
        settings_from_environment()
    assert "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE" in str(refused.value)


def test_quotas_are_off_by_default_with_a_reason_and_come_from_their_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    detection = DetectionSettings()
    for name in get_args(Rule):
        section = getattr(detection, name)
        assert (section.quota_per_hour, section.quota_per_day) == (None, None)
        for field in ("quota_per_hour", "quota_per_day"):
            assert type(section).model_fields[field].description
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOW_CHURN__QUOTA_PER_HOUR", "5")
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOW_CHURN__QUOTA_PER_DAY", "20")
    churn = settings_from_environment().detection.follow_churn
    assert (churn.quota_per_hour, churn.quota_per_day) == (5, 20)


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_quota_is_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOW_CHURN__QUOTA_PER_DAY", value)
    with pytest.raises(ConfigurationError) as refused:
        settings_from_environment()
    assert "RECIPROCITY_DETECTION__FOLLOW_CHURN__QUOTA_PER_DAY" in str(refused.value)


def test_a_quota_moves_no_rule_version() -> None:
    plain = Config(DetectionSettings(), RULES).rule_versions
    limited = DetectionSettings.model_validate(
        {rule: {"quota_per_hour": 1, "quota_per_day": 2} for rule in get_args(Rule)}
    )
    assert Config(limited, RULES).rule_versions == plain
    lowered = DetectionSettings.model_validate({"follow_churn": {"min_churned_pairs": 7}})
    assert Config(lowered, RULES).rule_versions != plain  # a threshold does


# -- another configuration layered over the environment (replay --compare-settings) ------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "lower.env",
            "# a lower bar, on trial\n"
            "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS=12\n"
            "export RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE=shadow\n"
            "RECIPROCITY_DETECTION__FOLLOW_CHURN='{\"min_churned_pairs\": 7}'\n",
        ),
        (
            "lower.json",
            '{"detection": {"follower_spike": {"min_follows": 12, "mode": "shadow"},'
            ' "follow_churn": {"min_churned_pairs": 7}}}',
        ),
    ],
)
def test_a_settings_file_wins_over_the_environment_and_leaves_the_rest(
    name: str, content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS", "40")
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__WINDOW_SECONDS", "300")
    monkeypatch.setenv("RECIPROCITY_WORKER__APP_ID", "from-the-environment")
    path = tmp_path / name
    path.write_text(content)
    layered = settings_over_environment(path)
    spike = layered.detection.follower_spike
    assert (spike.min_follows, spike.mode) == (12, "shadow")  # the file's
    assert spike.window_seconds == 300  # the environment's, in the same section
    assert layered.detection.follow_churn.min_churned_pairs == 7
    assert layered.worker.app_id == "from-the-environment"
    # The environment's own settings are untouched.
    assert settings_from_environment().detection.follower_spike.min_follows == 40


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        (
            "typo.env",
            "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLOWS=12\n",
            ["RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLOWS", "Extra inputs"],
        ),
        (
            "section.env",
            "RECIPROCITY_DETECTON__FOLLOWER_SPIKE__MIN_FOLLOWS=12\n",
            ["RECIPROCITY_DETECTON__FOLLOWER_SPIKE__MIN_FOLLOWS"],
        ),
        (
            "value.env",
            "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE=paused\n",
            ["RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MODE", "'enforce', 'shadow' or 'off'"],
        ),
        ("notes.txt", "min_follows: 12\n", [":1: not a NAME=value line"]),
        (
            "other.env",
            "RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS=12\nPATH=/bin\n",
            ["PATH: Extra inputs"],
        ),
        ("nothing.env", "# nothing\n", ["no RECIPROCITY_* setting"]),
        (
            "value.json",
            '{"detection": {"follower_spike": {"min_follows": 0}}}',
            ["detection.follower_spike.min_follows", "greater than or equal to 1"],
        ),
        (
            "order.json",
            '{"detection": {"unsolicited_retweet_request": {"high_distinct_strangers": 1}}}',
            ["high_distinct_strangers must be >= medium_distinct_strangers"],
        ),
        ("list.json", "[1, 2]", ["must be a JSON object"]),
        ("broken.json", '{"detection": ', ["not valid JSON"]),
        ("lower.yaml", "detection: {}\n", ["YAML settings files are not supported"]),
    ],
)
def test_a_bad_settings_file_is_refused_naming_the_file_and_the_field(
    name: str, content: str, says: list[str], tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigurationError) as refused:
        settings_over_environment(path)
    message = str(refused.value)
    assert message.startswith(str(path))
    for part in says:
        assert part in message
