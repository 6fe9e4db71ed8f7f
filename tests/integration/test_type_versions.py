"""Types as versioned definitions, through the real orchestrator and processor and the API: publishing a version on
the running system, instances staying on theirs, migration, who may act, reassignment, and who did what."""

import asyncio
import copy
from typing import Any

import pytest
import yaml

from contracts.ids import job_id
from services.api.app import create_app
from services.cli.main import main
from services.orchestrator.catalog import TypeCatalog
from services.orchestrator.domain.declaration import TypeVersions
from services.orchestrator.domain.types import SHIPPED_DEFINITIONS, SHIPPED_DOCUMENTS
from tests.conftest import TEST_TOKENS, bearer, eventually
from tests.integration.conftest import api_client
from tests.integration.driving import SEED, Luck, first_id
from tests.integration.serving import served

pytestmark = pytest.mark.integration

APPROVAL_STEP_VISIT = 2  # the approval's step runs in its second state
RENAMED = "Awaiting Sign-off"


def approval_v2() -> dict:
    """The shipped approval with its waiting state renamed: v1 instances waiting there have no such state in v2."""
    document = yaml.safe_load((SHIPPED_DOCUMENTS / "approval.yaml").read_text())
    v2 = copy.deepcopy(document)
    v2["states"] = {
        RENAMED if name == "Waiting For Approval" else name: spec for name, spec in document["states"].items()
    }
    for transition in v2["transitions"]:
        for end in ("source", "dest"):
            if transition[end] == "Waiting For Approval":
                transition[end] = RENAMED
    return v2


def approved_output(workflow_id: str) -> bool:
    return Luck().output(job_id(workflow_id, APPROVAL_STEP_VISIT, 1)) > 0.25


@pytest.fixture
def system(nats_url, topology, start_service):
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    return {name: start_service(name, nats_url, topology, **settings) for name in ("orchestrator", "processor")}


@pytest.fixture
async def api(nats_url, topology, js, settings_for, system):
    async with api_client(settings_for(nats_url, topology)) as client:
        shipped = yaml.safe_load((SHIPPED_DOCUMENTS / "approval.yaml").read_text())

        async def orchestrator_answers() -> bool:  # the shipped document is its own latest version: unchanged
            return (await client.put("/types/approval", json=shipped)).status_code == 200

        await eventually(orchestrator_answers, timeout_s=30)
        yield client


async def reaches(api, workflow_id: str, business_state: str) -> dict:
    found: dict = {}
    for _ in range(200):
        found = (await api.get(f"/workflows/{workflow_id}")).json()
        if found.get("business_state") == business_state:
            return found
        await _pause()
    raise AssertionError(f"{workflow_id} never reached {business_state}: {found}")


async def _pause() -> None:
    await asyncio.sleep(0.1)


async def create(api, workflow_id: str, workflow_type: str = "approval", **body) -> dict:
    answer = await api.post("/workflows", json={"type": workflow_type, "workflow_id": workflow_id} | body)
    assert answer.status_code == 201, answer.text
    return answer.json()["workflow"]


