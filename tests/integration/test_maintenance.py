"""The invariant checker finds each kind of corruption, and a rebuild of the read model from the log is exact."""

import json
from datetime import UTC, datetime

import pytest

from contracts.chain import digest
from contracts.commands import (
    ApproveWorkflow,
    CancelWorkflow,
    CompleteJob,
    CreateWorkflow,
    ProcessWorkflow,
    RejectWorkflow,
)
from contracts.events import CommandRejected, RecordedEvent, TransitionTaken, WorkflowArchived, WorkflowCreated
from contracts.state import WorkflowState
from runtime.eventlog import current_entries, read_events
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.maintenance import check, rebuild
from services.orchestrator.store import JetStreamEventStore

pytestmark = pytest.mark.integration

CONTEXT = Context(now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC), send_fails=lambda *_: False)


@pytest.fixture
async def store(nc, js, topology):
    return JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)


async def apply(store, command) -> WorkflowState:
    state = await store.load(command.workflow_id)
    state = await store.append(SHIPPED.decide(state, command, CONTEXT))
    await store.save(state)
    return state


async def finished(store, workflow_id: str) -> list:
    """A workflow driven to Finished through a reject; returns the commands it was sent."""
    commands = [CreateWorkflow(workflow_id=workflow_id), ProcessWorkflow(workflow_id=workflow_id)]
    await apply(store, commands[0])
    state = await apply(store, commands[1])
    for next_command in (RejectWorkflow(workflow_id=workflow_id), ApproveWorkflow(workflow_id=workflow_id)):
        assert state.bookkeeping.pending_job is not None
        state = await apply(
            store,
            CompleteJob(workflow_id=workflow_id, job_id=state.bookkeeping.pending_job.job_id, result={"output": 0.9}),
        )
        state = await apply(store, next_command)
        commands.append(next_command)
    assert state.business_state == "Finished"
    return commands


async def test_a_clean_log_passes_every_check(js, topology, store):
    sent = [(c.workflow_id, c.message_id) for wf in ("a", "b") for c in await finished(store, wf)]
    report = await check(js, topology, sent)
    assert report.ok, report.summary()
    assert (report.workflows, report.events) == (2, 2 * 11)


async def test_an_illegal_path_is_found(js, topology, store):
    await apply(store, CreateWorkflow(workflow_id="bad"))
    forged = TransitionTaken(workflow_id="bad", trigger="approve", source="Unprocessed", dest="Finished")
    await js.publish(topology.events_subject("bad"), forged.model_dump_json().encode())
    report = await check(js, topology)
    assert len(report.illegal) == 1 and report.illegal[0].startswith("bad:") and "approve" in report.illegal[0]


async def test_a_command_applied_twice_is_found(js, topology, store):
    await apply(store, CreateWorkflow(workflow_id="dup"))
    process = ProcessWorkflow(workflow_id="dup")
    await apply(store, process)
    state = await apply(store, CancelWorkflow(workflow_id="dup"))
    # What a broken idempotency check would write: the process command decided again, after another command.
    again = CommandRejected(
        workflow_id="dup",
        causation_id=process.message_id,
        command_id=process.message_id,
        command_kind="process",
        code="not_allowed",
        reason="decided a second time",
    )
    await store.append(SHIPPED.decision(state, [again]))
    report = await check(js, topology)
    assert report.applied_twice == [f"dup: {process.message_id}"]


async def test_a_command_the_log_never_answered_is_found(js, topology, store):
    commands = await finished(store, "answered")
    lost = ApproveWorkflow(workflow_id="answered")
    report = await check(js, topology, [(c.workflow_id, c.message_id) for c in [*commands, lost]])
    assert report.unanswered == [f"answered: {lost.message_id}"]


async def test_a_read_model_that_differs_from_the_replay_is_found(js, topology, store):
    await finished(store, "drifted")
    bucket = await js.key_value(topology.state_bucket)
    drifted = (await store.load("drifted")).model_copy(update={"business_state": "Error"})
    await bucket.put("drifted", drifted.model_dump_json().encode())
    report = await check(js, topology)
    assert report.read_model_mismatches == ["drifted"]


@pytest.mark.malformed_messages
async def test_rebuilding_the_read_model_from_the_log_gives_identical_state(nc, js, topology, store):
    for workflow_id in ("r1", "r2", "r3"):
        await finished(store, workflow_id)
    await apply(store, CreateWorkflow(workflow_id="r4"))
    bucket = await js.key_value(topology.state_bucket)
    before = await current_entries(js, topology, topology.state_bucket)
    await bucket.put("r1", b"{}")  # damage, which the rebuild must not keep

    progress = []
    rebuilt = await rebuild(nc, js, topology, lambda done, total: progress.append((done, total)))

    after = await current_entries(js, topology, topology.state_bucket)
    assert rebuilt == 4 and after == before
    assert progress[-1][0] == progress[-1][1] > 0
    assert (await check(js, topology)).ok


async def test_a_hash_chain_broken_by_a_removed_event_is_named_at_its_first_broken_link(js, topology, store):
    await finished(store, "cut-middle")
    await finished(store, "intact")
    sequences = [recorded.sequence for recorded in await read_events(js, topology, "cut-middle")]
    await js.delete_msg(topology.events_stream, sequences[4])
    report = await check(js, topology)
    assert len(report.broken_chains) == 1, report.broken_chains
    assert report.broken_chains[0].startswith(f"cut-middle: at sequence {sequences[5]}, its link")


async def test_events_cut_from_the_end_of_a_log_show_against_the_read_models_head(js, topology, store):
    await finished(store, "cut-end")
    last = (await read_events(js, topology, "cut-end"))[-1].sequence
    await js.delete_msg(topology.events_stream, last)
    report = await check(js, topology)
    assert report.broken_chains == [
        f"cut-end: at sequence {last - 1}, the log ends before its recorded head at {last}: cut"
    ]


async def test_a_log_saved_before_events_were_chained_is_linked_on_from_its_last_stored_event(js, topology, store):
    # An unchained log and its snapshot, as written before the chain existed.
    created = WorkflowCreated(workflow_id="legacy", workflow_type="approval")
    stored = await js.publish(topology.events_subject("legacy"), created.model_dump_json().encode())
    legacy = SHIPPED.fold(WorkflowState(id="legacy"), [RecordedEvent(sequence=stored.seq, event=created)])
    await (await js.key_value(topology.state_bucket)).put("legacy", legacy.model_dump_json().encode())
    assert legacy.bookkeeping.chain_head is None

    appended = await store.append(SHIPPED.decision(legacy, [WorkflowArchived(workflow_id="legacy")]))

    last = (await js.get_msg(topology.events_stream, seq=appended.last_sequence, direct=True)).data
    first = (await js.get_msg(topology.events_stream, seq=stored.seq, direct=True)).data
    assert json.loads(last)["previous_hash"] == digest(first)
    assert appended.bookkeeping.chain_head == digest(last)
