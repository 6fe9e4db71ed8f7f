"""A client that speaks plain NATS: nats-py and JSON dicts, nothing from this project but the prefix of the names.
It drives a workflow through the real orchestrator, learns each command's outcome from the workflow's events
(`causation_id` = the command's `message_id`) and from the read model, and every kind of bad message it can send
ends in a clear error: a `CommandRejected` with code `invalid` in the workflow's log, and a dead letter that says why.
The README's section "Driving it from any NATS client" describes what this test does."""

import asyncio
import json
import uuid
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from tests.conftest import a_pull_waits, eventually

pytestmark = pytest.mark.integration

WAIT_S = 20.0


class RawClient:
    """What any NATS client needs: the subjects, stream and bucket names derived from the prefix."""

    def __init__(self, nc: Client, prefix: str) -> None:
        self.nc, self.js, self.prefix = nc, nc.jetstream(), prefix
        self.log: list[dict[str, Any]] = []  # the workflow's events, in order, as the client receives them
        self.dead_letters: list[tuple[bytes, dict[str, str]]] = []

    async def follow(self, workflow_id: str) -> None:
        """Read the workflow's log from its start, then live: an ordered consumer on its events subject."""

        async def keep(message) -> None:
            self.log.append(json.loads(message.data))

        await self.js.subscribe(
            f"{self.prefix}.events.{workflow_id}", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=keep
        )

        async def keep_dead(message) -> None:
            self.dead_letters.append((message.data, dict(message.headers or {})))

        await self.js.subscribe(
            f"{self.prefix}.dead.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=keep_dead
        )

    async def send(self, workflow_id: str, command: dict[str, Any]) -> Any:
        """Publish a command; its message_id as Nats-Msg-Id makes a repeat within the dedup window a no-op."""
        return await self.js.publish(
            f"{self.prefix}.commands.{workflow_id}",
            json.dumps(command).encode(),
            headers={"Nats-Msg-Id": command["message_id"]},
        )

    async def send_bytes(self, workflow_id: str, data: bytes) -> Any:
        return await self.js.publish(f"{self.prefix}.commands.{workflow_id}", data)

    def caused_by(self, command_id: str) -> list[dict[str, Any]]:
        return [event for event in self.log if event["causation_id"] == command_id]

    async def outcome(self, command_id: str) -> list[dict[str, Any]]:
        """The events a command caused, once there are any: the orchestrator appends them all at once."""
        return await eventually(lambda: self.caused_by(command_id), WAIT_S)

    async def state(self, workflow_id: str) -> dict[str, Any]:
        entry = await (await self.js.key_value(f"{self.prefix}_state")).get(workflow_id)
        assert entry.value is not None
        return json.loads(entry.value)


def command(kind: str, workflow_id: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "message_id": f"{kind}-{uuid.uuid4().hex[:8]}", "workflow_id": workflow_id, **fields}


@pytest.fixture
async def client(nats_url, nc, topology, start_service) -> RawClient:
    start_service("orchestrator", nats_url, topology, WF_SEND_FAILURE_RATE="0", WF_SWEEP_EVERY_S="0.5")
    raw = RawClient(nc, topology.prefix)  # the prefix is all this client takes from the project

    async def streams_ready() -> bool:  # the orchestrator creates them as it starts
        try:
            await raw.js.stream_info(f"{topology.prefix.upper()}_DEAD")
            return True
        except NotFoundError:
            return False

    await eventually(streams_ready, WAIT_S)
    return raw


async def test_a_raw_client_creates_and_processes_a_workflow_and_reads_each_outcome(client):
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    await client.follow(workflow_id)
    create = command("create", workflow_id, workflow_type="approval", input={"amount": 12})
    process = command("process", workflow_id)
    too_early = command("approve", workflow_id, approver="ann")

    for message in (create, process, too_early):
        await client.send(workflow_id, message)
    again = await client.send(workflow_id, process)  # the same message id: dropped by the broker

    created = await client.outcome(create["message_id"])
    processed = await client.outcome(process["message_id"])
    [refused] = await client.outcome(too_early["message_id"])
    assert again.duplicate is True
    assert [event["type"] for event in created][:2] == ["WorkflowCreated", "WorkflowStarted"]
    assert created[0]["input"] == {"amount": 12}
    assert processed[0]["type"] == "TransitionTaken" and processed[0]["trigger"] == "process"
    assert (refused["type"], refused["code"], refused["command_id"]) == (
        "CommandRejected",
        "not_allowed",
        too_early["message_id"],
    )
    assert "cannot approve" in refused["reason"]

    async def read_model_caught_up() -> dict[str, Any] | None:
        state = await client.state(workflow_id)
        return state if too_early["message_id"] in state["bookkeeping"]["applied_commands"] else None

    state = await eventually(read_model_caught_up, WAIT_S)
    assert (state["business_state"], state["infra_status"]) == ("Sending To Queue", "Processing Step")


