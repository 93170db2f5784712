"""schemas/asyncapi.yaml: generated from the models like the JSON Schemas beside it, never
drifting from them, saying what the worker does, and valid to the AsyncAPI CLI that
tools/asyncapi/ pins (make test installs it into .tools/)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from service.core.asyncapi import (
    ASYNCAPI_FILE,
    UNKNOWN_EVENT_TYPE,
    asyncapi_document,
    load_golden_alerts,
    render_yaml,
)
from service.core.decoding import INVALID_TYPE
from service.core.models import Alert, DeadLetter, Event, ShadowAlert
from service.core.schemas import topic_schema
from service.runtime.sinks import alert_message
from service.settings import KafkaSettings, Settings, TopicSettings, WorkerSettings
from tests.core.test_alert_payloads import scenario

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
COMMITTED = SCHEMAS / ASYNCAPI_FILE
GOLDEN = Path(__file__).resolve().parent / "golden"
ASYNCAPI_CLI = ROOT / ".tools" / "asyncapi" / "node_modules" / ".bin" / "asyncapi"
# The contract stays on AsyncAPI 3.0.0, the version the Kafka bindings 0.5.0 were written for;
# the CLI's ruleset notes, as information, that 3.1.0 exists.
EXPECTED_DIAGNOSTICS = {"asyncapi-latest-version"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(load_golden_alerts())


def test_schemas_command_regenerates_every_committed_file(
    tmp_path: Path, update_golden: bool
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "schemas", "--out", str(tmp_path)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    generated = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert ASYNCAPI_FILE in generated
    if update_golden:
        for name, data in generated.items():
            (SCHEMAS / name).write_bytes(data)
    committed = {path.name: path.read_bytes() for path in SCHEMAS.iterdir()}
    assert sorted(committed) == sorted(generated), (
        "schemas/ does not hold what `reciprocity schemas` writes: run `make schemas`"
    )
    drifted = [name for name in sorted(generated) if committed[name] != generated[name]]
    assert not drifted, (
        f"{', '.join(drifted)} drifted from the models, settings or golden payloads: "
        "run `reciprocity schemas` (`make schemas`)"
    )


def test_a_yaml_reader_reads_the_document_the_code_builds(document: dict[str, Any]) -> None:
    assert yaml.safe_load(COMMITTED.read_bytes()) == document


def test_payloads_are_the_published_json_schemas(document: dict[str, Any]) -> None:
    """Each topic's JSON Schema file, its $defs moved into components/schemas beside it."""
    components = document["components"]["schemas"]
    expected: dict[str, Any] = {}
    for topic, model in (
        ("social.events", Event),
        ("social.alerts", Alert),
        ("social.alerts.shadow", ShadowAlert),
        ("social.events.dlq", DeadLetter),
    ):
        published = json.loads((SCHEMAS / f"{topic}.schema.json").read_text())
        moved = json.loads(json.dumps(published).replace('"#/$defs/', '"#/components/schemas/'))
        expected.update(moved.pop("$defs", {}))
        del moved["$schema"]
        expected[model.__name__] = moved
        assert published == topic_schema(topic)
    assert components == expected
    messages = document["components"]["messages"]
    assert {name: message["payload"] for name, message in messages.items()} == {
        "event": {"$ref": "#/components/schemas/Event"},
        "alert": {"$ref": "#/components/schemas/Alert"},
        "shadowAlert": {"$ref": "#/components/schemas/ShadowAlert"},
        "deadLetter": {"$ref": "#/components/schemas/DeadLetter"},
    }


def test_channels_are_the_default_topics_and_operations_what_the_worker_does(
    document: dict[str, Any],
) -> None:
    topics = TopicSettings()
    channels = document["channels"]
    assert {name: channel["address"] for name, channel in channels.items()} == {
        "events": topics.events[0],
        "alerts": topics.alerts,
        "shadowAlerts": topics.shadow_alerts,
        "deadLetters": topics.dead_letters,
    }
    assert {
        name: (operation["action"], operation["channel"]["$ref"])
        for name, operation in document["operations"].items()
    } == {
        "sendEvents": ("send", "#/channels/events"),
        "receiveEvents": ("receive", "#/channels/events"),
        "sendAlerts": ("send", "#/channels/alerts"),
        "sendShadowAlerts": ("send", "#/channels/shadowAlerts"),
        "sendDeadLetters": ("send", "#/channels/deadLetters"),
    }
    group = document["operations"]["receiveEvents"]["bindings"]["kafka"]["groupId"]
    assert group["enum"] == [f"{WorkerSettings().app_id}-ingest"]
    server = document["servers"]["kafka"]
    assert (server["protocol"], server["host"]) == ("kafka", "{bootstrap}")
    assert server["variables"]["bootstrap"]["default"] == KafkaSettings().bootstrap_servers


