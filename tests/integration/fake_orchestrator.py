"""A stand-in for the orchestrator, for tests of its clients (the API, the CLI): it takes commands off the commands
stream and answers each as the orchestrator does, with the events it causes (causation_id = the command's id) appended
to the workflow's log, then the read model with the command folded in. Its rules are just enough of the approval
workflow to give each kind of outcome."""

from datetime import UTC, datetime
from typing import Self

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.commands import (
    COMMAND,
    ApproveWorkflow,
    ArchiveWorkflow,
    CancelWorkflow,
    Command,
    CreateWorkflow,
    ProcessWorkflow,
)
from contracts.events import (
    CommandRejected,
    Event,
    RejectionCode,
    TransitionTaken,
    WorkflowArchived,
    WorkflowCancelled,
    WorkflowCreated,
)
from contracts.state import Bookkeeping, InfraStatus, WorkflowState
from contracts.topology import Topology

Decision = tuple[list[Event], WorkflowState | None]


def approval_rules(command: Command, state: WorkflowState | None, now: datetime) -> Decision:
    """Just enough of the approval workflow to give each kind of outcome: create, process once, approve what waits
    for approval, cancel what has not ended, archive what has, refuse the rest."""

    def rejected(code: RejectionCode, reason: str) -> Decision:
        event = CommandRejected(
            workflow_id=command.workflow_id,
            command_id=command.message_id,
            command_kind=command.kind,
            code=code,
            reason=reason,
        )
        return [event], state

    if isinstance(command, CreateWorkflow):
        if state is not None:
            return rejected("already_exists", f"workflow {command.workflow_id} already exists")
        if command.workflow_type != "approval":
            return rejected("unknown_type", f"no workflow type {command.workflow_type!r}")
        created = WorkflowCreated(workflow_id=command.workflow_id, workflow_type="approval", input=command.input)
        new_state = WorkflowState(
            id=command.workflow_id,
            type="approval",
            business_state="Unprocessed",
            infra_status=InfraStatus.WAITING_FOR_EVENT,
            bookkeeping=Bookkeeping(started=True),
            created_at=now,
            updated_at=now,
        )
        if command.start:  # created and processed in one decision, as the engine does
            moved = TransitionTaken(
                workflow_id=command.workflow_id, trigger="process", source="Unprocessed", dest="Sending To Queue"
            )
            processing = {
                "business_state": "Sending To Queue",
                "infra_status": InfraStatus.PROCESSING_STEP,
                "attempt": 1,
            }
            return [created, moved], new_state.model_copy(update=processing)
        return [created], new_state
    if state is None:
        return rejected("unknown_workflow", f"workflow {command.workflow_id} does not exist")
    if isinstance(command, ProcessWorkflow) and state.business_state == "Unprocessed":
        processing = state.model_copy(
            update={"business_state": "Sending To Queue", "infra_status": InfraStatus.PROCESSING_STEP, "attempt": 1}
        )
        moved = TransitionTaken(
            workflow_id=command.workflow_id, trigger="process", source="Unprocessed", dest="Sending To Queue"
        )
        return [moved], processing
    if isinstance(command, ApproveWorkflow) and state.business_state == "Waiting For Approval":
        finished = state.model_copy(update={"business_state": "Finished", "infra_status": InfraStatus.COMPLETED})
        moved = TransitionTaken(
            workflow_id=command.workflow_id,
            trigger="approve",
            source="Waiting For Approval",
            dest="Finished",
            actor=command.approver,
            note=command.comment,
        )
        return [moved], finished
    if isinstance(command, CancelWorkflow) and state.business_state not in ("Cancelled", "Finished"):
        cancelled = state.model_copy(update={"business_state": "Cancelled", "infra_status": InfraStatus.CANCELLED})
        return [WorkflowCancelled(workflow_id=command.workflow_id, reason=command.reason)], cancelled
    if isinstance(command, ArchiveWorkflow) and state.business_state == "Cancelled" and not state.archived:
        return [WorkflowArchived(workflow_id=command.workflow_id)], state.model_copy(update={"archived": True})
    return rejected("not_allowed", f"cannot {command.kind} a workflow in state {state.business_state}")


class FakeOrchestrator:
    """Takes commands off the commands stream and answers each as the orchestrator does: the events it causes
    (causation_id = the command's id) appended to the workflow's log, then the read model with the command folded in."""

    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self.js, self.topology = js, topology
        self.received: list[Command] = []

    async def __aenter__(self) -> Self:
        self.kv = await self.js.key_value(self.topology.state_bucket)
        self.subscription = await self.js.subscribe(
            self.topology.commands_subject(), stream=self.topology.commands_stream, cb=self._answer
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.subscription.unsubscribe()

    async def _answer(self, message) -> None:
        command = COMMAND.validate_json(message.data)
        self.received.append(command)
        state = await read_state(self.kv, command.workflow_id)
        events, new_state = approval_rules(command, state, datetime.now(UTC))
        sequence = 0
        for event in events:
            caused = event.model_copy(update={"causation_id": command.message_id})
            subject = self.topology.events_subject(command.workflow_id)
            sequence = (await self.js.publish(subject, caused.model_dump_json().encode())).seq
        if new_state is not None:
            applied = (*new_state.bookkeeping.applied_commands, command.message_id)
            books = new_state.bookkeeping.model_copy(update={"applied_commands": applied})
            folded = new_state.model_copy(update={"last_sequence": sequence, "bookkeeping": books})
            await self.kv.put(command.workflow_id, folded.model_dump_json().encode())


async def read_state(kv: KeyValue, workflow_id: str) -> WorkflowState | None:
    try:
        entry = await kv.get(workflow_id)
    except KeyNotFoundError:
        return None
    assert entry.value is not None
    return WorkflowState.model_validate_json(entry.value)
