"""Retention: ended workflows older than the retention period leave the log, the read model and the index, their
whole log kept first as an export that verifies offline; the API then answers 410 with where the export is."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.chain import Link, verify
from contracts.commands import CancelWorkflow, CreateWorkflow
from contracts.topology import export_name
from runtime.eventlog import current_entries, read_stored
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.maintenance import check, rebuild
from services.orchestrator.retention import Retention
from services.orchestrator.store import JetStreamEventStore
from tests.integration.conftest import indexed

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=40)


@pytest.fixture
async def workflows(nc, js, topology):
    """old-done ended 40 days ago, old-open has waited as long, new-done ended now."""
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)

    async def apply(command, at: datetime):
        state = await store.append(
            SHIPPED.decide(await store.load(command.workflow_id), command, Context(at, lambda *_: False))
        )
        await store.save(state)
        return state

    states = {}
    for workflow_id, at, ended in (
        ("old-done", LONG_AGO, True),
        ("old-open", LONG_AGO, False),
        ("new-done", NOW, True),
    ):
        states[workflow_id] = await apply(CreateWorkflow(workflow_id=workflow_id), at)
        if ended:
            states[workflow_id] = await apply(CancelWorkflow(workflow_id=workflow_id, reason="done"), at)
    return states


async def test_an_old_ended_workflow_is_exported_whole_then_removed_and_the_rest_stay(js, topology, workflows):
    stored_before = await read_stored(js, topology, "old-done")

    assert await Retention(js, topology, days=30).sweep(NOW) == 1

    exports = await js.object_store(topology.exports_bucket)
    exported = (await exports.get(export_name("old-done"))).data
    assert exported == b"".join(data + b"\n" for _, data in stored_before)
    lines = [Link.of(number, line) for number, line in enumerate(exported.splitlines(), 1)]
    head = workflows["old-done"].bookkeeping.chain_head
    assert verify("old-done", lines, (len(lines), head)).ok  # verifies offline, up to the head it had
    assert await read_stored(js, topology, "old-done") == []
    assert set(await current_entries(js, topology, topology.state_bucket)) == {"old-open", "new-done"}
    assert (await check(js, topology)).ok
    assert await Retention(js, topology, days=30).sweep(NOW) == 0  # nothing more to do


async def test_a_sweep_cut_short_is_finished_by_the_next_without_losing_the_export(js, topology, workflows):
    retention = Retention(js, topology, days=30)
    stored_before = await read_stored(js, topology, "old-done")
    exports = await js.object_store(topology.exports_bucket)
    await exports.put(export_name("old-done"), b"".join(data + b"\n" for _, data in stored_before))
    await js.purge_stream(topology.events_stream, subject=topology.events_subject("old-done"))  # then it stopped

    assert await retention.sweep(NOW) == 1

    assert (await exports.get(export_name("old-done"))).data.count(b"\n") == len(stored_before)  # not overwritten
    assert "old-done" not in await current_entries(js, topology, topology.state_bucket)


async def test_a_rebuild_after_a_purge_still_matches_the_log(nc, js, topology, workflows):
    await Retention(js, topology, days=30).sweep(NOW)
    assert await rebuild(nc, js, topology) == 2
    assert (await check(js, topology)).ok


async def test_the_api_answers_410_with_where_the_export_is_and_the_index_lets_it_go(
    api, js, topology, workflows, indexer
):
    await indexed(indexer, js, topology)
    await Retention(js, topology, days=30).sweep(NOW)
    await indexed(indexer, js, topology)

    for path in ("/workflows/old-done", "/workflows/old-done/events", "/workflows/old-done/verify"):
        response = await api.get(path)
        assert response.status_code == 410, (path, response.text)
        body = response.json()
        assert body["code"] == "removed"
        assert body["export"] == {"object_store": topology.exports_bucket, "name": "old-done.jsonl"}
    assert (await api.get("/workflows/new-done")).status_code == 200
    assert (await api.get("/workflows/never-was")).status_code == 404
    listed = {workflow["id"] for workflow in (await api.get("/workflows")).json()}
    assert listed == {"old-open", "new-done"}  # old-done left the index with the read model
