"""Property: definitions generated at random (states, steps, waits, quorums, deadlines), driven by random command
sequences. Every decision is folded as it is made, so a log the engine writes is a legal path of its own version; and
folding it from any snapshot gives the same state."""

from typing import Any, TypedDict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workflow_history import WORKFLOW_ID, History

from contracts.commands import (
    ApproveWorkflow,
    CancelWorkflow,
    Command,
    CompleteJob,
    CreateWorkflow,
    FailJob,
    FireTimer,
    ProcessWorkflow,
    ReassignWorkflow,
    RejectWorkflow,
    RetryWorkflow,
)
from contracts.definitions import TypeDefinition
from contracts.events import TransitionTaken
from contracts.state import WorkflowState
from services.orchestrator.domain.declaration import TypeVersions, WorkflowType, parse_definition
from services.orchestrator.domain.engine import Engine

PEOPLE = ["ann", "bob", "cy", "dan"]


class OnIt(TypedDict):
    workflow_id: str


ON_IT = OnIt(workflow_id=WORKFLOW_ID)
SETTINGS = settings(
    max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def definitions(draw) -> dict[str, Any]:
    """A sound definition: a chain S0 → S1 → … → Done through each state's first trigger (so every state is reached
    and an end too), every other trigger leading anywhere."""
    middle = [f"S{i}" for i in range(draw(st.integers(1, 5)))]
    anywhere = st.sampled_from([*middle, "Done", "Failed"])
    states: dict[str, Any] = {"Done": {"kind": "end"}, "Failed": {"kind": "end", "succeeded": False}}
    transitions = []
    for i, name in enumerate(middle):
        chained = middle[i + 1] if i + 1 < len(middle) else "Done"
        if draw(st.booleans()):
            threshold = draw(st.sampled_from([0.1, 0.5, 0.9]))
            routes = [{"when": f"result.output > {threshold}", "trigger": f"hi{i}"}, {"trigger": f"lo{i}"}]
            retry = {"max_tries": draw(st.integers(1, 3)), "initial_delay_s": 1.0}
            states[name] = {"kind": "step", "step": f"job{i}", "routes": routes, "retry": retry, "on_failure": f"x{i}"}
            transitions += [(f"hi{i}", name, chained), (f"lo{i}", name, draw(anywhere)), (f"x{i}", name, "Failed")]
            continue
        kinds = draw(st.lists(st.sampled_from(["process", "approve", "reject"]), min_size=1, max_size=3, unique=True))
        accepts = {}
        for n, kind in enumerate(kinds):
            accept: dict[str, Any] = {"trigger": f"{kind}{i}"}
            people = draw(st.lists(st.sampled_from(PEOPLE[:3]), min_size=1, max_size=3, unique=True))
            match draw(st.sampled_from(["anyone", "people", "quorum", "group"])):
                case "people":
                    accept["who"] = {"people": people}
                case "quorum" if len(people) >= 2:
                    accept |= {"who": {"people": people}, "quorum": draw(st.integers(2, len(people)))}
                case "group":
                    accept["who"] = {"groups": ["team"], "input": "owner"}
            accepts[kind] = accept
            transitions.append((f"{kind}{i}", name, chained if n == 0 else draw(anywhere)))
        states[name] = {"kind": "wait", "accepts": accepts}
        if draw(st.booleans()):
            states[name]["deadline"] = {"after_s": 60.0, "fires": f"late{i}"}
            transitions.append((f"late{i}", name, draw(anywhere)))
    if all(dest != "Failed" for _, _, dest in transitions):
        del states["Failed"]  # an end nothing leads to would be unreachable
    return {
        "name": "random",
        "title": "Random",
        "initial": middle[0],
        "states": states,
        "transitions": [{"trigger": t, "source": s, "dest": d} for t, s, d in transitions],
    }


def commands_for(state: WorkflowState, choice: int, actor: str, output: float) -> Command:
    """A command a person, a worker or the broker could send now (often one the state refuses)."""
    ids = ON_IT
    job = state.bookkeeping.pending_job
    timers = sorted(state.bookkeeping.timers)
    person = {"approver": actor, "actor": actor, "groups": ["team"] if actor == "dan" else []}
    options: list[Command] = [
        ProcessWorkflow(**ids, actor=actor),
        ApproveWorkflow(**ids, **person),
        RejectWorkflow(**ids, **person),
        RetryWorkflow(**ids),
        ReassignWorkflow(**ids, to=[actor]),
    ]
    if job:
        options += [
            CompleteJob(**ids, job_id=job.job_id, result={"output": output}),
            FailJob(**ids, job_id=job.job_id, error="boom", retryable=output > 0.3),
        ]
    options += [FireTimer(**ids, message_id=f"{WORKFLOW_ID}-{timer}", timer_id=timer) for timer in timers]
    if choice == 99:
        return CancelWorkflow(**ids)
    return options[choice % len(options)]


@SETTINGS
@given(
    document=definitions(),
    steps=st.lists(
        st.tuples(st.integers(0, 99), st.sampled_from(PEOPLE), st.floats(0, 0.999)), min_size=1, max_size=25
    ),
)
def test_a_random_definition_driven_at_random_writes_only_legal_paths_that_fold_the_same_from_any_snapshot(
    document, steps
):
    definition, problems = parse_definition(document)
    assert definition is not None and problems == [], problems
    declared = WorkflowType.compile(TypeDefinition.model_validate(document))
    history = History(engine=Engine(TypeVersions([declared])))
    history.record(CreateWorkflow(workflow_id=WORKFLOW_ID, workflow_type="random", input={"owner": "bob"}))
    for choice, actor, output in steps:
        history.record(commands_for(history.state, choice, actor, output))  # each event is folded as it is made

    legal = {(t.trigger, t.source, t.dest) for t in definition.transitions}
    taken = [(e.trigger, e.source, e.dest) for e in history.events if isinstance(e, TransitionTaken)]
    assert set(taken) <= legal
    final = history.state
    for cut in range(len(history.recorded) + 1):
        snapshot = history.engine.fold(WorkflowState(id=WORKFLOW_ID), history.recorded[:cut])
        assert history.engine.fold(snapshot, history.recorded[cut:]) == final
