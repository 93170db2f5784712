"""deploy/kubernetes: rendered by kustomize (what `kubectl apply -k` sends), every object
valid against the Kubernetes schemas (strict: unknown fields fail) or, for the Prometheus
Operator's kinds, against their CRDs; then what the pieces must agree on."""

from __future__ import annotations

import copy
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from service.settings import DetectionFile
from tests.deploy.exported import DEPLOY, assert_valid_settings

# The oldest Kubernetes minor we promise, and the newest one kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", "1.37")
OPERATOR_GROUP = "monitoring.coreos.com/"
JOB = "reciprocity"
# The schemas take any string for a quantity; the API server parses it.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")

Object = dict[str, Any]


def only(objects: list[Object], kind: str, **labels: str) -> Object:
    (found,) = [
        obj
        for obj in objects
        if obj["kind"] == kind and labels.items() <= obj["metadata"].get("labels", {}).items()
    ]
    return found


def pod_spec(objects: list[Object]) -> Object:
    spec: Object = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def worker_container(objects: list[Object]) -> Object:
    (container,) = pod_spec(objects)["containers"]
    assert isinstance(container, dict)
    return container


def settings_config_map(objects: list[Object]) -> Object:
    return only(objects, "ConfigMap", **{"app.kubernetes.io/component": "settings"})


def pod_labels(objects: list[Object]) -> dict[str, str]:
    labels: dict[str, str] = only(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    return labels


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones, as the API
    server does with `kubectl apply` (field validation Strict)."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def test_kustomize_renders_every_manifest(kubernetes_objects: list[Object]) -> None:
    kinds = sorted(obj["kind"] for obj in kubernetes_objects)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Secret",
        "Service",
        "Service",
        "ServiceMonitor",
        "StatefulSet",
    ]
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed["resources"]) == on_disk


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_the_kubernetes_schemas(
    kubernetes_objects: list[Object], version: str
) -> None:
    for obj in kubernetes_objects:
        if obj["apiVersion"].startswith(OPERATOR_GROUP):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} {path}: {exc.message}")


def test_operator_objects_match_their_crds(
    kubernetes_objects: list[Object], prometheus_operator_crds: dict[str, Any]
) -> None:
    checked = []
    for obj in kubernetes_objects:
        if not obj["apiVersion"].startswith(OPERATOR_GROUP):
            continue
        schema = closed(prometheus_operator_crds[f"{obj['apiVersion']}/{obj['kind']}"])
        # The API server checks metadata itself; the CRD only says it is an object.
        body = copy.deepcopy(obj)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
        checked.append(obj["kind"])
    assert sorted(checked) == ["PrometheusRule", "ServiceMonitor"]


def test_the_crd_check_refuses_unknown_fields(prometheus_operator_crds: dict[str, Any]) -> None:
    schema = closed(prometheus_operator_crds["monitoring.coreos.com/v1/ServiceMonitor"])
    typo = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "pathh": "/metrics"}]},
    }
    assert list(jsonschema.Draft7Validator(schema).iter_errors(typo))


def test_prometheus_rule_carries_the_rules_file(kubernetes_objects: list[Object]) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "reciprocity.rules.yml").read_text())
    assert only(kubernetes_objects, "PrometheusRule")["spec"]["groups"] == rules["groups"]


