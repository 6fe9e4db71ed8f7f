"""compose.yaml is a valid Compose file that runs NATS and every service. Checked with Debian's docker-compose, which
validates without a Docker engine (there is none here)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "compose.yaml"
CLUSTER_ENV = PROJECT / "deploy" / "cluster.env"


def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("docker-compose")
    if executable is None:
        message = "docker-compose is not installed (`make test` installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_compose_file_is_valid() -> None:
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def resolved(*args: str) -> dict:
    result = docker_compose(*args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_runs_nats_and_every_service() -> None:
    services = resolved()
    by_default = {name for name, service in services.items() if not service.get("profiles")}
    assert by_default == {"nats", "api", "orchestrator", "processor", "broadcaster"}
    assert services["nats"]["command"] == ["nats-server", "-c", "/etc/nats/single.conf"]
    assert services["orchestrator"]["environment"]["NATS_URL"] == "nats://nats:4222"


def test_the_cluster_profile_runs_three_nats_nodes_and_two_replicas_of_the_workers() -> None:
    # `--env-file` before the subcommand, as `docker compose --env-file deploy/cluster.env --profile cluster up`.
    services = resolved("--env-file", str(CLUSTER_ENV), "--profile", "cluster")
    in_profile = {name for name, service in services.items() if "cluster" in service.get("profiles", [])}
    assert in_profile == {"nats-2", "nats-3", "orchestrator-2", "processor-2"}
    nodes = ("nats", "nats-2", "nats-3")
    assert all(services[node]["command"] == ["nats-server", "-c", "/etc/nats/cluster.conf"] for node in nodes)
    assert len({services[node]["environment"]["NATS_SERVER_NAME"] for node in nodes}) == 3
    for name in ("api", "orchestrator", "orchestrator-2", "processor", "processor-2", "broadcaster"):
        environment = services[name]["environment"]
        assert environment["NATS_URL"].split(",") == [f"nats://{node}:4222" for node in nodes]
        assert environment["WF_REPLICAS"] == "3"
