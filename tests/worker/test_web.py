"""The worker's web surface: per-account data behind an optional bearer token, the operational
endpoints open, malformed requests a 4xx and never a traceback."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from service.worker.web import authorized, valid_account_id
from tests.worker.harness import Worker, create_topics

pytestmark = pytest.mark.kafka

TOKEN = "s3cret-token-" + uuid.uuid4().hex


def get(worker: Worker, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def worker(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    create_topics(kafka, [topics["events"]], partitions=1)
    one = Worker(kafka, f"web-{suffix}", topics, 1, tmp_path_factory.mktemp("web"), "web")
    one.env["RECIPROCITY_WORKER__API_TOKEN"] = TOKEN
    one.start()
    try:
        yield one
    finally:
        one.stop()


def test_account_data_needs_the_token(worker: Worker) -> None:
    assert get(worker, "/users/u00001/reciprocity") == 401
    assert get(worker, "/users/u00001/reciprocity", token="wrong") == 401
    assert get(worker, "/users/u00001/reciprocity", token=TOKEN) == 200


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_operational_endpoints_stay_open(worker: Worker, path: str) -> None:
    assert get(worker, path) == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/users/has%20space/reciprocity", 400),
        ("/users/" + "x" * 129 + "/reciprocity", 400),
        ("/users/ctl%07char/reciprocity", 400),
        ("/users//reciprocity", 404),
        ("/users/u1/reciprocity/extra", 404),
        ("/nothing-here", 404),
        ("/users/u1", 404),
    ],
)
def test_malformed_requests_get_a_4xx(worker: Worker, path: str, status: int) -> None:
    assert get(worker, path, token=TOKEN) == status


def test_no_traceback_and_no_token_in_the_log_or_metrics(worker: Worker) -> None:
    for path in ("/users/has%20space/reciprocity", "/nothing-here", "/users/u1/reciprocity"):
        get(worker, path)
    log = worker.log.read_text()
    assert "Traceback" not in log
    assert TOKEN not in log
    _, body = worker.get("/metrics")
    assert TOKEN.encode() not in body


@pytest.mark.parametrize(
    ("user_id", "valid"),
    [("u1", True), ("x" * 128, True), ("é", True), ("", False), ("x" * 129, False),
     ("a b", False), ("a\tb", False), ("a\x7f", False)],
)  # fmt: skip
def test_account_ids_follow_the_contract(user_id: str, valid: bool) -> None:
    assert valid_account_id(user_id) is valid


@pytest.mark.parametrize(
    ("header", "token", "ok"),
    [(None, None, True), (None, "t", False), ("Bearer t", "t", True), ("bearer t", "t", True),
     ("Bearer u", "t", False), ("Basic t", "t", False), ("Bearer", "t", False)],
)  # fmt: skip
def test_bearer_tokens(header: str | None, token: str | None, ok: bool) -> None:
    assert authorized(header, token) is ok
