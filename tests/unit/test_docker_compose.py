"""docker-compose.yml starts what the project has: every service's command is a real
entry point (a `cbdc` command line the parser accepts, or a locust file that exists) and
every CBDC_* variable it sets is a setting the project reads. (No Docker engine needed.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cbdc.cli import UsageError, build_parser
from cbdc.settings import ENV_PREFIX, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_ROOT = "/app/"  # where the Dockerfile copies the project
_DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def interpolated(value: Any) -> Any:
    """Compose's `${VAR:-default}`, with every variable left at its default."""
    if isinstance(value, str):
        return _DEFAULTED.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolated(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolated(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return dict(interpolated(document)["services"])


def test_it_runs_the_whole_network_and_locust_under_the_load_profile(
        services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "central-bank", "bank-a", "bank-b",
                             "locust-master", "locust-worker"}
    for name in ("locust-master", "locust-worker"):
        assert services[name]["profiles"] == ["load"]
    for name in ("postgres", "redis", "central-bank", "bank-a", "bank-b"):
        assert "profiles" not in services[name]
        assert services[name]["healthcheck"]["test"], name
    for name in ("postgres", "redis", "central-bank", "bank-a", "bank-b"):
        assert services[name]["volumes"], f"{name} keeps its data in a volume"


def test_every_command_is_an_entry_point_of_the_project(services: dict[str, Any]) -> None:
    parser = build_parser()
    checked = 0
    for name, service in services.items():
        command = service.get("command")
        if command is None or "build" not in service:
            continue  # an upstream image (postgres, redis) runs its own
        program, *rest = command
        if program == "cbdc":
            try:
                parser.parse_args(rest)
            except UsageError as exc:
                pytest.fail(f"{name}: `cbdc {' '.join(rest)}` is refused: {exc}")
        else:
            assert program == "locust", name
            path = rest[rest.index("-f") + 1]
            assert path.startswith(IMAGE_ROOT), name
            assert (REPO_ROOT / path.removeprefix(IMAGE_ROOT)).is_file(), path
        checked += 1
    assert checked == 5


def test_every_cbdc_variable_is_a_setting_the_project_reads(
        services: dict[str, Any]) -> None:
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    seen = set()
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if variable.startswith(ENV_PREFIX):
                assert variable in known, f"{name} sets {variable}, which nothing reads"
                seen.add(variable)
                Settings.model_validate({variable.removeprefix(ENV_PREFIX).lower(): value})
    assert {"CBDC_DATABASE_URL", "CBDC_REDIS_URL", "CBDC_ADMIN_TOKEN"} <= seen


def test_the_image_holds_every_package_of_the_project() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for package in ("cbdc", "settlement", "central_bank", "commercial_bank", "wallet_tui",
                    "loadtest"):
        assert f"COPY {package} ./{package}" in dockerfile
