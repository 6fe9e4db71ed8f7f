"""The NATS users and permissions of deploy/nats/auth.conf, on a nats-server of its own that runs the repository's
config (the session's server takes anyone). Every service runs as its own user and a workflow goes through to Finished
with no permission refused; what a user must not do is refused, and the server logs it with the user.

auth.conf names the streams and subjects of the default prefix `wf`: these tests use it, on their own server."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from websockets.asyncio.client import connect
from wfworker import Job, Worker

from contracts.commands import CompleteJob, CreateWorkflow
from contracts.events import TransitionTaken, WorkflowCancelled
from contracts.ids import job_id
from contracts.jobs import ProcessJob
from contracts.topology import ORCHESTRATOR_CONSUMER, Topology
from runtime.settings import inbox_prefix
from runtime.streams import ensure_topology
from services.launcher.nats_server import NatsServer, free_port
from services.launcher.nats_users import SERVICE_USERS, NatsUsers
from tests.conftest import a_pull_waits, bearer, eventually
from tests.integration.driving import SEED, Driver, Luck, first_id, taking_jobs

pytestmark = pytest.mark.integration

TOPOLOGY = Topology()  # prefix `wf`: the names auth.conf grants
REFUSED_WITHIN_S = 2.0
luck = Luck(SEED, send_failure_rate=0.25)


def violations(server: NatsServer) -> list[str]:
    """The server's log lines for refused publishes and subscriptions, e.g.
    `"$G/user:processor" - Publish Violation - Subject "wf.events.wf-1"`."""
    assert server.log_file is not None, "secured_nats writes one"
    return [line for line in server.log_file.read_text().splitlines() if " Violation - " in line]


@dataclass
class Connection:
    """A client connected to `server` as `user`, with the errors the server sent it: a refusal comes as one."""

    user: str
    server: NatsServer
    nc: Client
    errors: list[Exception] = field(default_factory=list)

    async def refused(self, what: Literal["Publish", "Subscription"], subject: str, attempt: Callable) -> None:
        """`attempt` gets no answer; the client is told why, and the server logs the refusal with the user."""
        try:
            await attempt()
        except NatsTimeoutError:
            pass  # a refused request: the server drops it, so no answer comes
        told = f'permissions violation for {what} to "{subject}"'.lower()
        logged = f'"$G/user:{self.user}" - {what} Violation - Subject "{subject}"'

        def refusal_seen() -> bool:
            return any(told in str(error).lower() for error in self.errors) and any(
                logged in line for line in violations(self.server)
            )

        await eventually(refusal_seen, REFUSED_WITHIN_S)


@pytest.fixture
def users() -> NatsUsers:
    return NatsUsers.generate()


@pytest.fixture
def secured_nats(tmp_path, users) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log", users=users).start()
    yield server
    server.stop()


@pytest.fixture
async def connect_as(secured_nats, users) -> AsyncIterator[Callable[[str], Awaitable[Connection]]]:
    connections: list[Connection] = []

    async def connect_as(user: str) -> Connection:
        errors: list[Exception] = []

        async def keep(error: Exception) -> None:
            errors.append(error)

        # As a service would: replies on inboxes of its own. A client keeps nats-py's default (_INBOX).
        inbox = {"inbox_prefix": inbox_prefix(user)} if user in SERVICE_USERS else {}
        nc = await nats.connect(users.url(user, secured_nats.url), error_cb=keep, **inbox)
        connection = Connection(user, secured_nats, nc, errors)
        connections.append(connection)
        return connection

    yield connect_as
    for connection in connections:
        await connection.nc.close()


@pytest.fixture
async def admin(connect_as) -> Connection:
    """Sets the streams and buckets up, as the orchestrator would, and reads what the others may not."""
    connection = await connect_as("admin")
    await ensure_topology(connection.nc.jetstream(), TOPOLOGY)
    return connection


async def stored(admin: Connection, stream: str) -> int:
    return (await admin.nc.jetstream().stream_info(stream)).state.messages


async def healthy(*urls: str) -> bool:
    async with httpx.AsyncClient(timeout=1) as http:
        try:
            return all([(await http.get(f"{url}/healthz")).status_code == 200 for url in urls])
        except httpx.HTTPError:
            return False


def retried_then_approvable(workflow_id: str) -> bool:
    """Its first send to the processors fails (a durable timer retries it), the retry's output asks for approval."""
    visit = 2  # Unprocessed is visit 1, Sending To Queue visit 2
    return (
        luck.send_fails(workflow_id, visit, 1)
        and not luck.send_fails(workflow_id, visit, 2)
        and luck.output(job_id(workflow_id, visit, 2)) > 0.25
    )