def test_topic_bindings_are_what_the_worker_declares(document: dict[str, Any]) -> None:
    from service.worker.app import create_app

    # Defaults, whatever RECIPROCITY_* variables the test run has.
    settings = Settings(kafka=KafkaSettings(), topics=TopicSettings(), worker=WorkerSettings())
    specs = {spec.name: spec for spec in create_app(settings).topic_specs}
    for channel in document["channels"].values():
        binding = channel["bindings"]["kafka"]
        spec = specs[channel["address"]]
        assert binding["topic"] == spec.name
        assert (binding["partitions"], binding["replicas"]) == (spec.partitions, spec.replication)
        assert binding.get("topicConfiguration", {}) == {
            key: int(value) for key, value in spec.config.items()
        }


def example_payloads(document: dict[str, Any], message: str) -> list[dict[str, Any]]:
    return [
        example["payload"] for example in document["components"]["messages"][message]["examples"]
    ]


@pytest.mark.parametrize(
    ("message", "model", "schema_file"),
    [
        ("event", Event, "social.events.schema.json"),
        ("alert", Alert, "social.alerts.schema.json"),
        ("shadowAlert", ShadowAlert, "social.alerts.shadow.schema.json"),
        ("deadLetter", DeadLetter, "social.events.dlq.schema.json"),
    ],
)
def test_examples_are_valid_messages(
    document: dict[str, Any], message: str, model: type[Any], schema_file: str
) -> None:
    # `asyncapi validate` does not check examples against payloads in AsyncAPI 3.0: done here.
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / schema_file).read_text()))
    payloads = example_payloads(document, message)
    assert payloads
    for payload in payloads:
        validator.validate(payload)
        model.model_validate(payload)
    names = [example["name"] for example in document["components"]["messages"][message]["examples"]]
    assert len(set(names)) == len(names)


def test_alert_examples_are_the_golden_payloads_of_every_rule(document: dict[str, Any]) -> None:
    alerts = example_payloads(document, "alert")
    for rule in ("unsolicited_retweet_request", "follower_spike", "follow_churn",
                 "duplicate_reply_spam"):  # fmt: skip
        # Rendered as tests/core/test_alert_payloads.py renders them.
        rendered = b"".join(
            orjson.dumps(alert, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            for alert in alerts
            if alert["rule"] == rule
        )
        assert rendered == (GOLDEN / f"{rule}.json").read_bytes()
    for alert in alerts:
        key, _ = alert_message(Alert.model_validate(alert))
        assert key == alert["subject_id"].encode()


def test_the_event_example_is_the_event_behind_the_golden_alert(
    document: dict[str, Any],
) -> None:
    (example,) = example_payloads(document, "event")
    assert Event.model_validate(example) == scenario("duplicate_reply_spam")[0]
    (cited_by,) = (
        alert
        for alert in example_payloads(document, "alert")
        if alert["rule"] == "duplicate_reply_spam"
    )
    assert example["event_id"] == cited_by["evidence"]["sample_event_ids"][0]


def test_the_shadow_alert_examples_are_a_golden_alert_plus_mode_and_diverted_by(
    document: dict[str, Any],
) -> None:
    shadow_mode, diverted = example_payloads(document, "shadowAlert")
    assert shadow_mode["mode"] == "shadow" and "diverted_by" not in shadow_mode
    assert diverted == {**shadow_mode, "diverted_by": "quota"}
    alert = {key: value for key, value in shadow_mode.items() if key != "mode"}
    assert alert in example_payloads(document, "alert")
    # The alerts topic's schema has no room for the keys: a shadow alert is never an alert;
    # the shadow topic's takes both.
    alert_schema = json.loads((SCHEMAS / "social.alerts.schema.json").read_text())
    shadow_schema = json.loads((SCHEMAS / "social.alerts.shadow.schema.json").read_text())
    for example in (shadow_mode, diverted):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(example, alert_schema)
        jsonschema.validate(example, shadow_schema)


def test_the_dead_letter_example_is_the_event_example_with_an_unknown_type(
    document: dict[str, Any],
) -> None:
    (event,) = example_payloads(document, "event")
    (letter,) = example_payloads(document, "deadLetter")
    assert letter["code"] == INVALID_TYPE
    assert letter["source_topic"] == document["channels"]["events"]["address"]
    assert orjson.loads(base64.b64decode(letter["value_b64"])) == {
        **event,
        "type": UNKNOWN_EVENT_TYPE,
    }
    assert base64.b64decode(letter["key_b64"]) == event["actor_id"].encode()
    assert letter["truncated"] is False


# JSON data as the document holds it, with texts of every form render_yaml writes: plain,
# quoted, and prose long enough to fold, with paragraphs, indented lines and trailing spaces
# (which folding must leave to a literal block or quotes).
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
_PROSE = st.lists(
    st.tuples(
        st.sampled_from(["spam", "alert_id", "é", "🙏", "#x", "a:", "- b", "'q'", '"q"']),
        st.sampled_from([" ", " ", " ", " ", "\n", "\n\n", "\n  "]),
    ),
    min_size=1,
    max_size=40,
).map(lambda parts: "".join(word + gap for word, gap in parts).strip(" "))
_TEXTS = (
    st.text()
    | _PROSE
    | st.tuples(_PROSE, st.sampled_from(["  ", " \n", "\t", "\u2028", "\n"]), _PROSE).map("".join)
    | st.sampled_from(["", "yes", "No", "null", "~", "true", "1.0", "0x1f", "- a", "a: b", "#c"])
)
_JSON = st.recursive(
    _SCALARS | _TEXTS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=30) | _TEXTS.filter(lambda t: len(t) <= 1024), children, max_size=4
        )
    ),
    max_leaves=20,
)