async def test_a_published_version_runs_new_instances_while_old_ones_finish_on_theirs_and_migrate_where_they_can(api):
    [waiting_v1, unprocessed_v1, new] = [first_id(approved_output, f"v-{n}") for n in range(3)]
    assert (await create(api, waiting_v1, start=True))["type_version"] == 1
    await reaches(api, waiting_v1, "Waiting For Approval")
    await create(api, unprocessed_v1)

    published = await api.put("/types/approval", json=approval_v2())
    assert published.status_code == 201, published.text
    assert published.json()["version"] == 2
    assert {"removed state 'Waiting For Approval'", f"added state '{RENAMED}'"} <= set(published.json()["changes"])
    again = await api.put("/types/approval", json=approval_v2())
    assert (again.status_code, again.json()["outcome"], again.json()["version"]) == (200, "unchanged", 2)
    versions = (await api.get("/types/approval/versions")).json()
    assert [(v["version"], v["published_by"]) for v in versions] == [(1, "shipped"), (2, "admin")]
    assert (await api.get("/types/approval")).json()["version"] == 2
    drawn = (await api.get("/types/approval/versions/1")).json()["info"]
    assert "Waiting For Approval" in [state["name"] for state in drawn["states"]]

    # The v1 instance waiting in the state v2 renamed cannot move to v2, and finishes on v1.
    refused = await api.post(f"/workflows/{waiting_v1}/migrate", json={"to_version": 2})
    assert refused.status_code == 409 and "has no state 'Waiting For Approval'" in refused.json()["detail"]
    approved = await api.post(f"/workflows/{waiting_v1}/approve", json={})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["workflow"]["business_state"], approved.json()["workflow"]["type_version"]) == (
        "Finished",
        1,
    )

    # A new instance runs v2; one named on v1 runs v1; a version never published is refused.
    assert (await create(api, new, start=True))["type_version"] == 2
    assert (await create(api, f"{new}-on-v1", type_version=1))["type_version"] == 1
    unknown = await api.post("/workflows", json={"type": "approval", "type_version": 9})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_type"), unknown.text
    await reaches(api, new, RENAMED)

    # A v1 instance whose state v2 has too moves, recorded with who moved it; it then runs v2.
    migrated = await api.post(f"/workflows/{unprocessed_v1}/migrate", json={"to_version": 2})
    assert migrated.status_code == 200, migrated.text
    assert migrated.json()["workflow"]["type_version"] == 2
    events = [r["event"] for r in (await api.get(f"/workflows/{unprocessed_v1}/events")).json()]
    assert [(e["type"], e.get("from_version"), e.get("to_version"), e["actor"]) for e in events][-1] == (
        "WorkflowMigrated",
        1,
        2,
        "admin",
    )
    await api.post(f"/workflows/{unprocessed_v1}/process", json={})
    await reaches(api, unprocessed_v1, RENAMED)

    # Who did what: every event a person's command caused names them.
    created = [r["event"] for r in (await api.get(f"/workflows/{new}/events")).json()]
    assert created[0]["type"] == "WorkflowCreated" and created[0]["type_version"] == 2
    assert {e["actor"] for e in created[:3]} == {"admin"}


async def test_a_definition_with_problems_is_refused_naming_each_and_nothing_is_published(api):
    broken: dict[str, Any] = approval_v2() | {"initial": "Nowhere"}
    broken["states"]["Sending To Queue"]["routes"][0]["when"] = "result.output >"
    answer = await api.put("/types/approval", json=broken)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert any("initial: 'Nowhere' is not a state" in p for p in problems), problems
    assert any("does not parse" in p for p in problems), problems
    assert [v["version"] for v in (await api.get("/types/approval/versions")).json()] == [1]
    mismatch = await api.put("/types/expense", json=approval_v2())
    assert mismatch.status_code == 422 and "the path is 'expense'" in mismatch.text
    not_an_operator = await api.put("/types/approval", json=approval_v2(), headers=bearer("approver"))
    assert not_an_operator.status_code == 403


async def test_a_wait_takes_the_person_its_input_names_or_its_group_and_a_reassigned_wait_only_its_assignees(api):
    passes = first_id(lambda wf: Luck().output(job_id(wf, 2, 1)) >= 0.05, "exp")
    await create(api, passes, "expense", input={"amount": 50, "manager": "carol"}, start=True)
    await reaches(api, passes, "Manager Approval")
    assert (await api.get(f"/workflows/{passes}")).json()["waiting_for"] == ["carol", "group:managers"]

    outsider = await api.post(f"/workflows/{passes}/approve", json={}, headers=bearer("ada"))
    assert outsider.status_code == 409 and "only group managers, input.manager" in outsider.json()["detail"]
    by_the_manager = await api.post(f"/workflows/{passes}/approve", json={}, headers=bearer("carol"))
    assert by_the_manager.json()["workflow"]["business_state"] == "Finance Approval"

    reassigned = await api.post(f"/workflows/{passes}/reassign", json={"to": ["ada"], "reason": "finance is away"})
    assert reassigned.status_code == 200, reassigned.text
    assert reassigned.json()["workflow"]["waiting_for"] == ["ada"]
    finance = await api.post(f"/workflows/{passes}/approve", json={}, headers=bearer("fin-ann"))
    assert finance.status_code == 409 and "assigned to ada" in finance.json()["detail"]
    assignee = await api.post(f"/workflows/{passes}/approve", json={}, headers=bearer("ada"))
    assert assignee.json()["workflow"]["business_state"] in ("Paying", "Paid")
    events = [r["event"] for r in (await api.get(f"/workflows/{passes}/events")).json()]
    moved = [(e["type"], e["actor"]) for e in events if e["type"] in ("WorkflowReassigned", "TransitionTaken")]
    assert ("WorkflowReassigned", "admin") in moved and ("TransitionTaken", "ada") in moved
    # Not an operator: no reassigning.
    denied = await api.post(f"/workflows/{passes}/reassign", json={"to": ["bob"]}, headers=bearer("approver"))
    assert denied.status_code == 403


