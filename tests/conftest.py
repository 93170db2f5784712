from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.devtools.local_kafka import kafka_bootstrap


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite golden files (schemas/, tests/core/golden/) from the current code.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """A real Apache Kafka broker (started here unless RECIPROCITY_TEST_KAFKA_BOOTSTRAP names
    one)."""
    with kafka_bootstrap() as bootstrap:
        yield bootstrap
