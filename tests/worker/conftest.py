from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.local_kafka import kafka_bootstrap


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """A real Apache Kafka broker (started here unless RECIPROCITY_TEST_KAFKA_BOOTSTRAP names
    one)."""
    with kafka_bootstrap() as bootstrap:
        yield bootstrap
