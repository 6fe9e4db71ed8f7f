"""Concurrent decisions on the same workflows, across two orchestrator replicas: optimistic concurrency must let
exactly one of two conflicting commands win, refuse the other with its reason, and never fork a log."""

import asyncio

import pytest

from contracts.commands import ApproveWorkflow, CreateWorkflow, RejectWorkflow
from contracts.ids import job_id
from services.orchestrator.maintenance import check
from tests.conftest import eventually
from tests.integration.driving import SEED, Driver, Luck

pytestmark = pytest.mark.integration

WORKFLOWS = 30
luck = Luck(SEED, send_failure_rate=0.0)


async def test_approve_and_reject_at_the_same_moment_exactly_one_wins(nats_url, topology, start_service, js):
    env = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    for _ in range(2):
        start_service("orchestrator", nats_url, topology, **env)
    start_service("processor", nats_url, topology, **env)
    driver = Driver(js, topology)
    # The first round asks for approval; the round a reject would start errors. So the loser of the race finds the
    # workflow Finished (approve won) or Error (reject won) and can only be refused.
    candidates = (f"race-{i}" for i in range(1000))
    ids = [wf for wf in candidates if luck.output(job_id(wf, 2, 1)) > 0.25 >= luck.output(job_id(wf, 4, 1))]
    ids = ids[:WORKFLOWS]
    for wf in ids:
        await driver.send(CreateWorkflow(workflow_id=wf, start=True))
    for wf in ids:
        await driver.reaches(wf, "Waiting For Approval", timeout_s=30)

    sent = {}
    for wf in ids:
        sent[wf] = (ApproveWorkflow(workflow_id=wf, approver="ann"), RejectWorkflow(workflow_id=wf, approver="bob"))
    await asyncio.gather(*(driver.send(command) for pair in sent.values() for command in pair))

    async def every_command_answered() -> bool:
        for wf, pair in sent.items():
            causes = {event.causation_id for event in await driver.events(wf)}
            if not all(command.message_id in causes for command in pair):
                return False
        return True

    await eventually(every_command_answered, timeout_s=40)

    outcomes, expected_end = {"approve": 0, "reject": 0}, {}
    for wf, (approve, reject) in sent.items():
        events = await driver.events(wf)
        approved = [e for e in events if e.causation_id == approve.message_id]
        rejected = [e for e in events if e.causation_id == reject.message_id]
        # Exactly one of the two applied; the other is refused, saying why.
        winner, loser = (approved, rejected) if approved[0].type == "TransitionTaken" else (rejected, approved)
        assert winner[0].type == "TransitionTaken" and [e.type for e in loser] == ["CommandRejected"], wf
        assert loser[0].code == "not_allowed" and "cannot" in loser[0].reason
        outcomes[winner[0].trigger] += 1
        expected_end[wf] = {"approve": "Finished", "reject": "Error"}[winner[0].trigger]
    assert sum(outcomes.values()) == len(ids)

    async def each_ended_as_its_winner_says() -> bool:
        states = {wf: await driver.state(wf) for wf in expected_end}
        ends = {wf: state and state.business_state for wf, state in states.items()}
        return ends == expected_end

    await eventually(each_ended_as_its_winner_says, timeout_s=30)

    report = await check(js, topology, [(c.workflow_id, c.message_id) for pair in sent.values() for c in pair])
    assert report.ok, report.summary()
