"""Hypothesis against the NATS surface: generated messages published to the command subjects, with the real
orchestrator running. Valid commands with mutated fields, arbitrary JSON, arbitrary bytes, deep nesting, payloads
around the size limit, and subjects whose workflow id token is odd (wildcards, control characters, too long).

Each message must end where its sender can see it: refused at publish with an error; or taken by the orchestrator
and recorded in the workflow's log (the events it caused, or a CommandRejected); or kept in the dead-letter stream
with a readable error and, where the subject names a valid workflow id, rejected in that workflow's log. Afterwards
the orchestrator is healthy, applies a valid command, has nothing left to deliver, and the checker finds every log
legal and the read model equal to its replay.

Bounded and repeatable: a fixed number of examples, derandomized; no shrinking, so a failure costs one example's wait.
Hypothesis runs in a thread of its own and hands each example to the test's event loop, where the NATS client is."""

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from itertools import count

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy
from pydantic import TypeAdapter, ValidationError

from contracts.commands import COMMAND, Command, CreateWorkflow
from contracts.errors import printable
from contracts.events import CommandRejected
from contracts.ids import WorkflowId
from contracts.topology import MAX_COMMAND_BYTES
from runtime.eventlog import last_sequence, read_events
from services.launcher.nats_server import free_port
from services.orchestrator.maintenance import check
from tests.conftest import ServiceProcess, eventually
from tests.integration.driving import Driver

pytestmark = [pytest.mark.integration, pytest.mark.malformed_messages]  # on purpose: placeholders and bad input

EXAMPLES = 150
WAIT_S = 20.0
POISON_WAIT_S = 40.0  # a poison command is delivered max_deliver (20) times, 1 s apart, before it is dead-lettered
WORKFLOW_ID = TypeAdapter(WorkflowId)

# A few workflows most commands go to, so that commands find them in many states; and tokens no workflow id has.
KNOWN_IDS = ["fz-a", "fz-b", "fz-c"]
ODD_IDS = ["*", ">", "a*", "b>", "\x00", "bell\x07", "tab\x0bfeed\x0c", "ünïcode", "x" * 65, "a.b", "", "%2A", "$JS"]
# nats-server 2.15 stores a message whose subject ends with DEL (0x7f) and may never deliver it: the orchestrator's
# sweeper dead-letters it once a later command is acked (docs/decisions/0011; tests/integration/test_raw_nats.py).
# Left out here, where each message's outcome is awaited before the next is sent.
NEVER_DELIVERED = "\x7f"
KINDS = [
    "create",
    "process",
    "approve",
    "reject",
    "cancel",
    "retry",
    "archive",
    "terminate",
    "complete_job",
    "fail_job",
    "fire_timer",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
workflow_id_tokens = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    st.sampled_from(ODD_IDS),
    st.text(max_size=8).filter(lambda token: NEVER_DELIVERED not in token),
)
# Mostly ids a command may have; some longer than a command id may be (up to a message id's 200, and beyond).
message_ids = st.one_of(st.from_regex(r"\A[A-Za-z0-9_:.-]{1,16}\Z"), st.integers(120, 210).map(lambda n: "m" * n))


@st.composite
def command_fields(draw, workflow_id: str) -> dict:
    """A command as valid as the contract asks, for a workflow and a kind, before any mutation."""
    kind = draw(st.sampled_from(KINDS))
    fields = {"kind": kind, "workflow_id": workflow_id, "message_id": draw(message_ids)}
    job = st.sampled_from([f"{workflow_id}-{visit}-{tries}" for visit in (1, 2, 3) for tries in (1, 2)])
    match kind:
        case "create":
            durations = st.sampled_from(["amount", "step_timeout_s", "manager_deadline_s"])
            fields |= {
                "workflow_type": draw(st.sampled_from(["approval", "expense", "unknown"])),
                "input": draw(st.dictionaries(durations, json_values)),
                "start": draw(st.booleans()),
            }
        case "approve" | "reject":
            fields |= {"approver": draw(st.sampled_from(["ann", "fin-ann", "fin-bob", "director"]))}
        case "complete_job":
            fields |= {"job_id": draw(job), "output": draw(st.floats(0, 1, exclude_max=True))}
        case "fail_job":
            fields |= {"job_id": draw(job), "error": "boom", "retryable": draw(st.booleans())}
        case "fire_timer":
            fields |= {"timer_id": draw(st.sampled_from(["timeout-1", "retry-1", "deadline-1", "deadline-2"]))}
    return fields


