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
    DetectionFile,
    DetectionSettings,
    KafkaSettings,
    RuleSection,
    effective_settings,
    restart_only_fields,
    rules_with_quota,
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
        (
            "lower.yaml",
            "detection:\n"
            "  follower_spike: {min_follows: 12, mode: shadow}\n"
            "  follow_churn:\n"
            "    min_churned_pairs: 7\n",
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
        ("list.json", "[1, 2]", ["must be a mapping of sections"]),
        ("broken.json", '{"detection": ', ["not valid JSON"]),
        (
            "value.yaml",
            "detection:\n  follower_spike:\n    min_follows: 0\n",
            ["detection.follower_spike.min_follows", "greater than or equal to 1"],
        ),
        ("list.yml", "- 1\n- 2\n", ["must be a mapping of sections"]),
        ("broken.yaml", "detection: [\n", ["not valid YAML"]),
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


# -- the detection file (RECIPROCITY_DETECTION_FILE) -------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "detection.yaml",
            "follower_spike:\n  min_follows: 12\n  mode: shadow\n"
            "follow_churn: {min_churned_pairs: 7}\n",
        ),
        (
            "detection.json",
            '{"follower_spike": {"min_follows": 12, "mode": "shadow"},'
            ' "follow_churn": {"min_churned_pairs": 7}}',
        ),
    ],
)
def test_the_detection_file_wins_over_the_variables_and_leaves_the_rest(
    name: str, content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    path.write_text(content)
    monkeypatch.setenv("RECIPROCITY_DETECTION_FILE", str(path))
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS", "40")
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__WINDOW_SECONDS", "300")
    settings = settings_from_environment()
    spike = settings.detection.follower_spike
    assert (spike.min_follows, spike.mode) == (12, "shadow")  # the file's
    assert spike.window_seconds == 300  # the variable's, in the same section
    assert settings.detection.follow_churn.min_churned_pairs == 7
    assert settings.detection_file == path

    source = DetectionFile.of(settings)
    assert source is not None
    loaded = source.read()
    assert loaded.settings == settings.detection
    assert loaded.fields == {
        "follower_spike.min_follows",
        "follower_spike.mode",
        "follow_churn.min_churned_pairs",
    }
    assert loaded.shadowed == ("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS",)


def test_a_field_removed_from_the_detection_file_falls_back_to_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "detection.yaml"
    path.write_text("follower_spike:\n  min_follows: 12\n")
    monkeypatch.setenv("RECIPROCITY_DETECTION_FILE", str(path))
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOWER_SPIKE__MIN_FOLLOWS", "40")
    source = DetectionFile.of(settings_from_environment())
    assert source is not None
    path.write_text("follow_churn:\n  min_churned_pairs: 7\n")
    assert source.read().settings.follower_spike.min_follows == 40


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        (
            "detection.yaml",
            "follower_spike:\n  min_follows: 0\n",
            ["follower_spike.min_follows", "greater than or equal to 1"],
        ),
        (
            "detection.json",
            '{"follower_spike": {"min_folows": 12}}',
            ["follower_spike.min_folows", "Extra inputs"],
        ),
        ("detection.yaml", "detection:\n  follower_spike: {}\n", ["detection: Extra inputs"]),
        (
            "detection.yaml",
            "unsolicited_retweet_request: {high_distinct_strangers: 1}\n",
            ["high_distinct_strangers must be >= medium_distinct_strangers"],
        ),
        ("detection.yaml", "follower_spike: [\n", ["not valid YAML"]),
        ("detection.json", "[]", ["must be a mapping of sections"]),
        ("detection.toml", "[follower_spike]\n", ["must end in .yaml, .yml or .json"]),
    ],
)
def test_a_bad_detection_file_stops_the_start_naming_the_file_and_the_field(
    name: str, content: str, says: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    path.write_text(content)
    monkeypatch.setenv("RECIPROCITY_DETECTION_FILE", str(path))
    with pytest.raises(ConfigurationError) as refused:
        settings_from_environment()
    message = str(refused.value)
    assert message.startswith(str(path)) and "\n" not in message
    for part in says:
        assert part in message


def test_a_missing_detection_file_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECIPROCITY_DETECTION_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigurationError, match=r"absent\.yaml: cannot be read"):
        settings_from_environment()


