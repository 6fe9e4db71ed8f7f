"""The API walks a workflow's hash chain (GET /workflows/{id}/verify) and exports its log as stored
(GET /workflows/{id}/export), which contracts/chain.py verifies offline. The log is written by the orchestrator's
own store, as in production."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.commands import CompleteJob, CreateWorkflow, ProcessWorkflow
from runtime.eventlog import read_events
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.store import JetStreamEventStore

pytestmark = [pytest.mark.integration, pytest.mark.index_databases("sqlite")]  # (the log's, not the index's)

CONTEXT = Context(now=datetime(2026, 12, 3, 12, 0, tzinfo=UTC), send_fails=lambda *_: False)
CHAIN_SCRIPT = Path(__file__).resolve().parents[2] / "contracts" / "chain.py"


@pytest.fixture
async def waiting_workflow(nc, js, topology) -> str:
    """A workflow waiting for approval, its log appended by the orchestrator's store."""
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)

    async def apply(command):
        state = await store.append(SHIPPED.decide(await store.load(command.workflow_id), command, CONTEXT))
        await store.save(state)
        return state

    await apply(CreateWorkflow(workflow_id="audited"))
    state = await apply(ProcessWorkflow(workflow_id="audited"))
    assert state.bookkeeping.pending_job is not None
    state = await apply(
        CompleteJob(workflow_id="audited", job_id=state.bookkeeping.pending_job.job_id, result={"output": 0.9})
    )
    assert state.business_state == "Waiting For Approval"
    return "audited"


async def test_an_intact_log_verifies_up_to_its_head(api, waiting_workflow, js, topology):
    response = await api.get(f"/workflows/{waiting_workflow}/verify")
    assert response.status_code == 200, response.text
    body = response.json()
    events = await read_events(js, topology, waiting_workflow)
    assert body == {
        "workflow_id": waiting_workflow,
        "verified": True,
        "events": len(events),
        "head": events[-1].digest,
        "broken_at": None,
        "reason": None,
    }


async def test_a_removed_event_is_named_by_the_api(api, waiting_workflow, js, topology):
    sequences = [recorded.sequence for recorded in await read_events(js, topology, waiting_workflow)]
    await js.delete_msg(topology.events_stream, sequences[2])
    body = (await api.get(f"/workflows/{waiting_workflow}/verify")).json()
    assert body["verified"] is False and body["head"] is None
    assert body["broken_at"] == sequences[3] and "removed" in body["reason"]


async def test_the_export_is_the_log_as_stored_and_verifies_offline(api, waiting_workflow, js, topology, tmp_path):
    response = await api.get(f"/workflows/{waiting_workflow}/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    stored = [
        (await js.get_msg(topology.events_stream, seq=r.sequence, direct=True)).data
        for r in await read_events(js, topology, waiting_workflow)
    ]
    assert response.content == b"".join(data + b"\n" for data in stored)

    export = tmp_path / "audited.jsonl"
    export.write_bytes(response.content)
    head = (await api.get(f"/workflows/{waiting_workflow}/verify")).json()["head"]
    result = subprocess.run(
        [sys.executable, "-I", str(CHAIN_SCRIPT), str(export), "--head", head],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and "every link holds" in result.stdout, result.stdout + result.stderr


async def test_an_unknown_workflow_has_no_log_to_verify_or_export(api):
    for what in ("verify", "export"):
        response = await api.get(f"/workflows/nobody/{what}")
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "unknown_workflow"