@st.composite
def mutated(draw, fields: dict) -> dict:
    """The command as it is, or with one field replaced, removed or added."""
    field = draw(st.sampled_from(sorted(fields)))
    match draw(st.sampled_from(["none", "replace", "remove", "add"])):
        case "replace":
            return fields | {field: draw(json_values)}
        case "remove":
            return {name: value for name, value in fields.items() if name != field}
        case "add":
            return fields | {draw(st.text(min_size=1, max_size=10)): draw(json_values)}
    return fields


def nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def create_with_nested_input(depth: int) -> bytes:
    return b'{"kind": "create", "workflow_id": "fz-a", "input": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


def create_of_about(size: int, workflow_id: str) -> bytes:
    """A create command of about `size` bytes (the broker takes MAX_COMMAND_BYTES at most), cut short at times."""
    command = json.dumps({"kind": "create", "workflow_id": workflow_id, "input": {"blob": "x" * size}}).encode()
    return command[: size + 100]


@st.composite
def messages(draw) -> tuple[str, bytes, dict[str, str] | None]:
    """A workflow id token for the subject, a payload, and headers a client may add."""
    token = draw(workflow_id_tokens)
    named = draw(st.sampled_from([token, token, token, KNOWN_IDS[0]]))  # now and then another workflow's command
    payload = draw(
        st.one_of(
            command_fields(named).flatmap(mutated).map(lambda fields: json.dumps(fields).encode()),
            json_values.map(lambda value: json.dumps(value).encode()),
            st.binary(max_size=64),
            st.integers(1, 30_000).map(nested_array),
            st.integers(1, 5_000).map(create_with_nested_input),
            st.integers(-200, 200).map(lambda excess: create_of_about(MAX_COMMAND_BYTES + excess, named)),
        )
    )
    content_types = st.sampled_from(["application/json", "text/plain", "application/octet-stream", "nonsense"])
    headers = draw(st.none() | st.dictionaries(st.sampled_from(["content-type", "Content-Type"]), content_types))
    return token, payload, headers


def as_command(payload: bytes, token: str) -> Command | None:
    """What the contract reads in a payload, when it is a command for the subject's workflow."""
    try:
        command = COMMAND.validate_json(payload)
    except ValidationError:
        return None
    return command if command.workflow_id == token else None