def test_only_what_shapes_stored_state_needs_a_restart() -> None:
    running = DetectionSettings()
    rules_changed = DetectionSettings.model_validate(
        {
            "follow_churn": {"min_churned_pairs": 5, "mode": "off"},
            "duplicate_reply_spam": {"min_sends": 3, "texts_per_account": 4},
        }
    )
    assert restart_only_fields(running, rules_changed) == []
    stored_shape_changed = DetectionSettings.model_validate(
        {
            "state": {"allowed_lateness_seconds": 120, "recent_ids_per_account": 512},
            "duplicate_reply_spam": {"sketch_size": 32},
        }
    )
    assert restart_only_fields(running, stored_shape_changed) == [
        "state.allowed_lateness_seconds",
        "state.recent_ids_per_account",
        "duplicate_reply_spam.sketch_size",
    ]


def test_quotas_change_live_once_the_worker_started_with_one() -> None:
    no_quota = DetectionSettings()
    one_quota = DetectionSettings.model_validate({"follow_churn": {"quota_per_hour": 5}})
    others = DetectionSettings.model_validate(
        {"follow_churn": {"quota_per_day": 50}, "follower_spike": {"quota_per_hour": 2}}
    )
    # Started with a quota: the quota stage runs, and takes any quotas, or none.
    assert restart_only_fields(one_quota, others) == []
    assert restart_only_fields(one_quota, no_quota) == []
    # Started without: the first quota needs the quota stage, built at the start.
    assert restart_only_fields(no_quota, one_quota) == ["follow_churn.quota_per_hour"]
    assert sorted(rules_with_quota(others)) == ["follow_churn", "follower_spike"]


def test_compare_settings_goes_over_the_detection_file_which_goes_over_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detection = tmp_path / "detection.yaml"
    detection.write_text("follow_churn:\n  min_churned_pairs: 7\n  high_multiplier: 2.0\n")
    monkeypatch.setenv("RECIPROCITY_DETECTION_FILE", str(detection))
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS", "60")
    monkeypatch.setenv("RECIPROCITY_DETECTION__FOLLOW_CHURN__WINDOW_SECONDS", "7200")
    other = tmp_path / "other.env"
    other.write_text("RECIPROCITY_DETECTION__FOLLOW_CHURN__HIGH_MULTIPLIER=5\n")
    old = settings_from_environment().detection.follow_churn
    new = settings_over_environment(other).detection.follow_churn
    assert (old.min_churned_pairs, old.high_multiplier, old.window_seconds) == (7, 2.0, 7200)
    assert (new.min_churned_pairs, new.high_multiplier, new.window_seconds) == (7, 5.0, 7200)


def test_config_lines_name_the_detection_file_as_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "detection.yaml"
    path.write_text("follow_churn:\n  min_churned_pairs: 7\n  mode: shadow\n")
    environ = {
        "RECIPROCITY_DETECTION_FILE": str(path),
        "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS": "60",
        "RECIPROCITY_DETECTION__FOLLOW_CHURN__WINDOW_SECONDS": "7200",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_environment()
    source = DetectionFile.of(settings)
    assert source is not None
    lines = {
        line.variable: (line.value, line.source)
        for line in effective_settings(settings, environ, source.read().fields)
    }
    churn = "RECIPROCITY_DETECTION__FOLLOW_CHURN__"
    assert lines[churn + "MIN_CHURNED_PAIRS"] == ("7", "file, over the variable")
    assert lines[churn + "MODE"] == ("shadow", "file")
    assert lines[churn + "WINDOW_SECONDS"] == ("7200", "variable")
    default = str(DetectionSettings().follow_churn.high_multiplier)
    assert lines[churn + "HIGH_MULTIPLIER"] == (default, "default")
    assert lines["RECIPROCITY_DETECTION_FILE"] == (str(path), "variable")
