"""Every event a decision makes is stamped from its command, and a decision is a function of state and command."""

import pytest
from workflow_history import (
    NOW,
    WORKFLOW_ID,
    History,
    approve,
    archive,
    cancel,
    complete,
    create,
    create_expense,
    fail_job,
    fire,
    given,
    process,
    reject,
    retry,
    send_fails_on,
    sends_always_fail,
    terminate,
)

# One decision of every kind, each with the state it is decided in; `make_command(**envelope)`.
DECISIONS = [
    pytest.param(History, create, id="create"),
    pytest.param(History, create_expense, id="create expense"),
    pytest.param(lambda: given(create()), process, id="process"),
    pytest.param(lambda: given(create(), send_fails=send_fails_on((2, 1))), process, id="process, send fails"),
    pytest.param(
        lambda: given(create(), process(), send_fails=send_fails_on((2, 1))),
        lambda **envelope: fire("retry-2-1", **envelope),
        id="retry timer",
    ),
    pytest.param(
        lambda: given(create(), process(), fire("retry-2-1"), fire("retry-2-2"), send_fails=sends_always_fail),
        lambda **envelope: fire("retry-2-3", **envelope),
        id="last retry fails",
    ),
    pytest.param(lambda: given(create(), process()), lambda **envelope: fire("timeout-2-1", **envelope), id="timeout"),
    pytest.param(lambda: given(create(), process()), lambda **envelope: complete(0.8, **envelope), id="complete job"),
    pytest.param(lambda: given(create(), process()), lambda **envelope: complete(0.1, **envelope), id="output too low"),
    pytest.param(lambda: given(create(), process()), fail_job, id="fail job"),
    pytest.param(lambda: given(create(), process(), complete(0.8)), approve, id="approve"),
    pytest.param(lambda: given(create(), process(), complete(0.8)), reject, id="reject"),
    pytest.param(lambda: given(create(), process()), cancel, id="cancel"),
    pytest.param(lambda: given(create(), process()), terminate, id="terminate"),
    pytest.param(lambda: given(create(), process(), complete(0.1)), retry, id="retry"),
    pytest.param(lambda: given(create(), process(), complete(0.1)), archive, id="archive"),
    pytest.param(
        lambda: given(create_expense(), process(), complete(0.5)),
        lambda **envelope: fire("deadline-3", **envelope),
        id="deadline",
    ),
    pytest.param(
        lambda: given(create_expense(), process(), complete(0.5), approve()),
        lambda **envelope: approve(approver="fin-ann", **envelope),
        id="one vote of a quorum",
    ),
    pytest.param(lambda: given(create()), approve, id="rejected command"),
    pytest.param(History, approve, id="unknown workflow"),
]


@pytest.mark.parametrize(("make_history", "make_command"), DECISIONS)
def test_every_event_of_a_decision_is_stamped_from_its_command(make_history, make_command):
    command = make_command(message_id="cmd-42", correlation_id="corr-7")

    events = make_history().when(command)

    assert [event.message_id for event in events] == [f"cmd-42-{n}" for n in range(1, len(events) + 1)]
    assert {(event.causation_id, event.correlation_id, event.workflow_id, event.occurred_at) for event in events} == {
        ("cmd-42", "corr-7", WORKFLOW_ID, NOW)
    }


@pytest.mark.parametrize(("make_history", "make_command"), DECISIONS)
def test_deciding_the_same_command_twice_from_the_same_state_yields_the_same_events(make_history, make_command):
    history, command = make_history(), make_command()

    assert history.when(command) == history.when(command)


def test_the_events_of_a_root_command_correlate_to_the_command_itself():
    events = given(create()).when(process(message_id="cmd-root"))

    assert [event.correlation_id for event in events] == ["cmd-root", "cmd-root"]


def test_the_job_and_timers_a_decision_owes_carry_its_correlation():
    history = given(create(), process(correlation_id="corr-7"))

    assert history.state.bookkeeping.pending_job is not None
    assert {history.state.bookkeeping.pending_job.correlation_id} | {
        timer.command.correlation_id for timer in history.state.bookkeeping.timers.values()
    } == {"corr-7"}


@pytest.mark.parametrize(
    ("make_history", "make_command"),
    [
        pytest.param(History, create, id="create"),
        pytest.param(
            lambda: given(create(), process()),
            lambda **envelope: fail_job(retryable=False, **envelope),
            id="a step that gives up",
        ),
    ],
)
def test_a_command_with_the_longest_valid_id_can_be_decided_and_recorded(make_history, make_command):
    history, command_id = make_history(), "c" * 128
    command = make_command(message_id=command_id)

    events = history.record(command)

    assert [event.message_id for event in events] == [f"{command_id}-{n}" for n in range(1, len(events) + 1)]
    assert history.state.bookkeeping.applied_commands[-1] == command_id