def claimed_id(payload: bytes) -> str | None:
    """The message id an unreadable message gives, if it gives one."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data.get("message_id") if isinstance(data, dict) and isinstance(data.get("message_id"), str) else None


def valid_workflow_id(token: str) -> bool:
    try:
        WORKFLOW_ID.validate_python(token)
        return True
    except ValidationError:
        return False


@dataclass
class Sent:
    subject: str
    token: str
    payload: bytes
    command: Command | None  # when the payload is a command for the subject's workflow
    log_mark: int  # the workflow's last sequence before it was sent
    dead_mark: int  # how many dead letters there were before it was sent


class CommandSurface:
    """Publishes to the command subjects as any NATS client may, and finds where each message ended."""

    def __init__(self, js, topology) -> None:
        self.js, self.topology = js, topology
        self.unique = count()
        self.dead_letters: list = []  # every dead letter, in order (read live: a direct get garbles unicode headers)

    async def start(self) -> "CommandSurface":
        async def keep(letter) -> None:
            self.dead_letters.append(letter)

        subject = self.topology.dead_subject(">")
        await self.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=keep)
        return self

    async def send(self, token: str, payload: bytes, headers: dict[str, str] | None = None) -> Sent | str:
        """The message as published; or, when the client or the broker refused it, the error it gave."""
        subject = self.topology.commands_subject(token)
        command = as_command(payload, token)
        if command is not None:  # a fresh id, so that its outcome is told apart from earlier ones
            command = command.model_copy(update={"message_id": f"fz{next(self.unique)}", "correlation_id": None})
            payload = command.model_dump_json().encode()
        log_mark = await last_sequence(self.js, self.topology, token) if valid_workflow_id(token) else 0
        dead_mark = len(self.dead_letters)
        try:
            await self.js.publish(subject, payload, timeout=5, headers=headers)
        except (NatsError, ValueError) as refused:
            return f"{type(refused).__name__}: {refused}"
        return Sent(subject, token, payload, command, log_mark, dead_mark)

    async def outcome(self, sent: Sent) -> str | None:
        """Where the message ended, once it has: None while it has not."""
        if sent.command is not None:
            logged = await self.logged_since(sent, sent.log_mark)
            caused = [event for event in logged if event.causation_id == sent.command.message_id]
            return f"in the log: {', '.join(event.type for event in caused)}" if caused else None
        error = await self.dead_letter(sent)
        if error is None:
            return None
        if valid_workflow_id(sent.token):
            logged = await self.logged_since(sent, sent.log_mark)
            rejected = [event for event in logged if isinstance(event, CommandRejected)]
            if not rejected and (claimed := claimed_id(sent.payload)):  # an id rejected before is rejected once
                logged = await self.logged_since(sent, 0)
                rejected = [event for event in logged if getattr(event, "command_id", None) == claimed]
            if not rejected:
                return None
            assert rejected[0].code == "invalid" and rejected[0].reason.startswith("invalid command: "), rejected[0]
        return f"dead-lettered: {error}"

    async def logged_since(self, sent: Sent, sequence: int) -> list:
        return [recorded.event for recorded in await read_events(self.js, self.topology, sent.token, sequence)]

    async def dead_letter(self, sent: Sent) -> str | None:
        """The error the dead letter of this message gives, once it is there (checked to be the only one)."""
        letters = [
            letter
            for letter in self.dead_letters[sent.dead_mark :]
            if letter.data == sent.payload and letter.headers.get("Wf-Subject") == printable(sent.subject)
        ]
        if not letters:
            return None
        [letter] = letters
        error = letter.headers.get("Wf-Error", "")
        assert error.strip(), letter.headers
        return error


@dataclass
class Orchestrator:
    port: int
    service: ServiceProcess

    async def healthy(self) -> bool:
        assert self.service.is_running, "the orchestrator exited"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{self.port}/healthz")).is_success
        except httpx.HTTPError:
            return False


@pytest.fixture
async def orchestrator(nats_url, topology, js, start_service):
    port = free_port()
    running = Orchestrator(port, start_service("orchestrator", nats_url, topology, WF_ORCHESTRATOR_PORT=str(port)))
    await eventually(running.healthy, timeout_s=30)
    yield running
    assert running.service.is_running, "the orchestrator exited"


@pytest.fixture
async def surface(js, topology, orchestrator) -> CommandSurface:
    return await CommandSurface(js, topology).start()


async def test_every_message_on_the_command_subjects_ends_visibly_and_the_orchestrator_goes_on(
    js, topology, orchestrator, surface
):
    loop = asyncio.get_running_loop()
    outcomes: Counter[str] = Counter()

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(POISON_WAIT_S + 10)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        # hypothesis's HealthCheckMeta.__iter__ is unannotated: pyright takes its items for the metaclass
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
    )
    @given(message=messages())
    def every_message_ends_visibly(message: tuple[str, bytes, dict[str, str] | None]) -> None:
        sent = on_loop(surface.send(*message))
        note(f"sent: {sent!r}")
        if isinstance(sent, str):
            assert sent.split(":", 1)[1].strip(), "refused without a reason"
            outcomes["refused at publish"] += 1
            return
        outcome = on_loop(eventually(lambda: surface.outcome(sent), timeout_s=POISON_WAIT_S))
        outcomes[outcome.split(":")[0]] += 1

    await asyncio.to_thread(every_message_ends_visibly)

    assert set(outcomes) == {"refused at publish", "in the log", "dead-lettered"}, outcomes  # every path was taken

    assert await orchestrator.healthy()
    driver = Driver(js, topology)
    await driver.send(CreateWorkflow(workflow_id="after-the-fuzz", start=True))
    await driver.reaches("after-the-fuzz", "Sending To Queue")
    consumer = await js.consumer_info(topology.commands_stream, "orchestrator")
    assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0), consumer
    report = await check(js, topology)
    assert report.ok, report.summary()


# What the fuzzing found, each kept as a case of its own.


UNPARSABLE = {
    # Python's json module and FastStream's decoding of the batch raised RecursionError.
    "nested too deep": (nested_array(9273), None, "message: Invalid JSON: recursion limit exceeded"),
    # FastStream decoded the body as its content type says, raised, and failed every command of the batch.
    "not the JSON its content type says": (b"{nope", {"content-type": "application/json"}, "message: Invalid JSON"),
}


@pytest.mark.parametrize("case", list(UNPARSABLE))
async def test_a_body_the_parsers_choke_on_is_dead_lettered_and_rejected_and_its_batch_applied(surface, case):
    payload, headers, error = UNPARSABLE[case]
    sent = await surface.send("unparsable", payload, headers)
    fine = await surface.send("unparsable", json.dumps({"kind": "create", "workflow_id": "unparsable"}).encode())

    outcome = await eventually(lambda: surface.outcome(sent), timeout_s=WAIT_S)

    assert outcome.startswith(f"dead-lettered: {error}"), outcome
    applied = await eventually(lambda: surface.outcome(fine), timeout_s=WAIT_S)
    assert applied == "in the log: WorkflowCreated, WorkflowStarted", applied


async def test_an_invalid_command_with_an_id_too_long_for_a_command_is_rejected_under_an_id_of_its_own(surface):
    body = {"kind": "approve", "workflow_id": "long-id", "message_id": "m" * 190, "colour": "red"}
    sent = await surface.send("long-id", json.dumps(body).encode())  # its rejection's id once outgrew a message id

    outcome = await eventually(lambda: surface.outcome(sent), timeout_s=WAIT_S)

    assert outcome.startswith("dead-lettered: approve.message_id: String should match pattern"), outcome


ODD_SUBJECT_TOKENS = {
    # nats-py could not parse the delivery of a subject holding a vertical tab or form feed: it dropped its connection.
    "a vertical tab": "\x0bx",
    "a form feed": "form\x0cfeed",
    # nats-server did not deliver the literal subject `<prefix>.commands.>` to a `*` filter once a timer was stored.
    "the wildcard >": ">",
}


@pytest.mark.parametrize("case", list(ODD_SUBJECT_TOKENS))
async def test_a_message_on_a_subject_once_never_delivered_is_dead_lettered(surface, orchestrator, case):
    create = json.dumps({"kind": "create", "workflow_id": "timed", "start": True}).encode()
    timed = await surface.send("timed", create)  # the timeout of its step is a timer, stored in the commands stream
    await eventually(lambda: surface.outcome(timed), timeout_s=WAIT_S)

    sent = await surface.send(ODD_SUBJECT_TOKENS[case], b"{}")

    outcome = await eventually(lambda: surface.outcome(sent), timeout_s=WAIT_S)
    assert outcome.startswith("dead-lettered: message: Unable to extract tag"), outcome
    assert await orchestrator.healthy()


async def test_a_command_that_fails_on_every_delivery_is_dead_lettered_after_the_last(js, topology, surface):
    # A log the orchestrator cannot read makes every command of that workflow fail, however often it is delivered.
    await js.publish(topology.events_subject("poisoned"), b"not an event")
    sent = await surface.send("poisoned", json.dumps({"kind": "process", "workflow_id": "poisoned"}).encode())

    error = await eventually(lambda: surface.dead_letter(sent), timeout_s=POISON_WAIT_S)

    max_deliver = topology.orchestrator_consumer().max_deliver
    unreadable_event = "ValidationError: message: Invalid JSON: expected ident at line 1 column 2"
    assert error == f"not applied after {max_deliver} deliveries: {unreadable_event}", error

    # Kept as a dead letter first, acked after that (once recording the rejection in the unreadable log failed).
    async def settled() -> bool:
        consumer = await js.consumer_info(topology.commands_stream, "orchestrator")
        return (consumer.num_pending, consumer.num_ack_pending) == (0, 0)

    assert await eventually(settled, timeout_s=WAIT_S)
