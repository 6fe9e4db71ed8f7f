"""The `wf` command line, run as a person would (its `main()` with arguments, in a thread of its own) against the real
API and broadcaster served on real ports, over a real nats-server. The fake orchestrator answers the commands
(tests/integration/fake_orchestrator.py), so these tests pin down what the CLI sends and shows."""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts.state import InfraStatus, WorkflowState
from contracts.topology import Topology
from contracts.types import StateInfo, WorkflowTypeInfo
from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.broadcaster.app import create_app as create_broadcaster
from services.broadcaster.settings import BroadcasterSettings
from services.cli.main import main
from services.launcher.nats_server import free_port
from tests.conftest import TEST_TOKENS, bearer, eventually, publish_type_info
from tests.integration.conftest import INDEX_DATABASES, indexed
from tests.integration.fake_orchestrator import FakeOrchestrator
from tests.integration.serving import served

# `wf ls` reads the index: those tests run on each database it supports, the others on SQLite alone.
pytestmark = [pytest.mark.integration, pytest.mark.index_databases("sqlite")]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


class Terminal:
    """Runs `wf` against one API, with the admin test token; what it prints is captured by pytest's capsys."""

    def __init__(self, api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.api_url, self.capsys = api_url, capsys

    def argv(self, *argv: str) -> list[str]:
        return ["--url", self.api_url, "--token", TEST_TOKENS["admin"], *argv]

    async def run(self, *argv: str) -> Run:
        code = await asyncio.to_thread(main, self.argv(*argv))
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)


@pytest.fixture
def broadcaster_port() -> int:
    return free_port()


@pytest.fixture
def broadcaster_settings(nats_url: str, topology: Topology, tokens_file) -> BroadcasterSettings:
    return BroadcasterSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_API_TOKENS_FILE=tokens_file)


@pytest.fixture
async def api_url(nats_url, topology, js, broadcaster_port, tokens_file, index_url, indexer) -> AsyncIterator[str]:
    settings = ApiSettings(
        NATS_URL=nats_url,
        WF_PREFIX=topology.prefix,
        WF_PUBLIC_BROADCASTER_URL=f"ws://127.0.0.1:{broadcaster_port}/ws",
        WF_API_TOKENS_FILE=tokens_file,
        WF_INDEX_URL=index_url,
    )
    async with served(create_api(settings)) as address:
        yield f"http://{address}"


@pytest.fixture
async def orchestrator(js, topology) -> AsyncIterator[FakeOrchestrator]:
    async with FakeOrchestrator(js, topology) as fake:
        yield fake


@pytest.fixture
def wf(api_url, capsys, orchestrator) -> Terminal:
    return Terminal(api_url, capsys)


async def created(wf: Terminal, *options: str) -> str:
    run = await wf.run("create", *options)
    assert run.code == 0, run
    return run.out.split()[0]


# commands


async def test_create_prints_the_new_workflow_and_its_two_states(wf, orchestrator):
    run = await wf.run("create", "--input", '{"amount": 12}')

    assert run.code == 0, run.err
    workflow_id = orchestrator.received[0].workflow_id
    assert run.out == f"{workflow_id}  Unprocessed  (Waiting For Event)\n"
    assert orchestrator.received[0].input == {"amount": 12}


async def test_create_with_start_and_a_chosen_id_processes_it_at_once(wf, orchestrator):
    run = await wf.run("create", "--id", "order-7", "--start")

    assert run.code == 0, run.err
    assert run.out == "order-7  Sending To Queue  (Processing Step)\n"
    assert [(command.kind, command.start) for command in orchestrator.received] == [("create", True)]


async def test_json_prints_the_apis_answer(wf):
    run = await wf.run("create", "--json")

    assert run.code == 0
    answer = json.loads(run.out)
    assert answer["outcome"] == "accepted" and answer["workflow"]["business_state"] == "Unprocessed"


async def test_a_refused_command_prints_the_servers_reason_and_exits_1(wf, orchestrator):
    workflow_id = await created(wf)

    ada = ("--token", TEST_TOKENS["ada"])
    approve = await wf.run("approve", workflow_id, *ada, "--as", "ada", "--comment", "looks fine")
    reject = await wf.run("reject", workflow_id, "--token", TEST_TOKENS["bob"], "--reason", "not yet")
    retry = await wf.run("retry", workflow_id)

    assert approve.code == reject.code == retry.code == 1
    assert approve.err == "wf: cannot approve a workflow in state Unprocessed (HTTP 409, not_allowed)\n"
    assert "cannot retry" in retry.err and approve.out == ""
    sent = orchestrator.received
    assert (sent[1].kind, sent[1].approver, sent[1].comment) == ("approve", "ada", "looks fine")
    assert (sent[2].kind, sent[2].approver, sent[2].reason) == ("reject", "bob", "not yet")


