"""deploy/k8s, checked offline: every manifest against the Kubernetes JSON schemas (the
schemas kubernetes-validate bundles), and what the issue asks of each piece: the password only
in a Secret, the dashboard not exposed, workers as an Indexed Job with one GPU per pod, and
PgBouncer in front of PostgreSQL."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest release whose schema has everything used (backoffLimitPerIndex), and the newest
# the package knows.
KUBERNETES_VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((f"{path.name}:{document['kind']}/{document['metadata']['name']}",
                              document))
    return found


MANIFESTS = manifests()


def resource(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in MANIFESTS if d["kind"] == kind and d["metadata"]["name"] == name)


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "document"), MANIFESTS, ids=[w for w, _ in MANIFESTS])
def test_manifest_is_valid_kubernetes(where: str, document: dict[str, Any], version: str) -> None:
    # strict: an unknown or misspelled field is an error too, as kubectl --validate=strict.
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("breakage", ["wrong type", "misspelled field", "missing field"])
def test_a_broken_manifest_fails_validation(breakage: str) -> None:
    """The validator really validates: the same Job, broken, is refused."""
    job = copy.deepcopy(resource("Job", "hpo-worker"))
    if breakage == "wrong type":
        job["spec"]["parallelism"] = "four"
    elif breakage == "misspelled field":
        job["spec"]["paralelism"] = job["spec"].pop("parallelism")
    else:
        del containers(job)[0]["name"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_makes_the_secret() -> None:
    listed = set(KUSTOMIZATION["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files
    generator = KUSTOMIZATION["secretGenerator"][0]
    assert generator["name"] == "hpo-db" and generator["envs"] == ["db.env"]
    example = (K8S / "db.env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=", example, re.M)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S / "db.env")], cwd=ROOT)
    assert ignored.returncode == 0, "deploy/k8s/db.env must be git-ignored"


def test_the_password_comes_only_from_the_secret() -> None:
    text = "\n".join((K8S / name).read_text() for name in KUSTOMIZATION["resources"])
    assert "change-me" not in text
    for url in re.findall(r"postgresql\+psycopg://\S+", text):
        assert url.startswith("postgresql+psycopg://hpo:$(POSTGRES_PASSWORD)@"), url
    for _, document in MANIFESTS:
        if "template" not in document.get("spec", {}):
            continue
        for container in containers(document):
            for variable in container.get("env", []):
                if "PASSWORD" in variable["name"]:
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == "hpo-db"


def test_nothing_is_exposed_outside_the_cluster() -> None:
    kinds = {d["kind"] for _, d in MANIFESTS}
    assert "Ingress" not in kinds
    for _, document in MANIFESTS:
        if document["kind"] == "Service":
            assert document["spec"]["type"] == "ClusterIP", document["metadata"]["name"]
        if "template" in document.get("spec", {}):
            for container in containers(document):
                assert all("hostPort" not in p for p in container.get("ports", []))
    dashboard = resource("Deployment", "hpo-dashboard")
    assert containers(dashboard)[0]["command"][:2] == ["hpo", "dashboard"]
    service = resource("Service", "hpo-dashboard")
    assert service["spec"]["selector"] == dashboard["spec"]["selector"]["matchLabels"]


def test_workers_are_an_indexed_job_with_one_gpu_per_pod() -> None:
    job = resource("Job", "hpo-worker")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 1
    worker = containers(job)[0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["command"][:2] == ["hpo", "worker"] and "--total" in worker["command"]
    # Evictions replace the pod without counting against the Job's failures.
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "Ignore"
    assert rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_workers_and_dashboard_go_through_pgbouncer_to_postgres() -> None:
    for kind, name in (("Job", "hpo-worker"), ("Deployment", "hpo-dashboard")):
        env = {v["name"]: v.get("value") for v in containers(resource(kind, name))[0]["env"]}
        assert "@pgbouncer:6432/hpo" in env["HPO_STORAGE"]
    bouncer = resource("Deployment", "pgbouncer")
    assert containers(bouncer)[0]["image"] == "hpo-pgbouncer"
    assert resource("Service", "pgbouncer")["spec"]["ports"][0]["port"] == 6432
    config = resource("ConfigMap", "hpo-db")["data"]
    assert config["DB_HOST"] == "postgres"
    assert resource("Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    # PostgreSQL accepts more connections than the pool may open.
    args = containers(resource("StatefulSet", "postgres"))[0]["args"]
    assert int(args[args.index("-c") + 1].split("=")[1]) > int(config["POOL_SIZE"])
    # 3 client connections per worker pod (its worker 2, its launcher 1), for 500 pods.
    assert int(config["MAX_CLIENT_CONN"]) >= 3 * 500


def test_the_worker_command_is_a_real_invocation() -> None:
    study = resource("ConfigMap", "hpo-study")["data"]
    command = [re.sub(r"\$\((\w+)\)", lambda m: study[m.group(1)], part)
               for part in containers(resource("Job", "hpo-worker"))[0]["command"]]
    runner = CliRunner()
    help_text = runner.invoke(app, [command[1], "--help"]).stdout
    for flag in (part for part in command if part.startswith("--")):
        assert flag in help_text, f"{flag} is not an option of hpo {command[1]}"
    result = runner.invoke(app, [*command[1:], "--dry-run", "--storage", "sqlite:///x.db"],
                           env={"HPO_GPU_COUNT": "1"})
    assert result.exit_code == 0, result.stderr
    assert "worker 0 -> cuda:0" in result.stdout
