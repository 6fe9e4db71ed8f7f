"""The system as compose.yaml runs it, on a real Docker engine: the images built from the Dockerfile, one container per
service, the generated secrets, NATS users and TLS. Workflows are driven through the API container (HTTPS) and a raw
NATS client, followed on the broadcaster's WebSocket, across a kill of the orchestrator and NATS containers; the
cluster profile loses the NATS node an orchestrator is connected to mid-run, killed or paused (gone silent). Skipped, with the reason, where no Docker engine answers
(scripts/bootstrap.sh --test starts one where it can)."""

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from itertools import count, islice
from pathlib import Path

import httpx
import nats
import pytest
import websockets

from contracts.auth import Role, TokenHolder
from contracts.ids import job_id
from runtime.randomness import Randomness
from runtime.tokens import write_tokens_file
from services.api.settings import MAX_WAIT_S
from services.launcher.nats_server import free_ports
from services.launcher.nats_users import NatsUsers
from services.launcher.tls import TlsFiles
from tests.conftest import PROJECT, TEST_TOKENS, bearer, eventually

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

SEED = 515151
chance = Randomness(SEED)
SERVICES = ("nats", "postgres", "orchestrator", "processor", "indexer", "notifier", "api", "broadcaster")
CLUSTER_SERVICES = (*SERVICES, "nats-2", "nats-3", "orchestrator-2", "processor-2")
HEALTHY_WITHIN_S = 240


def _engine_problem() -> str | None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return "needs the docker client and docker-compose (scripts/bootstrap.sh --test installs them)"
    answer = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False
    )
    if answer.returncode != 0:
        return f"no Docker engine answers: {answer.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def base_images() -> dict[str, str]:
    """The base images: this machine's local stand-ins for the public ones (no registry answers here), made once."""
    if problem := _engine_problem():
        pytest.skip(problem)
    made = subprocess.run(
        ["bash", str(PROJECT / "scripts/local_images.sh")], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in made.split())


