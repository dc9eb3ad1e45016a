"""deploy/k8s: the kustomize base and production overlay render, validate against the
Kubernetes schemas (kubernetes-validate, offline), and run real `passsync` commands.

There is no kubectl here: `render` is the subset of kustomize these files use (resources,
namespace, labels, images, strategic-merge patches by kind and name, lists of named items
merged by name), enough to check what `kubectl apply -k` would send.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.test_deploy import resolve

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def render(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            docs += render(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for patch in kustomization.get("patches", []):
        for change in yaml.safe_load_all((folder / patch["path"]).read_text()):
            doc = _find(docs, change["kind"], change["metadata"]["name"])
            _merge(doc, change)
    for group in kustomization.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(group["pairs"])
    for image in kustomization.get("images", []):
        for container in _containers(docs):
            if container["image"].split(":")[0] == image["name"]:
                name = image.get("newName", image["name"])
                container["image"] = f"{name}:{image.get('newTag', 'latest')}"
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"patch target {kind}/{name}: {len(found)} matches")
    return found[0]


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list) and _named(old + value):
            by_name = {item["name"]: item for item in old}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    old.append(copy.deepcopy(item))
        else:
            into[key] = copy.deepcopy(value)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        pod = _pod(doc)
        if pod is not None:
            out += pod.get("initContainers", []) + pod["containers"]
    return out


def _pod(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


BASE = render(K8S / "base")
PRODUCTION = render(K8S / "overlays" / "production")
BOTH = pytest.mark.parametrize("docs", [BASE, PRODUCTION], ids=["base", "production"])


@BOTH
def test_every_manifest_validates_against_the_kubernetes_schemas(
    docs: list[dict[str, Any]],
) -> None:
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not silently dropped
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    broken = copy.deepcopy(by_kind(BASE, "Deployment")["passsync-api"])
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@BOTH
def test_the_roles_are_all_there(docs: list[dict[str, Any]]) -> None:
    assert set(by_kind(docs, "Deployment")) == {
        "passsync-api",
        "passsync-worker-realtime",
        "passsync-worker-bulk",
        "passsync-beat",
    }
    assert set(by_kind(docs, "Job")) == {"passsync-migrate"}
    assert set(by_kind(docs, "Service")) == {"passsync-api"}
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == {"passsync-api"}
    assert set(by_kind(docs, "ConfigMap")) == {"passsync-config"}
    assert len(by_kind(docs, "PodDisruptionBudget")) == 3


@BOTH
def test_every_command_and_exec_probe_is_a_real_passsync_command(
    docs: list[dict[str, Any]],
) -> None:
    commands = []
    for container in _containers(docs):
        commands.append(container["command"])
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "exec" in container.get(probe, {}):
                commands.append(container[probe]["exec"]["command"])
    assert len(commands) >= 8
    for argv in commands:
        assert argv[0] == "passsync", argv
        assert "Usage: passsync" in resolve(argv[1:])


@BOTH
def test_workers_serve_both_queues_and_their_probes_ping_them_by_name(
    docs: list[dict[str, Any]],
) -> None:
    queues: set[str] = set()
    for name, deployment in by_kind(docs, "Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        argv = container["command"]
        if argv[1] != "worker":
            continue
        queues |= set(argv[argv.index("--queues") + 1].split(","))
        probe = container["livenessProbe"]["exec"]["command"]
        assert probe[probe.index("--name") + 1] == argv[argv.index("--name") + 1], name
    assert queues == {"realtime", "bulk"}


@BOTH
def test_the_api_is_probed_on_healthz_and_readyz_and_scaled(docs: list[dict[str, Any]]) -> None:
    [api] = by_kind(docs, "Deployment")["passsync-api"]["spec"]["template"]["spec"]["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["passsync-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "passsync-api"
    assert hpa["spec"]["minReplicas"] >= 2


@BOTH
def test_beat_is_one_replica_replaced_not_rolled(docs: list[dict[str, Any]]) -> None:
    beat = by_kind(docs, "Deployment")["passsync-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@BOTH
def test_pods_run_as_non_root_with_requests_and_secret_references(
    docs: list[dict[str, Any]],
) -> None:
    for doc in docs:
        pod = _pod(doc)
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["requests"]["memory"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            refs = [e["secretRef"]["name"] for e in container["envFrom"]]
            assert refs == ["passsync-secrets"]
            # No secret value in a manifest: only names of what the Secret holds.
            assert all("value" not in e or "SECRET" not in e["name"] for e in container["env"])


@BOTH
def test_selectors_match_their_pods(docs: list[dict[str, Any]]) -> None:
    deployments = by_kind(docs, "Deployment")
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for deployment in deployments.values():
        wanted = deployment["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        wanted = pdb["spec"]["selector"]["matchLabels"]
        assert sum(wanted.items() <= labels.items() for labels in pods) == 1, pdb
    service = by_kind(docs, "Service")["passsync-api"]["spec"]["selector"]
    assert sum(service.items() <= labels.items() for labels in pods) == 1


def test_the_config_map_is_valid_passsync_configuration(tmp_path: Path) -> None:
    from worker.config import load_settings, read_config_file

    text = by_kind(BASE, "ConfigMap")["passsync-config"]["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = load_settings(**read_config_file(path))
    assert settings.logging.format == "json"
    assert settings.api.host == "0.0.0.0"


def test_production_overrides_the_base() -> None:
    base = by_kind(BASE, "Deployment")
    prod = by_kind(PRODUCTION, "Deployment")
    assert prod["passsync-worker-realtime"]["spec"]["replicas"] == 4
    assert base["passsync-worker-realtime"]["spec"]["replicas"] == 2
    [container] = prod["passsync-worker-realtime"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "1"
    assert container["command"][1] == "worker"  # the patch merged, it did not replace
    assert {d["metadata"].get("namespace") for d in PRODUCTION} == {"passsync"}
    assert {c["image"] for c in _containers(PRODUCTION)} == {"registry.example.com/passsync:0.1.0"}
