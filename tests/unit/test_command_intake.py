"""The orchestrator's command intake: validate → handle → ack, or dead-letter (and record the rejection)."""

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter

from contracts.commands import ApproveWorkflow, CompleteJob
from contracts.topology import Topology
from services.orchestrator.intake import CommandIntake, DeadLetters

TOPOLOGY = Topology()
MAX_DELIVER = 3


class Message:
    def __init__(self, subject: str, data: bytes, delivered: int = 1, sequence: int = 7) -> None:
        self.subject, self.data, self.acked = subject, data, False
        self.metadata = SimpleNamespace(num_delivered=delivered, sequence=SimpleNamespace(stream=sequence))

    async def ack(self) -> None:
        self.acked = True


class Handler:
    def __init__(self, fails: Exception | None = None, rejecting_fails: bool = False) -> None:
        self.fails, self.rejecting_fails = fails, rejecting_fails
        self.handled: list = []
        self.rejected: list[tuple] = []

    async def handle(self, command) -> None:
        if self.fails:
            raise self.fails
        self.handled.append(command)

    async def reject_unreadable(self, workflow_id, command_id, kind, reason) -> None:
        if self.rejecting_fails:
            raise ConnectionError("broker gone")
        self.rejected.append((workflow_id, command_id, kind, reason))


class JetStream:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.published: dict[str, tuple[str, bytes, dict]] = {}  # by Nats-Msg-Id, as the broker deduplicates

    async def publish(self, subject: str, data: bytes, headers: dict):
        if self.fails:
            raise ConnectionError("broker gone")
        duplicate = headers["Nats-Msg-Id"] in self.published
        self.published[headers["Nats-Msg-Id"]] = (subject, data, headers)
        return SimpleNamespace(duplicate=duplicate)


def intake(handler: Handler, js: JetStream) -> tuple[CommandIntake, Counter]:
    kept = Counter("dead", "dead letters", registry=CollectorRegistry())
    return CommandIntake(TOPOLOGY, handler, DeadLetters(js, TOPOLOGY, kept), MAX_DELIVER), kept  # type: ignore[arg-type]


def apply(handler: Handler, js: JetStream, message: Message) -> tuple[bool, float]:
    command_intake, kept = intake(handler, js)
    # A stand-in for nats-py's Msg, with just what the intake uses of it.
    return asyncio.run(command_intake.apply(message)), kept._value.get()  # pyright: ignore[reportArgumentType]


APPROVE = ApproveWorkflow(workflow_id="wf-1", message_id="c-1", approver="ann")


def test_a_valid_command_is_handled_and_acked():
    handler, js = Handler(), JetStream()
    message = Message(TOPOLOGY.commands_subject("wf-1"), APPROVE.model_dump_json().encode())
    assert apply(handler, js, message) == (True, 0)
    assert handler.handled == [APPROVE] and message.acked and not js.published


@pytest.mark.parametrize(
    ("subject", "body", "reason", "rejected_as"),
    [
        ("wf.commands.wf-1", b"{not json", "Invalid JSON", ("wf-1", None, "unknown")),
        ("wf.commands.wf-1", b'{"kind": "approve", "message_id": "c-9"}', "workflow_id", ("wf-1", "c-9", "approve")),
        (
            "wf.commands.wf-2",
            APPROVE.model_dump_json().encode(),
            "does not match the subject",
            ("wf-2", "c-1", "approve"),
        ),
        (
            "wf.commands.wf-1",  # a job's result passed off as a client's command
            CompleteJob(workflow_id="wf-1", message_id="r-1", job_id="j-1", result={"output": 0.5})
            .model_dump_json()
            .encode(),
            "taken only on wf.results.wf-1",
            ("wf-1", "r-1", "complete_job"),
        ),
        ("wf.commands.bad id!", b"{}", "discriminator 'kind'", None),  # no workflow: no log to record it in
    ],
)
def test_an_unreadable_command_is_dead_lettered_its_rejection_recorded_and_acked(subject, body, reason, rejected_as):
    handler, js = Handler(), JetStream()
    message = Message(subject, body)
    assert apply(handler, js, message) == (True, 1)
    [(dead_subject, data, headers)] = js.published.values()
    assert dead_subject == TOPOLOGY.dead_subject("commands") and data == body
    assert reason in headers["Wf-Error"] and headers["Wf-Subject"] == subject
    assert headers["Nats-Msg-Id"] == f"{TOPOLOGY.commands_stream}-7"
    assert not handler.handled and message.acked
    if rejected_as is None:
        assert handler.rejected == []
    else:
        [(*who, why)] = handler.rejected
        assert tuple(who) == rejected_as and why.startswith("invalid command: ") and reason in why


def test_a_failure_before_the_last_delivery_is_left_for_redelivery():
    handler, js = Handler(fails=ConnectionError("broker gone")), JetStream()
    message = Message(TOPOLOGY.commands_subject("wf-1"), APPROVE.model_dump_json().encode(), delivered=MAX_DELIVER - 1)
    assert apply(handler, js, message) == (False, 0)
    assert not message.acked and not js.published


def test_a_failure_on_the_last_delivery_is_dead_lettered_with_its_error():
    handler, js = Handler(fails=RuntimeError("it broke")), JetStream()
    message = Message(TOPOLOGY.commands_subject("wf-1"), APPROVE.model_dump_json().encode(), delivered=MAX_DELIVER)
    assert apply(handler, js, message) == (True, 1)
    [(_, _, headers)] = js.published.values()
    assert headers["Wf-Error"] == f"not applied after {MAX_DELIVER} deliveries: RuntimeError: it broke"
    assert message.acked


def test_a_dead_letter_that_cannot_be_kept_leaves_the_message_unacked():
    handler, js = Handler(), JetStream(fails=True)
    message = Message(TOPOLOGY.commands_subject("wf-1"), b"{not json")
    assert apply(handler, js, message) == (False, 0)
    assert not message.acked and not handler.rejected


def test_a_rejection_that_cannot_be_recorded_is_retried_until_the_last_delivery():
    js = JetStream()
    early = Message(TOPOLOGY.commands_subject("wf-1"), b"{not json", delivered=1)
    assert apply(Handler(rejecting_fails=True), js, early) == (False, 1)
    assert not early.acked
    last = Message(TOPOLOGY.commands_subject("wf-1"), b"{not json", delivered=MAX_DELIVER)
    # Kept again under the same message id (the broker's deduplication): still one dead letter, now acked.
    assert apply(Handler(rejecting_fails=True), js, last) == (True, 0)
    assert last.acked and len(js.published) == 1