async def test_wf_publishes_a_definition_file_lists_its_versions_names_every_problem_and_migrates(
    api, nats_url, topology, settings_for, tmp_path, capsys
):
    async with served(create_app(settings_for(nats_url, topology))) as address:

        async def wf(*argv: str) -> tuple[int, str, str]:
            code = await asyncio.to_thread(main, ["--url", f"http://{address}", "--token", TEST_TOKENS["admin"], *argv])
            captured = capsys.readouterr()
            return code, captured.out, captured.err

        draft = first_id(approved_output, "cli")
        await create(api, draft)
        file = tmp_path / "approval.yaml"
        file.write_text(yaml.safe_dump(approval_v2()))
        assert await wf("types", "apply", str(file)) == (
            0,
            f"approval v2  published\n  removed state 'Waiting For Approval'\n  added state '{RENAMED}'\n"
            f"  removed transition approve: 'Waiting For Approval' → 'Finished'\n"
            f"  removed transition reject: 'Waiting For Approval' → 'Sending To Queue'\n"
            f"  removed transition request_approval: 'Sending To Queue' → 'Waiting For Approval'\n"
            f"  added transition approve: '{RENAMED}' → 'Finished'\n"
            f"  added transition reject: '{RENAMED}' → 'Sending To Queue'\n"
            f"  added transition request_approval: 'Sending To Queue' → '{RENAMED}'\n",
            "",
        )
        code, out, _ = await wf("types", "apply", str(file))
        assert (code, out) == (0, "approval v2  unchanged (the latest version is the same)\n")
        code, out, _ = await wf("types", "versions", "approval")
        assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["v1", "v2"], out

        bad = approval_v2() | {"initial": "Nowhere"}
        file.write_text(yaml.safe_dump(bad))
        code, out, err = await wf("types", "apply", str(file))
        assert code == 1 and "the definition was refused (HTTP 422, invalid_definition):" in err, err
        assert "  - initial: 'Nowhere' is not a state" in err

        code, out, _ = await wf("migrate", draft, "--to", "2")
        assert code == 0 and draft in out
        assert (await api.get(f"/workflows/{draft}")).json()["type_version"] == 2


async def test_replicas_starting_together_publish_each_shipped_type_once_and_each_sees_a_version_another_published(
    nc, js, topology
):
    catalogs = [TypeCatalog(nc, js, topology, TypeVersions()) for _ in range(3)]
    await asyncio.gather(*(catalog.open(SHIPPED_DEFINITIONS.values()) for catalog in catalogs))
    keys = sorted(await (await js.key_value(topology.types_bucket)).keys())
    assert keys == ["approval.1", "expense.1"]
    assert all(catalog.versions.names() == ["approval", "expense"] for catalog in catalogs)

    following = [asyncio.create_task(catalog.follow()) for catalog in catalogs[1:]]
    try:
        applied = await catalogs[0].apply(approval_v2(), "ann")
        assert (applied.outcome, applied.version) == ("published", 2)
        for catalog in catalogs[1:]:  # the others learn of it from the bucket, without being asked

            async def loaded(catalog=catalog) -> bool:
                return catalog.versions.has("approval", 2)

            await eventually(loaded, timeout_s=10)
    finally:
        for task in following:
            task.cancel()