async def test_every_service_runs_as_its_own_user_and_a_workflow_finishes_with_nothing_refused(
    secured_nats, users, connect_as, start_service
):
    api_port, broadcaster_port = free_port(), free_port()
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0.25", "WF_SWEEP_EVERY_S": "0.5"}
    settings |= {"WF_API_PORT": str(api_port), "WF_BROADCASTER_PORT": str(broadcaster_port)}
    for service in SERVICE_USERS:
        start_service(service, secured_nats.url, TOPOLOGY, **users.service_environment(service), **settings)
    api_url, broadcaster_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{broadcaster_port}"
    # Ready once the orchestrator has created the streams they use (they may not create them).
    await eventually(lambda: healthy(api_url, broadcaster_url), timeout_s=60)
    client, observer = await connect_as("client"), await connect_as("admin")
    driver = Driver(observer.nc.jetstream(), TOPOLOGY)
    workflow_id = first_id(retried_then_approvable)

    # A command the broker's consumer passes over (the stream empty, the orchestrator's pull waiting): its sweeper
    # dead-letters it below.
    await a_pull_waits(observer.nc.jetstream(), TOPOLOGY.commands_stream, ORCHESTRATOR_CONSUMER)
    await client.nc.jetstream().publish(TOPOLOGY.commands_subject("\x7f"), b"passed over")
    # Any NATS client starts it; the orchestrator, a durable timer and the processor take it to the approval.
    await Driver(client.nc.jetstream(), TOPOLOGY).send(CreateWorkflow(workflow_id=workflow_id, start=True))
    await driver.reaches(workflow_id, "Waiting For Approval", timeout_s=30)
    assert await driver.has(workflow_id, "StepAttemptFailed")  # its retry came from the timer

    # The api decides it, with the outcome from the log and the read model, and reads through each of its paths.
    async with httpx.AsyncClient(base_url=api_url, headers=bearer("ann"), timeout=30) as api:
        approved = await api.post(f"/workflows/{workflow_id}/approve", json={})
        assert approved.status_code == 200, approved.text
        assert approved.json()["workflow"]["business_state"] == "Finished"

        async def listed() -> bool:  # from the index, kept by the indexer as its own user
            finished = await api.get("/workflows", params={"business_state": "Finished"})
            if finished.status_code == 503:  # the indexer has not made its tables yet
                return False
            assert finished.status_code == 200, finished.text
            return [workflow["id"] for workflow in finished.json()] == [workflow_id]

        await eventually(listed)
        inbox = await api.get("/me/inbox")
        assert inbox.status_code == 200 and inbox.json() == [], inbox.text
        logged = (await api.get(f"/workflows/{workflow_id}/events")).json()
        assert logged[-1]["event"]["dest"] == "Finished"
        assert "approval" in {workflow_type["name"] for workflow_type in (await api.get("/types")).json()}

    # The broadcaster replays the log to a client that resumes (its live feed is what made it healthy).
    url = f"ws://127.0.0.1:{broadcaster_port}/ws?since=0&workflow_id={workflow_id}"
    async with connect(url, additional_headers=bearer("ann")) as socket:
        replayed = [json.loads(await socket.recv()) for _ in range(len(logged) + 1)]
    assert [message["sequence"] for message in replayed[1:]] == [item["sequence"] for item in logged]

    # A bulk action: the api keeps it in its bucket and sends its commands, the broadcaster relays its progress.
    async with httpx.AsyncClient(base_url=api_url, headers=bearer("ann"), timeout=30) as api:
        bulk = await api.post("/workflows/bulk/archive?business_state=Finished")
        assert bulk.status_code == 202 and bulk.json()["total"] == 1, bulk.text
        async with connect(
            f"ws://127.0.0.1:{broadcaster_port}/ws?bulk={bulk.json()['id']}", additional_headers=bearer("ann")
        ) as socket:
            progress = [json.loads(text) async for text in socket]
        assert (progress[-1]["done"], progress[-1]["remaining"]) == (1, 0), progress
        assert (await api.get(f"/bulk/{bulk.json()['id']}")).json()["done"] == 1

    # What cannot be read is kept in the dead letters, by the orchestrator (a command, and the one passed over) and
    # the processor (a job).
    await client.nc.jetstream().publish(TOPOLOGY.commands_subject(workflow_id), b"not json")
    await observer.nc.jetstream().publish(TOPOLOGY.jobs_subject("approval", "process"), b"not json")

    async def all_dead_lettered() -> bool:
        return await stored(observer, TOPOLOGY.dead_stream) == 3

    await eventually(all_dead_lettered)
    dead = [await observer.nc.jetstream().get_msg(TOPOLOGY.dead_stream, seq=seq) for seq in (1, 2, 3)]
    # Kept either way: passed over by the broker and swept (as a rule), or, when the orchestrator's waiting pull ran out
    # just as it came in (seen once on a busy machine), delivered and dead-lettered as unreadable.
    # (tests/integration/test_sweeper.py pins the sweep itself down.)
    kept = {letter.data: letter.headers["Wf-Error"] for letter in dead}
    assert b"passed over" in kept, kept
    await eventually(lambda: driver.has(workflow_id, "CommandRejected"))  # and the sender learns why

    await driver.assert_consistent(workflow_id)
    assert violations(secured_nats) == []


