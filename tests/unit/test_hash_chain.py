"""The hash chain of a workflow's log (contracts/chain.py): the orchestrator's store links each event it appends to
the one before it, and a removed, altered, moved or inserted event, or a cut end, is named where it breaks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.chain import BrokenLink, Link, anchor, digest, verify
from contracts.commands import ApproveWorkflow, CompleteJob, CreateWorkflow, ProcessWorkflow
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.store import InMemoryEventStore
from tests.unit.workflow_history import NOW

CHAIN_SCRIPT = Path(__file__).resolve().parents[2] / "contracts" / "chain.py"
WORKFLOW = "order-42"


async def finished_log() -> tuple[list[tuple[int, bytes]], str]:
    """A workflow driven to Finished through the in-memory store: its log as stored, and the head the state keeps."""
    store = InMemoryEventStore()
    context = Context(now=NOW, send_fails=lambda *_: False)

    async def apply(command):
        state = await store.append(SHIPPED.decide(await store.load(WORKFLOW), command, context))
        await store.save(state)
        return state

    await apply(CreateWorkflow(workflow_id=WORKFLOW))
    state = await apply(ProcessWorkflow(workflow_id=WORKFLOW))
    job = state.bookkeeping.pending_job
    assert job is not None
    await apply(CompleteJob(workflow_id=WORKFLOW, job_id=job.job_id, result={"output": 0.9}))
    state = await apply(ApproveWorkflow(workflow_id=WORKFLOW, approver="ann"))
    assert state.business_state == "Finished" and state.bookkeeping.chain_head
    stored = [(recorded.sequence, store.stored[recorded.sequence]) for recorded in store.logs[WORKFLOW]]
    return stored, state.bookkeeping.chain_head


def walked(stored: list[tuple[int, bytes]], head: tuple[int, str] | None = None):
    return verify(WORKFLOW, [Link.of(sequence, data) for sequence, data in stored], head)


def break_in(stored: list[tuple[int, bytes]], head: tuple[int, str] | None = None) -> BrokenLink:
    """Where walking the chain found it broken: it must be."""
    found = walked(stored, head)
    assert found.broken is not None, "the chain held"
    return found.broken


@pytest.fixture
async def log() -> tuple[list[tuple[int, bytes]], str]:
    return await finished_log()


async def test_every_appended_event_links_to_the_one_before_it_and_the_state_keeps_the_head(log):
    stored, head = log
    links = [json.loads(data)["previous_hash"] for _, data in stored]
    assert links[0] == anchor(WORKFLOW)
    assert links[1:] == [digest(data) for _, data in stored[:-1]]
    assert head == digest(stored[-1][1])
    found = walked(stored, (stored[-1][0], head))
    assert found.ok and found.events == len(stored) and found.head == head


async def test_a_removed_event_breaks_the_link_of_the_one_after_it(log):
    stored, _ = log
    broken = break_in(stored[:3] + stored[4:])
    assert broken.at == stored[4][0]
    assert "removed, altered, moved or inserted" in broken.reason


async def test_an_altered_event_breaks_the_next_link(log):
    stored, _ = log
    sequence, data = stored[2]
    stored[2] = (sequence, data.replace(b'"approval"', b'"expense"') if b'"approval"' in data else data + b" ")
    assert break_in(stored).at == stored[3][0]


async def test_two_events_swapped_break_the_chain_where_the_first_moved(log):
    stored, _ = log
    stored[3], stored[4] = stored[4], stored[3]
    assert break_in(stored).at == stored[3][0]


async def test_an_inserted_event_breaks_the_chain_even_when_it_links_to_its_predecessor(log):
    stored, _ = log
    before = json.loads(stored[2][1])
    forged = {**before, "message_id": "forged-1", "previous_hash": digest(stored[2][1])}
    inserted = stored[:3] + [(stored[2][0] + 1, json.dumps(forged).encode())] + stored[3:]
    assert break_in(inserted).at == stored[3][0]  # the event after the forgery no longer follows


async def test_a_cut_end_or_an_altered_last_event_shows_against_the_recorded_head(log):
    stored, head = log
    last = stored[-1][0]
    assert walked(stored[:-1]).ok  # the chain alone cannot tell where the log ended
    assert "cut" in break_in(stored[:-1], (last, head)).reason
    altered = stored[:-1] + [(last, stored[-1][1].replace(b'"ann"', b'"eve"'))]
    assert "altered" in break_in(altered, (last, head)).reason


async def test_an_event_without_a_link_or_of_another_workflow_is_named(log):
    stored, _ = log
    unlinked = json.loads(stored[1][1]) | {"previous_hash": None}
    assert "no link" in break_in([stored[0], (stored[1][0], json.dumps(unlinked).encode())]).reason
    foreign = json.loads(stored[1][1]) | {"workflow_id": "other"}
    assert "other" in break_in([stored[0], (stored[1][0], json.dumps(foreign).encode())]).reason
    assert "unreadable" in break_in([(1, b"not json")]).reason


def run_script(export: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script as an auditor runs it: the system's python3, alone, from outside the project (no imports of it)."""
    return subprocess.run(
        [sys.executable, "-I", str(CHAIN_SCRIPT), str(export), *args],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=30,
        check=False,
    )


async def test_the_offline_script_verifies_an_export_and_names_the_first_broken_line(log, tmp_path):
    stored, head = log
    export = tmp_path / f"{WORKFLOW}.jsonl"
    export.write_bytes(b"".join(data + b"\n" for _, data in stored))
    result = run_script(export, "--head", head)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(stored)} events, every link holds; head {head}" in result.stdout

    export.write_bytes(b"".join(data + b"\n" for _, data in stored[:2] + stored[3:]))
    result = run_script(export)
    assert result.returncode == 1 and "broken at line 3" in result.stdout, result.stdout

    export.write_bytes(b"".join(data + b"\n" for _, data in stored[:-1]))  # an export whose end was cut
    result = run_script(export, "--head", head)
    assert result.returncode == 1 and f"not to the head {head[:12]}" in result.stdout, result.stdout
