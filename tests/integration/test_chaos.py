"""Chaos (bench/chaos.py): workflows driven to an end with every simulated failure on, while each service (two
orchestrators, two processors, the api, the broadcaster, the notifier) is killed with -9 at a random moment and
started again, and nats-server too. Nothing may be lost: every workflow ends, the log holds no illegal transition and
no command applied twice, every command sent is answered, the read model equals a replay, a WebSocket client that
resumes from the last sequence it saw gets every event once, in order, and a webhook subscribed to every notification
gets each one the log calls for. The short run is part of every test run; the full one (1 000
workflows, a few minutes) runs with `-m chaos`."""

import pytest

from bench.chaos import NATS, ChaosPlan, ChaosResult, report_lines, run_chaos

SHORT = ChaosPlan(workflows=120, start_per_s=10.0)  # ~12 s of starts, the kills among them
FULL = ChaosPlan(workflows=1000)


def assert_nothing_lost(result: ChaosResult, plan: ChaosPlan) -> None:
    report = "\n".join(report_lines(result))
    print(f"\n{report}")
    assert result.started == plan.workflows, report
    assert result.finished + result.errored == plan.workflows, report
    assert result.finished > plan.workflows // 2, report  # most outputs ask for approval (output > 0.25)
    assert (result.lost, result.illegal, result.applied_twice, result.unanswered) == (0, [], [], []), report
    assert (result.read_model_mismatches, result.broken_chains) == ([], []), report
    assert result.websocket_events >= result.events, report  # and any late job result's since
    assert (result.websocket_missing, result.websocket_duplicates, result.websocket_out_of_order) == (0, 0, 0), report
    killed = {kill.target for kill in result.kills if kill.killed_at_s is not None and kill.healthy_after_s is not None}
    instances = {f"orchestrator-{n}" for n in range(1, plan.orchestrators + 1)}
    instances |= {f"processor-{n}" for n in range(1, plan.processors + 1)}
    assert killed == instances | {"api", "broadcaster", "notifier", NATS}, report
    # Every notification the log calls for reached the webhook, none that it does not (a repeat keeps its key).
    assert result.notifications_expected > plan.workflows, report
    assert (result.notifications_lost, result.notifications_unexpected) == (0, 0), report
    # A version of the approval type published mid-run: the workflows started before it ran on v1, the later ones on v2.
    assert result.published_version == 2 and result.on_version.get(1) and result.on_version.get(2), report
    assert result.ok, report


@pytest.mark.integration
async def test_no_workflow_event_or_command_is_lost_when_every_process_is_killed(tmp_path):
    assert_nothing_lost(await run_chaos(SHORT, tmp_path), SHORT)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
async def test_a_thousand_workflows_through_chaos_lose_nothing(tmp_path):
    assert_nothing_lost(await run_chaos(FULL, tmp_path), FULL)
