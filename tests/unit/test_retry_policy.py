import pytest

from contracts.definitions import RetryPolicy, StepState
from services.orchestrator.domain.declaration import delay_after
from services.orchestrator.domain.types import WORKFLOW_TYPES


def schedule(policy: RetryPolicy, tries: int) -> list[float | None]:
    """The delay after each failed try, 1 to `tries`."""
    return [delay_after(policy, failed_try) for failed_try in range(1, tries + 1)]


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        pytest.param(
            RetryPolicy(max_tries=5, initial_delay_s=1.5, backoff="constant"),
            [1.5, 1.5, 1.5, 1.5, None, None],
            id="constant",
        ),
        pytest.param(
            RetryPolicy(max_tries=5, initial_delay_s=0.5, backoff="linear"),
            [0.5, 1.0, 1.5, 2.0, None, None],
            id="linear",
        ),
        pytest.param(
            RetryPolicy(max_tries=5, initial_delay_s=0.5, backoff="exponential", multiplier=3.0),
            [0.5, 1.5, 4.5, 13.5, None, None],
            id="exponential",
        ),
        pytest.param(
            RetryPolicy(max_tries=4, initial_delay_s=1.0, backoff="exponential"),
            [1.0, 2.0, 4.0, None],
            id="exponential doubles by default",
        ),
    ],
)
def test_each_backoff_spaces_the_tries_by_its_schedule_and_stops_after_the_last(policy, delays):
    assert schedule(policy, len(delays)) == delays


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        pytest.param(
            RetryPolicy(max_tries=4, initial_delay_s=7.0, backoff="constant", max_delay_s=5.0),
            [5.0, 5.0, 5.0, None],
            id="constant",
        ),
        pytest.param(
            RetryPolicy(max_tries=5, initial_delay_s=2.0, backoff="linear", max_delay_s=5.0),
            [2.0, 4.0, 5.0, 5.0, None],
            id="linear",
        ),
        pytest.param(
            RetryPolicy(max_tries=7, initial_delay_s=0.5, backoff="exponential", multiplier=3.0, max_delay_s=10.0),
            [0.5, 1.5, 4.5, 10.0, 10.0, 10.0, None],
            id="exponential",
        ),
    ],
)
def test_no_delay_exceeds_the_cap(policy, delays):
    assert schedule(policy, len(delays)) == delays


def test_a_single_try_policy_never_retries():
    assert delay_after(RetryPolicy(max_tries=1), 1) is None


# The shipped steps' policies, as the issue states them.
@pytest.mark.parametrize(
    ("workflow_type", "state", "delays"),
    [
        ("approval", "Sending To Queue", [0.2, 0.4, 0.8, None]),
        ("expense", "Validating", [0.5, 1.0, None]),
        ("expense", "Paying", [1.0, 2.0, 4.0, 8.0, None]),
    ],
)
def test_the_shipped_steps_retry_on_their_declared_schedules(workflow_type, state, delays):
    step = WORKFLOW_TYPES[workflow_type].states[state]
    assert isinstance(step, StepState)
    assert schedule(step.retry, len(delays)) == delays