async def test_process_cancel_and_archive_move_the_workflow_along(wf, orchestrator):
    workflow_id = await created(wf)

    processed = await wf.run("process", workflow_id)
    cancelled = await wf.run("cancel", workflow_id, "--reason", "changed my mind")
    archived = await wf.run("archive", workflow_id)

    assert processed.out == f"{workflow_id}  Sending To Queue  (Processing Step)\n"
    assert cancelled.out == f"{workflow_id}  Cancelled  (Cancelled)\n"
    assert archived.code == 0 and orchestrator.received[2].reason == "changed my mind"


async def test_a_command_without_an_outcome_in_the_wait_says_pending_and_exits_3(wf, orchestrator):
    workflow_id = await created(wf)

    run = await wf.run("process", workflow_id, "--wait", "0")

    assert run.code == 3
    assert run.out == f"{workflow_id}  pending\n"
    assert "no outcome within the wait" in run.err


async def test_an_unknown_workflow_or_a_bad_id_is_reported_from_the_server(wf):
    unknown = await wf.run("show", "never-created")
    bad = await wf.run("process", "a b")

    assert unknown.code == bad.code == 1
    assert unknown.err == "wf: workflow never-created not found (HTTP 404, unknown_workflow)\n"
    assert "path workflow_id" in bad.err and "(HTTP 422, invalid)" in bad.err


async def test_an_unreachable_api_is_said_plainly(capsys):
    run = await Terminal(f"http://127.0.0.1:{free_port()}", capsys).run("ls")

    assert run.code == 1
    assert run.err.startswith("wf: cannot reach the API at http://127.0.0.1:")


async def test_the_token_comes_from_the_option_or_wf_token_and_without_one_it_says_how_to_give_one(
    wf, orchestrator, monkeypatch, capsys
):
    workflow_id = await created(wf)
    without = await asyncio.to_thread(main, ["--url", wf.api_url, "process", workflow_id])
    refusal = capsys.readouterr().err
    monkeypatch.setenv("WF_TOKEN", TEST_TOKENS["requester"])
    from_env = await asyncio.to_thread(main, ["--url", wf.api_url, "process", workflow_id])

    assert without == 1
    assert refusal == (
        "wf: a token is needed: send the header 'Authorization: Bearer <token>' (HTTP 401, unauthorized); "
        "give a token with --token or WF_TOKEN\n"
    )
    assert from_env == 0
    assert [command.kind for command in orchestrator.received] == ["create", "process"]


async def test_deciding_as_someone_other_than_the_tokens_holder_is_refused(wf, orchestrator):
    workflow_id = await created(wf)

    run = await wf.run("approve", workflow_id, "--token", TEST_TOKENS["bob"], "--as", "director")

    assert run.code == 1
    assert run.err == "wf: this token is bob's: it cannot decide as director (HTTP 403, forbidden)\n"
    assert [command.kind for command in orchestrator.received] == ["create"]


# reading


@pytest.mark.index_databases(*INDEX_DATABASES)
async def test_ls_lists_newest_first_follows_the_pages_and_filters(wf, js, topology, indexer):
    kv = await js.key_value(topology.state_bucket)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for minute in range(120):  # more than one page of the API's
        state = WorkflowState(
            id=f"w{minute:03}",
            type="approval",
            business_state="Error" if minute % 40 == 0 else "Unprocessed",
            infra_status=InfraStatus.ERRORED if minute % 40 == 0 else InfraStatus.WAITING_FOR_EVENT,
            created_at=start + timedelta(minutes=minute),
            updated_at=start + timedelta(minutes=minute),
        )
        await kv.put(state.id, state.model_dump_json().encode())
    await indexed(indexer, js, topology)

    everything = await wf.run("ls", "--limit", "500")
    newest = await wf.run("ls", "--limit", "2")
    errors = await wf.run("ls", "--business", "Error", "--infra", "Errored", "--json")

    rows = everything.out.splitlines()
    assert rows[0].split() == ["ID", "TYPE", "BUSINESS", "INFRA", "ATTEMPT", "OUTPUT", "UPDATED"]
    assert [row.split()[0] for row in rows[1:]] == [f"w{minute:03}" for minute in reversed(range(120))]
    assert re.match(r"w119 +approval +Unprocessed +Waiting For Event +0 +- +2026-01-01 01:59:00$", rows[1])
    assert [row.split()[0] for row in newest.out.splitlines()[1:]] == ["w119", "w118"]
    assert [workflow["id"] for workflow in json.loads(errors.out)] == ["w080", "w040", "w000"]


