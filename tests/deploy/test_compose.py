"""deploy/compose: loaded by compose-go, the loader of `docker compose` (interpolation, the
compose-spec schema, references between services and volumes), then checked for what a
scaled, secure worker needs. No Docker engine: nothing here starts a container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import go_tools
from tests.deploy.exported import DEPLOY, ROOT, assert_valid_settings

COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
OUR_IMAGE = "reciprocity:latest"


@pytest.fixture(scope="module")
def project(composeconfig: Path) -> dict[str, Any]:
    return go_tools.compose_config(composeconfig, COMPOSE_FILE)


@pytest.fixture(scope="module")
def demo_project(composeconfig: Path) -> dict[str, Any]:
    return go_tools.compose_config(composeconfig, COMPOSE_FILE, profiles="demo")


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path, of the service's bind mounts."""
    return {
        volume["target"]: Path(volume["source"])
        for volume in service.get("volumes", [])
        if volume["type"] == "bind"
    }


def test_the_stack_has_kafka_workers_prometheus_and_grafana(
    project: dict[str, Any], demo_project: dict[str, Any]
) -> None:
    assert set(project["services"]) == {"kafka", "worker", "prometheus", "grafana"}
    assert set(demo_project["services"]) == {*project["services"], "traffic"}


def test_images_are_pinned(demo_project: dict[str, Any]) -> None:
    for name, service in demo_project["services"].items():
        image = service["image"]
        if image == OUR_IMAGE:
            continue  # built from this repository's Dockerfile
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
    assert demo_project["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert demo_project["services"]["worker"]["build"]["context"] == str(ROOT)
    assert (ROOT / "Dockerfile").is_file()


def test_kafka_is_single_node_kraft_reachable_as_kafka_9092(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert kafka["healthcheck"]["test"]
    worker_env = project["services"]["worker"]["environment"]
    assert worker_env["RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_workers_can_be_scaled(project: dict[str, Any]) -> None:
    worker = project["services"]["worker"]
    assert "container_name" not in worker and "hostname" not in worker
    # Only ephemeral host ports: fixed ones collide between replicas.
    assert all("published" not in port for port in worker["ports"])
    (data,) = worker["volumes"]
    # Anonymous: each replica its own RocksDB directory. A named volume would be shared.
    assert data["type"] == "volume" and not data.get("source")
    assert data["target"] == worker["environment"]["RECIPROCITY_WORKER__DATA_DIR"]
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Each replica advertises its own address, found at start inside the container.
    command = " ".join(worker["entrypoint"])
    assert "export RECIPROCITY_WORKER__WEB_HOST=" in command
    assert command.endswith("exec reciprocity worker")
    assert "RECIPROCITY_WORKER__WEB_HOST" not in worker["environment"]


def test_workers_run_locked_down(project: dict[str, Any]) -> None:
    worker = project["services"]["worker"]
    assert worker["read_only"] is True
    assert worker["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in worker["security_opt"]


def test_worker_settings_are_valid(
    demo_project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("worker", "traffic"):
        env = dict(demo_project["services"][name]["environment"])
        if name == "worker":
            env["RECIPROCITY_WORKER__WEB_HOST"] = "172.18.0.5"  # what the entrypoint sets
        assert_valid_settings(env, monkeypatch)


def test_every_bind_mount_exists(demo_project: dict[str, Any]) -> None:
    for name, service in demo_project["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), (name, target, source)
            assert source.resolve().is_relative_to(DEPLOY), (name, source)


def test_prometheus_scrapes_every_worker_and_loads_our_rules(project: dict[str, Any]) -> None:
    prometheus = project["services"]["prometheus"]
    mounts = bind_mounts(prometheus)
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert mounts["/etc/prometheus/rules/reciprocity.rules.yml"] == (
        DEPLOY / "prometheus" / "reciprocity.rules.yml"
    )
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "reciprocity"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    web_port = int(project["services"]["worker"]["environment"]["RECIPROCITY_WORKER__WEB_PORT"])
    assert discovery["port"] == web_port
    assert {port["target"] for port in project["services"]["worker"]["ports"]} == {web_port}


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(
    project: dict[str, Any],
) -> None:
    grafana = project["services"]["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "reciprocity.yml").read_text())[
        "providers"
    ]
    assert mounts[provider["options"]["path"]] == DEPLOY / "grafana"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    assert {port["target"] for port in project["services"]["prometheus"]["ports"]} == {9090}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/reciprocity.json"
    assert (DEPLOY / "grafana" / "reciprocity.json").is_file()