BAD_COMMANDS = {
    "malformed JSON": (b'{"kind": "approve", "message_id": ', "Invalid JSON"),
    "a wrong type": (
        b'{"kind": "approve", "message_id": "bad-type", "workflow_id": "{id}", "approver": 7}',
        "approver: Input should be a valid string",
    ),
    "an unknown kind": (b'{"kind": "explode", "message_id": "bad-kind", "workflow_id": "{id}"}', "'explode'"),
    "an unknown field": (
        b'{"kind": "approve", "message_id": "bad-field", "workflow_id": "{id}", "colour": "red"}',
        "colour: Extra inputs are not permitted",
    ),
    "a mismatched workflow id": (
        b'{"kind": "approve", "message_id": "bad-id", "workflow_id": "someone-else"}',
        "does not match the subject",
    ),
    # What only the processors and the broker's timers may send, sent by a client: taken on their own subjects only.
    "a job's result": (
        b'{"kind": "complete_job", "message_id": "forged-result", "workflow_id": "{id}", "job_id": "{id}-2-1", '
        b'"output": 0.99}',
        "a complete_job command is taken only on",
    ),
    "a timer": (
        b'{"kind": "fire_timer", "message_id": "forged-timer", "workflow_id": "{id}", "timer_id": "deadline"}',
        "a fire_timer command is taken only on",
    ),
}


@pytest.mark.malformed_messages
@pytest.mark.parametrize("case", list(BAD_COMMANDS))
async def test_a_bad_command_is_rejected_in_the_log_and_dead_lettered_with_the_reason(client, case):
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    await client.follow(workflow_id)
    create = command("create", workflow_id)
    await client.send(workflow_id, create)
    await client.outcome(create["message_id"])
    body, reason = BAD_COMMANDS[case]
    body = body.replace(b"{id}", workflow_id.encode())

    await client.send_bytes(workflow_id, body)

    [rejected] = await eventually(lambda: [event for event in client.log if event["type"] == "CommandRejected"], WAIT_S)
    assert rejected["code"] == "invalid"
    assert rejected["reason"].startswith("invalid command: ") and reason in rejected["reason"], rejected["reason"]
    readable_id = json.loads(body)["message_id"] if case != "malformed JSON" else None
    if readable_id:  # the client learns the outcome of its own message id
        assert rejected["command_id"] == rejected["causation_id"] == readable_id
    [(dead_body, headers)] = await eventually(lambda: [dead for dead in client.dead_letters if dead[0] == body], WAIT_S)
    assert reason in headers["Wf-Error"], headers
    assert headers["Wf-Subject"] == f"{client.prefix}.commands.{workflow_id}"


async def test_a_command_over_64_kib_is_refused_by_the_broker(client):
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    huge = command("create", workflow_id, input={"blob": "x" * (65 * 1024)})

    with pytest.raises(JetStreamError) as refused:
        await client.send(workflow_id, huge)

    assert "exceeds maximum" in (refused.value.description or ""), refused.value


async def publish_by_hand(nats_url: str, subject: bytes, body: bytes) -> None:
    """What only a client writing the protocol itself can send: a subject that is not UTF-8."""
    host, port = nats_url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false}\r\nPUB ' + subject + b" %d\r\n" % len(body) + body + b"\r\nPING\r\n")
    await writer.drain()
    assert await reader.readline() == b"PONG\r\n"
    writer.close()


async def test_a_subject_that_is_not_utf8_is_dead_lettered_and_the_orchestrator_goes_on(client, nats_url):
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    await client.follow(workflow_id)
    body = json.dumps(command("create", "anything")).encode()

    await publish_by_hand(nats_url, f"{client.prefix}.commands.".encode() + b"\xff\xfe", body)

    [(_, headers)] = await eventually(lambda: [dead for dead in client.dead_letters if dead[0] == body], WAIT_S)
    assert headers["Wf-Subject"] == f"{client.prefix}.commands.\ufffd\ufffd", headers
    create = command("create", workflow_id)
    await client.send(workflow_id, create)
    assert [event["type"] for event in await client.outcome(create["message_id"])][0] == "WorkflowCreated"


async def test_a_command_the_broker_passes_over_is_swept_into_the_dead_letters(client):
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    await client.follow(workflow_id)
    body = json.dumps(command("create", "anything")).encode()

    # (the consumer's name is all this takes from the project beyond the prefix, and only to know the pull waits)
    await a_pull_waits(client.js, f"{client.prefix.upper()}_COMMANDS", "orchestrator")
    await client.send_bytes("\x7f", body)  # the stream empty, the orchestrator's pull waiting: passed over
    create = command("create", workflow_id)
    await client.send(workflow_id, create)  # applied and acked: the consumer's ack floor moves past the first
    await client.outcome(create["message_id"])

    [(_, headers)] = await eventually(lambda: [dead for dead in client.dead_letters if dead[0] == body], WAIT_S)
    assert headers["Wf-Subject"] == f"{client.prefix}.commands.\\x7f"
    # Kept either way: passed over by the broker and swept (as a rule), or, when the orchestrator's waiting pull ran
    # out just as it came in (seen on CI's busy machine), delivered and dead-lettered as not matching its subject.
    # (tests/integration/test_sweeper.py pins the sweep itself down.)
    reasons = ("never delivered to the orchestrator", "workflow_id anything does not match the subject")
    assert headers["Wf-Error"].startswith(reasons), headers

    async def stream_empty() -> bool:
        return (await client.js.stream_info(f"{client.prefix.upper()}_COMMANDS")).state.messages == 0

    await eventually(stream_empty, WAIT_S)
