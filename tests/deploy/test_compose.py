"""docker-compose.yml, checked statically (no Docker engine runs here): services, health,
volumes, GPU reservation, ports on 127.0.0.1 only, and every hpo command a real invocation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def expand_defaults(text: str) -> str:
    """Compose's ${VAR:-default} with the defaults; ${VAR:?...} as a placeholder."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", text)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"<\1>", text)


def test_services_are_there() -> None:
    assert {"postgres", "dashboard", "worker", "pgbouncer"} <= set(SERVICES)


def test_postgres_has_volume_healthcheck_and_password_from_env() -> None:
    postgres = SERVICES["postgres"]
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])
    assert "pgdata" in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=", example, re.M)


def test_no_password_is_written_into_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for url in re.findall(r"postgresql\+psycopg://[^\s\"']+", text):
        assert "${POSTGRES_PASSWORD" in url


@pytest.mark.parametrize("name", ["postgres", "dashboard", "worker", "pgbouncer"])
def test_ports_are_published_on_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port


def test_workers_reserve_gpus_wait_for_postgres_and_can_scale() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["dashboard"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # --scale needs replicas without fixed names or host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["hpo", "worker"]


def test_worker_image_builds_from_the_repo() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert SERVICES["worker"]["build"] == "."
    assert "uv sync --locked" in dockerfile
    assert "COPY hpo" in dockerfile and "COPY studies" in dockerfile


def hpo_commands() -> list[list[str]]:
    commands = []
    for service in SERVICES.values():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] == "hpo":
            commands.append([expand_defaults(str(part)) for part in command[1:]])
    return commands


@pytest.mark.parametrize("command", hpo_commands(), ids=lambda c: " ".join(c))
def test_every_hpo_command_is_a_real_invocation(command: list[str]) -> None:
    runner = CliRunner()
    help_result = runner.invoke(app, [command[0], "--help"])
    assert help_result.exit_code == 0, help_result.stderr
    for flag in (part for part in command if part.startswith("--")):
        assert flag in help_result.stdout, f"{flag} is not an option of hpo {command[0]}"
    if command[0] == "worker":  # the whole invocation parses and plans
        result = runner.invoke(app, [*command, "--dry-run", "--storage", "sqlite:///x.db",
                                     "--gpus", "none"])
        assert result.exit_code == 0, result.stderr


# -- PgBouncer, an option -----------------------------------------------------------------


def test_pgbouncer_is_an_option_off_by_default() -> None:
    assert SERVICES["pgbouncer"]["profiles"] == ["pgbouncer"]
    for name in ("postgres", "dashboard", "worker"):
        assert "profiles" not in SERVICES[name]
    for name in ("dashboard", "worker"):  # they wait for it only when the profile is on
        dependency = SERVICES[name]["depends_on"]["pgbouncer"]
        assert dependency["required"] is False and dependency["condition"] == "service_healthy"


def test_storage_goes_to_postgres_by_default_and_to_pgbouncer_when_told() -> None:
    url = COMPOSE["x-hpo-environment"]["HPO_STORAGE"]
    assert expand_defaults(url) == "postgresql+psycopg://hpo:<POSTGRES_PASSWORD>@postgres:5432/hpo"
    with_bouncer = url.replace("${HPO_DB_HOST:-postgres}", "pgbouncer").replace(
        "${HPO_DB_PORT:-5432}", "6432")
    assert expand_defaults(with_bouncer).endswith("@pgbouncer:6432/hpo")
    example = (ROOT / ".env.example").read_text()
    for line in ("COMPOSE_PROFILES=pgbouncer", "HPO_DB_HOST=pgbouncer", "HPO_DB_PORT=6432"):
        assert line in example


def test_pgbouncer_is_debians_configured_by_the_tested_script() -> None:
    bouncer = SERVICES["pgbouncer"]
    assert bouncer["build"] == "deploy/pgbouncer"
    assert bouncer["environment"]["DB_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in bouncer  # reached by the other services only
    dockerfile = (ROOT / "deploy" / "pgbouncer" / "Dockerfile").read_text()
    assert "apt-get install -y --no-install-recommends pgbouncer" in dockerfile
    assert "USER postgres" in dockerfile  # PgBouncer refuses root
    assert "COPY entrypoint.sh" in dockerfile
    entrypoint = (ROOT / "deploy" / "pgbouncer" / "entrypoint.sh").read_text()
    assert "pool_mode = transaction" in entrypoint