def test_services_and_monitor_reach_the_worker_port(kubernetes_objects: list[Object]) -> None:
    labels = pod_labels(kubernetes_objects)
    statefulset = only(kubernetes_objects, "StatefulSet")
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {port["name"] for port in worker_container(kubernetes_objects)["ports"]}
    peers = only(kubernetes_objects, "Service", **{"app.kubernetes.io/component": "peers"})
    metrics = only(kubernetes_objects, "Service", **{"app.kubernetes.io/component": "metrics"})
    assert statefulset["spec"]["serviceName"] == peers["metadata"]["name"]
    assert peers["spec"]["clusterIP"] == "None"
    for service in (peers, metrics):
        assert service["spec"]["selector"].items() <= labels.items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    monitor = only(kubernetes_objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s
        for s in kubernetes_objects
        if s["kind"] == "Service" and selector.items() <= s["metadata"]["labels"].items()
    ]
    assert selected == [metrics]  # each pod scraped once
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in metrics["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The job label comes from this Service label; the rules select job="reciprocity".
    assert metrics["metadata"]["labels"][monitor["spec"]["jobLabel"]] == JOB
    budget = only(kubernetes_objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_only_prometheus_and_the_peers_reach_the_web_port(kubernetes_objects: list[Object]) -> None:
    labels = pod_labels(kubernetes_objects)
    policy = only(kubernetes_objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    port_names = {port["name"] for port in worker_container(kubernetes_objects)["ports"]}
    assert {port["port"] for port in rule["ports"]} <= port_names
    peers, prometheus = rule["from"]
    assert peers["podSelector"]["matchLabels"].items() <= labels.items()
    assert "namespaceSelector" not in peers  # the peers: this namespace only
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_probes(kubernetes_objects: list[Object]) -> None:
    container = worker_container(kubernetes_objects)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    # /readyz is 503 during each rebalance: a short one must not take the pod out.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] >= 60


def test_pods_run_locked_down_with_resources(kubernetes_objects: list[Object]) -> None:
    pod = pod_spec(kubernetes_objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    container = worker_container(kubernetes_objects)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        quantities = container["resources"][kind]
        assert quantities.keys() == {"cpu", "memory"}
        assert all(QUANTITY.match(str(value)) for value in quantities.values()), quantities
    assert container["image"] == "reciprocity:latest"


def test_settings_are_valid_and_the_password_is_a_marked_placeholder(
    kubernetes_objects: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = worker_container(kubernetes_objects)
    (from_config_map, from_secret) = container["envFrom"]
    config_map = settings_config_map(kubernetes_objects)
    secret = only(kubernetes_objects, "Secret")
    assert from_config_map["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert from_secret["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"RECIPROCITY_KAFKA__SASL_PASSWORD"}
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    (web_host,) = container["env"]
    assert web_host["name"] == "RECIPROCITY_WORKER__WEB_HOST"
    assert web_host["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    settings = {
        **config_map["data"],
        **secret["stringData"],
        "RECIPROCITY_WORKER__WEB_HOST": "10.1.2.3",
    }
    assert_valid_settings(settings, monkeypatch)
    ports = [port["containerPort"] for port in container["ports"]]
    assert ports == [int(config_map["data"]["RECIPROCITY_WORKER__WEB_PORT"])]


def test_each_pod_keeps_its_rocksdb_store_on_its_own_volume(
    kubernetes_objects: list[Object],
) -> None:
    config = settings_config_map(kubernetes_objects)["data"]
    assert config["RECIPROCITY_WORKER__STORE"] == "rocksdb://"
    (claim,) = only(kubernetes_objects, "StatefulSet")["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"] for m in worker_container(kubernetes_objects)["volumeMounts"]
    }
    assert mounts[claim["metadata"]["name"]] == config["RECIPROCITY_WORKER__DATA_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert QUANTITY.match(claim["spec"]["resources"]["requests"]["storage"])


def test_the_detection_file_is_a_mounted_configmap_the_worker_accepts(
    kubernetes_objects: list[Object], tmp_path: Path
) -> None:
    detection = only(
        kubernetes_objects, "ConfigMap", **{"app.kubernetes.io/component": "detection"}
    )
    named = PurePosixPath(
        settings_config_map(kubernetes_objects)["data"]["RECIPROCITY_DETECTION_FILE"]
    )
    volume = next(
        v
        for v in pod_spec(kubernetes_objects)["volumes"]
        if v.get("configMap", {}).get("name") == detection["metadata"]["name"]
    )
    (mount,) = [
        m
        for m in worker_container(kubernetes_objects)["volumeMounts"]
        if m["name"] == volume["name"]
    ]
    # The directory: a subPath mount would never see the kubelet's updates.
    assert "subPath" not in mount and mount.get("readOnly") is True
    assert named.parent == PurePosixPath(mount["mountPath"])
    assert named.name in detection["data"]
    # Not generated: a generated name (with a content hash) would restart the pods on an edit.
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert "configMapGenerator" not in listed
    copy_of = tmp_path / named.name
    copy_of.write_text(detection["data"][named.name])
    loaded = DetectionFile(
        copy_of
    ).read()  # raises, naming the field, if the worker would refuse it
    assert loaded.fields