async def test_the_processor_answers_jobs_but_cannot_append_an_event(admin, connect_as):
    processor = await connect_as("processor")
    js = processor.nc.jetstream()
    result = CompleteJob(workflow_id="wf-1", job_id="wf-1-2-1", result={"output": 0.5})
    assert (await js.publish(TOPOLOGY.results_subject("wf-1"), result.model_dump_json().encode())).seq == 1

    finished = TransitionTaken(workflow_id="wf-1", trigger="approve", source="Waiting For Approval", dest="Finished")
    forged = finished.model_dump_json().encode()
    event = TOPOLOGY.events_subject("wf-1")
    await processor.refused("Publish", event, lambda: js.publish(event, forged, timeout=1))
    batched = TOPOLOGY.events_subject("wf-2")  # the way the events of a batch go: no answer asked
    await processor.refused("Publish", batched, lambda: processor.nc.publish(batched, forged))
    assert await stored(admin, TOPOLOGY.events_stream) == 0


async def test_a_teams_worker_takes_its_jobs_and_reads_whether_their_workflow_was_cancelled(admin, secured_nats, users):
    """The `worker` user, as the worker library runs it: its consumer, the fetch, the workflow's last event (a cancel
    while the job waited in the queue: the job is not run) and the ack, with nothing refused."""
    js = admin.nc.jetstream()
    cancelled = WorkflowCancelled(workflow_id="wf-1", reason="no longer needed")
    await js.publish(TOPOLOGY.events_subject("wf-1"), cancelled.model_dump_json().encode())
    job = ProcessJob(workflow_id="wf-1", job_id="wf-1-2-1", workflow_type="approval", step="process", attempt=1,
                     try_number=1)  # fmt: skip
    await js.publish(TOPOLOGY.jobs_subject("approval", "process"), job.model_dump_json().encode())
    ran: list[str] = []

    async def recorded(job: Job[dict]) -> dict:
        ran.append(job.id)
        return {"output": 0.9}

    worker = Worker(users.url("worker", secured_nats.url), name="team-worker",
                    connect_options={"inbox_prefix": inbox_prefix("worker")})  # fmt: skip
    worker.add_step("approval", "process", recorded)
    async with taking_jobs(worker):
        abandoned = worker.metrics.jobs.labels(step="process", outcome="abandoned")
        await eventually(lambda: abandoned._value.get() == 1)
    assert ran == []
    assert await stored(admin, TOPOLOGY.jobs_stream) == 0  # acked
    assert violations(secured_nats) == []


async def test_a_client_publishes_commands_and_nothing_else(admin, connect_as):
    client = await connect_as("client")
    js = client.nc.jetstream(timeout=1)  # a refused request is answered by no one
    command = CreateWorkflow(workflow_id="wf-1")
    ack = await js.publish(TOPOLOGY.commands_subject("wf-1"), command.model_dump_json().encode())
    assert ack.stream == TOPOLOGY.commands_stream

    event = TOPOLOGY.events_subject("wf-1")
    await client.refused("Publish", event, lambda: js.publish(event, b"{}"))
    job = TOPOLOGY.jobs_subject("approval", "process")
    forged = ProcessJob(
        workflow_id="wf-1", job_id="wf-1-2-1", workflow_type="approval", step="process", attempt=1, try_number=1
    )
    await client.refused("Publish", job, lambda: js.publish(job, forged.model_dump_json().encode()))
    assert await stored(admin, TOPOLOGY.events_stream) == await stored(admin, TOPOLOGY.jobs_stream) == 0
    # Nor a job's result or a timer: those subjects are the processor's and the broker's.
    result = CompleteJob(workflow_id="wf-1", job_id="wf-1-2-1", result={"output": 0.99}).model_dump_json().encode()
    for subject in (TOPOLOGY.results_subject("wf-1"), TOPOLOGY.fired_subject("wf-1")):
        await client.refused("Publish", subject, lambda: js.publish(subject, result))
    assert await stored(admin, TOPOLOGY.commands_stream) == 1  # the create only

    # The read model: neither through JetStream's API, nor on its subjects, nor from the api's replies.
    bucket_stream = TOPOLOGY.kv_stream(TOPOLOGY.state_bucket)
    info, get = f"$JS.API.STREAM.INFO.{bucket_stream}", f"$JS.API.STREAM.MSG.GET.{bucket_stream}"
    await client.refused("Publish", info, lambda: js.key_value(TOPOLOGY.state_bucket))
    await client.refused("Publish", get, lambda: client.nc.request(get, b'{"last_by_subj": "$KV.wf_state.wf-1"}', 1))
    for subject in (TOPOLOGY.kv_subjects(TOPOLOGY.state_bucket), f"{inbox_prefix('api')}.>"):
        await client.refused("Subscription", subject, lambda: client.nc.subscribe(subject))
