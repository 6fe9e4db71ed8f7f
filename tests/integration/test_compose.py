"""compose.yaml is a valid Compose file that runs NATS and every service. Checked with Debian's docker-compose, which
validates without a Docker engine; tests/containers runs it on one."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy import make_url

from services.launcher.nats_users import COMPOSE_PASSWORDS, SERVICE_USERS, NatsUsers

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "compose.yaml"
CLUSTER_ENV = PROJECT / "deploy" / "cluster.env"
NATS_USERS = NatsUsers.generate()  # as data/secrets/nats.env gives them (one --env-file only in compose v1: the shell)


def docker_compose(
    *args: str,
    passwords: dict[str, str] = NATS_USERS.file_environment(),  # noqa: B008 (one set, made once)
) -> subprocess.CompletedProcess[str]:
    """docker-compose with `passwords` (by default all the env file holds) in its environment."""
    executable = shutil.which("docker-compose")
    if executable is None:
        message = "docker-compose is not installed (`make test` installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WF_NATS_") and name not in COMPOSE_PASSWORDS
    }
    environment |= passwords
    return subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def configuration(*args: str) -> dict:
    result = docker_compose(*args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def resolved(*args: str) -> dict:
    return configuration(*args)["services"]


def test_compose_runs_nats_and_every_service() -> None:
    services = resolved()
    by_default = {name for name, service in services.items() if not service.get("profiles")}
    assert by_default == {"nats", "api", "orchestrator", "processor", "broadcaster", "indexer", "notifier", "postgres"}
    assert services["nats"]["command"] == ["nats-server", "-c", "/etc/nats/single-tls.conf"]
    assert services["orchestrator"]["environment"]["NATS_URL"] == "tls://nats:4222"


def test_every_nats_node_syncs_each_write_unless_told_otherwise() -> None:
    nodes = {name: service for name, service in resolved("--profile", "cluster").items() if name.startswith("nats")}
    assert len(nodes) == 3
    assert {service["environment"]["NATS_SYNC_INTERVAL"] for service in nodes.values()} == {"always"}


def test_nats_runs_the_users_of_auth_conf_and_each_service_connects_as_its_own() -> None:
    services = resolved()
    assert NATS_USERS.server_environment().items() <= services["nats"]["environment"].items()
    for name in SERVICE_USERS:
        assert services[name]["environment"]["NATS_USER"] == name
        assert services[name]["environment"]["NATS_PASSWORD"] == NATS_USERS.passwords[name]


@pytest.mark.parametrize("missing", ["every one", "WF_POSTGRES_PASSWORD"])
def test_without_the_passwords_compose_says_where_they_are(missing: str) -> None:
    given = NATS_USERS.file_environment()
    passwords = {} if missing == "every one" else {name: value for name, value in given.items() if name != missing}
    result = docker_compose("config", "-q", passwords=passwords)
    assert result.returncode != 0
    assert "pass --env-file data/secrets/nats.env" in result.stderr


def test_the_notifier_signs_the_links_the_api_checks_with_one_secret_and_connects_as_its_own_user() -> None:
    services = resolved()
    notifier, api = services["notifier"], services["api"]
    assert notifier["environment"]["WF_LINK_SECRET"] == api["environment"]["WF_LINK_SECRET"]
    assert notifier["environment"]["NATS_USER"] == "notifier"
    assert "http://127.0.0.1:8005/healthz" in " ".join(notifier["healthcheck"]["test"])


def test_the_indexer_keeps_the_index_in_postgres_and_the_api_reads_the_same_database() -> None:
    services = resolved()
    indexer, api, postgres = services["indexer"], services["api"], services["postgres"]
    assert api["environment"]["WF_INDEX_URL"] == indexer["environment"]["WF_INDEX_URL"]
    url = make_url(indexer["environment"]["WF_INDEX_URL"])
    assert (url.drivername, url.host, url.port) == ("postgresql+asyncpg", "postgres", 5432)
    database = postgres["environment"]
    assert (url.database, url.username, url.password) == (
        database["POSTGRES_DB"],
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
    )
    assert url.password == NATS_USERS.compose_passwords["WF_POSTGRES_PASSWORD"]  # generated into the env file
    assert indexer["depends_on"] == {name: {"condition": "service_healthy"} for name in ("nats", "postgres")}
    assert api["depends_on"]["indexer"] == {"condition": "service_healthy"}  # the indexer makes the index's tables
    assert indexer["environment"]["WF_INDEXER_PORT"] == "8004"
    assert "http://127.0.0.1:8004/healthz" in " ".join(indexer["healthcheck"]["test"])
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_the_cluster_profile_runs_three_nats_nodes_and_two_replicas_of_the_workers() -> None:
    # `--env-file` before the subcommand, as `docker compose --env-file deploy/cluster.env --profile cluster up`.
    services = resolved("--env-file", str(CLUSTER_ENV), "--profile", "cluster")
    in_profile = {name for name, service in services.items() if "cluster" in service.get("profiles", [])}
    assert in_profile == {"nats-2", "nats-3", "orchestrator-2", "processor-2"}
    nodes = ("nats", "nats-2", "nats-3")
    assert all(services[node]["command"] == ["nats-server", "-c", "/etc/nats/cluster-tls.conf"] for node in nodes)
    assert len({services[node]["environment"]["NATS_SERVER_NAME"] for node in nodes}) == 3
    for name in ("api", "orchestrator", "orchestrator-2", "processor", "processor-2", "broadcaster", "indexer"):
        environment = services[name]["environment"]
        assert environment["NATS_URL"].split(",") == [f"tls://{node}:4222" for node in nodes]
        assert environment["WF_REPLICAS"] == "3"


def test_the_api_and_the_broadcaster_read_the_api_tokens_from_a_secret() -> None:
    services = resolved()
    for name in ("api", "broadcaster"):
        assert services[name]["environment"]["WF_API_TOKENS_FILE"] == "/run/secrets/api-tokens"
        assert {"source": "api-tokens"} in services[name]["secrets"]


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_nats_the_api_and_the_websocket_speak_tls_with_the_local_ca(cluster: bool) -> None:
    resolved_file = configuration(*(["--env-file", str(CLUSTER_ENV), "--profile", "cluster"] if cluster else []))
    services = resolved_file["services"]
    secrets = {source: Path(secret["file"]) for source, secret in resolved_file["secrets"].items()}

    assert secrets["tls-ca"].name == "ca.pem" and secrets["tls-key"].name == "server-key.pem"
    assert secrets["tls-ca"].parent == PROJECT / "data" / "secrets" / "tls"  # where services/launcher/tls.py writes
    for node in [name for name in services if name.startswith("nats")]:
        assert services[node]["command"][-1].endswith("-tls.conf")  # single-tls.conf, cluster-tls.conf: tls.conf
        assert {"source": "tls-key"} in services[node]["secrets"]
        assert services[node]["environment"]["NATS_TLS_KEY"] == "/run/secrets/tls-key"
    clients = {"api", "broadcaster", "orchestrator", "processor", "indexer"}
    for name in clients | ({"orchestrator-2"} if cluster else set()):
        environment = services[name]["environment"]
        assert all(url.startswith("tls://") for url in environment["NATS_URL"].split(","))
        assert environment["NATS_CA_FILE"] == "/run/secrets/tls-ca"
        assert {"source": "tls-ca"} in services[name]["secrets"]
    for name, port in (("api", 8000), ("broadcaster", 8001)):
        environment = services[name]["environment"]
        assert (environment["WF_TLS_CERT_FILE"], environment["WF_TLS_KEY_FILE"]) == (
            "/run/secrets/tls-cert",
            "/run/secrets/tls-key",
        )
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"https://127.0.0.1:{port}/healthz" in probe and "cafile='/run/secrets/tls-ca'" in probe
