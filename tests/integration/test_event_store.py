"""One contract, two stores: the in-memory fake must behave as the JetStream store does."""

from datetime import UTC, datetime

import pytest

from contracts.commands import CancelWorkflow, CreateWorkflow, ProcessWorkflow
from contracts.state import WorkflowState
from services.orchestrator.domain.engine import Context, decide
from services.orchestrator.store import ConcurrencyConflict, InMemoryEventStore, JetStreamEventStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SEND_OK = Context(now=NOW, send_fails=lambda *_: False)


@pytest.fixture(params=["memory", "jetstream"])
async def store(request, topology, nc, js):
    if request.param == "memory":
        return InMemoryEventStore()
    return JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)


async def created(store, workflow_id="w1") -> WorkflowState:
    state = await store.load(workflow_id)
    return await store.append(state, decide(state, CreateWorkflow(workflow_id=workflow_id), SEND_OK))


async def test_an_unknown_workflow_loads_as_not_existing(store):
    state = await store.load("nobody")
    assert not state.exists and state.last_sequence == 0


async def test_appended_events_are_loaded_back_in_order_with_their_sequences(store):
    state = await created(store)
    state = await store.append(state, decide(state, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    loaded = await store.load("w1")
    assert loaded == state
    assert loaded.business_state == "Sending To Queue" and loaded.pending_job is not None
    assert loaded.last_sequence == state.last_sequence > 0


async def test_append_based_on_a_stale_state_conflicts_and_writes_nothing(store):
    stale = await created(store)
    fresh = await store.append(stale, decide(stale, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    with pytest.raises(ConcurrencyConflict):
        await store.append(stale, decide(stale, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    assert await store.load("w1") == fresh


async def test_creating_an_existing_subject_conflicts(store):
    await created(store)
    never_created = WorkflowState(id="w1")
    with pytest.raises(ConcurrencyConflict):
        await store.append(never_created, decide(never_created, CreateWorkflow(workflow_id="w1"), SEND_OK))


async def test_each_workflow_has_its_own_sequence_of_appends(store):
    one, two = await created(store, "w1"), await created(store, "w2")
    assert (await store.load("w1")).id == one.id and (await store.load("w2")).id == two.id
    await store.append(one, decide(one, ProcessWorkflow(workflow_id="w1"), SEND_OK))  # not blocked by w2's appends


async def test_load_folds_the_events_after_the_snapshot(store):
    state = await created(store)
    await store.save(state)
    later = await store.append(state, decide(state, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    assert await store.load("w1") == later


async def test_the_snapshot_never_moves_backwards(store):
    older = await created(store)
    newer = await store.append(older, decide(older, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    await store.save(newer)
    await store.save(older)
    assert await store.load("w1") == newer


async def test_a_single_event_based_on_a_stale_state_conflicts_and_writes_nothing(store):
    stale = await created(store)
    fresh = await store.append(stale, decide(stale, CancelWorkflow(workflow_id="w1"), SEND_OK))
    assert len(decide(stale, CancelWorkflow(workflow_id="w1"), SEND_OK)) == 1
    with pytest.raises(ConcurrencyConflict):
        await store.append(stale, decide(stale, CancelWorkflow(workflow_id="w1", reason="again"), SEND_OK))
    assert await store.load("w1") == fresh and fresh.infra_status == "Cancelled"