@given(_JSON)
def test_render_yaml_writes_what_a_yaml_reader_reads_back(value: Any) -> None:
    assert yaml.safe_load(render_yaml({"value": value})) == {"value": value}


@pytest.fixture(scope="module")
def asyncapi_cli() -> Path:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the AsyncAPI CLI runs on it")
    if not ASYNCAPI_CLI.exists():
        pytest.fail(f"{ASYNCAPI_CLI} is missing: run `make tools` (`make test` runs it first)")
    return ASYNCAPI_CLI


def cli_environment(tmp_path: Path) -> dict[str, str]:
    """No telemetry and no update check: the CLI sends usage metrics unless its analytics
    file says not to (what `asyncapi config analytics --disable` writes, kept out of ~), and
    asks npm for a newer version unless told to skip it."""
    analytics = tmp_path / "asyncapi-analytics.json"
    analytics.write_text(
        json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "tests"})
    )
    return {
        "PATH": str(Path(shutil.which("node") or "node").parent),
        "HOME": str(tmp_path),
        "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics),
        "ASYNCAPI_SKIP_NEW_VERSION_CHECK": "true",
    }


def test_asyncapi_cli_finds_no_error_or_warning(asyncapi_cli: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(asyncapi_cli),
            "validate",
            str(COMMITTED),
            "--diagnostics-format",
            "json",
            "--fail-severity",
            "warn",
        ],
        capture_output=True,
        check=False,
        timeout=180,
        env=cli_environment(tmp_path),
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    start = re.search(r"^\[", result.stdout.decode(), re.MULTILINE)
    diagnostics = json.loads(result.stdout.decode()[start.start() :]) if start else []
    assert {diagnostic["code"] for diagnostic in diagnostics} <= EXPECTED_DIAGNOSTICS, output


def test_the_validators_yaml_reader_reads_the_document_the_code_builds(
    asyncapi_cli: Path, tmp_path: Path, document: dict[str, Any]
) -> None:
    """The AsyncAPI parser reads YAML with @stoplight/yaml: it must see the same document."""
    modules = asyncapi_cli.parents[1]
    script = (
        "const {parse} = require('@stoplight/yaml');"
        "const text = require('fs').readFileSync(process.argv[1], 'utf8');"
        "process.stdout.write(JSON.stringify(parse(text)));"
    )
    result = subprocess.run(
        ["node", "-e", script, str(COMMITTED)],
        capture_output=True,
        check=False,
        timeout=60,
        env={**cli_environment(tmp_path), "NODE_PATH": str(modules)},
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == document
