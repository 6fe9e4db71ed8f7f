"""One contract, two stores: the in-memory fake must behave as the JetStream store does."""

import asyncio
from datetime import UTC, datetime

import pytest

from contracts.commands import CancelWorkflow, CreateWorkflow, FireTimer, ProcessWorkflow
from contracts.state import WorkflowState
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
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
    return await store.append(SHIPPED.decide(state, CreateWorkflow(workflow_id=workflow_id), SEND_OK))


async def test_an_unknown_workflow_loads_as_not_existing(store):
    state = await store.load("nobody")
    assert not state.exists and state.last_sequence == 0


async def test_appended_events_are_loaded_back_in_order_with_their_sequences(store):
    state = await created(store)
    state = await store.append(SHIPPED.decide(state, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    loaded = await store.load("w1")
    assert loaded == state
    assert loaded.business_state == "Sending To Queue" and loaded.bookkeeping.pending_job is not None
    assert loaded.last_sequence == state.last_sequence > 0


async def test_append_based_on_a_stale_state_conflicts_and_writes_nothing(store):
    stale = await created(store)
    fresh = await store.append(SHIPPED.decide(stale, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    with pytest.raises(ConcurrencyConflict):
        await store.append(SHIPPED.decide(stale, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    assert await store.load("w1") == fresh


async def test_a_decision_with_nothing_to_append_on_a_stale_state_conflicts(store):
    stale = await created(store)
    fresh = await store.append(SHIPPED.decide(stale, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    not_owed = FireTimer(workflow_id="w1", message_id="w1-retry-9-1", timer_id="retry-9-1")
    assert SHIPPED.decide(fresh, not_owed, SEND_OK).events == []
    with pytest.raises(ConcurrencyConflict):  # on a state that missed an event, "nothing to do" is not to be trusted
        await store.append(SHIPPED.decide(stale, not_owed, SEND_OK))
    assert await store.append(SHIPPED.decide(fresh, not_owed, SEND_OK)) == fresh


async def test_creating_an_existing_subject_conflicts(store):
    await created(store)
    never_created = WorkflowState(id="w1")
    with pytest.raises(ConcurrencyConflict):
        await store.append(SHIPPED.decide(never_created, CreateWorkflow(workflow_id="w1"), SEND_OK))


async def test_each_workflow_has_its_own_sequence_of_appends(store):
    one, two = await created(store, "w1"), await created(store, "w2")
    assert (await store.load("w1")).id == one.id and (await store.load("w2")).id == two.id
    await store.append(SHIPPED.decide(one, ProcessWorkflow(workflow_id="w1"), SEND_OK))  # not blocked by w2's appends


async def test_load_folds_the_events_after_the_snapshot(store):
    state = await created(store)
    await store.save(state)
    later = await store.append(SHIPPED.decide(state, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    assert await store.load("w1") == later


async def test_the_snapshot_never_moves_backwards(store):
    older = await created(store)
    newer = await store.append(SHIPPED.decide(older, ProcessWorkflow(workflow_id="w1"), SEND_OK))
    await store.save(newer)
    await store.save(older)
    assert await store.load("w1") == newer


async def test_a_single_event_based_on_a_stale_state_conflicts_and_writes_nothing(store):
    stale = await created(store)
    fresh = await store.append(SHIPPED.decide(stale, CancelWorkflow(workflow_id="w1"), SEND_OK))
    assert len(SHIPPED.decide(stale, CancelWorkflow(workflow_id="w1"), SEND_OK).events) == 1
    with pytest.raises(ConcurrencyConflict):
        await store.append(SHIPPED.decide(stale, CancelWorkflow(workflow_id="w1", reason="again"), SEND_OK))
    assert await store.load("w1") == fresh and fresh.infra_status == "Cancelled"


async def test_decisions_appended_at_once_share_batch_commits_and_each_keeps_its_own_events(topology, nc, js):
    commits = []
    bucket = await js.key_value(topology.state_bucket)
    store = JetStreamEventStore(nc, js, bucket, topology, on_batch_commit=lambda: commits.append("batch"))
    states = [await created(store, f"w{i}") for i in range(20)]
    decisions = [SHIPPED.decide(state, ProcessWorkflow(workflow_id=state.id), SEND_OK) for state in states]
    assert all(len(decision.events) > 1 for decision in decisions)  # each needs an atomic batch of its own

    commits.clear()
    appended = await asyncio.gather(*(store.append(decision) for decision in decisions))
    assert 0 < len(commits) < len(states)

    from_the_broker = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    assert [await from_the_broker.load(state.id) for state in states] == appended


async def test_a_stale_decision_in_a_shared_batch_conflicts_alone(topology, nc, js):
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    states = [await created(store, f"w{i}") for i in range(10)]
    stale = states[3]
    moved_on = await store.append(SHIPPED.decide(stale, CancelWorkflow(workflow_id=stale.id), SEND_OK))

    outcomes = await asyncio.gather(
        *(store.append(SHIPPED.decide(s, ProcessWorkflow(workflow_id=s.id), SEND_OK)) for s in states),
        return_exceptions=True,
    )
    assert isinstance(outcomes[3], ConcurrencyConflict)
    assert not any(isinstance(outcome, Exception) for i, outcome in enumerate(outcomes) if i != 3)
    from_the_broker = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    assert await from_the_broker.load(stale.id) == moved_on
    assert [await from_the_broker.load(s.id) for s in states if s is not stale] == outcomes[:3] + outcomes[4:]


async def test_replicas_saving_in_turn_move_the_read_model_forward_only(topology, nc, js):
    bucket = await js.key_value(topology.state_bucket)
    one, two = (JetStreamEventStore(nc, js, bucket, topology) for _ in range(2))
    first = await created(one)
    await one.save(first)
    second = await two.append(SHIPPED.decide(await two.load("w1"), ProcessWorkflow(workflow_id="w1"), SEND_OK))
    await two.save(second)  # `one` still remembers the revision of its own save
    with pytest.raises(ConcurrencyConflict):  # it took its own last state for the log's end: the guard refuses it
        stale = await one.load("w1")
        await one.append(SHIPPED.decide(stale, CancelWorkflow(workflow_id="w1"), SEND_OK))
    third = await one.append(SHIPPED.decide(await one.load("w1"), CancelWorkflow(workflow_id="w1"), SEND_OK))
    await one.save(third)
    await two.save(second)  # late and older: changes nothing
    stored = JetStreamEventStore(nc, js, bucket, topology)
    assert await stored.load("w1") == third and (await bucket.get("w1")).value == third.model_dump_json().encode()


async def test_a_writer_takes_its_own_last_state_as_the_log_end_until_another_writer_shows_itself(topology, nc, js):
    bucket = await js.key_value(topology.state_bucket)
    one, two = (JetStreamEventStore(nc, js, bucket, topology) for _ in range(2))
    first = await created(one)
    await one.save(first)
    assert await one.load("w1") == first

    second = await two.append(SHIPPED.decide(await two.load("w1"), ProcessWorkflow(workflow_id="w1"), SEND_OK))
    assert await one.load("w1") == first  # nothing was read: it cannot know yet
    with pytest.raises(ConcurrencyConflict):
        await one.append(SHIPPED.decide(first, CancelWorkflow(workflow_id="w1"), SEND_OK))
    assert await one.load("w1") == second  # from the log, now that another writer has shown itself

    reader = JetStreamEventStore(nc, js, bucket, topology)  # it only reads: the read model may lag the log
    assert await reader.load("w1") == second