class Compose:
    """One compose project of this test: its own name, secrets, published ports and volumes."""

    def __init__(self, secrets: Path, base_images: dict[str, str], cluster: bool) -> None:
        self.project = f"wftest{uuid.uuid4().hex[:8]}"
        self.profile = ["--profile", "cluster"] if cluster else []
        api_port, broadcaster_port, nats_port = free_ports(3, preferred=18_000)
        self.api, self.ws = f"https://127.0.0.1:{api_port}", f"wss://127.0.0.1:{broadcaster_port}/ws"
        self.nats = f"tls://127.0.0.1:{nats_port}"
        self.users = NatsUsers.generate()
        self.users.write(secrets / "nats.env")
        tls = TlsFiles.load_or_create(secrets / "tls")
        tls.key.chmod(0o644)  # the containers' users read it (compose mounts a file secret as it is)
        self.ca = tls.ca_cert
        tokens = secrets / "api-tokens.json"
        write_tokens_file(tokens, {TEST_TOKENS["ann"]: TokenHolder(name="ann", roles=frozenset(Role))})
        tokens.chmod(0o644)  # digests only
        self.env = {
            **os.environ,
            **base_images,
            **self.users.file_environment(),
            "DOCKER_BUILDKIT": "0",  # Debian's dockerd 20.10 has no BuildKit plugin here
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "WF_API_TOKENS_FILE": str(tokens),
            "WF_TLS_DIR": str(tls.directory),
            "WF_API_HOST_PORT": str(api_port),
            "WF_BROADCASTER_HOST_PORT": str(broadcaster_port),
            "WF_NATS_HOST_PORT": str(nats_port),
            "WF_SEED": str(SEED),
            "WF_SEND_FAILURE_RATE": "0",
            "WF_PUBLIC_BROADCASTER_URL": self.ws,
        }
        if cluster:  # deploy/cluster.env, as README tells Compose v1 users to export it
            for line in (PROJECT / "deploy/cluster.env").read_text().splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.partition("=")
                    self.env[name] = value

    def run(self, *arguments: str, timeout_s: float = 600) -> str:
        command = ["docker-compose", "-p", self.project, "-f", str(PROJECT / "compose.yaml"), *self.profile, *arguments]
        done = subprocess.run(
            command, env=self.env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode == 0, f"{' '.join(arguments)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def health(self) -> dict[str, str]:
        """Each container's health (or state, without a health check), by compose service name."""
        ids = self.run("ps", "-q").split()
        if not ids:
            return {}
        template = (
            '{{index .Config.Labels "com.docker.compose.service"}} '
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        )
        inspected = subprocess.run(
            ["docker", "inspect", "-f", template, *ids], capture_output=True, text=True, check=False
        )
        return dict(line.split() for line in inspected.stdout.splitlines() if line.strip())

    async def until_healthy(self, services: tuple[str, ...]) -> None:
        def all_healthy() -> bool:
            health = self.health()
            return all(health.get(service) == "healthy" for service in services)

        await eventually(all_healthy, timeout_s=HEALTHY_WITHIN_S, interval_s=1)

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        listed = subprocess.run(
            ["docker", "ps", "-a", "-q", "--filter", label], capture_output=True, text=True, check=False
        )
        return listed.stdout.split()

    def check_invariants(self) -> str:
        """The maintenance check (every log a legal path, read model and index equal to the replay), run in the
        orchestrator's container against the containers' NATS, as the admin user: its summary; it fails on a
        problem."""
        return self.run(
            "exec", "-T",
            "-e", "NATS_USER=admin",
            "-e", f"NATS_PASSWORD={self.env['WF_NATS_ADMIN_PASSWORD']}",
            "-e", f"WF_INDEX_URL=postgresql+asyncpg://workflows:{self.env['WF_POSTGRES_PASSWORD']}@postgres:5432/workflows",
            "orchestrator", "python", "-m", "services.orchestrator.maintenance", "check",
        )  # fmt: skip

    def node_serving(self, user: str) -> str:
        """The NATS node with the most connections of the NATS user `user` (from each node's /connz)."""

        def connections(node: str) -> int:
            url = "http://127.0.0.1:8222/connz?auth=true&limit=1024"
            listed = json.loads(self.run("exec", "-T", node, "wget", "-q", "-O", "-", url))
            return sum(connection.get("authorized_user") == user for connection in listed["connections"] or [])

        return max(("nats", "nats-2", "nats-3"), key=connections)

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", timeout_s=180)


@pytest.fixture
def compose_factory(tmp_path: Path, base_images: dict[str, str]) -> Iterator:
    started: list[Compose] = []

    def up(cluster: bool = False) -> Compose:
        project = Compose(tmp_path, base_images, cluster)
        started.append(project)
        project.run("up", "-d", "--build")
        return project

    yield up
    for project in started:
        print(project.run("logs", "--no-color", "--tail", "300"))  # pytest shows it when the test failed
        project.down()
        assert project.containers() == [], "compose down left containers behind"


def approvable(prefix: str, how_many: int) -> list[str]:
    """Workflow ids whose first job's output (seeded, WF_SEND_FAILURE_RATE=0) leads to an approval, not an Error."""
    ids = (f"{prefix}-{i}" for i in count())
    return list(islice((wf for wf in ids if chance.draw("output", job_id(wf, 2, 1)) > 0.25), how_many))


async def command(http: httpx.AsyncClient, path: str, body: dict | None = None) -> httpx.Response:
    """POST a command as a careful client does across a failover: under an Idempotency-Key, sent again with the same
    key while the API answers 503 (its broker connection moving to another node) or 202 (no outcome yet: the cluster
    elects new stream leaders after a node is lost, which took over a minute on a busy 2-core machine), so it is
    applied once and its outcome read when there is one. (A create takes no key: sent again, it is refused as
    `already_exists`, which says the first one was applied.)"""
    key = f"test-{uuid.uuid4().hex}"

    async def answered() -> httpx.Response | None:
        answer = await http.post(path, json=body, params={"wait": MAX_WAIT_S}, headers={"Idempotency-Key": key})
        return None if answer.status_code in (202, 503) else answer

    return await eventually(answered, timeout_s=240, interval_s=0.5)


async def business_state(http: httpx.AsyncClient, workflow_id: str) -> str | None:
    answer = await http.get(f"/workflows/{workflow_id}")
    return answer.json()["business_state"] if answer.status_code == 200 else None


async def until_all(http: httpx.AsyncClient, workflow_ids: list[str], state: str, timeout_s: float = 120) -> None:
    async def all_there() -> bool:
        return all([await business_state(http, wf) == state for wf in workflow_ids])

    await eventually(all_there, timeout_s=timeout_s, interval_s=0.5)


async def publish_raw(compose: Compose, commands: list[dict]) -> None:
    """As a raw NATS client: the `client` user, over TLS, publishing JSON commands with their message ids."""
    password = compose.env["WF_NATS_CLIENT_PASSWORD"]
    context = ssl.create_default_context(cafile=str(compose.ca))
    connection = await nats.connect(compose.nats, user="client", password=password, tls=context)
    try:
        js = connection.jetstream()
        for command in commands:
            subject = f"wf.commands.{command['workflow_id']}"
            await js.publish(subject, json.dumps(command).encode(), headers={"Nats-Msg-Id": command["message_id"]})
    finally:
        await connection.drain()


async def test_compose_runs_every_service_and_a_kill_of_the_orchestrator_and_nats_loses_nothing(compose_factory):
    compose = compose_factory()
    await compose.until_healthy(SERVICES)
    over_http, over_nats = approvable("http", 3), approvable("raw", 2)
    everyone = over_http + over_nats
    verify = ssl.create_default_context(cafile=str(compose.ca))
    socket_url = f"{compose.ws}?token={TEST_TOKENS['ann']}"
    async with (
        httpx.AsyncClient(base_url=compose.api, headers=bearer("ann"), verify=verify, timeout=30) as http,
        websockets.connect(socket_url, ssl=verify) as socket,
    ):
        for wf in over_http:
            assert (await http.post("/workflows", json={"type": "approval", "workflow_id": wf})).status_code == 201
            assert (await http.post(f"/workflows/{wf}/process")).status_code == 200
        await publish_raw(
            compose,
            [
                {"kind": "create", "message_id": f"{wf}-c", "workflow_id": wf, "workflow_type": "approval"}
                for wf in over_nats
            ]
            + [{"kind": "process", "message_id": f"{wf}-p", "workflow_id": wf} for wf in over_nats],
        )
        # Killed while the jobs run: the broker's store and the consumers' positions are all that carries them.
        compose.run("kill", "orchestrator", "nats")
        compose.run("start", "nats", "orchestrator")
        await compose.until_healthy(SERVICES)
        await until_all(http, everyone, "Waiting For Approval")

        for wf in over_http:
            assert (await http.post(f"/workflows/{wf}/approve")).status_code == 200
        await publish_raw(
            compose,
            [{"kind": "approve", "message_id": f"{wf}-a", "workflow_id": wf, "approver": "ann"} for wf in over_nats],
        )
        await until_all(http, everyone, "Finished")

        # The WebSocket client saw every event of every log, in order, across the kill.
        logs = {
            wf: [item["sequence"] for item in (await http.get(f"/workflows/{wf}/events")).json()] for wf in everyone
        }
        seen: dict[str, list[int]] = {wf: [] for wf in everyone}
        while any(len(seen[wf]) < len(logs[wf]) for wf in everyone):
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
            if "event" in message and message["event"]["workflow_id"] in seen:
                seen[message["event"]["workflow_id"]].append(message["sequence"])
        assert seen == logs

    assert compose.check_invariants().startswith(f"{len(everyone)} workflows")  # it exits 1 on any problem


@pytest.mark.parametrize(
    ("lose", "bring_back"),
    [("kill", "start"), ("pause", "unpause")],  # paused, a node closes nothing: its clients must notice the silence
    ids=["killed", "silent"],
)
async def test_the_cluster_profile_finishes_every_workflow_when_a_nats_node_is_lost(compose_factory, lose, bring_back):
    compose = compose_factory(cluster=True)
    await compose.until_healthy(CLUSTER_SERVICES)
    workflows = approvable("cluster", 6)
    lost = compose.node_serving("orchestrator")  # mid-run, so the orchestrator must fail over to another node
    verify = ssl.create_default_context(cafile=str(compose.ca))
    async with httpx.AsyncClient(base_url=compose.api, headers=bearer("ann"), verify=verify, timeout=90) as http:
        for index, wf in enumerate(workflows):
            if index == len(workflows) // 2:
                compose.run(lose, lost)  # R3 streams keep a quorum of two
            created = await command(http, "/workflows", {"type": "approval", "workflow_id": wf})
            assert created.status_code == 201 or created.json().get("code") == "already_exists", created.text
            assert (await command(http, f"/workflows/{wf}/process")).status_code == 200
        await until_all(http, workflows, "Waiting For Approval", timeout_s=180)
        for wf in workflows:
            assert (await command(http, f"/workflows/{wf}/approve")).status_code == 200
        await until_all(http, workflows, "Finished")
    compose.run(bring_back, lost)
    await compose.until_healthy(CLUSTER_SERVICES)
    assert compose.check_invariants().startswith(f"{len(workflows)} workflows")  # it exits 1 on any problem