@pytest.mark.index_databases(*INDEX_DATABASES)
async def test_ls_searches_by_declared_fields_and_inbox_lists_what_waits_for_the_holder(wf, js, topology, seed):
    expense = WorkflowTypeInfo(
        name="expense",
        title="Expense",
        initial="Draft",
        states=[],
        transitions=[],
        search_fields={"amount": "number", "requester": "text"},
    )
    await publish_type_info(js, topology, expense)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    await seed(
        js,
        topology,
        *(
            WorkflowState(
                id=f"x{n}",
                type="expense",
                business_state="Manager Approval",
                created_at=start + timedelta(n),
                updated_at=start + timedelta(n),
                search_values={"amount": 500.0 * n, "requester": "ann"},
                waiting_for=("admin",) if n % 2 else (),
            )
            for n in range(1, 7)
        ),
    )

    found = await wf.run("ls", "--type", "expense", "amount>1000", "amount<=2500", "requester=ann", "--json")
    assert [workflow["id"] for workflow in json.loads(found.out)] == ["x5", "x4", "x3"]
    oldest = await wf.run("ls", "--sort", "created_at", "--created-after", "2026-12-03", "--limit", "1", "--json")
    assert [workflow["id"] for workflow in json.loads(oldest.out)] == ["x2"]
    mine = await wf.run("inbox", "amount>=1000", "--json")  # the admin token's holder is named in x1, x3, x5
    assert [workflow["id"] for workflow in json.loads(mine.out)] == ["x3", "x5"]
    refused = await wf.run("ls", "colour=red")
    assert refused.code == 1 and "colour: not a filter" in refused.err and "HTTP 400, bad_filter" in refused.err


async def test_show_prints_both_states_and_the_timeline(wf):
    workflow_id = await created(wf)
    await wf.run("process", workflow_id)

    run = await wf.run("show", workflow_id)

    assert run.code == 0, run.err
    details, timeline = run.out.split("\ntimeline\n")
    assert f"id        {workflow_id}" in details
    assert "business  Sending To Queue" in details and "infra     Processing Step" in details
    events = timeline.splitlines()
    assert [line.split()[3] for line in events] == ["WorkflowCreated", "TransitionTaken"]
    assert "trigger=process source=Unprocessed dest='Sending To Queue'" in events[1]


async def test_types_lists_each_type_and_what_its_states_accept(wf, js, topology):
    approval = WorkflowTypeInfo(
        name="approval",
        title="Approval",
        initial="Unprocessed",
        states=[StateInfo(name="Unprocessed", kind="wait", accepts=["process", "cancel"])],
        transitions=[],
    )
    await publish_type_info(js, topology, approval)

    run = await wf.run("types")

    assert run.out.splitlines() == [
        "approval  Approval  (starts in Unprocessed)",
        "  Unprocessed              wait       accepts: process, cancel",
    ]


# watching


async def test_watch_tails_events_and_resumes_where_it_left_off_after_the_broadcaster_restarts(
    wf, api_url, broadcaster_settings, broadcaster_port, capsys
):
    workflow_id = await created(wf)
    printed: list[str] = []
    complaints: list[str] = []

    def lines_printed() -> list[str]:
        captured = capsys.readouterr()
        printed.extend(captured.out.splitlines())
        complaints.extend(captured.err.splitlines())
        return printed

    async with httpx.AsyncClient(base_url=api_url, headers=bearer()) as http:
        async with served(create_broadcaster(broadcaster_settings), port=broadcaster_port):
            watching = asyncio.create_task(
                asyncio.to_thread(main, wf.argv("watch", workflow_id, "--since", "0", "--count", "4"))
            )
            await eventually(lambda: len(lines_printed()) == 1)
        # While the broadcaster is down, two events are appended; the tail gets them once it is back.
        assert (await http.post(f"/workflows/{workflow_id}/process")).status_code == 200
        assert (await http.post(f"/workflows/{workflow_id}/cancel")).status_code == 200
        async with served(create_broadcaster(broadcaster_settings), port=broadcaster_port):
            await eventually(lambda: len(lines_printed()) == 3)
            assert (await http.post(f"/workflows/{workflow_id}/archive")).status_code == 200
            assert await asyncio.wait_for(watching, timeout=20) == 0

    lines_printed()
    types = [line.split()[3] for line in printed]
    assert types == ["WorkflowCreated", "TransitionTaken", "WorkflowCancelled", "WorkflowArchived"]
    sequences = [int(line.split()[0]) for line in printed]
    assert sequences == sorted(set(sequences))
    assert any(f"reconnecting from sequence {sequences[0]}" in line for line in complaints), complaints
