"""deploy/k8s: rendered by the real ``kubectl kustomize`` (the machine's kubectl, or Debian's
kubernetes-client that scripts/test.sh installs when there is none), every object validated
with ``kubernetes-validate --strict`` against Kubernetes 1.33's schemas, and the contracts an
operator relies on checked on the rendered objects.

What this does not prove: that a cluster accepts and runs them (no cluster here: kind, k3d and
minikube need images from a registry)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_kit import DEPLOY, IMAGE_UID, tool

from claude_notify import __version__

K8S = DEPLOY / "k8s"
KUBERNETES = "1.33.0"
VALIDATE_HINT = "the dev group's kubernetes-validate brings it (scripts/test.sh installs it)"

Obj = dict[str, Any]


@functools.cache
def rendered_text() -> str:
    kubectl = tool("kubectl", "scripts/test.sh installs Debian's kubernetes-client")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr, result.stderr
    return result.stdout


def rendered() -> list[Obj]:
    return [d for d in yaml.safe_load_all(rendered_text()) if d]


def by_kind(kind: str) -> list[Obj]:
    return [d for d in rendered() if d["kind"] == kind]


def one(kind: str, name: str) -> Obj:
    [found] = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return found


def pod_specs() -> list[tuple[str, Obj]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"])
            for d in rendered() if d["kind"] in ("Deployment", "Job")]


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("kubernetes-validate", VALIDATE_HINT), "--strict", "--quiet",
                           "-k", KUBERNETES, *map(str, paths)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_every_object_validates_strictly(tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(rendered_text())
    result = validate(out, K8S / "secret.example.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    """The validator is really strict: a probe spelt wrong would otherwise be silently ignored
    by the API server, and the Deployment would run without it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(rendered_text().replace("readinessProbe:", "readinesProbe:", 1))
    result = validate(bad)
    assert result.returncode != 0
    assert "'readinesProbe' was unexpected" in result.stdout + result.stderr


def test_the_objects() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered())
    assert kinds == sorted([
        ("Namespace", "claude-notify"), ("ConfigMap", "claude-notify"),
        ("Deployment", "claude-notify-api"), ("Deployment", "claude-notify-worker"),
        ("Service", "claude-notify-api"), ("Ingress", "claude-notify"),
        ("Job", "claude-notify-migrate"), ("PodDisruptionBudget", "claude-notify-api"),
        ("HorizontalPodAutoscaler", "claude-notify-worker")])
    for obj in rendered():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "claude-notify", obj["metadata"]["name"]


def test_non_root_numeric_uid_everywhere() -> None:
    for name, spec in pod_specs():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == IMAGE_UID and isinstance(pod["runAsUser"], int), name
        assert pod["runAsGroup"] == IMAGE_UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own.get("runAsUser", IMAGE_UID) == IMAGE_UID, name
            assert own["allowPrivilegeEscalation"] is False, name
            assert own["readOnlyRootFilesystem"] is True, name
            assert own["capabilities"] == {"drop": ["ALL"]}, name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name


def test_probes_and_resources_on_every_deployment() -> None:
    for deployment in by_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, (deployment["metadata"]["name"], probe)
                assert container[probe]["httpGet"]["port"] in ports
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
    api = one("Deployment", "claude-notify-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_api_replicas_share_redis() -> None:
    for name in ("claude-notify-api", "claude-notify-worker"):
        deployment = one("Deployment", name)
        assert deployment["spec"]["replicas"] >= 2
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "claude-notify", "key": "REDIS_URL"}
        assert "DATABASE_URL" in env
    assert one("Deployment", "claude-notify-api")["spec"]["strategy"]["rollingUpdate"][
        "maxUnavailable"] == 0


def test_selectors_and_references_meet() -> None:
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in by_kind("Deployment")}

    def selects(selector: dict[str, str], deployment: str) -> bool:
        return selector.items() <= pods[deployment].items()

    service = one("Service", "claude-notify-api")
    assert selects(service["spec"]["selector"], "claude-notify-api")
    assert not selects(service["spec"]["selector"], "claude-notify-worker")
    pdb = one("PodDisruptionBudget", "claude-notify-api")
    assert selects(pdb["spec"]["selector"]["matchLabels"], "claude-notify-api")
    assert pdb["spec"]["minAvailable"] < one("Deployment", "claude-notify-api")["spec"]["replicas"]
    hpa = one("HorizontalPodAutoscaler", "claude-notify-worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "claude-notify-worker"}
    assert hpa["spec"]["minReplicas"] >= 2
    [rule] = one("Ingress", "claude-notify")["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "claude-notify-api", "port": {"name": "http"}}
    assert path["path"] == "/" and path["pathType"] == "Prefix"  # /v1/agent included
    assert {p["name"] for p in service["spec"]["ports"]} == {"http"}


def test_the_ingress_keeps_agent_websockets_open() -> None:
    annotations = one("Ingress", "claude-notify")["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600


def test_the_example_secret_has_keys_and_no_values() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert secret["kind"] == "Secret"
    assert "data" not in secret
    assert set(secret["stringData"].values()) == {""}
    referenced = {e["valueFrom"]["secretKeyRef"]["key"]
                  for _, spec in pod_specs() for c in spec["containers"]
                  for e in c.get("env", ()) if "secretKeyRef" in e.get("valueFrom", {})}
    assert referenced <= set(secret["stringData"])
    assert "secret.example.yaml" not in (K8S / "kustomization.yaml").read_text().split(
        "resources:")[1], "applying an empty example would blank the real Secret"


def compose_services() -> dict[str, Obj]:
    services: dict[str, Obj] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    return services


@pytest.mark.parametrize(("compose", "workload"), [
    ("api", ("Deployment", "claude-notify-api")),
    ("worker", ("Deployment", "claude-notify-worker")),
    ("migrate", ("Job", "claude-notify-migrate"))])
def test_compose_and_k8s_run_the_same_commands_and_image(
        compose: str, workload: tuple[str, str]) -> None:
    [container] = one(*workload)["spec"]["template"]["spec"]["containers"]
    assert container["args"] == compose_services()[compose]["command"]
    assert "command" not in container, "the image's ENTRYPOINT (claude-notify server) runs"
    assert container["image"] == compose_services()[compose]["image"] == \
        f"claude-notify:{__version__}"


@pytest.mark.parametrize(("compose", "deployment"), [
    ("api", "claude-notify-api"), ("worker", "claude-notify-worker")])
def test_the_kill_deadline_leaves_room_for_the_drain(compose: str, deployment: str) -> None:
    """SIGKILL comes after the orchestrator's grace period: it must exceed the server's own
    (``shutdown_grace_s``) plus the settling of the last sends, the same in compose and k8s."""
    from claude_notify.cloud.server.delivery.worker import SETTLE_FLOOR_S
    from claude_notify.cloud.server.settings import Settings

    spec = one("Deployment", deployment)["spec"]["template"]["spec"]
    stop = compose_services()[compose]["stop_grace_period"]
    assert stop == f"{spec['terminationGracePeriodSeconds']}s"
    assert spec["terminationGracePeriodSeconds"] > Settings().shutdown_grace_s + SETTLE_FLOOR_S


def test_every_image_is_pinned() -> None:
    images = {c["image"] for _, spec in pod_specs() for c in spec["containers"]}
    images |= {s["image"] for s in compose_services().values()}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image
